// arith.minimumf: NaN when either operand is NaN (std::fmin would drop it).
template <typename T>
T minimumf(T a, T b) {
  return (a != a || b != b) ? std::numeric_limits<T>::quiet_NaN() : (a < b ? a : b);
}
