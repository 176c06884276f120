"""The packed external-memory layout: sizes, strides, exact bytes, and the DMA property (reading the words at
the stride addresses of every token reproduces the itensor's token stream) on random layouts."""

import functools
import math
import operator
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamtensor.codegen.vitis.package_data import AP_TYPES_DIR, template
from streamtensor.ir.affine import AffineConst, AffineDim, AffineExpr, AffineMap
from streamtensor.ir.dtypes import DTYPE_BITS, int_range
from streamtensor.ir.itensor import ITensorType, ITensorVerificationError, parse_itensor_type, stream_tokens
from streamtensor.packing import WORD_BYTES, PackedLayout, host_dtype, pack, read_tokens, unpack

# Paper example C (spec §2): 4x2 tiles of an 8x8 tensor, loop d1 (trip 2) is a repeat loop.
C = "itensor<4x2xf32, tensor 8x8, [4, 2, 2] * [2, 1, 4], (d0, d1, d2) -> (d2, d0)>"


def test_layout_of_repeat_loop_type() -> None:
    t = parse_itensor_type(C)
    layout = PackedLayout.of(t)
    # Unique tiles: loops d0 (4) and d2 (2) -> 8 tiles of 8 f32 = 256 bits, padded to one word.
    assert (layout.num_tiles, layout.words_per_tile, layout.tile_data_bytes) == (8, 1, 32)
    assert layout.tile_strides == (2, 0, 1)
    assert layout.word_strides == (2, 0, 1)
    assert (layout.total_words, layout.total_bytes) == (8, 512)
    assert layout.padding_bytes == 8 * 32
    assert layout.padding_fraction == 0.5
    assert layout.streamed_bytes == 16 * 64  # 16 tokens, one word each
    assert layout.token_word_addresses().tolist() == [0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7]


def test_exact_bytes_of_a_small_i8_layout() -> None:
    # 4x4 i8 tensor, 2x2 tiles walked column-block-major: (d0, d1) -> (d1, d0).
    t = parse_itensor_type("itensor<2x2xi8, tensor 4x4, [2, 2] * [2, 2], (d0, d1) -> (d1, d0)>")
    x = np.arange(16, dtype=np.int8).reshape(4, 4)
    data = pack(t, x)
    layout = PackedLayout.of(t)
    assert len(data) == 4 * WORD_BYTES
    assert layout.padding_bytes == 4 * 60
    words = np.frombuffer(data, dtype=np.uint8).reshape(4, WORD_BYTES)
    # Tile order: d0 walks columns (outer), d1 rows: offsets (0,0), (2,0), (0,2), (2,2); row-major inside.
    assert words[:, :4].tolist() == [[0, 1, 4, 5], [8, 9, 12, 13], [2, 3, 6, 7], [10, 11, 14, 15]]
    assert not words[:, 4:].any()  # zero padding


def test_multiword_tiles_and_little_endian_elements() -> None:
    # One 2x16 f32 tile = 1024 bits = 2 words; a single i64 token spans part of a word.
    t = parse_itensor_type("itensor<2x16xf32, tensor 4x16, [2] * [2], (d0) -> (d0, 0)>")
    x = np.arange(64, dtype=np.float32).reshape(4, 16)
    layout = PackedLayout.of(t)
    assert (layout.words_per_tile, layout.num_tiles, layout.padding_bytes, layout.word_strides) == (2, 2, 0, (2,))
    assert np.frombuffer(pack(t, x), dtype="<f4").tolist() == x.ravel().tolist()
    s = parse_itensor_type("itensor<i64, tensor scalar, [3] * [1], (d0) -> ()>")
    data = pack(s, np.array(-2, dtype=np.int64))
    assert len(data) == WORD_BYTES and data[:8] == (-2).to_bytes(8, "little", signed=True)
    assert PackedLayout.of(s).word_strides == (0,)
    assert unpack(s, data) == -2


