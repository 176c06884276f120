// Part of streamtensor 0.1.0 — simulation-only hls_stream.h; never used for synthesis.
//
// A bounded, threaded C-simulation runtime for Vitis HLS dataflow designs
// (target-and-verification spec, section 4). Generated HLS C++ compiled with
// g++ against this header runs as a real Kahn process network:
//
//   * hls::stream<T, DEPTH> is really bounded at DEPTH: write() on a full
//     stream blocks, read() on an empty one blocks. hls::stream<T> (DEPTH 0)
//     gets Vitis's default depth of 2. Like Vitis, stream<T, D> derives from
//     stream<T>, so process functions may take `hls::stream<T>&`.
//   * read_nb()/write_nb() are intentionally ABSENT: with blocking-only
//     access the design is a Kahn process network, results are determinate
//     (bit-identical across runs and thread schedules) and a larger FIFO never
//     hurts. Code that polls empty()/full() in a loop is timing dependent and
//     is not supported (a polling process counts as runnable forever).
//   * Every dataflow process runs in its own thread (hls_sim::Region, or the
//     HLS_SIM_* macros below / in hls_dataflow_sim.h).
//   * Exact deadlock detection without timeouts: the runtime counts runnable
//     threads; a thread that blocks in read()/write()/join() is not runnable,
//     and the thread that wakes it makes it runnable again *before* it can
//     block itself. When the count reaches zero while a thread is blocked on a
//     stream, every participant is blocked for good: the wait-for chain is
//     printed to stderr, all blocked processes are unwound (an internal
//     exception thrown from the blocked read/write, caught by the process
//     wrapper), and Region::join() returns false.
//   * At region exit: leftover tokens are errors; a process that finished
//     while a peer still waits on it (starved read / overfed write) shows up
//     as a deadlock whose chain ends at the finished process.
//   * Per-stream statistics: if STREAMTENSOR_SIM_REPORT names a file, one JSON
//     line per stream is appended at each region exit:
//       {"region":"block_top","stream":"s_q","depth":2,"high_water":2,
//        "tokens":4096,"leftover":0,"producer":"gemm_q","consumer":"attn"}
//     ("depth":0 means unbounded; "tokens" counts all writes since the stream
//     was constructed; "high_water" is the peak occupancy). Setting
//     STREAMTENSOR_SIM_VERBOSE=1 also prints a summary to stderr; normal
//     runs are quiet.
//   * Messages on stderr (deterministic: the deadlocked state of a bounded
//     KPN does not depend on the schedule):
//       DEADLOCK in region R: A blocked writing s_ab (full, depth 2) -> B ...
//         -> D blocked reading s_cd (empty, depth 2) -> C ... -> A
//       (or a chain ending in "P (finished)" / "? (s has no known producer
//       ...)"), then a "  cause: ..." line and the state of every process;
//       LEFTOVER in region R: stream s holds N unread tokens (depth D; ...)
//       ERROR in region R: process P threw: ...   / stream s is written by
//       both P and Q (one producer and one consumer per stream).
//     A stream learns its producer/consumer from the first write/read;
//     Region::connect / HLS_SIM_CONNECT declares them by process name so the
//     chain can name a peer that has not touched the stream yet.
//   * Threads that are not processes (e.g. the testbench's main thread) take
//     part as well and count as runnable unless blocked. A testbench that
//     fills a top-level stream before calling the top function must make it
//     unbounded first: hls_sim::set_depth(s, 0) (Vitis's sequential C
//     simulation has unbounded streams).
//
// Usage in a top function (simulation form):
//
//   hls::stream<int8_t, 2> s_q("s_q");
//   hls_sim::Region region("block_top");
//   region.connect(s_q, "gemm_q", "attn");          // optional, names peers
//   region.spawn("gemm_q", [&] { gemm_q(x, w, s_q); });
//   region.spawn("attn",   [&] { attn(s_q, y); });
//   if (!region.join()) { /* failed: deadlock, leftover tokens, ... */ }
//
// or with the macros (hls_dataflow_sim.h maps them to plain calls unless
// STREAMTENSOR_CSIM is defined, which this header requires):
//
//   HLS_SIM_REGION(block_top);
//   HLS_SIM_CONNECT(s_q, gemm_q, attn);
//   HLS_SIM_PROCESS(gemm_q, gemm_q(x, w, s_q));
//   HLS_SIM_PROCESS(attn, attn(s_q, y));
//   HLS_SIM_END_REGION();   // on failure: exit(1) (or unwind, when nested)

#ifndef STREAMTENSOR_HLS_STREAM_SIM_H
#define STREAMTENSOR_HLS_STREAM_SIM_H

