// math.fpowi: x to an integer power by repeated squaring over the exponent's low BITS bits (BITS: the bit length
// of a constant exponent, else the exponent type's width), a constant-trip loop unrolled in the pipeline: BITS
// squarings and multiplies, what the timing model counts.
template <int BITS, typename T>
T fpowi(T x, int64_t n) {
  const bool invert = n < 0;
  const uint64_t e = invert ? static_cast<uint64_t>(-(n + 1)) + 1 : static_cast<uint64_t>(n);
  T result = T(1);
  T base = x;
  bit_loop: for (int b = 0; b < BITS; ++b) {
    HLS_PRAGMA(unroll)
    if ((e >> b) & 1) result *= base;
    base *= base;
  }
  return invert ? T(1) / result : result;
}
