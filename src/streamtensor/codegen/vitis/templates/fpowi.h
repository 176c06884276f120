// math.fpowi: x to an integer power by repeated squaring (the multiplies the timing model counts).
template <typename T>
T fpowi(T x, int64_t n) {
  const bool invert = n < 0;
  uint64_t e = invert ? static_cast<uint64_t>(-(n + 1)) + 1 : static_cast<uint64_t>(n);
  T result = T(1);
  for (T base = x; e != 0; e >>= 1, base *= base) {
    if (e & 1) result *= base;
  }
  return invert ? T(1) / result : result;
}