#ifdef __SYNTHESIS__
#error "streamtensor's hls_stream.h is simulation-only; synthesis must use the Vitis HLS hls_stream.h"
#endif
#ifndef STREAMTENSOR_CSIM
#error "streamtensor's hls_stream.h is for its own C simulation (-DSTREAMTENSOR_CSIM); Vitis C simulation and co-simulation must use Vitis's hls_stream.h (do not put include/ on their include path)"
#endif

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace hls {
template <typename T, int DEPTH = 0>
class stream;
}  // namespace hls

namespace hls_sim {

class Region;

template <typename T>
void set_depth(::hls::stream<T, 0>& s, std::size_t depth);

namespace detail {

class StreamCore;
struct RegionState;

// Thrown from a blocked read()/write() to unwind a process after a deadlock
// (or a protocol violation). Deliberately not derived from std::exception.
struct Abort {};

// One participant: a dataflow process thread, or an external thread (e.g. the
// testbench's main thread) that touched the runtime.
struct Ctx : std::enable_shared_from_this<Ctx> {
  std::string name;
  std::string region_name;
  RegionState* region = nullptr;  // owning region (processes); alive while the region joins
  bool is_process = false;
  std::uint64_t order = 0;  // spawn serial: deterministic order within a region
  std::atomic<bool> finished{false};

  // Guarded by Global::mu.
  bool runnable = false;
  bool aborting = false;
  StreamCore* blocked_on = nullptr;
  bool blocked_writing = false;
  RegionState* joining = nullptr;

  // Guarded by the mutex of the stream this thread is blocked on.
  bool abort_go = false;
};

struct RegionState {
  std::string name;
  Ctx* owner = nullptr;
  // Guarded by Global::mu.
  std::vector<std::shared_ptr<Ctx>> procs;
  std::vector<StreamCore*> streams;
  std::condition_variable cv;
  int unfinished = 0;
  bool failed = false;
  bool deadlocked = false;
};

// Victims of a detected deadlock: the detecting thread releases its locks and
// then wakes each (other) victim under that victim's stream mutex.
struct Detection {
  bool fired = false;
  std::vector<std::pair<Ctx*, StreamCore*>> victims;
};

struct Global {
  std::mutex mu;
  long running = 0;        // participants that are not blocked (guarded by mu)
  std::vector<Ctx*> live;  // registered, unfinished participants (guarded by mu)
  std::atomic<std::uint64_t> stream_serial{0};
  std::atomic<std::uint64_t> order_serial{0};
  std::atomic<int> failures{0};
  std::mutex report_mu;
};

inline Global& global() {
  static Global* g = new Global();  // leaked on purpose: no destruction-order issues
  return *g;
}

inline const std::thread::id g_main_thread_id = std::this_thread::get_id();
inline thread_local Ctx* tl_ctx = nullptr;

inline bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && v[0] != '\0' && !(v[0] == '0' && v[1] == '\0');
}

inline void detect_locked(Global& g, Detection& d);

// Requires g.mu held.
inline void set_runnable_locked(Global& g, Ctx* c, bool v, Detection& d) {
  if (c->runnable == v) return;
  c->runnable = v;
  g.running += v ? 1 : -1;
  if (!v && g.running == 0) detect_locked(g, d);
}

inline void remove_live_locked(Global& g, Ctx* c) {
  auto it = std::find(g.live.begin(), g.live.end(), c);
  if (it != g.live.end()) g.live.erase(it);
}

inline void wake_victims(const Detection& d, const Ctx* self);

struct ExternalHolder {
  std::shared_ptr<Ctx> ctx;
  ExternalHolder() = default;
  ExternalHolder(const ExternalHolder&) = delete;
  ExternalHolder& operator=(const ExternalHolder&) = delete;
  ~ExternalHolder() {
    if (!ctx) return;
    Global& g = global();
    Detection d;
    {
      std::lock_guard<std::mutex> lk(g.mu);
      ctx->finished.store(true);
      remove_live_locked(g, ctx.get());
      set_runnable_locked(g, ctx.get(), false, d);
    }
    if (d.fired) wake_victims(d, ctx.get());
    if (tl_ctx == ctx.get()) tl_ctx = nullptr;
  }
};

inline Ctx* register_external() {
  thread_local ExternalHolder holder;
  if (!holder.ctx) {
    auto c = std::make_shared<Ctx>();
    c->name = std::this_thread::get_id() == g_main_thread_id ? "main" : "external thread";
    c->region_name = "<none>";
    c->order = ~std::uint64_t{0} >> 1;
    Global& g = global();
    Detection d;
    std::lock_guard<std::mutex> lk(g.mu);
    g.live.push_back(c.get());
    set_runnable_locked(g, c.get(), true, d);
    holder.ctx = std::move(c);
  }
  tl_ctx = holder.ctx.get();
  return tl_ctx;
}

inline Ctx* current_ctx() {
  Ctx* c = tl_ctx;
  return c != nullptr ? c : register_external();
}

inline std::string plural(std::uint64_t n, const char* word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

inline void json_escape(std::string& out, const std::string& s) {
  for (char ch : s) {
    unsigned char u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (u < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(u));
      out += buf;
    } else {
      out += ch;
    }
  }
}

[[noreturn]] inline void fatal_external(const std::string& msg) {
  std::fputs(msg.c_str(), stderr);
  std::fputs(
      "hls_sim: a non-process thread is blocked for good; exiting with status 1 (a testbench that fills "
      "a stream before calling the top function needs hls_sim::set_depth(stream, 0))\n",
      stderr);
  std::fflush(stderr);
  std::_Exit(1);
}

// ---------------------------------------------------------------------------
// StreamCore: synchronisation, endpoints and statistics shared by all streams.
// Lock order: a stream mutex may be held when taking Global::mu, never the
// reverse; at most one stream mutex is held at a time.
class StreamCore {
 public:
  StreamCore(const StreamCore&) = delete;
  StreamCore& operator=(const StreamCore&) = delete;

