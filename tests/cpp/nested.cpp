// A dataflow process whose body is itself a dataflow region.
//   nested ok|deadlock
// Outer region: src -> mid -> sink, plus a side stream src -> sink.
// mid runs the inner region m1 -> m2. In "deadlock" mode src emits all K side
// tokens before its first token to mid, and s_side is too shallow.
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "hls_dataflow_sim.h"

constexpr int K = 5;
constexpr int N = 40;

static void src(bool skew, hls::stream<int>& side, hls::stream<int>& in) {
  for (int t = 0; t < N / K; ++t) {
    if (skew) {
      for (int j = 0; j < K; ++j) side.write(t * K + j);
      for (int j = 0; j < K; ++j) in.write(t * K + j);
    } else {
      for (int j = 0; j < K; ++j) {
        side.write(t * K + j);
        in.write(t * K + j);
      }
    }
  }
}

static void m1(hls::stream<int>& in, hls::stream<int>& mid) {
  for (int i = 0; i < N; ++i) mid.write(in.read() + 1);
}

static void m2(hls::stream<int>& mid, hls::stream<int>& out) {
  for (int i = 0; i < N; ++i) out.write(mid.read() * 2);
}

static void mid_block(hls::stream<int>& in, hls::stream<int>& out) {
  hls::stream<int> s_mid("s_mid");
  HLS_SIM_REGION(mid_region);
  HLS_SIM_CONNECT(s_mid, m1, m2);
  HLS_SIM_PROCESS(m1, m1(in, s_mid));
  HLS_SIM_PROCESS(m2, m2(s_mid, out));
  HLS_SIM_END_REGION();
}

static void sink(hls::stream<int>& side, hls::stream<int>& out, std::uint64_t& acc) {
  for (int i = 0; i < N; ++i) {
    int a = side.read();
    int b = out.read();
    acc = acc * 7u + static_cast<std::uint64_t>(a + b);
  }
}

int main(int argc, char** argv) {
  bool skew = argc > 1 && std::strcmp(argv[1], "deadlock") == 0;
  std::uint64_t acc = 0;
  hls::stream<int> s_side("s_side"), s_in("s_in"), s_out("s_out");
  {
    HLS_SIM_REGION(outer);
    HLS_SIM_CONNECT(s_side, src, sink);
    HLS_SIM_CONNECT(s_in, src, mid);
    HLS_SIM_CONNECT(s_out, mid, sink);
    HLS_SIM_PROCESS(src, src(skew, s_side, s_in));
    HLS_SIM_PROCESS(mid, mid_block(s_in, s_out));
    HLS_SIM_PROCESS(sink, sink(s_side, s_out, acc));
    HLS_SIM_END_REGION();
  }
  std::printf("acc %llu\n", static_cast<unsigned long long>(acc));
  return 0;
}
