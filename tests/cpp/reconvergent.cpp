// Reconvergent paths (spec section 3, class 1): A feeds B and C, D joins them.
// Per tile A emits K tokens to B before its first token to C; D consumes one
// token from each branch in turn. The B path (s_ab, B, s_bd) must hold about
// K tokens or the design deadlocks.
//   reconvergent small|big declare|nodeclare
// small: s_ab depth 2 (deadlocks); big: s_ab depth 8 (passes).
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "hls_stream.h"

constexpr int K = 8;
constexpr int TILES = 50;

static void A(hls::stream<int>& ab, hls::stream<int>& ac) {
  for (int t = 0; t < TILES; ++t) {
    for (int j = 0; j < K; ++j) ab.write(t * K + j);
    for (int j = 0; j < K; ++j) ac.write(-(t * K + j));
  }
}

static void B(hls::stream<int>& ab, hls::stream<int>& bd) {
  for (int i = 0; i < TILES * K; ++i) bd.write(ab.read() * 3);
}

static void C(hls::stream<int>& ac, hls::stream<int>& cd) {
  for (int i = 0; i < TILES * K; ++i) cd.write(ac.read() * 5);
}

static void D(hls::stream<int>& bd, hls::stream<int>& cd, std::uint64_t& out) {
  std::uint64_t acc = 0;
  for (int i = 0; i < TILES * K; ++i) {
    int b = bd.read();
    int c = cd.read();
    acc = acc * 31u + static_cast<std::uint64_t>(static_cast<std::int64_t>(b) - c);
  }
  out = acc;
}

template <int DEPTH_AB>
static bool top(bool declare, std::uint64_t& out) {
  hls::stream<int, DEPTH_AB> s_ab("s_ab");
  hls::stream<int, 2> s_ac("s_ac");
  hls::stream<int, 2> s_bd("s_bd");
  hls::stream<int, 2> s_cd("s_cd");
  hls_sim::Region region("recon");
  if (declare) {
    region.connect(s_ab, "A", "B");
    region.connect(s_ac, "A", "C");
    region.connect(s_bd, "B", "D");
    region.connect(s_cd, "C", "D");
  }
  region.spawn("A", [&] { A(s_ab, s_ac); });
  region.spawn("B", [&] { B(s_ab, s_bd); });
  region.spawn("C", [&] { C(s_ac, s_cd); });
  region.spawn("D", [&] { D(s_bd, s_cd, out); });
  return region.join();
}

int main(int argc, char** argv) {
  bool big = argc > 1 && std::strcmp(argv[1], "big") == 0;
  bool declare = !(argc > 2 && std::strcmp(argv[2], "nodeclare") == 0);
  std::uint64_t out = 0;
  bool ok = big ? top<8>(declare, out) : top<2>(declare, out);
  if (!ok) {
    std::fprintf(stderr, "recon: region failed\n");
    return 1;
  }
  std::printf("result %llu\n", static_cast<unsigned long long>(out));
  return 0;
}
