// Deterministic high-water marks: the producer fills s (depth 8) with 5
// tokens and t (depth 2) with 2 tokens before handing `go` to the consumer,
// which reads nothing before `go`. Expected report: s high_water 5 tokens 5,
// t high_water 2 tokens 10, go high_water 1 tokens 1.
#include <cstdio>

#include "hls_dataflow_sim.h"

static void producer(hls::stream<int>& go, hls::stream<int>& s, hls::stream<int>& t) {
  for (int i = 0; i < 5; ++i) s.write(i);
  t.write(100);
  t.write(101);
  go.write(1);
  for (int i = 2; i < 10; ++i) t.write(100 + i);
}

static void consumer(hls::stream<int>& go, hls::stream<int>& s, hls::stream<int>& t, long& sum) {
  sum = go.read();
  for (int i = 0; i < 5; ++i) sum += s.read();
  for (int i = 0; i < 10; ++i) sum += t.read();
}

static void top(long& sum) {
  hls::stream<int, 1> go("go");
  hls::stream<int, 8> s("s");
  hls::stream<int> t("t");
  HLS_SIM_REGION(hw_top);
  HLS_SIM_PROCESS(producer, producer(go, s, t));
  HLS_SIM_PROCESS(consumer, consumer(go, s, t, sum));
  HLS_SIM_END_REGION();
}

int main() {
  long sum = 0;
  top(sum);
  std::printf("sum %ld\n", sum);
  return 0;
}
