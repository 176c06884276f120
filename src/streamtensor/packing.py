"""The packed external-memory layout of a DMA tensor: the one definition shared by the parameter packer, the host
runtime and the C++ DMA emitter.

A DMA argument of itensor type ``t`` is stored as its **unique tiles**, one tile per token of the loop nest of
``t`` with its repeat loops removed (repeat loops only re-stream tiles, so they are not stored twice):

* **Tile order.** Tile ``i`` is the ``i``-th point of the non-repeat loops in lexicographic order (outermost
  loop first), which is also the order in which tiles first appear in the stream.
* **Addressing.** Memory is an array of 512-bit words. Token ``(n_0, ..., n_{k-1})`` (loop counters) starts at
  word ``sum_l n_l * word_strides[l]``, where ``word_strides[l] = words_per_tile * prod(trip_counts[m] for the
  non-repeat loops m > l)`` and ``word_strides[l] = 0`` for a repeat loop. A DMA reads (or writes)
  ``words_per_tile`` consecutive words from there, so re-reading a tile for a repeat loop is address
  arithmetic only.
* **Inside a tile.** The tile's elements in row-major order over ``element_shape``; element ``j`` of width
  ``b`` bits occupies bits ``[j*b, (j+1)*b)`` of the tile, and tile bit ``k`` is bit ``k % 512`` of the tile's
  word ``k // 512``. A word is 64 bytes, little-endian: word bit ``i`` is bit ``i % 8`` of byte ``i // 8``.
  Every dtype width divides 512, so no element straddles two words. Values are little-endian two's complement
  (``i*``, ``index`` as 64-bit; ``i4`` two per byte, element ``2m`` in the low nibble of byte ``m``; hosts hold
  i4 tensors as int8 in [-8, 7]), IEEE-754 (``f16``/``f32``/``f64``), the upper half of an IEEE-754 binary32
  (``bf16``; hosts hold bf16 tensors as float32 and packing rounds to nearest even), or one bit (``i1``).
* **Padding.** Each tile is padded with zero bits to a whole number of words (``words_per_tile``), so a DMA
  token is always a whole burst of words and tile ``i`` starts at word ``i * words_per_tile``. The cost is
  ``padding_bytes`` per argument: nothing when a tile is a multiple of 512 bits (the widening of spec §3 aims
  for that), but a 4x4 i8 tile (128 bits) wastes 75% of its word and of the bandwidth that streams it.

A file or buffer of the layout holds exactly ``total_bytes = num_tiles * words_per_tile * 64`` bytes.

* **Stripes.** A read-only buffer may be striped over ``J`` HBM pseudo-channels (``analysis.hbm``): stripe ``j``
  is a buffer of its own holding words ``j, j + J, ...`` of every tile, in tile order, each tile's share padded
  to ``ceil(tile_words / J)`` words (:meth:`PackedLayout.striped`, :meth:`PackedLayout.take_stripe`). Its
  ``words_per_tile`` and ``word_strides`` are the stripe's: what its m_axi port addresses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from streamtensor.ir.dtypes import int_range
from streamtensor.ir.itensor import ITensorType, dtype_bits, gather_tiles, scatter_tiles

WORD_BITS = 512
WORD_BYTES = WORD_BITS // 8

# Host (numpy) representation of each dtype. bf16 has no numpy type: hosts hold it as float32.
_HOST_DTYPES: dict[str, np.dtype] = {
    "f64": np.dtype("<f8"),
    "f32": np.dtype("<f4"),
    "f16": np.dtype("<f2"),
    "bf16": np.dtype("<f4"),
    "i64": np.dtype("<i8"),
    "i32": np.dtype("<i4"),
    "i16": np.dtype("<i2"),
    "i8": np.dtype("i1"),
    "i4": np.dtype("i1"),  # int4 values in int8, stored two per byte
    "i1": np.dtype("bool"),
    "index": np.dtype("<i8"),
}


def host_dtype(dtype: str) -> np.dtype:
    """The numpy dtype that holds an itensor dtype on the host (bf16 as float32, i1 as bool, i4 as int8)."""
    dtype_bits(dtype)  # raises ValueError naming the known dtypes
    return _HOST_DTYPES[dtype]


@dataclass(frozen=True)
class PackedLayout:
    """Sizes and DMA address strides of the packed layout of one itensor type (see the module docstring)."""

    itype: ITensorType
    words_per_tile: int
    num_tiles: int  # unique tiles stored
    tile_strides: tuple[int, ...]  # per loop, in tiles; 0 for repeat loops
    stripe: int = 0  # this buffer holds the words w % stripes == stripe of every tile (module docstring)
    stripes: int = 1

    @classmethod
    def of(cls, itype: ITensorType) -> PackedLayout:
        itype.verify()
        repeats = set(itype.repeat_loops())
        strides = [0] * itype.num_loops
        stride = 1
        for loop in reversed(range(itype.num_loops)):
            if loop not in repeats:
                strides[loop] = stride
                stride *= itype.trip_counts[loop]
        return cls(
            itype=itype,
            words_per_tile=math.ceil(itype.token_bits / WORD_BITS),
            num_tiles=stride,
            tile_strides=tuple(strides),
        )

    def striped(self, stripe: int, stripes: int) -> PackedLayout:
        """Stripe ``stripe`` of ``stripes`` of this (whole) layout."""
        if self.stripes != 1 or not 0 <= stripe < stripes <= self.words_per_tile:
            raise ValueError(f"{self.itype}: no stripe {stripe} of {stripes} of a {self.words_per_tile}-word tile")
        return replace(self, words_per_tile=-(-self.words_per_tile // stripes), stripe=stripe, stripes=stripes)

    @property
    def tile_words(self) -> int:
        """Words of a whole tile (over all stripes)."""
        return math.ceil(self.itype.token_bits / WORD_BITS)

    def take_stripe(self, data: bytes) -> bytes:
        """This stripe's buffer from the packed bytes of the whole layout."""
        whole = np.frombuffer(data, dtype=np.uint8).reshape(self.num_tiles, self.tile_words, WORD_BYTES)
        out = np.zeros((self.num_tiles, self.words_per_tile, WORD_BYTES), dtype=np.uint8)
        part = whole[:, self.stripe :: self.stripes]
        out[:, : part.shape[1]] = part
        return out.tobytes()

    @property
    def word_strides(self) -> tuple[int, ...]:
        """Per-loop word-address strides the DMA uses (0 for repeat loops)."""
        return tuple(s * self.words_per_tile for s in self.tile_strides)

    @property
    def tile_data_bytes(self) -> int:
        """Bytes of a tile that carry data (the last one partly, for i1 tiles that are not whole bytes); of a
        stripe, those of its words."""
        data = math.ceil(self.itype.token_bits / 8)
        return sum(min(WORD_BYTES, data - WORD_BYTES * w) for w in range(self.stripe, self.tile_words, self.stripes))

    @property
    def total_words(self) -> int:
        return self.num_tiles * self.words_per_tile

    @property
    def total_bytes(self) -> int:
        return self.total_words * WORD_BYTES

    @property
    def padding_bytes(self) -> int:
        """Whole bytes of the layout that carry no data (tile padding to whole words)."""
        return self.num_tiles * (self.words_per_tile * WORD_BYTES - self.tile_data_bytes)

    @property
    def padding_fraction(self) -> float:
        return self.padding_bytes / self.total_bytes

    @property
    def streamed_bytes(self) -> int:
        """Bytes one full pass of the stream moves over the bus, repeat loops included (bandwidth demand)."""
        return self.itype.num_tokens * self.words_per_tile * WORD_BYTES

    def token_word_addresses(self) -> np.ndarray:
        """Start word of every token, in stream order: what the DMA's address arithmetic computes."""
        counters = np.indices(self.itype.trip_counts, dtype=np.int64).reshape(self.itype.num_loops, -1)
        return np.array(self.word_strides, dtype=np.int64) @ counters

    def row_word_span(self, dim: int, row: int) -> tuple[int, int]:
        """``(first word, words)`` of the tile words holding the tile's row ``row`` along tensor dim ``dim``: the
        elements whose index along ``dim`` is ``row``, from the first to the last (rows in between, when the row
        is not contiguous, are in the span too)."""
        shape = self.itype.element_shape
        inner = math.prod(shape[dim + 1:])
        outer = math.prod(shape[:dim])
        bits = self.itype.token_bits // self.itype.token_elements
        first = row * inner * bits
        last = ((outer - 1) * shape[dim] * inner + row * inner + inner) * bits - 1
        return first // WORD_BITS, last // WORD_BITS - first // WORD_BITS + 1

    def row_write_words(self, dim: int) -> int:
        """Words a row write stores from the first word of its row: the widest span over the tile's rows (a
        constant trip count for the generated loop; words past the tile are skipped)."""
        return max(self.row_word_span(dim, r)[1] for r in range(self.itype.element_shape[dim]))

    def row_write(self, dim: int, row: int) -> tuple[int, int]:
        """``(first word, words)`` a row write of tile row ``row`` stores: ``row_write_words`` words from the
        row's first, within the tile."""
        first = self.row_word_span(dim, row)[0]
        return first, min(self.row_write_words(dim), self.words_per_tile - first)

    def unique_tiles_type(self) -> ITensorType:
        """The same stream with every repeat loop run once: its tokens are the stored tiles, in storage order."""
        repeats = set(self.itype.repeat_loops())
        trips = tuple(1 if loop in repeats else trip for loop, trip in enumerate(self.itype.trip_counts))
        return replace(self.itype, trip_counts=trips)


