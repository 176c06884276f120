// Part of streamtensor: the synthesis-view API of Vitis HLS's hls::stream, declarations only, for the front-end
// check (verify.frontend_check). Vitis's own hls_stream.h is not redistributable and the one in the hls4ml
// wheel is the 2018 C-simulation model without the depth parameter, so the check compiles against this: the
// class template stream<T, DEPTH> derived from stream<T, 0>, non-copyable, with the blocking and non-blocking
// reads and writes. It is never linked: -fsyntax-only checks only that the kernel uses this API.
#ifndef STREAMTENSOR_SYNTHESIS_VIEW_HLS_STREAM_H
#define STREAMTENSOR_SYNTHESIS_VIEW_HLS_STREAM_H

#ifndef __SYNTHESIS__
#error "synthesis_view/hls_stream.h is the synthesis view: compile with -D__SYNTHESIS__"
#endif

namespace hls {

template <typename T, int DEPTH = 0>
class stream;

template <typename T>
class stream<T, 0> {
 public:
  stream();
  explicit stream(const char* name);
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;
  bool empty() const;
  bool full() const;
  T read();
  void read(T& value);
  bool read_nb(T& value);
  void write(const T& value);
  bool write_nb(const T& value);
  void operator>>(T& value);
  void operator<<(const T& value);
};

template <typename T, int DEPTH>
class stream : public stream<T, 0> {
 public:
  stream();
  explicit stream(const char* name);
};

}  // namespace hls

#endif  // STREAMTENSOR_SYNTHESIS_VIEW_HLS_STREAM_H
