// The host token loop of a whole model on the card, with the XRT native API: the C++ twin of
// streamtensor.llm.generate (same steps, same packing, same sampling rules).
//
// Usage: llm_host XCLBIN BUILD_DIR PROMPT_IDS [MAX_NEW_TOKENS [TOP_K TEMPERATURE SEED [DEVICE_INDEX]]]
//   PROMPT_IDS: comma-separated token ids. TEMPERATURE 0 (the default) is greedy.
// Exit status: 0 on success, 1 when XRT fails (no card, a kernel error), 2 on a usage or file error.
//
// Every buffer the host writes or reads (activations, outputs, the KV cache once per generation) is packed and
// unpacked with a slot map written by the build (host/maps/<kernel>/<arg>.map, int32 per element slot of the
// packed buffer: for a read argument the flat tensor index + 1 it holds, 0 for padding; for a written argument,
// per tensor element, the slot + 1 holding it). Weights and constants are loaded once, packed, per layer. Each
// decode layer has its own resident KV-cache buffers: written once per generation by the prefill kernel in place
// (kCachesInPlace: its keys or values output buffer is a sub-buffer at offset 0 of the cache buffer, where the
// build found the packings equal over the prompt rows) or by the host from the prefill's keys and values read back
// (kCachesCopied: every layer's buffers of one kernel argument slices of one pool, synced once), then updated in
// place by the decode kernel (its row-write argument addresses the same buffer). An int8 KV cache holds int8
// codes (one byte per element): the prefill kernel returns its keys and values quantized, and the host copies the
// codes. Activations stay on the device: every layer writes its own output buffers, and the next layer (the
// head, after the last) reads the previous one's output buffer as its input where the build found their packed
// layouts equal, per input buffer (an input read by DMAs of different packings has a buffer per packing):
// kPrefillInPlace, kDecodeInPlace, kDecodeToHeadInPlace; the head reads the last prompt row of the last prefill
// layer's output through a sub-buffer at kHeadRowOffsets[buffer][row]. For the other buffers the host reads the
// output back once and writes them. Where every buffer agrees, per decode step the host syncs the embedded
// token's row in once and the logits back once; the position is a register of every launch. A layer's run is
// queued behind the previous layer's, without waiting for it, where kPrefillQueued/kDecodeQueued say so: the same
// kernel (one compute unit; the kernels are ap_ctrl_hs, so it runs its queue one run at a time, in order), its
// whole input the previous layer's output buffer, on that buffer's banks. Every other run is waited for before the
// next starts or the host reads an output; the prefill's keys and values are read once all its layers are done.
// A buffer whose memory bank is not connected to the argument reading it is copied by XRT into a connected bank
// when the argument is set (xrt::run::set_arg: "Allocating local copy of argument buffer in connected bank"):
// correct here, since the run writing it has completed, but a device copy the run model does not count.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <xrt/xrt_bo.h>
#include <xrt/xrt_device.h>
#include <xrt/xrt_kernel.h>

