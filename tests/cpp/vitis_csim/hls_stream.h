// Test model of what Vitis HLS's C simulation does with hls::stream (Vitis's own header is not
// redistributable): unbounded streams, and a dataflow region's processes called one after another in program
// order (hls_dataflow_sim.h without STREAMTENSOR_CSIM). Reading an empty stream is an error, as Vitis's C
// simulation reports it; tokens left at exit are reported like its "contains leftover data" warning, but fail.
// tests/test_vitis_flow.py builds the generated testbench against it the way Vitis's C simulation does: C++14,
// no streamtensor simulation header on the include path, no STREAMTENSOR_CSIM.
#ifndef STREAMTENSOR_TEST_VITIS_CSIM_HLS_STREAM_H
#define STREAMTENSOR_TEST_VITIS_CSIM_HLS_STREAM_H

#include <cstdio>
#include <cstdlib>
#include <deque>
#include <string>

namespace hls {

template <typename T, int DEPTH = 0>
class stream;

template <typename T>
class stream<T, 0> {
 public:
  stream() : name_("stream") {}
  explicit stream(const char* name) : name_(name) {}
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;
  ~stream() {
    if (!tokens_.empty()) {
      std::fprintf(stderr, "vitis csim model: stream %s contains %zu leftover tokens\n", name_.c_str(),
                   tokens_.size());
      std::_Exit(3);
    }
  }
  bool empty() const { return tokens_.empty(); }
  bool full() const { return false; }
  T read() {
    if (tokens_.empty()) {
      std::fprintf(stderr, "vitis csim model: read of empty stream %s\n", name_.c_str());
      std::_Exit(3);
    }
    T value = tokens_.front();
    tokens_.pop_front();
    return value;
  }
  void read(T& value) { value = read(); }
  void write(const T& value) { tokens_.push_back(value); }
  void operator>>(T& value) { value = read(); }
  void operator<<(const T& value) { write(value); }

 private:
  std::string name_;
  std::deque<T> tokens_;
};

template <typename T, int DEPTH>
class stream : public stream<T, 0> {
 public:
  stream() {}
  explicit stream(const char* name) : stream<T, 0>(name) {}
};

}  // namespace hls

#endif  // STREAMTENSOR_TEST_VITIS_CSIM_HLS_STREAM_H
