// Chain of dataflow processes: source -> stage_0 .. stage_{S-1} -> sink.
// Usage: chain STAGES TOKENS. Prints a checksum that must be bit-identical
// across runs. Exercises hls::stream<T> (default depth 2) passed to functions
// taking hls::stream<T>&, plus explicit-depth streams.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "hls_stream.h"

static void source(hls::stream<std::uint32_t>& out, int n) {
  for (int i = 0; i < n; ++i) out.write(static_cast<std::uint32_t>(i) * 2654435761u);
}

static void stage(int id, hls::stream<std::uint32_t>& in, hls::stream<std::uint32_t>& out, int n) {
  for (int i = 0; i < n; ++i) {
    std::uint32_t v = in.read();
    v = (v ^ (v >> 13)) * 1103515245u + static_cast<std::uint32_t>(id);
    out.write(v);
  }
}

static void sink(hls::stream<std::uint32_t>& in, int n, std::uint64_t& hash, float& acc) {
  for (int i = 0; i < n; ++i) {
    std::uint32_t v;
    in >> v;
    hash = (hash ^ v) * 1099511628211ull;
    acc += static_cast<float>(v & 0xffffu) * 0.001f;  // order-sensitive float sum
  }
}

int main(int argc, char** argv) {
  int stages = argc > 1 ? std::atoi(argv[1]) : 8;
  int n = argc > 2 ? std::atoi(argv[2]) : 1000;
  std::vector<std::unique_ptr<hls::stream<std::uint32_t>>> s;
  for (int i = 0; i <= stages; ++i) {
    std::string name = "s" + std::to_string(i);
    if (i % 3 == 1)
      s.emplace_back(new hls::stream<std::uint32_t, 4>(name));
    else
      s.emplace_back(new hls::stream<std::uint32_t>(name));
  }
  std::uint64_t hash = 1469598103934665603ull;
  float acc = 0.0f;
  {
    hls_sim::Region region("chain");
    region.spawn("source", [&] { source(*s[0], n); });
    for (int i = 0; i < stages; ++i)
      region.spawn("stage" + std::to_string(i), [&, i] { stage(i, *s[i], *s[i + 1], n); });
    region.spawn("sink", [&] { sink(*s[stages], n, hash, acc); });
    if (!region.join()) return 1;
  }
  float accf = acc;
  std::uint32_t accbits;
  std::memcpy(&accbits, &accf, sizeof accbits);
  std::printf("checksum %016llx acc %08x tokens %d stages %d\n", static_cast<unsigned long long>(hash),
              accbits, n, stages);
  return 0;
}