namespace {

constexpr const char* kProgram = "llm_host";

struct Arg {
  const char* arg;     // C identifier: kernel argument and file name
  const char* tensor;  // tensor name (several arguments may share one)
  const char* role;    // input | kv_cache | weight | constant | output | scalar
  bool reads;
  std::size_t bytes;       // packed layout
  std::size_t elem_bytes;  // 4: float32, 8: int64, 1: int8; 0: resident (its file is written whole)
  int shares;              // index of the argument whose buffer this one addresses, -1: its own
};

struct KernelDesc {
  const char* name;
  const char* dir;
  const char* kernel;
  std::vector<Arg> args;
  std::map<std::string, std::string> outputs;  // output name -> argument
};

/*@TABLES@*/

class FileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::vector<char> read_file(const std::string& path, std::size_t bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FileError("cannot open " + path);
  std::vector<char> data(bytes);
  in.read(data.data(), static_cast<std::streamsize>(bytes));
  if (in.gcount() != static_cast<std::streamsize>(bytes) || in.peek() != EOF) {
    throw FileError(path + " does not hold exactly " + std::to_string(bytes) + " bytes");
  }
  return data;
}

std::vector<std::int32_t> read_map(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw FileError("cannot open " + path);
  const std::streamsize size = in.tellg();
  in.seekg(0);
  std::vector<std::int32_t> map(static_cast<std::size_t>(size) / sizeof(std::int32_t));
  in.read(reinterpret_cast<char*>(map.data()), size);
  return map;
}

// A tensor on the host: float32 values, int64 ones (the decode kernel's position) or int8 codes (an int8 KV
// cache's keys and values).
struct Tensor {
  std::vector<float> f;
  std::vector<std::int64_t> i;
  std::vector<std::int8_t> q;
};

class KernelRunner {
 public:
  KernelRunner(const xrt::device& device, const xrt::uuid& uuid, const KernelDesc& desc, const std::string& build,
               const std::vector<int>& layers)
      : desc_(desc), layers_(layers), device_(device), kernel_(device, uuid, desc.kernel) {
    const std::string root = build + "/" + desc.dir;
    for (std::size_t i = 0; i < desc.args.size(); ++i) {
      const Arg& a = desc.args[i];
      if (std::strcmp(a.role, "scalar") == 0 || a.shares >= 0) continue;  // a register, or another's buffer
      if (std::strcmp(a.role, "kv_cache") == 0) {  // one resident cache buffer per layer, slices of one pool
        maps_[a.arg] = read_map(build + "/host/maps/" + desc.name + "/" + a.arg + ".map");
        xrt::bo pool(device, a.bytes * layers.size(), kernel_.group_id(static_cast<int>(i)));
        const std::vector<char> zeros(pool.size(), 0);  // XRT does not promise zeroed memory
        pool.write(zeros.data(), pool.size(), 0);
        pool.sync(XCL_BO_SYNC_BO_TO_DEVICE);
        for (std::size_t l = 0; l < layers.size(); ++l) {
          resident_[std::string(a.arg) + "@" + std::to_string(layers[l])] = xrt::bo(pool, a.bytes, l * a.bytes);
        }
        pools_[a.arg] = pool;
        continue;
      }
      const bool resident = std::strcmp(a.role, "weight") == 0 || std::strcmp(a.role, "constant") == 0;
      if (!resident) {
        group_[a.arg] = kernel_.group_id(static_cast<int>(i));
        if (a.reads) bos_[a.arg] = xrt::bo(device, a.bytes, group_[a.arg]);  // an output: one buffer per layer
        maps_[a.arg] = read_map(build + "/host/maps/" + desc.name + "/" + a.arg + ".map");
        continue;
      }
      // One resident buffer per layer for weights (params/ for constants and for the head).
      const bool per_layer = std::strcmp(a.role, "weight") == 0 && !layers.empty();
      for (int layer : per_layer ? layers : std::vector<int>{-1}) {
        const std::string file = layer < 0 ? root + "/params/" + a.arg + ".bin"
                                           : root + "/layers/" + std::to_string(layer) + "/" + a.arg + ".bin";
        xrt::bo bo(device, a.bytes, kernel_.group_id(static_cast<int>(i)));
        const std::vector<char> data = read_file(file, a.bytes);
        bo.write(data.data(), a.bytes, 0);
        bo.sync(XCL_BO_SYNC_BO_TO_DEVICE);
        resident_[std::string(a.arg) + "@" + std::to_string(layer)] = bo;
      }
    }
  }

  // Writes `layer`'s resident KV-cache buffers of tensor `cache` (each its view of the whole cache tensor `t`) on
  // the host, once per generation; `sync_cache` moves every layer's to the device.
  void fill_cache(const std::string& cache, const Tensor& t, int layer) {
    for (const Arg* a : cache_args(cache)) {
      const std::vector<char> data = pack(*a, t);
      resident_.at(std::string(a->arg) + "@" + std::to_string(layer)).write(data.data(), a->bytes, 0);
    }
  }

  // Syncs every layer's buffers of KV cache `cache` (tensor name) to the device: one sync per pool.
  void sync_cache(const std::string& cache) {
    for (const Arg* a : cache_args(cache)) pools_.at(a->arg).sync(XCL_BO_SYNC_BO_TO_DEVICE);
  }

  // `layer`'s resident buffer of the KV cache `cache` (tensor name, one buffer) as its pool and offset.
  std::pair<const xrt::bo*, std::size_t> cache_slot(const std::string& cache, int layer) const {
    const std::vector<const Arg*> args = cache_args(cache);
    if (args.size() != 1) {
      throw std::runtime_error("KV cache " + cache + " has " + std::to_string(args.size()) + " buffers");
    }
    return {&pools_.at(args[0]->arg), layer_index(layer) * args[0]->bytes};
  }

