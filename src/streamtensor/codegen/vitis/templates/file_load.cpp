// Reads exactly `bytes` bytes (the whole file) into `data`.
bool load(const std::string& path, void* data, std::size_t bytes) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    std::fprintf(stderr, "%s: cannot open input %s\n", kProgram, path.c_str());
    return false;
  }
  const std::size_t got = std::fread(data, 1, bytes, f);
  const bool longer = std::fgetc(f) != EOF;
  std::fclose(f);
  if (got != bytes || longer) {
    std::fprintf(stderr, "%s: %s must hold exactly %zu bytes (its packed layout)\n", kProgram, path.c_str(), bytes);
    return false;
  }
  return true;
}