  const std::string& sim_name() const { return name_; }

 protected:
  StreamCore(const char* name, std::size_t capacity)
      : serial_(global().stream_serial.fetch_add(1)), capacity_(capacity) {
    name_ = (name != nullptr && name[0] != '\0') ? std::string(name) : "stream#" + std::to_string(serial_);
  }

  ~StreamCore() {
    Global& g = global();
    std::lock_guard<std::mutex> lk(g.mu);
    for (RegionState* r : regions_) {
      auto it = std::find(r->streams.begin(), r->streams.end(), this);
      if (it != r->streams.end()) r->streams.erase(it);
    }
  }

  // Caller holds lk (on mu_). Returns once a token may be pushed.
  void begin_write(std::unique_lock<std::mutex>& lk, Ctx* me) {
    if (producer_.get() != me) claim(me, true);
    for (int spin = 0; capacity_ != 0 && count_ >= capacity_; ++spin) {
      if (spin < kYieldSpins) {
        yield(lk);
      } else {
        block(lk, me, true);
      }
    }
  }
  // end_write()/end_read() return the condition variable to notify once the
  // caller has released mu_ (or nullptr when nobody waits on the other side).
  std::condition_variable* end_write() {
    ++count_;
    written_.store(written_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (count_ > high_water_.load(std::memory_order_relaxed))
      high_water_.store(count_, std::memory_order_relaxed);
    return waiting_reader_ != nullptr ? wake(waiting_reader_, cv_read_) : nullptr;
  }
  void begin_read(std::unique_lock<std::mutex>& lk, Ctx* me) {
    if (consumer_.get() != me) claim(me, false);
    for (int spin = 0; count_ == 0; ++spin) {
      if (spin < kYieldSpins) {
        yield(lk);
      } else {
        block(lk, me, false);
      }
    }
  }
  std::condition_variable* end_read() {
    --count_;
    read_.store(read_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return waiting_writer_ != nullptr ? wake(waiting_writer_, cv_write_) : nullptr;
  }

  mutable std::mutex mu_;
  std::size_t count_ = 0;  // guarded by mu_

 private:
  friend class ::hls_sim::Region;
  friend void detect_locked(Global& g, Detection& d);
  friend void wake_victims(const Detection& d, const Ctx* self);
  template <typename T>
  friend void ::hls_sim::set_depth(::hls::stream<T, 0>& s, std::size_t depth);

  void link_region_locked(RegionState* r) {
    if (std::find(regions_.begin(), regions_.end(), r) == regions_.end()) {
      regions_.push_back(r);
      r->streams.push_back(this);
    }
  }

  // First access by `me` on one side: learn (or take over) the endpoint.
  void claim(Ctx* me, bool producer) {
    std::shared_ptr<Ctx>& slot = producer ? producer_ : consumer_;
    Global& g = global();
    std::unique_lock<std::mutex> glk(g.mu);
    Ctx* old = slot.get();
    // Allowed: the first access; a successor of an endpoint that finished in
    // an earlier region (the top function called again, a testbench thread);
    // a nested region's process taking over from its enclosing process.
    bool ok = old == nullptr ||
              (old->finished.load() && (old->region == nullptr || old->region != me->region)) ||
              (me->region != nullptr && me->region->owner == old);
    if (ok) {
      slot = me->shared_from_this();
      if (me->region != nullptr) link_region_locked(me->region);
      return;
    }
    std::string msg = "ERROR in region " + me->region_name + ": stream " + name_ + " is " +
                      (producer ? "written" : "read") + " by both " + old->name + " and " + me->name +
                      " (a dataflow stream needs exactly one " + (producer ? "producer" : "consumer") +
                      ")\n";
    if (!me->is_process) fatal_external(msg);
    me->region->failed = true;
    glk.unlock();
    std::fputs(msg.c_str(), stderr);
    std::fflush(stderr);
    throw Abort{};
  }

  // Before blocking, yield the CPU a few times: the peer usually frees the
  // slot meanwhile, which avoids most futex sleeps. A yielding thread stays
  // runnable, so this changes neither results nor deadlock detection.
  static constexpr int kYieldSpins = 4;
  static void yield(std::unique_lock<std::mutex>& lk) {
    lk.unlock();
    std::this_thread::yield();
    lk.lock();
  }

  void block(std::unique_lock<std::mutex>& lk, Ctx* me, bool writing) {
    Ctx*& slot = writing ? waiting_writer_ : waiting_reader_;
    std::condition_variable& cv = writing ? cv_write_ : cv_read_;
    slot = me;
    me->abort_go = false;
    Global& g = global();
    Detection d;
    {
      std::lock_guard<std::mutex> glk(g.mu);
      me->blocked_on = this;
      me->blocked_writing = writing;
      set_runnable_locked(g, me, false, d);
    }
    if (d.fired) {  // this very block completed a deadlock; we are a victim too
      slot = nullptr;
      lk.unlock();
      wake_victims(d, me);
      throw Abort{};
    }
    cv.wait(lk, [&] { return slot != me || me->abort_go; });
    if (slot == me) {  // woken by the deadlock handler
      slot = nullptr;
      throw Abort{};
    }
  }

  // Caller holds mu_; *slot is the (single) thread blocked on the other side.
  // It becomes runnable here, before the caller can block itself; the caller
  // notifies cv after releasing mu_ (the stream outlives both endpoints).
  std::condition_variable* wake(Ctx*& slot, std::condition_variable& cv) {
    Ctx* w = slot;
    slot = nullptr;
    Global& g = global();
    Detection d;
    {
      std::lock_guard<std::mutex> glk(g.mu);
      w->blocked_on = nullptr;
      set_runnable_locked(g, w, true, d);
    }
    return &cv;
  }

  std::string name_;
  std::uint64_t serial_;
  std::size_t capacity_;  // 0 = unbounded; set before first use
  std::condition_variable cv_read_, cv_write_;
  Ctx* waiting_reader_ = nullptr;  // guarded by mu_
  Ctx* waiting_writer_ = nullptr;  // guarded by mu_
  std::atomic<std::uint64_t> written_{0}, read_{0};
  std::atomic<std::size_t> high_water_{0};
  // Endpoints: written under mu_ AND Global::mu, so either lock suffices to read.
  std::shared_ptr<Ctx> producer_, consumer_;
  // Guarded by Global::mu.
  std::string decl_producer_, decl_consumer_;
  std::vector<RegionState*> regions_;
};

}  // namespace detail

// Simulation-only: change a stream's depth before its first use (0 = unbounded,
// e.g. for testbench-side streams that the testbench fills before calling the
// top function, as Vitis's sequential C simulation would allow).
template <typename T>
void set_depth(::hls::stream<T, 0>& s, std::size_t depth);

// Number of dataflow regions whose join() failed so far in this process.
inline int failures() { return detail::global().failures.load(); }

}  // namespace hls_sim

namespace hls {

// hls::stream<T> (depth 2, Vitis's default) and the base of every stream<T, D>.
template <typename T>
class stream<T, 0> : public ::hls_sim::detail::StreamCore {
 public:
  stream() : StreamCore(nullptr, 2) {}
  explicit stream(const char* name) : StreamCore(name, 2) {}
  explicit stream(const std::string& name) : StreamCore(name.c_str(), 2) {}
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;