  // Every layer's buffer of output `output` (tensor name) becomes a slice of one pool, read back at once
  // (`sync_output`).
  void pool_output(const std::string& output) {
    const std::string& arg = desc_.outputs.at(output);
    const std::size_t bytes = arg_named(arg).bytes;
    xrt::bo pool(device_, bytes * layers_.size(), group_.at(arg));
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      outputs_.insert_or_assign(arg + "@" + std::to_string(layers_[l]), xrt::bo(pool, bytes, l * bytes));
    }
    pools_[arg] = pool;
  }

  // Syncs every layer's buffer of the pooled output `output` back from the device: one sync.
  void sync_output(const std::string& output) {
    pools_.at(desc_.outputs.at(output)).sync(XCL_BO_SYNC_BO_FROM_DEVICE);
  }

  // Runs the kernel with `layer`'s weights and caches (-1: params/) on `inputs` (tensor name -> tensor), and waits
  // for it. `in_place`: input buffers (argument -> buffer) read where another run wrote them (its output buffer,
  // or a sub-buffer of it); nothing is written for them.
  void run(const std::map<std::string, Tensor>& inputs, int layer,
           const std::map<std::string, const xrt::bo*>& in_place = {}) {
    xrt::run run = start(inputs, layer, in_place);
    finish(run);
  }

  // Waits for a run started by `start` and checks how it ended.
  void finish(xrt::run& run) const {
    const ert_cmd_state state = run.wait();
    if (state != ERT_CMD_STATE_COMPLETED) {
      throw std::runtime_error(std::string("kernel ") + desc_.kernel + " ended in state " +
                               std::to_string(static_cast<int>(state)));
    }
  }

  // As `run`, but returns the started run without waiting for it.
  xrt::run start(const std::map<std::string, Tensor>& inputs, int layer,
                 const std::map<std::string, const xrt::bo*>& in_place = {}) {
    xrt::run run(kernel_);
    for (std::size_t i = 0; i < desc_.args.size(); ++i) {
      const Arg& a = desc_.args[i];
      if (std::strcmp(a.role, "scalar") == 0) {  // a register: the value itself
        const auto found = inputs.find(a.tensor);
        if (found == inputs.end()) throw std::runtime_error(std::string("no value for scalar ") + a.tensor);
        if (a.elem_bytes == 8) {
          run.set_arg(static_cast<int>(i), static_cast<std::int64_t>(found->second.i.at(0)));
        } else {
          run.set_arg(static_cast<int>(i), found->second.f.at(0));
        }
        continue;
      }
      const Arg& owner = a.shares >= 0 ? desc_.args[static_cast<std::size_t>(a.shares)] : a;
      auto resident = resident_.find(std::string(owner.arg) + "@" + std::to_string(layer));
      if (resident == resident_.end()) resident = resident_.find(std::string(a.arg) + "@-1");
      if (resident != resident_.end()) {
        run.set_arg(static_cast<int>(i), resident->second);
        continue;
      }
      if (!a.reads) {  // an output: this layer's own buffer
        run.set_arg(static_cast<int>(i), output_bo(a.arg, layer));
        continue;
      }
      const auto shared = in_place.find(owner.arg);
      if (shared != in_place.end()) {
        run.set_arg(static_cast<int>(i), *shared->second);
        continue;
      }
      // An input DMA sharing another's buffer (the same bytes): packed and synced once, by its owner.
      xrt::bo& bo = bos_.at(owner.arg);
      if (a.shares < 0) {
        const auto found = inputs.find(a.tensor);
        if (found == inputs.end()) throw std::runtime_error(std::string("no value for input ") + a.tensor);
        const std::vector<char> data = pack(a, found->second);
        bo.write(data.data(), a.bytes, 0);
        bo.sync(XCL_BO_SYNC_BO_TO_DEVICE);
      }
      run.set_arg(static_cast<int>(i), bo);
    }
    run.start();
    return run;
  }

  // The buffer `layer`'s runs write output `output` (tensor name) into.
  xrt::bo& output(const std::string& output, int layer) { return output_bo(desc_.outputs.at(output), layer); }

