// The expected outputs (check/expected, written with the project by codegen.vitis.parameters.write_expected_outputs):
//   manifest.txt  one line per output argument:
//                 output ARG DTYPE NUM_TILES WORDS_PER_TILE TILE_ELEMENTS TOLERANCE
//   ARG.bin       PyTorch's output in the argument's packed layout (streamtensor.packing)
//   ARG.mask      one byte per element slot (tile-major, TILE_ELEMENTS a tile): 1 where the element is compared
struct Expected {
  std::string arg;
  std::string dtype;
  std::size_t tiles;
  std::size_t words_per_tile;
  std::size_t tile_elements;
  double tolerance;
};

int element_bits(const std::string& dtype) {
  if (dtype == "f64" || dtype == "i64" || dtype == "index") return 64;
  if (dtype == "f32" || dtype == "i32") return 32;
  if (dtype == "f16" || dtype == "bf16" || dtype == "i16") return 16;
  if (dtype == "i8") return 8;
  if (dtype == "i1") return 1;
  return 0;
}

bool read_manifest(const std::string& dir, std::vector<Expected>& out) {
  const std::string path = dir + "/manifest.txt";
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) {
    std::fprintf(stderr, "%s: cannot open %s (the expected outputs, written by streamtensor compile)\n", kProgram,
                 path.c_str());
    return false;
  }
  char line[1024];
  bool ok = true;
  while (ok && std::fgets(line, sizeof line, f) != nullptr) {
    if (line[0] == '#' || line[0] == '\n') continue;
    char arg[512];
    char dtype[16];
    unsigned long long tiles = 0, words = 0, elements = 0;
    double tolerance = 0;
    ok = std::sscanf(line, "output %511s %15s %llu %llu %llu %lf", arg, dtype, &tiles, &words, &elements,
                     &tolerance) == 6 && element_bits(dtype) != 0;
    if (ok) {
      out.push_back(Expected{arg, dtype, static_cast<std::size_t>(tiles), static_cast<std::size_t>(words),
                             static_cast<std::size_t>(elements), tolerance});
    } else {
      std::fprintf(stderr, "%s: %s: bad line: %s", kProgram, path.c_str(), line);
    }
  }
  std::fclose(f);
  return ok;
}

