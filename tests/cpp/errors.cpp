// Region-exit and protocol errors; each mode must fail with exit status 1.
//   errors leftover|orphan|starved|overfed|twoproducers|throws|testbench_bounded|
//          testbench_unbounded|ok
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "hls_dataflow_sim.h"

static void put(hls::stream<int>& s, int n) {
  for (int i = 0; i < n; ++i) s.write(i);
}
static void get(hls::stream<int>& s, int n, long& sum) {
  for (int i = 0; i < n; ++i) sum += s.read();
}
static void put_then_throw(hls::stream<int>& s) {
  s.write(1);
  throw std::runtime_error("boom");
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "ok";
  long sum = 0;
  if (std::strcmp(mode, "leftover") == 0) {
    hls::stream<int, 4> s("s");
    HLS_SIM_REGION(leftover);
    HLS_SIM_PROCESS(P, put(s, 3));
    HLS_SIM_PROCESS(C, get(s, 2, sum));
    HLS_SIM_END_REGION();
  } else if (std::strcmp(mode, "orphan") == 0) {
    hls::stream<int, 4> s("s");
    hls::stream<int, 4> u("u");
    HLS_SIM_REGION(orphan);
    HLS_SIM_PROCESS(P, put(s, 2));
    HLS_SIM_PROCESS(Q, put(u, 1));
    HLS_SIM_PROCESS(C, get(u, 1, sum));
    HLS_SIM_END_REGION();
  } else if (std::strcmp(mode, "starved") == 0) {
    hls::stream<int, 4> s("s");
    HLS_SIM_REGION(starved);
    HLS_SIM_PROCESS(P, put(s, 2));
    HLS_SIM_PROCESS(C, get(s, 3, sum));
    HLS_SIM_END_REGION();
  } else if (std::strcmp(mode, "overfed") == 0) {
    hls::stream<int> s("s");
    HLS_SIM_REGION(overfed);
    HLS_SIM_PROCESS(P, put(s, 6));
    HLS_SIM_PROCESS(C, get(s, 3, sum));
    HLS_SIM_END_REGION();
  } else if (std::strcmp(mode, "twoproducers") == 0) {
    hls::stream<int, 4> s("s");
    HLS_SIM_REGION(twoprod);
    HLS_SIM_PROCESS(P1, put(s, 1));
    HLS_SIM_PROCESS(P2, put(s, 1));
    HLS_SIM_PROCESS(C, get(s, 1, sum));
    HLS_SIM_END_REGION();
  } else if (std::strcmp(mode, "throws") == 0) {
    hls::stream<int, 4> s("s");
    HLS_SIM_REGION(throws);
    HLS_SIM_PROCESS(P, put_then_throw(s));
    HLS_SIM_PROCESS(C, get(s, 2, sum));
    HLS_SIM_END_REGION();
  } else if (std::strcmp(mode, "testbench_bounded") == 0 || std::strcmp(mode, "testbench_unbounded") == 0) {
    // The testbench fills a top-level input stream before the region runs,
    // as Vitis's sequential C simulation allows: needs an unbounded stream.
    hls::stream<int> tb_in("tb_in");
    if (std::strcmp(mode, "testbench_unbounded") == 0) hls_sim::set_depth(tb_in, 0);
    for (int i = 0; i < 10; ++i) tb_in.write(i);
    HLS_SIM_REGION(tb_top);
    HLS_SIM_PROCESS(C, get(tb_in, 10, sum));
    HLS_SIM_END_REGION();
  } else {
    hls::stream<int, 4> s("s");
    HLS_SIM_REGION(fine);
    HLS_SIM_PROCESS(P, put(s, 3));
    HLS_SIM_PROCESS(C, get(s, 3, sum));
    HLS_SIM_END_REGION();
  }
  std::printf("sum %ld failures %d\n", sum, hls_sim::failures());
  return 0;
}