def test_i1_and_bf16_encodings() -> None:
    t = parse_itensor_type("itensor<1x10xi1, tensor 2x10, [2] * [1], (d0) -> (d0, 0)>")
    x = np.array([[1, 0, 1, 1, 0, 0, 0, 0, 1, 1], [0] * 9 + [1]], dtype=bool)
    data = pack(t, x)
    assert PackedLayout.of(t).tile_data_bytes == 2
    assert data[0:2] == bytes([0b00001101, 0b00000011]) and data[64:66] == bytes([0, 0b00000010])
    np.testing.assert_array_equal(unpack(t, data), x)
    b = parse_itensor_type("itensor<4xbf16, tensor 4, [1] * [4], (d0) -> (d0)>")
    # 1 + 2**-8 is a tie between bf16 neighbours 1 and 1 + 2**-7: rounds to even (1.0).
    values = np.array([1.0, -2.5, 1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8], dtype=np.float32)
    bits = np.frombuffer(pack(b, values)[:8], dtype="<u2")
    assert bits.tolist() == [0x3F80, 0xC020, 0x3F80, 0x3F82]
    assert unpack(b, pack(b, values)).tolist() == [1.0, -2.5, 1.0, 1.0 + 2.0**-6]
    special = np.array([np.nan, np.inf, -np.inf, -0.0], dtype=np.float32)
    bits = np.frombuffer(pack(b, special)[:8], dtype="<u2")
    assert bits.tolist() == [0x7FC0, 0x7F80, 0xFF80, 0x8000]
    back = unpack(b, pack(b, special))
    assert np.isnan(back[0]) and back[1:].tolist() == [np.inf, -np.inf, 0.0] and np.signbit(back[3])


def test_i4_two_per_byte_low_nibble_first() -> None:
    # A 3x5 int4 tile (60 bits, 8 data bytes): element 2m in the low nibble of byte m, two's complement.
    t = parse_itensor_type("itensor<3x5xi4, tensor 6x5, [2] * [3], (d0) -> (d0, 0)>")
    x = (np.arange(30, dtype=np.int8) % 16 - 8).reshape(6, 5)
    layout = PackedLayout.of(t)
    assert (layout.num_tiles, layout.words_per_tile, layout.tile_data_bytes) == (2, 1, 8)
    data = pack(t, x)
    assert data[:8] == bytes([0x98, 0xBA, 0xDC, 0xFE, 0x10, 0x32, 0x54, 0x06])  # odd count: high nibble 0
    assert data[64:72] == bytes([0x87, 0xA9, 0xCB, 0xED, 0x0F, 0x21, 0x43, 0x05])
    assert not np.frombuffer(data, dtype=np.uint8).reshape(2, 64)[:, 8:].any()
    back = unpack(t, data)
    assert back.dtype == np.int8
    np.testing.assert_array_equal(back, x)
    # Half the words of the same tensor as int8 once a tile fills words: 32x32 tiles of a 64x64 weight.
    w4 = parse_itensor_type("itensor<32x32xi4, tensor 64x64, [2, 2] * [32, 32], (d0, d1) -> (d0, d1)>")
    w8 = parse_itensor_type("itensor<32x32xi8, tensor 64x64, [2, 2] * [32, 32], (d0, d1) -> (d0, d1)>")
    assert PackedLayout.of(w4).total_bytes * 2 == PackedLayout.of(w8).total_bytes == 64 * 64
    assert PackedLayout.of(w4).streamed_bytes * 2 == PackedLayout.of(w8).streamed_bytes
    with pytest.raises(ValueError, match=r"out of range for i4 \[-8, 7\]"):
        pack(t, np.full((6, 5), 8, dtype=np.int8))


def test_bad_inputs_are_rejected() -> None:
    t = parse_itensor_type("itensor<2xi8, tensor 4, [2] * [2], (d0) -> (d0)>")
    with pytest.raises(ValueError, match=r"has shape \(3,\), expected \(4,\)"):
        pack(t, np.zeros(3, dtype=np.int8))
    with pytest.raises(ValueError, match="out of range for i8"):
        pack(t, np.array([1, 2, 300, 4]))
    with pytest.raises(ValueError, match="cannot store float64 values as i8"):
        pack(t, np.zeros(4))
    with pytest.raises(ValueError, match="packed data has 63 bytes, expected 128"):
        unpack(t, bytes(63))
    with pytest.raises(ValueError, match="word address outside the 2-word layout"):
        read_tokens(t, bytes(128), np.array([2]))
    holey = parse_itensor_type("itensor<2xi8, tensor 4, [1] * [2], (d0) -> (d0)>")
    with pytest.raises(ITensorVerificationError, match="covered by no tile"):
        PackedLayout.of(holey)


