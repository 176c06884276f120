// Iterations in flight. A pipelined loop whose writes trail its reads by `lag` firings (lag = ceil(depth / II)
// of the timing model's process) reads firing f + lag - 1 before its write of firing f leaves: the stall
// pipeline of the hardware, and the event order the FIFO-sizing LP and the timing simulator assume. The C
// simulation reproduces it by holding a process's writes until `lag` firings later; synthesis writes directly.
// A drained firing reads a token between two tile loops, after the pipeline of the loops inside drained: every
// write still in flight leaves before it (the timing model's idle firings, timing_model.drained_inputs).
#ifdef __SYNTHESIS__
#define HLS_SIM_IN_FLIGHT(lag)
#define HLS_SIM_FIRING(condition)
#define HLS_SIM_DRAINED_FIRING(condition)
#define HLS_SIM_WRITE(stream, value) write_token(stream, value)
#define HLS_SIM_WRITE_BEAT(stream, value, beat, last) write_beat(stream, value, beat)
#define HLS_SIM_WRITE_BEHIND(stream, value, beat, last) write_beat(stream, value, beat)
#define HLS_SIM_DRAIN()
#else
namespace streamtensor {

class InFlightWrites {
 public:
  explicit InFlightWrites(int lag) : lag_(static_cast<std::size_t>(lag)) {}

  // Start of a firing, before its reads: the writes of firing f - lag leave now.
  void firing() {
    pending_.emplace_back();
    release(lag_);
  }
  // Start of a drained firing: every write in flight leaves first.
  void drained_firing() {
    release(0);
    firing();
  }
  template <typename S, typename T>
  void write(hls::stream<S>& s, const T& value) {
    pending_.back().emplace_back([&s, value] { write_token(s, value); });
  }
  // A write of the previous firing, made in this one (a result written behind, analysis.stream_beats).
  template <typename S, typename T>
  void write_behind(hls::stream<S>& s, const T& value) {
    pending_[pending_.size() - 2].emplace_back([&s, value] { write_token(s, value); });
  }
  // End of the process: the writes still in flight leave in order.
  void drain() { release(0); }

 private:
  void release(std::size_t keep) {
    for (; pending_.size() > keep; pending_.pop_front()) {
      for (const std::function<void()>& w : pending_.front()) w();
    }
  }

  std::size_t lag_;
  std::deque<std::vector<std::function<void()>>> pending_;  // writes of the firings in flight, oldest first
};

}  // namespace streamtensor
#define HLS_SIM_IN_FLIGHT(lag) streamtensor::InFlightWrites hls_sim_in_flight_(lag)
#define HLS_SIM_FIRING(condition) \
  if (condition) hls_sim_in_flight_.firing()
#define HLS_SIM_DRAINED_FIRING(condition) \
  if (condition) hls_sim_in_flight_.drained_firing()
#define HLS_SIM_WRITE(stream, value) hls_sim_in_flight_.write(stream, value)
// The beats of one token leave in one firing: the simulation holds the whole token at its last beat.
#define HLS_SIM_WRITE_BEAT(stream, value, beat, last) \
  if ((beat) == (last)) hls_sim_in_flight_.write(stream, value)
#define HLS_SIM_WRITE_BEHIND(stream, value, beat, last) \
  if ((beat) == (last)) hls_sim_in_flight_.write_behind(stream, value)
#define HLS_SIM_DRAIN() hls_sim_in_flight_.drain()
#endif