  void write(const T& v) {
    ::hls_sim::detail::Ctx* me = ::hls_sim::detail::current_ctx();
    std::unique_lock<std::mutex> lk(this->mu_);
    this->begin_write(lk, me);
    q_.push_back(v);
    std::condition_variable* cv = this->end_write();
    lk.unlock();
    if (cv != nullptr) cv->notify_all();
  }
  void read(T& v) {
    ::hls_sim::detail::Ctx* me = ::hls_sim::detail::current_ctx();
    std::unique_lock<std::mutex> lk(this->mu_);
    this->begin_read(lk, me);
    v = std::move(q_.front());
    q_.pop_front();
    std::condition_variable* cv = this->end_read();
    lk.unlock();
    if (cv != nullptr) cv->notify_all();
  }
  T read() {
    T v;
    read(v);
    return v;
  }
  void operator>>(T& v) { read(v); }
  void operator<<(const T& v) { write(v); }

  // Non-blocking queries. Use empty() only in the consumer and full() only in
  // the producer; do not poll them in a loop (timing dependent, never KPN).
  bool empty() const {
    std::lock_guard<std::mutex> lk(this->mu_);
    return this->count_ == 0;
  }
  bool full() const {
    std::lock_guard<std::mutex> lk(this->mu_);
    return this->capacity_ != 0 && this->count_ >= this->capacity_;
  }
  std::size_t size() const {
    std::lock_guard<std::mutex> lk(this->mu_);
    return this->count_;
  }

