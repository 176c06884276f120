// Tiles <-> words of the packed external-memory layout (streamtensor.packing): element j of a
// tile of b-bit elements occupies tile bits [j*b, (j+1)*b), tile bit k is bit k % 512 of word k / 512, words
// are little-endian byte arrays, and every tile is padded with zero bits to whole words.
template <typename T>
constexpr int element_bits() {
  return std::is_same<T, bool>::value ? 1 : 8 * static_cast<int>(sizeof(T));
}

// One element from / into its bytes of a word: a bool is one bit, other types whole bytes (overloads, as the
// synthesis view is C++14: no `if constexpr`).
template <typename T>
void unpack_element(const uint8_t* bytes, int /*bit*/, T& value) {
  std::memcpy(&value, bytes, sizeof(T));
}

inline void unpack_element(const uint8_t* bytes, int bit, bool& value) {
  value = (*bytes >> (bit % 8)) & 1;
}

template <typename T>
void pack_element(const T& value, int /*bit*/, uint8_t* bytes) {
  std::memcpy(bytes, &value, sizeof(T));
}

inline void pack_element(const bool& value, int bit, uint8_t* bytes) {
  *bytes = static_cast<uint8_t>(*bytes | (value ? 1 << (bit % 8) : 0));
}

template <typename T, int N>
constexpr int tile_words() {
  return (N * element_bits<T>() + 511) / 512;
}

template <typename T, int N>
void load_tile(const streamtensor::word512* src, T (&data)[N]) {
  streamtensor::word512 words[tile_words<T, N>()];
  for (int w = 0; w < tile_words<T, N>(); ++w) {
    HLS_PRAGMA(pipeline II=1)
    words[w] = src[w];
  }
#ifndef __SYNTHESIS__
  streamtensor::sim_traffic(src, tile_words<T, N>(), false);
#endif
  for (int j = 0; j < N; ++j) {
    HLS_PRAGMA(unroll)
    const int bit = j * element_bits<T>();
    unpack_element(&words[bit / 512].bytes[bit % 512 / 8], bit, data[j]);
  }
}

template <typename T, int N>
void store_tile(const T (&data)[N], streamtensor::word512* dst) {
  streamtensor::word512 words[tile_words<T, N>()] = {};
  for (int j = 0; j < N; ++j) {
    HLS_PRAGMA(unroll)
    const int bit = j * element_bits<T>();
    pack_element(data[j], bit, &words[bit / 512].bytes[bit % 512 / 8]);
  }
  for (int w = 0; w < tile_words<T, N>(); ++w) {
    HLS_PRAGMA(pipeline II=1)
    dst[w] = words[w];
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
  streamtensor::word512 words[tile_words<T, N>()] = {};
  for (int j = 0; j < N; ++j) {
    HLS_PRAGMA(unroll)
    const int bit = j * element_bits<T>();
    pack_element(data[j], bit, &words[bit / 512].bytes[bit % 512 / 8]);
  }
  for (int w = 0; w < Count; ++w) {
    HLS_PRAGMA(pipeline II=1)
    if (first + w < tile_words<T, N>()) {
      dst[first + w] = words[first + w];
#ifndef __SYNTHESIS__
      streamtensor::sim_traffic(dst + first + w, 1, true);
#endif
    }
  }
}