  // `layer`'s runs write output `output` (tensor name) into `slot` (a buffer and a byte offset in it).
  void place_output(const std::string& output, int layer, const std::pair<const xrt::bo*, std::size_t>& slot) {
    const std::string& arg = desc_.outputs.at(output);
    outputs_.insert_or_assign(arg + "@" + std::to_string(layer),
                              xrt::bo(*slot.first, arg_named(arg).bytes, slot.second));
  }

  // How many buffers the activation input has (one per DMA packing of it, one per stripe).
  std::size_t input_buffers() const {
    std::size_t count = 0;
    for (const Arg& a : desc_.args) count += std::strcmp(a.role, "input") == 0 && a.shares < 0 ? 1 : 0;
    return count;
  }

  std::size_t bytes(const std::string& arg) const { return arg_named(arg).bytes; }

  // Output `output` of `layer`'s last run, synced back (`sync`; else its pool was) and unpacked.
  Tensor read(const std::string& output, int layer, bool sync = true) {
    const std::string& arg = desc_.outputs.at(output);
    xrt::bo& bo = output_bo(arg, layer);
    if (sync) bo.sync(XCL_BO_SYNC_BO_FROM_DEVICE);
    std::vector<char> data(bo.size());
    bo.read(data.data(), bo.size(), 0);
    const std::vector<std::int32_t>& map = maps_.at(arg);
    const std::size_t width = arg_named(arg).elem_bytes;
    Tensor t;
    if (width == 4) {
      t.f.resize(map.size());
      for (std::size_t e = 0; e < map.size(); ++e) {
        std::memcpy(&t.f[e], &data[static_cast<std::size_t>(map[e] - 1) * 4], 4);
      }
    } else if (width == 1) {
      t.q.resize(map.size());
      for (std::size_t e = 0; e < map.size(); ++e) {
        t.q[e] = static_cast<std::int8_t>(data[static_cast<std::size_t>(map[e] - 1)]);
      }
    } else {
      throw std::runtime_error("output " + arg + " has " + std::to_string(width) + "-byte elements");
    }
    return t;
  }

 private:
  std::vector<const Arg*> cache_args(const std::string& cache) const {
    std::vector<const Arg*> found;
    for (const Arg& a : desc_.args) {
      if (cache == a.tensor && std::strcmp(a.role, "kv_cache") == 0 && a.shares < 0) found.push_back(&a);
    }
    if (found.empty()) throw std::runtime_error("kernel " + std::string(desc_.kernel) + " has no KV cache " + cache);
    return found;
  }

  std::size_t layer_index(int layer) const {
    const auto found = std::find(layers_.begin(), layers_.end(), layer);
    if (found == layers_.end()) {
      throw std::runtime_error("kernel " + std::string(desc_.kernel) + " runs no layer " + std::to_string(layer));
    }
    return static_cast<std::size_t>(found - layers_.begin());
  }

  const Arg& arg_named(const std::string& name) const {
    for (const Arg& a : desc_.args) {
      if (name == a.arg) return a;
    }
    throw std::runtime_error("kernel " + std::string(desc_.kernel) + " has no argument " + name);
  }

  std::vector<char> pack(const Arg& a, const Tensor& t) const {
    const std::vector<std::int32_t>& map = maps_.at(a.arg);
    std::vector<char> data(a.bytes, 0);
    for (std::size_t slot = 0; slot < map.size(); ++slot) {
      if (map[slot] == 0) continue;  // padding
      const std::size_t index = static_cast<std::size_t>(map[slot] - 1);
      if (a.elem_bytes == 8) {
        std::memcpy(&data[slot * 8], &t.i.at(index), 8);
      } else if (a.elem_bytes == 1) {
        data[slot] = static_cast<char>(t.q.at(index));
      } else {
        std::memcpy(&data[slot * 4], &t.f.at(index), 4);
      }
    }
    return data;
  }

  xrt::bo& output_bo(const std::string& arg, int layer) {
    const std::string key = arg + "@" + std::to_string(layer);
    auto found = outputs_.find(key);
    if (found == outputs_.end()) {
      found = outputs_.emplace(key, xrt::bo(device_, arg_named(arg).bytes, group_.at(arg))).first;
    }
    return found->second;
  }

