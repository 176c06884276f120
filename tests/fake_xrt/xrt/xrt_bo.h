// A stand-in for XRT's xrt::bo (tests only): host memory, and every sync printed as "xrt-sync to|from BYTES" on
// stdout, so a test can count what the generated host program moves. No device, no kernel execution.
#pragma once
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "xrt_device.h"

enum xclBOSyncDirection { XCL_BO_SYNC_BO_TO_DEVICE, XCL_BO_SYNC_BO_FROM_DEVICE };

namespace xrt {

using memory_group = int;

class bo {
 public:
  bo() = default;
  bo(const device&, std::size_t size, memory_group) : memory_(std::make_shared<std::vector<char>>(size)), size_(size) {}
  bo(const bo& parent, std::size_t size, std::size_t offset)  // a sub-buffer: the parent's memory
      : memory_(parent.memory_), offset_(parent.offset_ + offset), size_(size) {}
  void write(const void* data, std::size_t size, std::size_t offset) {
    std::memcpy(memory_->data() + offset_ + offset, data, size);
  }
  void read(void* data, std::size_t size, std::size_t offset) const {
    std::memcpy(data, memory_->data() + offset_ + offset, size);
  }
  void sync(xclBOSyncDirection direction) const {
    std::printf("xrt-sync %s %zu\n", direction == XCL_BO_SYNC_BO_TO_DEVICE ? "to" : "from", size_);
  }
  std::size_t size() const { return size_; }

 private:
  std::shared_ptr<std::vector<char>> memory_;
  std::size_t offset_ = 0;
  std::size_t size_ = 0;
};

}  // namespace xrt
