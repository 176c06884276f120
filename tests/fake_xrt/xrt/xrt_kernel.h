// A stand-in for XRT's xrt::kernel and xrt::run (tests only): a run prints "xrt-start" and completes at once
// without computing (its outputs keep what their buffers held); waiting for it prints "xrt-wait".
#pragma once
#include <cstdint>
#include <cstdio>

#include "xrt_bo.h"
#include "xrt_device.h"

enum ert_cmd_state { ERT_CMD_STATE_COMPLETED = 4, ERT_CMD_STATE_ERROR = 5 };

namespace xrt {

class kernel {
 public:
  kernel(const device&, const uuid&, const char*) {}
  memory_group group_id(int index) const { return index; }
};

class run {
 public:
  explicit run(const kernel&) {}
  void set_arg(int, const bo&) {}
  void set_arg(int, std::int64_t) {}
  void set_arg(int, float) {}
  void start() { std::printf("xrt-start\n"); }
  ert_cmd_state wait() {
    std::printf("xrt-wait\n");
    return ERT_CMD_STATE_COMPLETED;
  }
};

}  // namespace xrt