  // read_nb()/write_nb() are intentionally not provided (KPN semantics).

 protected:
  stream(const char* name, std::size_t depth) : StreamCore(name, depth) {}

 private:
  std::deque<T> q_;  // guarded by mu_
};

template <typename T, int DEPTH>
class stream : public stream<T, 0> {
  static_assert(DEPTH > 0, "hls::stream depth must be positive");

 public:
  stream() : stream<T, 0>(nullptr, static_cast<std::size_t>(DEPTH)) {}
  explicit stream(const char* name) : stream<T, 0>(name, static_cast<std::size_t>(DEPTH)) {}
  explicit stream(const std::string& name) : stream<T, 0>(name.c_str(), static_cast<std::size_t>(DEPTH)) {}
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;
};

}  // namespace hls

namespace hls_sim {

template <typename T>
void set_depth(::hls::stream<T, 0>& s, std::size_t depth) {
  std::lock_guard<std::mutex> lk(s.mu_);
  s.capacity_ = depth;
}

namespace detail {

inline void wake_victims(const Detection& d, const Ctx* self) {
  for (const auto& v : d.victims) {
    if (v.first == self) continue;
    StreamCore* s = v.second;
    std::lock_guard<std::mutex> lk(s->mu_);
    v.first->abort_go = true;
    s->cv_read_.notify_all();
    s->cv_write_.notify_all();
  }
}

// Called with g.mu held when the runnable count has just reached zero.
inline void detect_locked(Global& g, Detection& d) {
  std::vector<Ctx*> blocked;
  for (Ctx* c : g.live)
    if (c->blocked_on != nullptr && !c->aborting) blocked.push_back(c);
  if (blocked.empty()) return;  // everything finished (a joiner is about to wake)
  std::sort(blocked.begin(), blocked.end(), [](const Ctx* a, const Ctx* b) { return a->order < b->order; });

  // One step of the wait-for graph: the participant `c` waits on, or a
  // terminal description (finished / unknown peer) in `term`.
  struct Step {
    Ctx* next = nullptr;
    std::string term;
    std::string cause;
  };
  auto side_desc = [](const StreamCore* s, bool writing) {
    return std::string(writing ? "writing " : "reading ") + s->name_ + " (" + (writing ? "full" : "empty") +
           ", depth " + (s->capacity_ == 0 ? std::string("unbounded") : std::to_string(s->capacity_)) + ")";
  };
  auto resolve = [](const StreamCore* s, bool want_producer, const Ctx* from, std::string& decl_missing) {
    Ctx* learned = want_producer ? s->producer_.get() : s->consumer_.get();
    if (learned != nullptr && !learned->finished.load()) return learned;
    const std::string& decl = want_producer ? s->decl_producer_ : s->decl_consumer_;
    if (!decl.empty()) {
      // Search the blocked process's region, then the enclosing regions.
      for (const RegionState* r = from->region; r != nullptr;
           r = r->owner != nullptr ? r->owner->region : nullptr)
        for (const auto& p : r->procs)
          if (p->name == decl) return p.get();
      decl_missing = decl;
    }
    return learned;
  };
  auto step = [&](Ctx* c) {
    Step st;
    if (c->blocked_on != nullptr) {
      StreamCore* s = c->blocked_on;
      bool w = c->blocked_writing;
      std::string decl_missing;
      Ctx* peer = resolve(s, !w, c, decl_missing);
      const char* role = w ? "consumer" : "producer";
      std::uint64_t nw = s->written_.load(std::memory_order_relaxed);
      std::uint64_t nr = s->read_.load(std::memory_order_relaxed);
      if (peer == nullptr) {
        if (!decl_missing.empty()) {
          st.term = decl_missing + " (declared " + role + " of " + s->name_ +
                    ", but no such process in region " + c->region_name + ")";
          st.cause =
              "  cause: the declared " + std::string(role) + " of " + s->name_ + " was never spawned\n";
        } else {
          st.term = std::string("? (") + s->name_ + " has no known " + role + ": never " +
                    (w ? "read" : "written") + " and not declared)";
          st.cause = "  cause: nothing ever " + std::string(w ? "read from " : "wrote to ") + s->name_ +
                     "; name its endpoints with HLS_SIM_CONNECT(stream, producer, consumer) or "
                     "Region::connect to see the full cycle\n";
        }
      } else if (peer->finished.load()) {
        st.term = peer->name + " (finished)";
        if (w)
          st.cause = "  cause: overfed write: " + peer->name + " finished after reading " +
                     plural(nr, "token") + " from " + s->name_ + "; " + c->name + " waits to write token #" +
                     std::to_string(nw + 1) + " (token-count mismatch)\n";
        else
          st.cause = "  cause: starved read: " + peer->name + " finished after writing " +
                     plural(nw, "token") + " to " + s->name_ + "; " + c->name + " has read " +
                     std::to_string(nr) + " and waits for more (token-count mismatch)\n";
      } else {
        st.next = peer;
      }
    } else if (c->joining != nullptr) {
      for (const auto& p : c->joining->procs)
        if (!p->finished.load()) {
          st.next = p.get();
          break;
        }
      if (st.next == nullptr) st.term = "(region " + c->joining->name + " finishing)";
    } else {
      st.term = c->name + " (running)";  // cannot happen when nothing is runnable
    }
    return st;
  };
  auto node_desc = [&](const Ctx* c) {
    if (c->blocked_on != nullptr) return c->name + " blocked " + side_desc(c->blocked_on, c->blocked_writing);
    if (c->joining != nullptr) return c->name + " waiting for its dataflow region " + c->joining->name;
    if (c->finished.load()) return c->name + " (finished)";
    return c->name;
  };

  // Follow the chain from the first blocked process (in spawn order).
  std::vector<Ctx*> path;
  std::string term, cause;
  std::size_t cycle_at = std::string::npos;
  for (Ctx* cur = blocked.front();;) {
    auto it = std::find(path.begin(), path.end(), cur);
    if (it != path.end()) {
      cycle_at = static_cast<std::size_t>(it - path.begin());
      break;
    }
    path.push_back(cur);
    Step st = step(cur);
    if (st.next == nullptr) {
      term = st.term;
      cause = st.cause;
      break;
    }
    cur = st.next;
  }

  Ctx* head = blocked.front();
  std::string msg = head->region != nullptr ? "DEADLOCK in region " + head->region_name + ": "
                                            : std::string("DEADLOCK outside any dataflow region: ");
  if (cycle_at != std::string::npos) {
    std::vector<Ctx*> cyc(path.begin() + static_cast<std::ptrdiff_t>(cycle_at), path.end());
    auto first = std::min_element(cyc.begin(), cyc.end(),
                                  [](const Ctx* a, const Ctx* b) { return a->order < b->order; });
    std::rotate(cyc.begin(), first, cyc.end());
    for (Ctx* c : cyc) msg += node_desc(c) + " -> ";
    msg += cyc.front()->name + "\n";
    cause =
        "  cause: circular wait through bounded FIFOs (a FIFO on a reconvergent path is too shallow, "
        "or a feedback loop has no initial tokens)\n";
  } else {
    for (Ctx* c : path) msg += node_desc(c) + " -> ";
    msg += term + "\n";
  }
  msg += cause;

  // Every process of the regions involved, in spawn order.
  std::vector<RegionState*> regions;
  for (Ctx* c : blocked)
    if (c->region != nullptr && std::find(regions.begin(), regions.end(), c->region) == regions.end())
      regions.push_back(c->region);
  for (RegionState* r : regions) {
    msg += "  processes of region " + r->name + ":\n";
    for (const auto& p : r->procs) {
      msg += "    " + p->name + ": ";
      if (p->blocked_on != nullptr && !p->finished.load()) {
        const StreamCore* s = p->blocked_on;
        msg += "blocked " + side_desc(s, p->blocked_writing) + "; " +
               std::to_string(s->written_.load(std::memory_order_relaxed)) + " written, " +
               std::to_string(s->read_.load(std::memory_order_relaxed)) + " read\n";
      } else if (p->joining != nullptr) {
        msg += "waiting for its dataflow region " + p->joining->name + "\n";
      } else if (p->finished.load()) {
        msg += "finished\n";
      } else {
        msg += "running\n";
      }
    }
  }

  bool external = false;
  for (Ctx* c : blocked) {
    if (!c->is_process) external = true;
    c->aborting = true;
    d.victims.emplace_back(c, c->blocked_on);
    if (c->region != nullptr) {
      c->region->failed = true;
      c->region->deadlocked = true;
    }
  }
  d.fired = true;
  if (external) fatal_external(msg);
  std::fputs(msg.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace detail

// A dataflow region: one thread per process, started by spawn() and joined by
// join(). Not copyable; join() before destruction (the destructor joins too).
class Region {
 public:
  explicit Region(const std::string& name) : st_(std::make_shared<detail::RegionState>()) {
    st_->name = name;
    st_->owner = detail::current_ctx();
  }
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;
  ~Region() {
    join();
    detail::Global& g = detail::global();
    std::lock_guard<std::mutex> lk(g.mu);
    for (detail::StreamCore* s : st_->streams) {
      auto it = std::find(s->regions_.begin(), s->regions_.end(), st_.get());
      if (it != s->regions_.end()) s->regions_.erase(it);
    }
    st_->streams.clear();
  }

  const std::string& name() const { return st_->name; }

  // Optional: declare a stream's endpoints by process name, so a deadlock
  // report can name a peer that has not touched the stream yet.
  template <typename T>
  void connect(::hls::stream<T, 0>& s, const std::string& producer, const std::string& consumer) {
    detail::Global& g = detail::global();
    std::lock_guard<std::mutex> lk(g.mu);
    s.decl_producer_ = producer;
    s.decl_consumer_ = consumer;
    s.link_region_locked(st_.get());
  }

  // Start a dataflow process running fn() in its own thread.
  template <typename F>
  void spawn(const std::string& name, F&& fn) {
    using Fn = std::decay_t<F>;
    std::shared_ptr<detail::Ctx> ctx = add_process(name);
    try {
      threads_.emplace_back(&Region::run_process<Fn>, ctx, Fn(std::forward<F>(fn)));
    } catch (...) {
      finish_process(ctx.get());
      throw;
    }
  }

  // Wait for every process. Returns true iff the region completed cleanly: no
  // deadlock, no process error, no leftover tokens in its streams.
  bool join() {
    if (joined_) return ok_;
    joined_ = true;
    detail::Global& g = detail::global();
    detail::Ctx* me = detail::current_ctx();
    detail::Detection d;
    {
      std::lock_guard<std::mutex> lk(g.mu);
      me->joining = st_.get();
      detail::set_runnable_locked(g, me, false, d);
    }
    if (d.fired) detail::wake_victims(d, me);
    std::vector<detail::StreamCore*> streams;
    std::vector<std::shared_ptr<detail::Ctx>> procs;
    bool failed = false, deadlocked = false;
    {
      std::unique_lock<std::mutex> lk(g.mu);
      st_->cv.wait(lk, [&] { return st_->unfinished == 0; });
      me->joining = nullptr;
      detail::set_runnable_locked(g, me, true, d);
      streams = st_->streams;
      failed = st_->failed;
      deadlocked = st_->deadlocked;
    }
    for (std::thread& t : threads_) t.join();
    threads_.clear();
    ok_ = finish_checks(streams, failed, deadlocked);
    if (!ok_) detail::global().failures.fetch_add(1);
    return ok_;
  }

  // join(); on failure exit(1) from a top-level region, or unwind the
  // enclosing process when this region is nested inside one.
  void join_or_exit() {
    if (join()) return;
    if (detail::current_ctx()->is_process) throw detail::Abort{};
    std::fprintf(stderr, "hls_sim: dataflow region %s failed\n", st_->name.c_str());
    std::fflush(stderr);
    std::exit(1);
  }

 private:
  std::shared_ptr<detail::Ctx> add_process(const std::string& name) {
    auto c = std::make_shared<detail::Ctx>();
    c->name = name;
    c->region_name = st_->name;
    c->region = st_.get();
    c->is_process = true;
    detail::Global& g = detail::global();
    c->order = g.order_serial.fetch_add(1);
    detail::Detection d;
    std::lock_guard<std::mutex> lk(g.mu);
    st_->procs.push_back(c);
    st_->unfinished += 1;
    g.live.push_back(c.get());
    detail::set_runnable_locked(g, c.get(), true, d);
    return c;
  }

  template <typename Fn>
  static void run_process(std::shared_ptr<detail::Ctx> ctx, Fn fn) {
    detail::tl_ctx = ctx.get();
    try {
      fn();
    } catch (const detail::Abort&) {
      // already reported (deadlock or protocol violation)
    } catch (const std::exception& e) {
      report_exception(ctx.get(), e.what());
    } catch (...) {
      report_exception(ctx.get(), "unknown exception");
    }
    finish_process(ctx.get());
    detail::tl_ctx = nullptr;
  }

  static void report_exception(detail::Ctx* c, const char* what) {
    detail::Global& g = detail::global();
    {
      std::lock_guard<std::mutex> lk(g.mu);
      c->region->failed = true;
    }
    std::string msg = "ERROR in region " + c->region_name + ": process " + c->name + " threw: " + what + "\n";
    std::fputs(msg.c_str(), stderr);
    std::fflush(stderr);
  }

  static void finish_process(detail::Ctx* c) {
    detail::Global& g = detail::global();
    detail::Detection d;
    {
      std::lock_guard<std::mutex> lk(g.mu);
      c->finished.store(true);
      c->blocked_on = nullptr;
      detail::remove_live_locked(g, c);
      detail::set_runnable_locked(g, c, false, d);
      if (--c->region->unfinished == 0) c->region->cv.notify_all();
    }
    if (d.fired) detail::wake_victims(d, c);
  }

  struct StreamStats {
    std::uint64_t serial;
    std::string name, producer, consumer;
    std::size_t depth, high_water, leftover;
    std::uint64_t written, read;
    bool internal, orphan;  // both ends in this region / written here, never read, bounded
  };

  bool finish_checks(const std::vector<detail::StreamCore*>& streams, bool failed, bool deadlocked) {
    std::vector<StreamStats> stats;
    for (detail::StreamCore* s : streams) {
      StreamStats x;
      std::lock_guard<std::mutex> lk(s->mu_);
      x.serial = s->serial_;
      x.name = s->name_;
      x.depth = s->capacity_;
      x.high_water = s->high_water_.load(std::memory_order_relaxed);
      x.leftover = s->count_;
      x.written = s->written_.load(std::memory_order_relaxed);
      x.read = s->read_.load(std::memory_order_relaxed);
      const detail::Ctx* p = s->producer_.get();
      const detail::Ctx* c = s->consumer_.get();
      x.producer = p != nullptr ? p->name : "";
      x.consumer = c != nullptr ? c->name : "";
      bool p_in = p != nullptr && p->region == st_.get();
      bool c_in = c != nullptr && c->region == st_.get();
      x.internal = p_in && c_in;
      x.orphan = p_in && c == nullptr && s->capacity_ != 0;
      stats.push_back(std::move(x));
    }
    std::sort(stats.begin(), stats.end(),
              [](const StreamStats& a, const StreamStats& b) { return a.serial < b.serial; });

    bool ok = !failed;
    if (!deadlocked) {
      std::string msg;
      for (const StreamStats& x : stats) {
        if (x.leftover == 0 || !(x.internal || x.orphan)) continue;
        msg += "LEFTOVER in region " + st_->name + ": stream " + x.name + " holds " +
               detail::plural(x.leftover, "unread token") + " (depth " + std::to_string(x.depth) + "; " +
               std::to_string(x.written) + " written by " + x.producer + ", " +
               (x.consumer.empty() ? std::string("never read")
                                   : std::to_string(x.read) + " read by " + x.consumer) +
               ")\n";
      }
      if (!msg.empty()) {
        ok = false;
        std::fputs(msg.c_str(), stderr);
        std::fflush(stderr);
      }
    }

    const char* path = std::getenv("STREAMTENSOR_SIM_REPORT");
    bool verbose = detail::env_flag("STREAMTENSOR_SIM_VERBOSE");
    if ((path != nullptr && path[0] != '\0') || verbose) {
      std::string lines, summary;
      std::size_t np = st_->procs.size();
      summary = "[hls_sim] region " + st_->name + ": " + std::to_string(np) +
                (np == 1 ? " process, " : " processes, ") + detail::plural(stats.size(), "stream") + ", " +
                (ok ? "ok" : "FAILED") + "\n";
      for (const StreamStats& x : stats) {
        std::string l = "{\"region\":\"";
        detail::json_escape(l, st_->name);
        l += "\",\"stream\":\"";
        detail::json_escape(l, x.name);
        l += "\",\"depth\":" + std::to_string(x.depth) + ",\"high_water\":" + std::to_string(x.high_water) +
             ",\"tokens\":" + std::to_string(x.written) + ",\"leftover\":" + std::to_string(x.leftover) +
             ",\"producer\":\"";
        detail::json_escape(l, x.producer);
        l += "\",\"consumer\":\"";
        detail::json_escape(l, x.consumer);
        l += "\"}\n";
        lines += l;
        summary += "[hls_sim]   " + x.name + ": depth " + std::to_string(x.depth) + ", high water " +
                   std::to_string(x.high_water) + ", tokens " + std::to_string(x.written) + "\n";
      }
      std::lock_guard<std::mutex> lk(detail::global().report_mu);
      if (path != nullptr && path[0] != '\0') {
        if (std::FILE* f = std::fopen(path, "a")) {
          std::fputs(lines.c_str(), f);
          std::fclose(f);
        } else {
          std::fprintf(stderr, "hls_sim: cannot open STREAMTENSOR_SIM_REPORT file %s\n", path);
        }
      }
      if (verbose) {
        std::fputs(summary.c_str(), stderr);
        std::fflush(stderr);
      }
    }
    return ok;
  }

  std::shared_ptr<detail::RegionState> st_;
  std::vector<std::thread> threads_;
  bool joined_ = false;
  bool ok_ = true;
};

}  // namespace hls_sim

// Simulation forms of the dataflow macros (hls_dataflow_sim.h provides the
// synthesis forms: nothing, and a plain call).
#ifndef HLS_SIM_REGION
#define HLS_SIM_REGION(name) ::hls_sim::Region hls_sim_region_(#name)
#define HLS_SIM_CONNECT(stream, producer, consumer) hls_sim_region_.connect(stream, #producer, #consumer)
#define HLS_SIM_PROCESS(name, ...) hls_sim_region_.spawn(#name, [&]() { __VA_ARGS__; })
#define HLS_SIM_END_REGION() hls_sim_region_.join_or_exit()
#endif

#endif  // STREAMTENSOR_HLS_STREAM_SIM_H
