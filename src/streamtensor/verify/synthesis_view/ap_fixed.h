// Part of streamtensor: ap_fixed.h for the front-end check (verify.frontend_check). Vitis's synthesis-side
// arbitrary-precision headers are not redistributable; Xilinx's open-source ones (the next ap_fixed.h on the include
// path, codegen/vitis/include/ap_types) have the same API but #error under __SYNTHESIS__, so they are read with
// __SYNTHESIS__ undefined while the kernel around them keeps its synthesis view.
#ifndef STREAMTENSOR_SYNTHESIS_VIEW_AP_FIXED_H
#define STREAMTENSOR_SYNTHESIS_VIEW_AP_FIXED_H
#pragma push_macro("__SYNTHESIS__")
#undef __SYNTHESIS__
#include_next <ap_fixed.h>
#pragma pop_macro("__SYNTHESIS__")
#endif  // STREAMTENSOR_SYNTHESIS_VIEW_AP_FIXED_H
