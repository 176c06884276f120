// arith.maximumf: NaN when either operand is NaN (std::fmax would drop it).
template <typename T>
T maximumf(T a, T b) {
  return (a != a || b != b) ? std::numeric_limits<T>::quiet_NaN() : (a > b ? a : b);
}