# --- property: random valid layouts -----------------------------------------------------------------------

DTYPES = ("i8", "f32", "i64", "i1", "f16", "bf16", "i16", "i4")
SIZES = (1, 2, 3, 4, 6, 8, 12)


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def layouts(draw: st.DrawFn) -> ITensorType:
    """Random exact tilings: per dim one walking loop, a split pair (d_a + d_b) or none; loops permuted;
    0-2 repeat loops anywhere; rank 0-3."""
    shape = tuple(draw(st.lists(st.sampled_from(SIZES), min_size=0, max_size=3)))
    element = tuple(draw(st.sampled_from(divisors(n))) for n in shape)
    loops: list[tuple[int | None, int, int]] = []  # (dim or None for repeat, trip, step)
    for j, (n, e) in enumerate(zip(shape, element, strict=True)):
        tiles = n // e
        splits = [f for f in divisors(tiles) if 1 < f < tiles]
        if splits and draw(st.booleans()):
            outer = draw(st.sampled_from(splits))
            loops += [(j, outer, e * (tiles // outer)), (j, tiles // outer, e)]
        elif tiles > 1 or draw(st.booleans()):
            loops.append((j, tiles, e))
    loops = list(draw(st.permutations(loops)))
    for _ in range(draw(st.integers(0 if loops else 1, 2))):
        loops.insert(draw(st.integers(0, len(loops))), (None, draw(st.integers(1, 3)), draw(st.integers(1, 4))))
    results: list[AffineExpr] = []
    for j in range(len(shape)):
        walking: list[AffineExpr] = [AffineDim(i) for i, (dim, _, _) in enumerate(loops) if dim == j]
        results.append(functools.reduce(operator.add, walking) if walking else AffineConst(0))
    return ITensorType(
        element,
        draw(st.sampled_from(DTYPES)),
        shape,
        tuple(trip for _, trip, _ in loops),
        tuple(step for _, _, step in loops),
        AffineMap(len(loops), tuple(results)),
    )


def random_tensor(t: ITensorType, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = host_dtype(t.dtype)
    if t.dtype == "i1":
        return rng.integers(0, 2, size=t.tensor_shape).astype(bool)
    if dtype.kind == "i":
        lo, hi = int_range(t.dtype) if t.dtype in DTYPE_BITS and t.dtype != "index" else (0, 0)
        return rng.integers(lo, hi, size=t.tensor_shape, dtype=dtype, endpoint=True)
    values = rng.standard_normal(t.tensor_shape).astype(dtype)
    if t.dtype == "bf16":  # exactly representable in bf16, so the round trip is exact
        values = (values.view("<u4") & np.uint32(0xFFFF0000)).view("<f4")
    return values


@settings(max_examples=200, deadline=None)
@given(layouts(), st.integers(0, 2**32 - 1))
def test_random_layouts_round_trip_and_dma_addressing(t: ITensorType, seed: int) -> None:
    t.verify()
    layout = PackedLayout.of(t)
    x = random_tensor(t, seed)
    data = pack(t, x)
    unique = math.prod(trip for loop, trip in enumerate(t.trip_counts) if loop not in t.repeat_loops())
    assert layout.num_tiles == unique
    assert len(data) == layout.total_bytes == unique * layout.words_per_tile * WORD_BYTES
    assert layout.words_per_tile == math.ceil(t.token_bits / 512)
    np.testing.assert_array_equal(unpack(t, data), x)
    # The DMA's view: token k starts at sum_l n_l * word_strides[l] (repeat loops have stride 0).
    counters = np.array(list(np.ndindex(*t.trip_counts)), dtype=np.int64).reshape(t.num_tokens, t.num_loops)
    addresses = counters @ np.array(layout.word_strides, dtype=np.int64)
    assert addresses.tolist() == layout.token_word_addresses().tolist()
    assert all(layout.word_strides[loop] == 0 for loop in t.repeat_loops())
    expected = np.stack(stream_tokens(t, x))
    np.testing.assert_array_equal(read_tokens(t, data, addresses), expected)
    # Tiles are stored in order of first appearance in the stream, each exactly once.
    first_seen = list(dict.fromkeys(addresses.tolist()))
    assert first_seen == [i * layout.words_per_tile for i in range(unique)]
    # Padding is zero.
    words = np.frombuffer(data, dtype=np.uint8).reshape(unique, -1)
    assert not words[:, layout.tile_data_bytes :].any()


# --- the C++ side: tile_io.h against the Python packer -------------------------------------------------------

_TILE_IO_PROGRAM = """
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <type_traits>
#include <vector>
#include <ap_int.h>
namespace streamtensor {
typedef ap_uint<512> word512;
%(sim_traffic)s
}
%(hls_pragma)s
%(tile_io)s

constexpr int N = %(elements)d;
constexpr int WORDS = %(words)d;
constexpr int STRIPE_WORDS = (WORDS + 1) / 2;

static void read_words(const char* path, streamtensor::word512* words, int count) {
  FILE* f = std::fopen(path, "rb");
  for (int w = 0; w < count; ++w) {
    unsigned char bytes[64];
    if (std::fread(bytes, 1, 64, f) != 64) std::exit(2);
    for (int b = 0; b < 64; ++b) words[w].range(8 * b + 7, 8 * b) = bytes[b];
  }
  std::fclose(f);
}

int main(int, char** argv) {
  // argv: whole tile, stripe 0 of 2, stripe 1 of 2, output file (the stored tile)
  static streamtensor::word512 whole[WORDS], s0[STRIPE_WORDS], s1[STRIPE_WORDS], out[WORDS];
  read_words(argv[1], whole, WORDS);
  read_words(argv[2], s0, STRIPE_WORDS);
  read_words(argv[3], s1, STRIPE_WORDS);
  ap_int<4> a[N], b[N];
  load_tile(whole, a);
  load_tile_stripe<2, 0>(s0, b);
  load_tile_stripe<2, 1>(s1, b);
  for (int j = 0; j < N; ++j) std::printf("%%d %%d\\n", static_cast<int>(a[j]), static_cast<int>(b[j]));
  store_tile(a, out);
  FILE* f = std::fopen(argv[4], "wb");
  for (int w = 0; w < WORDS; ++w)
    for (int b8 = 0; b8 < 64; ++b8) std::fputc(static_cast<int>(out[w].range(8 * b8 + 7, 8 * b8).to_uint()), f);
  std::fclose(f);
  return 0;
}
"""


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_i4_tile_io_matches_the_python_packer(tmp_path: Path) -> None:
    """load_tile / load_tile_stripe unpack (sign-extending) and store_tile packs int4 tiles exactly as ``pack``
    / ``unpack`` do: a 3-word tile of 300 elements (the last word partly padding), whole and over 2 stripes."""
    t = parse_itensor_type("itensor<300xi4, tensor 300, [1] * [300], (d0) -> (d0)>")
    layout = PackedLayout.of(t)
    assert layout.words_per_tile == 3
    x = np.random.default_rng(7).integers(-8, 7, size=300, endpoint=True, dtype=np.int8)
    data = pack(t, x)
    files = [tmp_path / name for name in ("whole.bin", "s0.bin", "s1.bin", "out.bin")]
    files[0].write_bytes(data)
    for j in range(2):
        files[1 + j].write_bytes(layout.striped(j, 2).take_stripe(data))
    source = tmp_path / "tile_io_i4.cpp"
    source.write_text(_TILE_IO_PROGRAM % {
        "sim_traffic": template("sim_traffic.h"), "hls_pragma": template("hls_pragma.h"),
        "tile_io": template("tile_io.h"), "elements": 300, "words": layout.words_per_tile})
    exe = tmp_path / "tile_io_i4"
    build = subprocess.run([shutil.which("g++"), "-std=c++14", "-O1", "-w", "-isystem", str(AP_TYPES_DIR),
                            str(source), "-o", str(exe)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    run = subprocess.run([str(exe), *map(str, files)], capture_output=True, text=True, timeout=60, check=True)
    values = np.array([line.split() for line in run.stdout.splitlines()], dtype=np.int64)
    np.testing.assert_array_equal(values[:, 0], x)  # load_tile
    np.testing.assert_array_equal(values[:, 1], x)  # load_tile_stripe, both stripes
    assert files[3].read_bytes() == data  # store_tile: the packer's bytes, padding included
