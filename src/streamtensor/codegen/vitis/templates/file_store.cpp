bool store(const std::string& path, const void* data, std::size_t bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    std::fprintf(stderr, "%s: cannot create output %s\n", kProgram, path.c_str());
    return false;
  }
  const bool ok = std::fwrite(data, 1, bytes, f) == bytes;
  if (std::fclose(f) != 0 || !ok) {
    std::fprintf(stderr, "%s: cannot write output %s\n", kProgram, path.c_str());
    return false;
  }
  return true;
}
