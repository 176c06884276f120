"""Iterative tensor (itensor) types: a tensor's stream layout as an ordered sequence of tiles (spec §2).

Token ``t`` (lexicographic rank of the loop counters, d0 outermost) carries
``tensor[off : off + element_shape]`` with ``off = iter_map(n_0 * step_0, ..., n_{k-1} * step_{k-1})``.
A loop used by no map result is a repeat loop: the tiles of the loops inside it are streamed again.

Text form (``parse_itensor_type(str(t)) == t``)::

    itensor<4x2xf32, tensor 8x8, [4, 2, 2] * [2, 1, 4], (d0, d1, d2) -> (d2, d0)>

i.e. element shape x dtype, full tensor shape, trip counts * steps, iteration map. Rank-0 shapes are spelled
like MLIR's ``tensor<f32>``: the element is just the dtype and the tensor shape is ``scalar``:
``itensor<f32, tensor scalar, [2] * [1], (d0) -> ()>``.

This module also holds the token-stream semantics of a type (``stream_tokens`` / ``assemble_tokens``) and the
tile gather/scatter primitives that DMAs, kernels and converters of the stream-level executor share.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from streamtensor.errors import VerificationError
from streamtensor.ir.affine import AffineMap, parse_affine_map
from streamtensor.ir.dtypes import DTYPE_BITS


def dtype_bits(dtype: str) -> int:
    """Bit width of an itensor element dtype."""
    if dtype not in DTYPE_BITS:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPE_BITS)}")
    return DTYPE_BITS[dtype]


def beat_elements(elements: int, bits: int, max_bits: int) -> int:
    """Elements per stream beat of a token of ``elements`` elements of ``bits`` bits each under a ``max_bits``
    limit on one stream element (``ITensorType.beat_elements``)."""
    if elements * bits <= max_bits:
        return elements
    return max(d for d in range(1, max(1, max_bits // bits) + 1) if elements % d == 0)


class ITensorVerificationError(VerificationError, ValueError):
    """An itensor type that does not describe a valid token stream of its tensor."""


def _shape_str(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape) if shape else "scalar"


def _strides(shape: tuple[int, ...]) -> np.ndarray:
    """Row-major element strides, for flat indexing."""
    return np.array([math.prod(shape[j + 1 :]) for j in range(len(shape))], dtype=np.int64)


@dataclass(frozen=True)
class ITensorType:
    element_shape: tuple[int, ...]
    dtype: str
    tensor_shape: tuple[int, ...]
    trip_counts: tuple[int, ...]
    steps: tuple[int, ...]
    iter_map: AffineMap

    def __post_init__(self) -> None:
        # Callers build types from lists; equality, hashing and printing need int tuples.
        for name in ("element_shape", "tensor_shape", "trip_counts", "steps"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))

    @property
    def rank(self) -> int:
        return len(self.tensor_shape)

    @property
    def num_loops(self) -> int:
        return len(self.trip_counts)

    @property
    def num_tokens(self) -> int:
        return math.prod(self.trip_counts)

    @property
    def token_elements(self) -> int:
        return math.prod(self.element_shape)

    @property
    def token_bits(self) -> int:
        return self.token_elements * dtype_bits(self.dtype)

    def beat_elements(self, max_bits: int) -> int:
        """Elements per stream beat under a ``max_bits`` limit on one stream element: the whole token when it
        fits, else the largest divisor of the token's element count that fits (a wide tile then crosses its
        stream in ``token_elements // beat_elements`` beats, one per cycle)."""
        return beat_elements(self.token_elements, dtype_bits(self.dtype), max_bits)

    def beats(self, max_bits: int) -> int:
        """Stream beats (cycles on the stream) one token takes under a ``max_bits`` element limit."""
        return self.token_elements // self.beat_elements(max_bits)

    @property
    def tensor_elements(self) -> int:
        return math.prod(self.tensor_shape)

    def repeat_loops(self) -> tuple[int, ...]:
        """Loops that appear in no map result, outermost first."""
        used = self.iter_map.used_dims()
        return tuple(loop for loop in range(self.num_loops) if loop not in used)

    def offsets(self) -> np.ndarray:
        """Tile offset of every token, shape ``(num_tokens, rank)``, in stream order (read-only, cached).

        Needs a structurally valid type (ranks and sizes), not a full ``verify()``."""
        self._check_structure()
        return self._offset_table

    def verify(self) -> None:
        """Raise ``ITensorVerificationError`` unless the stream is well formed: consistent ranks, positive
        sizes, a known dtype, every tile in bounds, and the tiles of distinct non-repeat iteration points
        covering the tensor exactly (no overlap, no hole). Repeat loops may re-stream tiles."""
        self._check_structure()
        self._check_bounds()
        if not self._is_disjoint_product_tiling():
            self._check_tiling_exhaustively()

    def _error(self, message: str) -> ITensorVerificationError:
        return ITensorVerificationError(f"{self}: {message}")

    def _check_structure(self) -> None:
        if self.dtype not in DTYPE_BITS:
            raise self._error(f"unknown dtype {self.dtype!r}; expected one of {', '.join(DTYPE_BITS)}")
        if len(self.element_shape) != self.rank:
            raise self._error(
                f"element rank {len(self.element_shape)} does not match tensor rank {self.rank}"
            )
        if self.iter_map.num_results != self.rank:
            raise self._error(
                f"iteration map has {self.iter_map.num_results} results but the tensor has rank {self.rank}"
            )
        if len(self.steps) != self.num_loops:
            raise self._error(f"{self.num_loops} trip counts but {len(self.steps)} steps")
        if self.iter_map.num_dims != self.num_loops:
            raise self._error(
                f"iteration map has {self.iter_map.num_dims} dims but the iteration space has "
                f"{self.num_loops} loops"
            )
        for what, values in (
            ("element size", self.element_shape),
            ("tensor size", self.tensor_shape),
            ("trip count", self.trip_counts),
            ("step", self.steps),
        ):
            for i, value in enumerate(values):
                if value <= 0:
                    raise self._error(f"{what} {value} at position {i} must be positive")

    def _offsets_at(self, counters: np.ndarray) -> np.ndarray:
        """Tile offsets ``(K, rank)`` for loop counters ``(K, num_loops)``."""
        index = counters * np.array(self.steps, dtype=np.int64)
        # AffineExpr.evaluate is duck-typed: with one numpy column per loop it evaluates all points at once.
        values = self.iter_map.evaluate(tuple(index.T))
        table = np.zeros((len(counters), self.rank), dtype=np.int64)
        for j, value in enumerate(values):
            table[:, j] = value
        return table

    @cached_property
    def _counter_table(self) -> np.ndarray:
        """Loop counters of every token, ``(num_tokens, num_loops)``, in stream order."""
        table = np.indices(self.trip_counts, dtype=np.int64).reshape(self.num_loops, self.num_tokens).T
        table.flags.writeable = False
        return table

    def loop_values(self) -> tuple[np.ndarray, ...]:
        """Per loop k, its counter times its step along axis k of the loop nest (length 1 on the other axes): the
        iteration map evaluated on these broadcasts over the nest without a table of every token's counters.
        Needs a structurally valid type, as ``offsets``."""
        self._check_structure()
        ones = (1,) * self.num_loops
        return tuple((np.arange(n, dtype=np.int64) * step).reshape(ones[:k] + (n,) + ones[k + 1 :])
                     for k, (n, step) in enumerate(zip(self.trip_counts, self.steps, strict=True)))

    @cached_property
    def _offset_table(self) -> np.ndarray:
        # AffineExpr.evaluate is duck-typed: on ``loop_values`` each result is an array broadcast over the nest.
        table = np.empty((*self.trip_counts, self.rank), dtype=np.int64)
        for j, value in enumerate(self.iter_map.evaluate(self.loop_values())):
            table[..., j] = value
        table = table.reshape(self.num_tokens, self.rank)
        table.flags.writeable = False
        return table

    def _check_bounds(self) -> None:
        if self.iter_map.is_projected_permutation() and self._corners_in_bounds():
            return
        offsets = self._offset_table
        ends = offsets + np.array(self.element_shape, dtype=np.int64)
        outside = ((offsets < 0) | (ends > np.array(self.tensor_shape, dtype=np.int64))).any(axis=1)
        if outside.any():
            token = int(np.argmax(outside))
            raise self._error(
                f"token {token} at offset {tuple(int(v) for v in offsets[token])} carries a "
                f"{_shape_str(self.element_shape)} tile outside the {_shape_str(self.tensor_shape)} tensor"
            )

    def _corners_in_bounds(self) -> bool:
        """For a projected-permutation map each offset grows with one loop counter (or is constant): the first
        and last iteration points bound every tile, so checking them proves every token in bounds without the
        offset table (millions of tokens in a fine tiling of a paper-size block)."""
        last = np.array(self.trip_counts, dtype=np.int64) - 1
        low, high = self._offsets_at(np.stack([np.zeros_like(last), last]))
        return bool((low >= 0).all() and (high + np.array(self.element_shape) <= np.array(self.tensor_shape)).all())

    def _is_disjoint_product_tiling(self) -> bool:
        """Fast exact-cover proof for projected-permutation maps (the common case; tiles in bounds).

        Then the tiles are a Cartesian product of per-dim interval sets: disjoint along every dim (a walking
        loop's step is at least the element size) and of total volume ``tensor_elements`` means an exact
        cover. False means "not proven": the exhaustive check decides and names the culprit."""
        if not self.iter_map.is_projected_permutation():
            return False
        points = math.prod(self.trip_counts[loop] for loop in self.iter_map.used_dims())
        if points * self.token_elements != self.tensor_elements:
            return False
        for j in range(self.rank):
            loop = self.iter_map.result_dim(j)
            if loop is not None and self.trip_counts[loop] > 1 and self.steps[loop] < self.element_shape[j]:
                return False
        return True

    def _check_tiling_exhaustively(self) -> None:
        # Repeat loops re-stream the same tiles, so only the non-repeat points must tile the tensor;
        # they are enumerated with every repeat counter at 0.
        used = sorted(self.iter_map.used_dims())
        used_trips = [self.trip_counts[loop] for loop in used]
        num_points = math.prod(used_trips)
        counters = np.zeros((num_points, self.num_loops), dtype=np.int64)
        counters[:, used] = np.indices(used_trips, dtype=np.int64).reshape(len(used), num_points).T
        strides = _strides(self.tensor_shape)
        tile_flat = np.indices(self.element_shape, dtype=np.int64).reshape(self.rank, -1).T @ strides
        flat = (self._offsets_at(counters) @ strides)[:, None] + tile_flat[None, :]
        counts = np.bincount(flat.ravel(), minlength=self.tensor_elements)

        def element(flat_index: int) -> tuple[int, ...]:
            return tuple(int(c) for c in np.unravel_index(flat_index, self.tensor_shape))

        if (counts > 1).any():
            shared = int(np.argmax(counts > 1))
            first, second = np.flatnonzero((flat == shared).any(axis=1))[:2]
            raise self._error(
                f"tiles of iteration points {tuple(int(c) for c in counters[first])} and "
                f"{tuple(int(c) for c in counters[second])} overlap at element {element(shared)} "
                "(points are loop counters, repeat loops at 0)"
            )
        if (counts == 0).any():
            raise self._error(f"element {element(int(np.argmax(counts == 0)))} is covered by no tile")

    def __str__(self) -> str:
        element = "x".join([*(str(s) for s in self.element_shape), self.dtype])
        trips = ", ".join(str(v) for v in self.trip_counts)
        steps = ", ".join(str(v) for v in self.steps)
        tensor = _shape_str(self.tensor_shape)
        return f"itensor<{element}, tensor {tensor}, [{trips}] * [{steps}], {self.iter_map}>"


