// Tiles <-> words of the packed external-memory layout (streamtensor.packing): element j of a
// tile of b-bit elements occupies tile bits [j*b, (j+1)*b), tile bit k is bit k % 512 of word k / 512, words
// are little-endian byte arrays, and every tile is padded with zero bits to whole words.
template <typename T>
constexpr int element_bits() {
  return std::is_same_v<T, bool> ? 1 : 8 * static_cast<int>(sizeof(T));
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
  for (int j = 0; j < N; ++j) {
    HLS_PRAGMA(unroll)
    const int bit = j * element_bits<T>();
    const uint8_t* bytes = &words[bit / 512].bytes[bit % 512 / 8];
    if constexpr (std::is_same_v<T, bool>) {
      data[j] = (*bytes >> (bit % 8)) & 1;
    } else {
      std::memcpy(&data[j], bytes, sizeof(T));
    }
  }
}

template <typename T, int N>
void store_tile(const T (&data)[N], streamtensor::word512* dst) {
  streamtensor::word512 words[tile_words<T, N>()] = {};
  for (int j = 0; j < N; ++j) {
    HLS_PRAGMA(unroll)
    const int bit = j * element_bits<T>();
    uint8_t* bytes = &words[bit / 512].bytes[bit % 512 / 8];
    if constexpr (std::is_same_v<T, bool>) {
      *bytes = static_cast<uint8_t>(*bytes | (data[j] ? 1 << (bit % 8) : 0));
    } else {
      std::memcpy(bytes, &data[j], sizeof(T));
    }
  }
  for (int w = 0; w < tile_words<T, N>(); ++w) {
    HLS_PRAGMA(pipeline II=1)
    dst[w] = words[w];
  }
}
