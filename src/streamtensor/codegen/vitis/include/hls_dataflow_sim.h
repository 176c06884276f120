// Part of streamtensor 0.1.0 — dataflow-region macros shared by synthesis and
// simulation builds of generated HLS C++.
//
//   HLS_SIM_REGION(block_top);                 // start a dataflow region
//   HLS_SIM_CONNECT(s_q, gemm_q, attn);        // optional: name a stream's endpoints
//   HLS_SIM_PROCESS(gemm_q, gemm_q(x, w, s_q));
//   HLS_SIM_PROCESS(attn, attn(s_q, y));
//   HLS_SIM_END_REGION();                      // join; on failure exit(1)
//
// Only with STREAMTENSOR_CSIM defined (streamtensor's make csim, never with
// __SYNTHESIS__) do the macros come from streamtensor's simulation-only
// hls_stream.h: one thread per process, bounded FIFOs and exact deadlock
// detection. Otherwise (Vitis synthesis, Vitis C simulation and C/RTL
// co-simulation) the process macro is the plain call and the others expand
// to nothing: the tool sees the canonical dataflow form, process calls in
// program order, and the kernel gets Vitis's own hls_stream.h.
//
// This header includes nothing then; it may be copied next to the generated
// sources.

#ifndef STREAMTENSOR_HLS_DATAFLOW_SIM_H
#define STREAMTENSOR_HLS_DATAFLOW_SIM_H

#if defined(__SYNTHESIS__) || !defined(STREAMTENSOR_CSIM)
#define HLS_SIM_REGION(name)
#define HLS_SIM_CONNECT(stream, producer, consumer)
#define HLS_SIM_PROCESS(name, ...) __VA_ARGS__
#define HLS_SIM_END_REGION()
#else
#include "hls_stream.h"
#endif

#endif  // STREAMTENSOR_HLS_DATAFLOW_SIM_H