  const KernelDesc& desc_;
  std::vector<int> layers_;
  xrt::device device_;
  xrt::kernel kernel_;
  std::map<std::string, xrt::bo> bos_;
  std::map<std::string, xrt::bo> outputs_;  // per argument and layer
  std::map<std::string, xrt::memory_group> group_;
  std::map<std::string, xrt::bo> resident_;
  std::map<std::string, xrt::bo> pools_;  // per argument: every layer's buffer of it (a KV cache, copied keys)
  std::map<std::string, std::vector<std::int32_t>> maps_;
};

std::vector<float> embed(const std::vector<float>& tokens, const std::vector<float>& positions,
                         const std::vector<int>& ids, int first_position) {
  std::vector<float> rows(ids.size() * kHidden);
  for (std::size_t r = 0; r < ids.size(); ++r) {
    for (int h = 0; h < kHidden; ++h) {
      float v = tokens[static_cast<std::size_t>(ids[r]) * kHidden + h];
      if (!positions.empty()) v += positions[(first_position + r) * kHidden + h];
      rows[r * kHidden + h] = v;
    }
  }
  return rows;
}

// Greedy (temperature 0: the first maximum), else a draw from softmax(logits / T) over the top_k largest (0: all).
int sample(const std::vector<float>& logits, int top_k, double temperature, std::mt19937_64& rng) {
  std::size_t best = 0;
  for (std::size_t v = 1; v < logits.size(); ++v) {
    if (logits[v] > logits[best]) best = v;
  }
  if (temperature == 0.0) return static_cast<int>(best);
  std::vector<double> scaled(logits.size());
  for (std::size_t v = 0; v < logits.size(); ++v) scaled[v] = logits[v] / temperature;
  if (top_k > 0 && static_cast<std::size_t>(top_k) < scaled.size()) {
    std::vector<double> sorted = scaled;
    std::nth_element(sorted.begin(), sorted.begin() + (top_k - 1), sorted.end(), std::greater<double>());
    const double cutoff = sorted[static_cast<std::size_t>(top_k - 1)];
    for (double& s : scaled) {
      if (s < cutoff) s = -INFINITY;
    }
  }
  const double peak = scaled[best];
  std::vector<double> weights(scaled.size());
  for (std::size_t v = 0; v < scaled.size(); ++v) weights[v] = std::exp(scaled[v] - peak);
  std::discrete_distribution<int> draw(weights.begin(), weights.end());
  return draw(rng);
}

// The first `count` rows of every head of `rows` ([kv_heads, prompt_len, dim]) in a zeroed [kv_heads, max_len,
// dim] cache tensor (float32 values or int8 codes; an empty `rows` gives an empty tensor).
template <typename T>
std::vector<T> place_rows(const std::vector<T>& rows, int count) {
  const std::size_t dim = rows.size() / (static_cast<std::size_t>(kKvHeads) * kPromptLen);
  std::vector<T> full(static_cast<std::size_t>(kKvHeads) * kMaxLen * dim, T{});
  for (int h = 0; h < kKvHeads; ++h) {
    std::copy_n(rows.begin() + static_cast<std::ptrdiff_t>(h * kPromptLen * dim), count * dim,
                full.begin() + static_cast<std::ptrdiff_t>(h * kMaxLen * dim));
  }
  return full;
}

// Layer `layer`'s KV caches the host copies: the first `count` rows of the prefill kernel's keys and values (read
// back: their pools synced) placed in the cache tensor and written into the decode kernel's resident buffers
// (synced by their pools after; streamtensor.llm.generate.DeviceKvCache is its twin).
void fill_caches(KernelRunner& decode, KernelRunner& prefill, int layer, int count) {
  for (const auto& [output, cache] : kCachesCopied[static_cast<std::size_t>(layer)]) {
    const Tensor rows = prefill.read(output, layer, false);
    Tensor full;
    full.f = place_rows(rows.f, count);
    full.q = place_rows(rows.q, count);
    decode.fill_cache(cache, full, layer);
  }
}