def _to_host(itype: ITensorType, array: np.ndarray) -> np.ndarray:
    """``array`` as the host dtype of ``itype``; refuses lossy kinds of conversion and out-of-range integers."""
    array = np.asarray(array)
    if array.shape != itype.tensor_shape:
        raise ValueError(f"{itype}: array has shape {array.shape}, expected {itype.tensor_shape}")
    target = host_dtype(itype.dtype)
    if itype.dtype == "i1":
        if array.dtype != np.bool_ and not np.isin(array, (0, 1)).all():
            raise ValueError(f"{itype}: i1 values must be booleans or 0/1")
        return array.astype(np.bool_)
    if not np.can_cast(array.dtype, target, casting="same_kind"):
        raise ValueError(f"{itype}: cannot store {array.dtype} values as {itype.dtype}")
    converted = array.astype(target, copy=False)  # read only (pack gathers its tiles): no copy when it is one
    lo, hi = int_range(itype.dtype) if target.kind == "i" else (0, 0)
    if target.kind == "i" and (not np.array_equal(converted, array)
                               or (converted.size and (converted.min() < lo or converted.max() > hi))):
        raise ValueError(f"{itype}: values out of range for {itype.dtype} [{lo}, {hi}]")
    return converted


def _bf16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns (uint16), rounding to nearest even; NaNs stay (quiet) NaNs."""
    bits = values.astype("<f4").view("<u4")
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype("<u2")
    nan = np.isnan(values)
    return np.where(nan, ((bits >> np.uint32(16)) | np.uint32(0x40)).astype("<u2"), rounded)


def _encode(itype: ITensorType, tiles: np.ndarray) -> np.ndarray:
    """Host tiles ``(K, tile_elements)`` -> their data bytes ``(K, tile_data_bytes)``."""
    if itype.dtype == "i1":
        return np.packbits(tiles, axis=1, bitorder="little")
    if itype.dtype == "i4":
        nibbles = np.zeros((len(tiles), 2 * -(-tiles.shape[1] // 2)), dtype=np.uint8)
        nibbles[:, : tiles.shape[1]] = tiles.view(np.uint8) & np.uint8(0xF)
        return nibbles[:, 0::2] | (nibbles[:, 1::2] << np.uint8(4))
    if itype.dtype == "bf16":
        tiles = _bf16_bits(tiles)
    return np.ascontiguousarray(tiles).view(np.uint8).reshape(len(tiles), -1)


def _decode(itype: ITensorType, data: np.ndarray) -> np.ndarray:
    """Data bytes ``(K, >= tile_data_bytes)`` -> host tiles ``(K, *element_shape)``."""
    count, elements = len(data), itype.token_elements
    if itype.dtype == "i1":
        values = np.unpackbits(data, axis=1, count=elements, bitorder="little").astype(np.bool_)
    elif itype.dtype == "i4":
        raw = data[:, : -(-elements // 2)]
        nibbles = np.stack([raw & np.uint8(0xF), raw >> np.uint8(4)], axis=-1).reshape(count, -1)[:, :elements]
        values = (nibbles.astype(np.int8) ^ np.int8(8)) - np.int8(8)  # sign-extend the 4-bit two's complement
    else:
        raw = np.ascontiguousarray(data[:, : elements * dtype_bits(itype.dtype) // 8])
        if itype.dtype == "bf16":
            values = (raw.view("<u2").astype("<u4") << np.uint32(16)).view("<f4")
        else:
            values = raw.view(host_dtype(itype.dtype))
    return values.reshape(count, *itype.element_shape)


def pack(itype: ITensorType, array: np.ndarray) -> bytes:
    """``array`` (shape ``itype.tensor_shape``) in the packed layout: ``PackedLayout.of(itype).total_bytes``."""
    layout = PackedLayout.of(itype)
    host = _to_host(itype, array)
    tiles = gather_tiles(host, itype.element_shape, layout.unique_tiles_type().offsets())
    data = _encode(itype, tiles.reshape(layout.num_tiles, itype.token_elements))
    if layout.tile_data_bytes == layout.words_per_tile * WORD_BYTES:  # whole words: no padding to add
        return data.tobytes()
    out = np.zeros((layout.num_tiles, layout.words_per_tile * WORD_BYTES), dtype=np.uint8)
    out[:, : layout.tile_data_bytes] = data
    return out.tobytes()


def _as_words(layout: PackedLayout, data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    raw = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).ravel()
    if raw.size != layout.total_bytes:
        raise ValueError(f"{layout.itype}: packed data has {raw.size} bytes, expected {layout.total_bytes}")
    return raw.reshape(layout.total_words, WORD_BYTES)


def read_tokens(
    itype: ITensorType, data: bytes | bytearray | memoryview | np.ndarray, word_addresses: np.ndarray
) -> np.ndarray:
    """What a DMA streams: the tile starting at each word address, ``(K, *element_shape)`` host values."""
    layout = PackedLayout.of(itype)
    words = _as_words(layout, data)
    starts = np.asarray(word_addresses, dtype=np.int64)
    if starts.size and (starts.min() < 0 or starts.max() + layout.words_per_tile > layout.total_words):
        raise ValueError(f"{itype}: word address outside the {layout.total_words}-word layout")
    span = starts[:, None] + np.arange(layout.words_per_tile, dtype=np.int64)[None, :]
    return _decode(itype, words[span].reshape(len(starts), -1))


def unpack(itype: ITensorType, data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """The tensor stored in packed ``data`` (inverse of ``pack``), as ``host_dtype(itype.dtype)``."""
    layout = PackedLayout.of(itype)
    tiles = read_tokens(itype, data, np.arange(layout.num_tiles, dtype=np.int64) * layout.words_per_tile)
    tensor = np.empty(itype.tensor_shape, dtype=host_dtype(itype.dtype))
    scatter_tiles(tensor, itype.element_shape, layout.unique_tiles_type().offsets(), tiles)
    return tensor
