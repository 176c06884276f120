// Tiles <-> words of the packed external-memory layout (streamtensor.packing): element j of a tile of b-bit
// elements occupies tile bits [j*b, (j+1)*b), tile bit k is bit k % 512 of word k / 512 (an ap_uint<512>: the
// m_axi word, whole words per beat for burst inference), and every tile is padded with zero bits to whole words.
// Element widths in bits: a bool is one bit, an ap_int<W> (i4: W4A8's weights, two per byte) W bits, any
// other type its bytes.
template <typename T>
struct element_width {
  static constexpr int bits = std::is_same<T, bool>::value ? 1 : 8 * static_cast<int>(sizeof(T));
};

template <int W>
struct element_width<ap_int<W>> {
  static constexpr int bits = W;
};

template <typename T>
constexpr int element_bits() {
  return element_width<T>::bits;
}

// One element from / into its bits of a word: floats through their bit pattern, integers two's complement, a
// bool one bit (overloads, as the synthesis view is C++14: no `if constexpr`).
inline void unpack_element(const streamtensor::word512& word, int e, float& value) {
  union { uint32_t bits; float value; } x;
  x.bits = static_cast<uint32_t>(word.range(32 * e + 31, 32 * e).to_uint64());
  value = x.value;
}

inline void unpack_element(const streamtensor::word512& word, int e, double& value) {
  union { uint64_t bits; double value; } x;
  x.bits = word.range(64 * e + 63, 64 * e).to_uint64();
  value = x.value;
}

inline void unpack_element(const streamtensor::word512& word, int e, bool& value) {
  value = word[e] != 0;
}

// ap_int<W>: the W bits, sign-extended by the ap_int's own two's complement.
template <int W>
void unpack_element(const streamtensor::word512& word, int e, ap_int<W>& value) {
  value.range(W - 1, 0) = word.range(W * e + W - 1, W * e);
}

template <typename T>
void unpack_element(const streamtensor::word512& word, int e, T& value) {
  constexpr int b = element_bits<T>();
  value = static_cast<T>(word.range(b * e + b - 1, b * e).to_uint64());
}

inline void pack_element(const float& value, int e, streamtensor::word512& word) {
  union { float value; uint32_t bits; } x;
  x.value = value;
  word.range(32 * e + 31, 32 * e) = x.bits;
}

inline void pack_element(const double& value, int e, streamtensor::word512& word) {
  union { double value; uint64_t bits; } x;
  x.value = value;
  word.range(64 * e + 63, 64 * e) = x.bits;
}

inline void pack_element(const bool& value, int e, streamtensor::word512& word) {
  word[e] = value;
}

template <int W>
void pack_element(const ap_int<W>& value, int e, streamtensor::word512& word) {
  word.range(W * e + W - 1, W * e) = value.range(W - 1, 0);
}

template <typename T>
void pack_element(const T& value, int e, streamtensor::word512& word) {
  constexpr int b = element_bits<T>();
  word.range(b * e + b - 1, b * e) = static_cast<uint64_t>(value) & ((~uint64_t(0)) >> (64 - b));
}

template <typename T, int N>
constexpr int tile_words() {
  return (N * element_bits<T>() + 511) / 512;
}

// A tile from its words, one word per cycle (inside a caller's pipeline: unrolled, at the caller's II).
template <typename T, int N>
void load_tile(const streamtensor::word512* src, T (&data)[N]) {
  constexpr int per_word = 512 / element_bits<T>();
  word_loop: for (int w = 0; w < tile_words<T, N>(); ++w) {
    HLS_PRAGMA(pipeline II=1)
    const streamtensor::word512 word = src[w];
    element_loop: for (int e = 0; e < per_word; ++e) {
      HLS_PRAGMA(unroll)
      if (w * per_word + e < N) unpack_element(word, e, data[w * per_word + e]);
    }
  }
#ifndef __SYNTHESIS__
  streamtensor::sim_traffic(src, tile_words<T, N>(), false);
#endif
}

// Stripe S of J of a tile (words S, S + J, ... from the stripe's own buffer, one word per cycle; see
// streamtensor.packing): inside the DMA's pipeline the J stripes' loops are unrolled side by side, one m_axi
// port each, so the tile takes ceil(words / J) cycles.
template <int J, int S, typename T, int N>
void load_tile_stripe(const streamtensor::word512* src, T (&data)[N]) {
  constexpr int per_word = 512 / element_bits<T>();
  constexpr int words = (tile_words<T, N>() + J - 1) / J;
  stripe_word_loop: for (int i = 0; i < words; ++i) {
    HLS_PRAGMA(pipeline II=1)
    const int w = i * J + S;
    const streamtensor::word512 word = src[i];
    element_loop: for (int e = 0; e < per_word; ++e) {
      HLS_PRAGMA(unroll)
      if (w < tile_words<T, N>() && w * per_word + e < N) unpack_element(word, e, data[w * per_word + e]);
    }
  }
#ifndef __SYNTHESIS__
  streamtensor::sim_traffic(src, words, false);
#endif
}

// Word w of a tile (inlined into the caller's pipelined word loop: the elements unrolled).
template <typename T, int N>
streamtensor::word512 tile_word(const T (&data)[N], int w) {
  constexpr int per_word = 512 / element_bits<T>();
  streamtensor::word512 word = 0;
  element_loop: for (int e = 0; e < per_word; ++e) {
    HLS_PRAGMA(unroll)
    if (w * per_word + e < N) pack_element(data[w * per_word + e], e, word);
  }
  return word;
}

template <typename T, int N>
void store_tile(const T (&data)[N], streamtensor::word512* dst) {
  word_loop: for (int w = 0; w < tile_words<T, N>(); ++w) {
    HLS_PRAGMA(pipeline II=1)
    dst[w] = tile_word(data, w);
  }
#ifndef __SYNTHESIS__
  streamtensor::sim_traffic(dst, tile_words<T, N>(), true);
#endif
}

// Words [first, first + Count) of a tile, within the tile: the row of a KV cache written in place (Count is the
// widest row span, a constant trip count; the words around the row hold what the cache read, so rewriting them
// changes nothing).
template <int Count, typename T, int N>
void store_tile_words(const T (&data)[N], streamtensor::word512* dst, int first) {
  row_word_loop: for (int i = 0; i < Count; ++i) {
    HLS_PRAGMA(pipeline II=1)
    const int w = first + i;
    if (w < tile_words<T, N>()) {
      dst[w] = tile_word(data, w);
#ifndef __SYNTHESIS__
      streamtensor::sim_traffic(dst + w, 1, true);
#endif
    }
  }
}

// A zero tile: the KV cache's tiles past the position (their rows are masked; zeros keep them finite).
template <typename T, int N>
void clear_tile(T (&data)[N]) {
  clear_loop: for (int j = 0; j < N; ++j) {
    HLS_PRAGMA(unroll)
    data[j] = T();
  }
}