_ELEMENT_RE = re.compile(r"((?:-?\d+x)*)([A-Za-z]\w*)")
_TENSOR_RE = re.compile(r"tensor\s+(scalar|-?\d+(?:x-?\d+)*)")
_SPACE_RE = re.compile(r"\[([^\]]*)\]\s*\*\s*\[([^\]]*)\]")


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets and parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _int_list(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",")) if text.strip() else ()


def parse_itensor_type(text: str) -> ITensorType:
    """Parse the text form printed by ``str(ITensorType)``. The result is not verified."""
    body = text.strip()
    if not (body.startswith("itensor<") and body.endswith(">")):
        raise ValueError(f"expected 'itensor<...>' in {text!r}")
    parts = _split_top_level(body[len("itensor<") : -1])
    if len(parts) != 4:
        raise ValueError(
            f"expected 4 comma-separated parts (element, tensor shape, iteration space, map) in {text!r}"
        )
    element, tensor, space, map_text = parts
    element_match = _ELEMENT_RE.fullmatch(element)
    if element_match is None:
        raise ValueError(f"bad element type {element!r} (expected e.g. 4x2xf32) in {text!r}")
    tensor_match = _TENSOR_RE.fullmatch(tensor)
    if tensor_match is None:
        raise ValueError(f"bad tensor shape {tensor!r} (expected e.g. 'tensor 8x8') in {text!r}")
    space_match = _SPACE_RE.fullmatch(space)
    if space_match is None:
        raise ValueError(f"bad iteration space {space!r} (expected e.g. [4, 2] * [2, 4]) in {text!r}")
    try:
        trips, steps = _int_list(space_match.group(1)), _int_list(space_match.group(2))
        iter_map = parse_affine_map(map_text)
    except ValueError as err:
        raise ValueError(f"bad itensor type {text!r}: {err}") from err
    shape_text = tensor_match.group(1)
    return ITensorType(
        element_shape=tuple(int(v) for v in element_match.group(1).split("x")[:-1]),
        dtype=element_match.group(2),
        tensor_shape=() if shape_text == "scalar" else tuple(int(v) for v in shape_text.split("x")),
        trip_counts=trips,
        steps=steps,
        iter_map=iter_map,
    )


