// Compiled with -D__SYNTHESIS__: the dataflow macros must expand to plain,
// sequential calls in program order (no runtime, no hls_stream.h needed).
#include <cstdio>

#include "hls_dataflow_sim.h"

static int trace[3];
static int n = 0;
static void a(int v) { trace[n++] = v; }
static void b(int v, int w) { trace[n++] = v + w; }

int main() {
  int s_ab = 0;
  HLS_SIM_REGION(top);
  HLS_SIM_CONNECT(s_ab, a, b);
  HLS_SIM_PROCESS(a, a(1));
  HLS_SIM_PROCESS(b, b(1, 1));
  HLS_SIM_PROCESS(a2, a(3));
  HLS_SIM_END_REGION();
  std::printf("calls %d %d %d %d\n", n, trace[0], trace[1], trace[2] + s_ab);
  return 0;
}
