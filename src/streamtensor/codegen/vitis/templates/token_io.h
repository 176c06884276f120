// A token that fits one stream element moves in one read or write (a wider token has overloads of its own
// below, moving its beats).
template <typename T>
void read_token(hls::stream<T>& s, T& t) {
  t = s.read();
}

template <typename T>
void write_token(hls::stream<T>& s, const T& t) {
  s.write(t);
}