# --- token streams ---------------------------------------------------------------------------------------


def _tile_view(array: np.ndarray, tile_shape: tuple[int, ...], writeable: bool) -> np.ndarray:
    # A leading unit axis keeps "one fancy index per tile" valid for rank-0 arrays too.
    return sliding_window_view(array[np.newaxis], (1, *tile_shape), writeable=writeable)


def _tile_index(offsets: np.ndarray) -> tuple[np.ndarray, ...]:
    return (np.zeros(len(offsets), dtype=np.intp), *offsets.T)


def gather_tiles(array: np.ndarray, tile_shape: tuple[int, ...], offsets: np.ndarray) -> np.ndarray:
    """Copy of ``array[off : off + tile_shape]`` for every row of ``offsets``: shape ``(K, *tile_shape)``.

    Offsets must be in bounds (callers check; the error names the stream position)."""
    tiles = _tile_view(array, tile_shape, writeable=False)[_tile_index(offsets)]
    return tiles.reshape(len(offsets), *tile_shape)


def scatter_tiles(
    array: np.ndarray, tile_shape: tuple[int, ...], offsets: np.ndarray, tiles: np.ndarray | bool
) -> None:
    """``array[off_k : off_k + tile_shape] = tiles[k]`` for every k (``tiles`` broadcasts); on overlap the
    later tile wins. Offsets must be in bounds."""
    values = np.broadcast_to(tiles, (len(offsets), *tile_shape))[:, np.newaxis]
    _tile_view(array, tile_shape, writeable=True)[_tile_index(offsets)] = values


