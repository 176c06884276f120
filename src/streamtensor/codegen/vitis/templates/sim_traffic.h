#ifndef __SYNTHESIS__
// C simulation only: the external-memory traffic of a run. The testbench registers every buffer it passes to
// the kernel; the tile loads and stores (tile_io.h) count their bytes on the buffer holding the address; with
// STREAMTENSOR_SIM_TRAFFIC=FILE in the environment the testbench appends one JSON line per buffer to FILE:
// {"arg", "read_bytes", "written_bytes"}.
struct SimBuffer {
  const char* arg;
  const word512* base;
  std::size_t words;
  std::atomic<std::size_t> read{0};
  std::atomic<std::size_t> written{0};
};

inline std::vector<std::unique_ptr<SimBuffer>>& sim_buffers() {
  static std::vector<std::unique_ptr<SimBuffer>> buffers;
  return buffers;
}

inline void sim_register_buffer(const char* arg, const word512* base, std::size_t words) {
  sim_buffers().emplace_back(new SimBuffer{arg, base, words});
}

inline void sim_traffic(const word512* at, std::size_t words, bool write) {
  for (const std::unique_ptr<SimBuffer>& b : sim_buffers()) {
    if (at >= b->base && at < b->base + b->words) {
      (write ? b->written : b->read) += words * sizeof(word512);
      return;
    }
  }
}

inline bool sim_report_traffic() {
  const char* path = std::getenv("STREAMTENSOR_SIM_TRAFFIC");
  if (path == nullptr) return true;
  std::FILE* f = std::fopen(path, "a");
  if (f == nullptr) return false;
  for (const std::unique_ptr<SimBuffer>& b : sim_buffers()) {
    std::fprintf(f, "{\"arg\": \"%s\", \"read_bytes\": %zu, \"written_bytes\": %zu}\n", b->arg, b->read.load(),
                 b->written.load());
  }
  return std::fclose(f) == 0;
}
#endif