float float_bits(std::uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// Element j of a tile (little-endian, element j at tile bits [j*b, (j+1)*b)) as a double.
double element(const unsigned char* tile, std::size_t j, const std::string& dtype) {
  const int bits = element_bits(dtype);
  if (bits == 1) return (tile[j / 8] >> (j % 8)) & 1;
  const unsigned char* p = tile + j * static_cast<std::size_t>(bits / 8);
  std::uint64_t raw = 0;
  for (int b = bits / 8 - 1; b >= 0; --b) raw = (raw << 8) | p[b];
  if (dtype == "f64") {
    double value;
    std::memcpy(&value, &raw, sizeof value);
    return value;
  }
  if (dtype == "f32") return float_bits(static_cast<std::uint32_t>(raw));
  if (dtype == "bf16") return float_bits(static_cast<std::uint32_t>(raw) << 16);
  if (dtype == "f16") {
    const int exponent = static_cast<int>((raw >> 10) & 0x1f);
    const double fraction = static_cast<double>(raw & 0x3ff);
    const double magnitude = exponent == 0    ? std::ldexp(fraction, -24)
                             : exponent == 31 ? (fraction == 0 ? HUGE_VAL : NAN)
                                              : std::ldexp(1024 + fraction, exponent - 25);
    return (raw & 0x8000) ? -magnitude : magnitude;
  }
  const std::uint64_t sign = std::uint64_t{1} << (bits - 1);  // two's complement
  return bits == 64 ? static_cast<double>(static_cast<std::int64_t>(raw))
                    : static_cast<double>(static_cast<std::int64_t>(raw ^ sign) - static_cast<std::int64_t>(sign));
}

// Compares `got` (the argument's packed buffer) with the expected data in `dir`; prints one line. Returns 0 when
// every compared element is within the tolerance, 1 on a mismatch, 2 when the expected data cannot be read.
int check_output(const Expected& e, const std::string& dir, const void* got) {
  const std::size_t tile_bytes = e.words_per_tile * 64;
  std::vector<unsigned char> want(e.tiles * tile_bytes);
  std::vector<unsigned char> mask(e.tiles * e.tile_elements);
  if (!load(dir + "/" + e.arg + ".bin", want.data(), want.size()) ||
      !load(dir + "/" + e.arg + ".mask", mask.data(), mask.size())) {
    return 2;
  }
  const unsigned char* data = static_cast<const unsigned char*>(got);
  double worst = 0;
  std::size_t compared = 0, bad = 0, first_tile = 0, first_element = 0;
  double first_got = 0, first_want = 0;
  for (std::size_t t = 0; t < e.tiles; ++t) {
    for (std::size_t j = 0; j < e.tile_elements; ++j) {
      if (mask[t * e.tile_elements + j] == 0) continue;
      const double g = element(data + t * tile_bytes, j, e.dtype);
      const double w = element(want.data() + t * tile_bytes, j, e.dtype);
      const double err = std::fabs(g - w);
      ++compared;
      if (!(err <= e.tolerance)) {  // NaN fails
        if (bad++ == 0) {
          first_tile = t;
          first_element = j;
          first_got = g;
          first_want = w;
        }
        worst = std::isnan(err) ? err : std::fmax(worst, err);
      } else if (!std::isnan(worst)) {
        worst = std::fmax(worst, err);
      }
    }
  }
  if (bad == 0) {
    std::printf("  %s: %zu elements, max |error| %.3g (tolerance %.3g) ok\n", e.arg.c_str(), compared, worst,
                e.tolerance);
    return 0;
  }
  std::printf("  %s: MISMATCH in %zu of %zu elements, max |error| %.3g (tolerance %.3g); first at tile %zu "
              "element %zu: got %.9g, expected %.9g\n",
              e.arg.c_str(), bad, compared, worst, e.tolerance, first_tile, first_element, first_got, first_want);
  return 1;
}

// Checks every argument the kernel writes into a buffer of its own (`buffer(i)`: the packed buffer of argument i; a
// row written in place into another argument's buffer is checked there) against `expected`, which must list
// exactly those arguments; prints PASS or FAIL. Returns the exit status: 0, 1 (mismatch) or 2 (error).
template <typename Buffers>
int check_all(const std::vector<Expected>& expected, const std::string& dir, Buffers buffer) {
  for (const Expected& e : expected) {
    std::size_t i = 0;
    while (i < kNumArguments && !(kArguments[i].writes && e.arg == kArguments[i].name)) ++i;
    if (i == kNumArguments) {
      std::fprintf(stderr, "%s: %s/manifest.txt lists %s, which is not an argument the kernel writes\n", kProgram,
                   dir.c_str(), e.arg.c_str());
      return 2;
    }
    if (e.tiles * e.words_per_tile * 64 != kArguments[i].bytes) {
      std::fprintf(stderr, "%s: %s/manifest.txt: %s has %zu bytes, not the %zu of its packed layout\n", kProgram,
                   dir.c_str(), e.arg.c_str(), e.tiles * e.words_per_tile * 64, kArguments[i].bytes);
      return 2;
    }
  }
  int status = 0;
  for (std::size_t i = 0; i < kNumArguments; ++i) {
    if (!kArguments[i].writes || kArguments[i].shares >= 0) continue;
    const Expected* e = nullptr;
    for (const Expected& x : expected) {
      if (x.arg == kArguments[i].name) e = &x;
    }
    if (e == nullptr) {
      std::fprintf(stderr, "%s: %s/manifest.txt has no expected data for output %s\n", kProgram, dir.c_str(),
                   kArguments[i].name);
      return 2;
    }
    const int result = check_output(*e, dir, buffer(i));
    if (result == 2) return 2;
    status = status > result ? status : result;
  }
  std::printf("%s\n", status == 0 ? "PASS" : "FAIL");
  return status;
}