def stack_tokens(t: ITensorType, tokens: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Token stream as one array ``(num_tokens, *element_shape)``; a stacked array is taken as is."""
    expected = (t.num_tokens, *t.element_shape)
    if not isinstance(tokens, np.ndarray):
        if len(tokens) != t.num_tokens:
            raise ValueError(f"{t}: expected {t.num_tokens} tokens, got {len(tokens)}")
        shapes = {np.shape(token) for token in tokens}
        if shapes != {t.element_shape}:
            raise ValueError(f"{t}: tokens must have shape {t.element_shape}, got {sorted(shapes)}")
        tokens = np.stack(tokens)
    if tokens.shape != expected:
        raise ValueError(f"{t}: expected a token stream of shape {expected}, got {tokens.shape}")
    return tokens


def stream_tokens(t: ITensorType, tensor: np.ndarray) -> list[np.ndarray]:
    """The token stream of ``tensor`` in layout ``t`` (each token a fresh copy of its tile)."""
    t.verify()
    tensor = np.asarray(tensor)
    if tensor.shape != t.tensor_shape:
        raise ValueError(f"{t}: tensor has shape {tensor.shape}, expected {t.tensor_shape}")
    return list(gather_tiles(tensor, t.element_shape, t.offsets()))


def assemble_tokens(t: ITensorType, tokens: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """The tensor carried by a token stream of layout ``t``; a repeated tile must carry the same data as its
    first occurrence (NaNs compare equal), else ValueError naming the token."""
    t.verify()
    data = stack_tokens(t, tokens)
    offsets = t.offsets()
    # The first occurrence of every tile is the token whose repeat counters are all 0.
    repeats = t._counter_table[:, list(t.repeat_loops())].any(axis=1)
    tensor = np.empty(t.tensor_shape, dtype=data.dtype)
    scatter_tiles(tensor, t.element_shape, offsets[~repeats], data[~repeats])
    if repeats.any():
        expected = gather_tiles(tensor, t.element_shape, offsets[repeats])
        got = data[repeats]
        same = (expected == got) | ((expected != expected) & (got != got))
        bad = ~same.reshape(len(got), -1).all(axis=1)
        if bad.any():
            token = int(np.flatnonzero(repeats)[np.argmax(bad)])
            raise ValueError(
                f"{t}: token {token} repeats the tile at offset {tuple(int(v) for v in offsets[token])} "
                "with different data"
            )
    return tensor