std::vector<int> parse_ids(const std::string& text) {
  std::vector<int> ids;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    char* end = nullptr;
    const long id = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || id < 0 || id >= kVocab) {
      throw FileError("bad prompt id '" + item + "' (expected 0.." + std::to_string(kVocab - 1) + ")");
    }
    ids.push_back(static_cast<int>(id));
  }
  if (ids.empty()) throw FileError("the prompt is empty");
  return ids;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || argc > 9) {
    std::fprintf(stderr, "usage: %s XCLBIN BUILD_DIR PROMPT_IDS [MAX_NEW_TOKENS [TOP_K TEMPERATURE SEED "
                 "[DEVICE_INDEX]]]\n", kProgram);
    return 2;
  }
  const std::string build = argv[2];
  int max_new = argc > 4 ? std::atoi(argv[4]) : kMaxNewTokens;
  const int top_k = argc > 5 ? std::atoi(argv[5]) : 0;
  const double temperature = argc > 6 ? std::atof(argv[6]) : 0.0;
  std::mt19937_64 rng(argc > 7 ? std::strtoull(argv[7], nullptr, 10) : 0);
  std::vector<int> prompt;
  std::vector<float> tokens, positions;
  try {
    prompt = parse_ids(argv[3]);
    if (static_cast<int>(prompt.size()) + max_new > kMaxLen) {
      throw FileError("prompt and new tokens need " + std::to_string(prompt.size() + max_new) +
                      " KV-cache rows; the build has " + std::to_string(kMaxLen));
    }
    const std::vector<char> t = read_file(build + "/host/embed_tokens.bin", sizeof(float) * kVocab * kHidden);
    tokens.assign(reinterpret_cast<const float*>(t.data()), reinterpret_cast<const float*>(t.data()) + t.size() / 4);
    if (kPositionRows > 0) {
      const std::vector<char> p = read_file(build + "/host/embed_positions.bin",
                                            sizeof(float) * kPositionRows * kHidden);
      positions.assign(reinterpret_cast<const float*>(p.data()),
                       reinterpret_cast<const float*>(p.data()) + p.size() / 4);
    }
  } catch (const FileError& e) {
    std::fprintf(stderr, "%s: %s\n", kProgram, e.what());
    return 2;
  }
  try {
    xrt::device device(static_cast<unsigned int>(argc > 8 ? std::atoi(argv[8]) : 0));
    const xrt::uuid uuid = device.load_xclbin(argv[1]);
    std::vector<KernelRunner> kernels;
    for (std::size_t k = 0; k < kNumKernels; ++k) kernels.emplace_back(device, uuid, kKernels[k], build, kKernelLayers[k]);
    // The keys and values the host copies: per prefill kernel and output, and per decode kernel and cache, every
    // layer's buffer a slice of one pool, synced once (llm.perf.RunModel.kv_read_back, cache_fill).
    std::set<std::pair<int, std::string>> copied_outputs, copied_caches;
    for (int layer = 0; layer < kLayers; ++layer) {
      for (const auto& [output, cache] : kCachesCopied[static_cast<std::size_t>(layer)]) {
        if (copied_outputs.insert({kPrefill[layer], output}).second) kernels[kPrefill[layer]].pool_output(output);
        copied_caches.insert({kDecode[layer], cache});
      }
      for (const auto& [output, cache] : kCachesInPlace[static_cast<std::size_t>(layer)]) {
        kernels[kPrefill[layer]].place_output(output, layer, kernels[kDecode[layer]].cache_slot(cache, layer));
      }
    }
    using clock = std::chrono::steady_clock;
    auto start = clock::now();
    const int n = static_cast<int>(prompt.size());
    const int prefilled = n < kPromptLen ? n : kPromptLen;
    Tensor hidden;
    hidden.f.assign(static_cast<std::size_t>(kPromptLen) * kHidden, 0.0f);
    const std::vector<float> first = embed(tokens, positions, std::vector<int>(prompt.begin(), prompt.begin() + prefilled), 0);
    std::copy(first.begin(), first.end(), hidden.f.begin());
    // Runs `chain` (kernel per layer) on `input`, written once: each layer reads the previous layer's output
    // buffer where `in_place` says so, else the host hands the hidden state over; a layer marked in `queued` is
    // started behind the previous one without waiting for it.
    auto run_layers = [&](const int* chain, const std::vector<std::vector<std::string>>& in_place,
                          const std::vector<bool>& queued, std::map<std::string, Tensor> input) {
      std::vector<std::pair<KernelRunner*, xrt::run>> pending;
      for (int layer = 0; layer < kLayers; ++layer) {
        KernelRunner& kernel = kernels[chain[layer]];
        std::map<std::string, const xrt::bo*> shared;
        for (const std::string& arg : in_place[static_cast<std::size_t>(layer)]) {
          shared[arg] = &kernels[chain[layer - 1]].output("hidden_out", layer - 1);
        }
        if (layer > 0 && shared.size() < kernel.input_buffers()) {
          input["hidden"] = kernels[chain[layer - 1]].read("hidden_out", layer - 1);
        }
        pending.emplace_back(&kernel, kernel.start(input, layer, shared));
        input.erase("hidden");
        if (layer + 1 == kLayers || !queued[static_cast<std::size_t>(layer + 1)]) {
          for (auto& [runner, run] : pending) runner->finish(run);
          pending.clear();
        }
      }
    };
    run_layers(kPrefill, kPrefillInPlace, kPrefillQueued, {{"hidden", hidden}});
    // The prefill's keys and values copied into the decode kernels' caches: before the first token when prompt
    // tokens go through the decode kernels, else after it (nothing reads the caches before the second token).
    auto fill_all_caches = [&]() {
      for (const auto& [kernel, output] : copied_outputs) kernels[kernel].sync_output(output);
      for (int layer = 0; layer < kLayers; ++layer) {
        fill_caches(kernels[kDecode[layer]], kernels[kPrefill[layer]], layer, prefilled);
      }
      for (const auto& [kernel, cache] : copied_caches) kernels[kernel].sync_cache(cache);
    };
    bool fill_deferred = n == prefilled;
    if (!fill_deferred) fill_all_caches();
    auto decode_layers = [&](int token, int position) {
      Tensor h;
      h.f = embed(tokens, positions, {token}, position);
      Tensor pos;
      pos.i = {position};
      run_layers(kDecode, kDecodeInPlace, kDecodeQueued, {{"hidden", h}, {"position", pos}});
    };
    for (int position = prefilled; position < n; ++position) decode_layers(prompt[position], position);
    // The head on the last layer's output (row >= 0: that row of the last prefill layer's), its logits read back.
    auto head_logits = [&](int producer, int row) {
      KernelRunner& head = kernels[kHead];
      KernelRunner& source = kernels[producer];
      xrt::bo& out = source.output("hidden_out", kLayers - 1);
      std::map<std::string, const xrt::bo*> shared;
      std::vector<xrt::bo> rows;  // sub-buffers at the prompt row
      rows.reserve(kHeadRowOffsets.size());
      if (row < 0) {
        for (const std::string& arg : kDecodeToHeadInPlace) shared[arg] = &out;
      } else {
        for (const auto& [arg, offsets] : kHeadRowOffsets) {
          const long offset = offsets.at(static_cast<std::size_t>(row));
          if (offset < 0) continue;
          rows.emplace_back(out, head.bytes(arg), static_cast<std::size_t>(offset));
          shared[arg] = &rows.back();
        }
      }
      std::map<std::string, Tensor> input;
      if (shared.size() < head.input_buffers()) {
        Tensor h = source.read("hidden_out", kLayers - 1);
        if (row >= 0) {
          h.f.assign(h.f.begin() + static_cast<std::ptrdiff_t>(row) * kHidden,
                     h.f.begin() + static_cast<std::ptrdiff_t>(row + 1) * kHidden);
        }
        input["hidden"] = h;
      }
      head.run(input, -1, shared);
      std::vector<float> logits = head.read("logits", -1).f;
      logits.resize(kVocab);  // the head kernel's rows past the vocabulary are zero padding
      return logits;
    };
    int producer = n > prefilled ? kDecode[kLayers - 1] : kPrefill[kLayers - 1];
    int row = n > prefilled ? -1 : prefilled - 1;
    int position = n - 1;
    std::printf("step position token seconds\n");
    for (int generated = 1;; ++generated) {
      const std::vector<float> logits = head_logits(producer, row);
      const int token = sample(logits, top_k, temperature, rng);
      const double seconds = std::chrono::duration<double>(clock::now() - start).count();
      std::printf("%d %d %d %.6f\n", generated, position, token, seconds);
      bool eos = false;
      for (int e : kEos) eos = eos || e == token;
      if (eos || generated == max_new) break;
      start = clock::now();
      ++position;
      if (fill_deferred) {
        fill_all_caches();
        fill_deferred = false;
      }
      decode_layers(token, position);
      producer = kDecode[kLayers - 1];
      row = -1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", kProgram, e.what());
    return 1;
  }
  return 0;
}
