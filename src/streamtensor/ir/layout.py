"""Layout algebra of itensor types for the data-movement nodes of the dataflow IR.

Three relations between token streams, each with a *checker* (the exact semantics, used by
``DataflowGraph.verify`` and the stream executor) and a *constructor* (used by ``build_dataflow``):

- **reassociation** (``itensor_reassociate``, from expand/collapse_shape): token k of the result is token k of
  the source with its tile reshaped row-major. Legal exactly when both types have the same token count, the
  source tile and the result tile cover the same row-major flat indices relative to their origin (same
  *tile pattern*) and every token's origin has the same flat index on both sides. Reassociation groups are not
  needed: any reshape is a row-major reinterpretation of the flat index space.
- **chunk** (``itensor_chunk``, from extract_slice with unit strides): the tokens whose tile lies inside the
  slice are forwarded in order, re-based at the slice origin; the others are dropped. A tile that straddles
  the slice boundary makes the chunk illegal.
- **concat** (``itensor_concat``): the result stream is walked in its own order; each token's tile lies inside
  exactly one input's region along the concat dim and is taken from that input's stream, so every input
  stream is the chunk of the result stream at its region.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from streamtensor.ir.affine import AffineConst, AffineDim, AffineExpr, AffineMap
from streamtensor.ir.itensor import ITensorType


def without_unit_loops(t: ITensorType) -> ITensorType:
    """``t`` (a projected-permutation map) without its one-trip loops: the same tokens, spelled canonically as
    kernel ports spell them (``dataflow.kernel_operand_type``), so that converter inference lines up the loops
    that move."""
    keep = [k for k, trip in enumerate(t.trip_counts) if trip > 1]
    if len(keep) == t.num_loops:
        return t
    results: list[AffineExpr] = []
    for j in range(t.rank):
        k = t.iter_map.result_dim(j)
        results.append(AffineDim(keep.index(k)) if k in keep else AffineConst(0))
    return ITensorType(t.element_shape, t.dtype, t.tensor_shape, tuple(t.trip_counts[k] for k in keep),
                       tuple(t.steps[k] for k in keep), AffineMap(len(keep), tuple(results)))


def row_major_type(shape: tuple[int, ...], element: tuple[int, ...], dtype: str) -> ITensorType:
    """Tiles of ``element`` (dividing ``shape``) streamed row-major: one loop per dim the tiles do not cover
    whole, outer dims outer."""
    trips = tuple(s // e for s, e in zip(shape, element, strict=True))
    return without_unit_loops(ITensorType(element, dtype, shape, trips, element, AffineMap.identity(len(shape))))


def segment_lengths(shape: tuple[int, ...]) -> dict[int, tuple[int, ...]]:
    """Row-major *segments* of a shape: flat runs of ``length`` elements that are tiles of it, i.e. tiles
    ``(1, .., 1, e, shape[k+1], .., shape[-1])`` with ``e`` dividing ``shape[k]``. Maps length -> tile."""
    out: dict[int, tuple[int, ...]] = {1: (1,) * len(shape)}
    for k in range(len(shape) - 1, -1, -1):
        inner = math.prod(shape[k + 1 :])
        for e in range(1, shape[k] + 1):
            if shape[k] % e == 0:
                out.setdefault(e * inner, (1,) * k + (e,) + tuple(shape[k + 1 :]))
    return out


def segment_types(source: tuple[int, ...], result: tuple[int, ...], dtype: str
                  ) -> list[tuple[ITensorType, ITensorType]]:
    """Pairs of row-major segment layouts, one over each shape, that stream the same flat runs in the same
    order (so each is a reassociation of the other), for every run length both shapes can tile. The whole
    tensor as one token is always among them."""
    a, b = segment_lengths(source), segment_lengths(result)
    return [(row_major_type(source, a[n], dtype), row_major_type(result, b[n], dtype)) for n in sorted(a)
            if n in b]


def _strides(shape: tuple[int, ...]) -> np.ndarray:
    return np.array([math.prod(shape[j + 1 :]) for j in range(len(shape))], dtype=np.int64)


def tile_pattern(shape: tuple[int, ...], element: tuple[int, ...]) -> np.ndarray:
    """Flat indices (row-major in ``shape``) of a tile at the origin, in the tile's own row-major order."""
    if not element:
        return np.zeros(1, dtype=np.int64)  # a rank-0 tile is one element
    points = np.indices(element, dtype=np.int64).reshape(len(element), -1).T
    return points @ _strides(shape)


def flat_offsets(t: ITensorType) -> np.ndarray:
    """Flat index of every token's tile origin, in stream order: the iteration map's results weighted by the
    strides, broadcast over the loop nest (no table of every token's offsets, no integer matrix product)."""
    flat = sum((value * int(stride) for value, stride in zip(t.iter_map.evaluate(t.loop_values()),
                                                              _strides(t.tensor_shape), strict=True)),
               np.zeros((), dtype=np.int64))
    return np.broadcast_to(flat, t.trip_counts).reshape(-1)


def element_order(t: ITensorType) -> np.ndarray:
    """Flat index of every element of ``t``'s stored tiles (its repeat loops run once), in stream order: the order
    a packed buffer holds them (``streamtensor.packing``)."""
    repeats = set(t.repeat_loops())
    stored = dataclasses.replace(t, trip_counts=tuple(1 if k in repeats else n for k, n in enumerate(t.trip_counts)))
    return (flat_offsets(stored)[:, None] + tile_pattern(t.tensor_shape, t.element_shape)[None, :]).reshape(-1)


def same_packing(a: ITensorType, b: ITensorType) -> bool:
    """Whether streams of ``a`` and ``b`` (over tensors that are reshapes of one another) are stored as the same
    bytes in a packed buffer: the same elements in the same order, in tiles of as many elements."""
    return (a.dtype == b.dtype and math.prod(a.element_shape) == math.prod(b.element_shape)
            and np.array_equal(element_order(a), element_order(b)))


# --- reassociation -----------------------------------------------------------------------------------------


# Memoized like ``converter_buffer.infer_converter_buffer``: passes ask about the same pairs of (immutable) types
# many times (the tile-order search, about many more pairs, compares ``reassociation_key``s instead).
@functools.lru_cache(maxsize=1 << 16)
def reassociation_error(source: ITensorType, result: ITensorType) -> str | None:
    """Why ``result`` is not a reassociation of ``source`` (module docstring), or None when it is."""
    if source.dtype != result.dtype or source.tensor_elements != result.tensor_elements:
        return "the tensors differ in dtype or element count"
    if source.num_tokens != result.num_tokens:
        return f"{source.num_tokens} source tokens but {result.num_tokens} result tokens"
    source_tile = tile_pattern(source.tensor_shape, source.element_shape)
    if source.token_elements != result.token_elements or not np.array_equal(
            source_tile, tile_pattern(result.tensor_shape, result.element_shape)):
        return "the tiles cover different flat index patterns"
    diff = flat_offsets(source) != flat_offsets(result)
    if diff.any():
        return f"token {int(np.argmax(diff))} starts at a different flat index"
    return None


def stream_counts(t: ITensorType) -> tuple[str, int, int, int]:
    """The cheap part of ``reassociation_key``: dtype, tensor elements, tokens and token elements (types that
    differ in these are no reassociation of one another)."""
    return (t.dtype, t.tensor_elements, t.num_tokens, t.token_elements)


def reassociation_key(t: ITensorType) -> tuple[object, ...]:
    """What ``reassociation_error`` compares, as one value: ``reassociation_error(a, b)`` is None exactly when
    ``reassociation_key(a) == reassociation_key(b)`` (``stream_counts``, the tile's flat index pattern and every
    token's flat tile origin; with equal tensor and tile shapes equal origins are equal offsets). One key per type
    answers the question for every pair of many types (the tile-order search's); it walks every token, so compare
    ``stream_counts`` first."""
    return (*stream_counts(t), tile_pattern(t.tensor_shape, t.element_shape).tobytes(), flat_offsets(t).tobytes())


def _coords(flat: np.ndarray, tokens: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Coordinates in ``shape`` (rank x len(tokens)) of the tile origins of ``tokens`` (flat origins ``flat``)."""
    if not shape:
        return np.zeros((0, len(tokens)), dtype=np.int64)
    return np.array(np.unravel_index(flat[tokens], shape), dtype=np.int64).reshape(len(shape), len(tokens))


def _fit(flat: np.ndarray, shape: tuple[int, ...], trips: tuple[int, ...]) -> np.ndarray | None:
    """Coefficients (rank x loops) with the tile origins' coordinates in ``shape`` equal to ``base + coeff @
    counters`` over the loop nest ``trips`` (counters in stream order; ``flat``: the origins' flat indices, ``base``
    the first token's coordinates), non-negative, or None.

    Checked without every token's coordinates (a rank-1 token stream of a paper-size weight has millions of
    tokens): with non-negative coefficients the predicted coordinates span the box from ``base`` to ``base +
    coeff @ (trips - 1)``; where that box lies inside ``shape``, each prediction is a valid coordinate, so the
    unravelled origins equal the predictions exactly when the flat origins equal their flat indices, an affine
    function of the counters with slopes ``coeff.T @ strides``; that is checked as every step along each loop
    moving the flat origin by its slope (affine by telescoping)."""
    strides = _strides(shape)
    grid = flat.reshape(trips)
    firsts = np.array([0] + [math.prod(trips[k + 1 :]) if trip > 1 else 0 for k, trip in enumerate(trips)],
                      dtype=np.int64)
    at = _coords(flat, firsts, shape)
    base = at[:, 0]
    coeff = np.zeros((len(shape), len(trips)), dtype=np.int64)
    for k, trip in enumerate(trips):
        if trip > 1:
            coeff[:, k] = at[:, k + 1] - base
    if (coeff < 0).any() or (base + coeff @ (np.array(trips, dtype=np.int64) - 1) >= np.array(shape)).any():
        return None
    for k, trip in enumerate(trips):
        if trip > 1 and not (np.diff(grid, axis=k) == int(coeff[:, k] @ strides)).all():
            return None
    return coeff


def _split_trips(flat: np.ndarray, shape: tuple[int, ...], trips: tuple[int, ...]) -> list[list[int]]:
    """Per loop, the trips (outermost first) of the loops it splits into so that each walks the target shape
    affinely: the innermost part is the longest affine run of the loop's offsets whose length divides its trip,
    and the rest is split again the same way (a 64-trip loop over columns of 1024 = 16 heads x 64, in steps of
    16, becomes 16 x 4). ``flat``: the tile origins' flat indices."""
    out = []
    for k, trip in enumerate(trips):
        walk = _coords(flat, np.arange(trip) * math.prod(trips[k + 1 :]), shape)
        seq = (walk - walk[:, :1]).T
        parts: list[int] = []
        while trip > 1:
            run = 2
            while run < trip and np.array_equal(seq[run], run * seq[1]):
                run += 1
            divisors = [d for d in range(2, run + 1) if trip % d == 0]
            f = divisors[-1] if divisors else trip  # no divisor: left whole, and the fit will fail
            parts.insert(0, f)
            seq = seq[::f] - seq[0]
            trip //= f
        out.append(parts or [trip])
    return out


# Memoized: the tile-order search asks about the same (immutable) types again for every move it ranks.
@functools.lru_cache(maxsize=1 << 12)
def reassociate_type(t: ITensorType, shape: tuple[int, ...]) -> ITensorType | None:
    """A type over ``shape`` streaming the same tokens as ``t``, or None.

    The result tile is the box of ``shape`` with ``t``'s tile pattern; the result offsets are fitted as an
    affine function of the loop counters. When a loop walks a dim that the reshape splits (its offsets wrap
    around a result dim), it is split into loops that each walk affinely (``_split_trips``): the token order is
    unchanged, only the iteration space is spelled with more loops. Conversely a loop that continues the walk
    of the loop inside it (two loops over the halves of a merged dim) merges with it. A projected permutation
    is kept when each result dim is walked by at most one loop (the coefficient becomes the loop's step);
    otherwise steps become 1 and the map carries the coefficients. No fit (e.g. tiles that are not boxes of
    ``shape``) gives None."""
    if math.prod(shape) != t.tensor_elements:
        return None
    pattern = tile_pattern(t.tensor_shape, t.element_shape)
    if shape:
        element = tuple(int(c) + 1 for c in np.unravel_index(int(pattern[-1]), shape))
        if not np.array_equal(tile_pattern(shape, element), pattern):
            return None
    else:
        element = ()
    flat = flat_offsets(t)
    trips, steps = tuple(t.trip_counts), list(t.steps)
    coeff = _fit(flat, shape, trips)
    if coeff is None and shape:
        parts = _split_trips(flat, shape, trips)
        trips = tuple(p for ps in parts for p in ps)
        steps = [s for ps, s in zip(parts, t.steps, strict=True) for _ in ps]
        coeff = _fit(flat, shape, trips)
    if coeff is None:
        return None
    base = _coords(flat, np.zeros(1, dtype=np.int64), shape)[:, 0]
    # Merge a loop into the loop inside it when it continues that loop's walk (e.g. kv heads x group over
    # the heads dim): the same tokens with fewer loops, as a kernel walking the merged dim spells them.
    k = len(trips) - 2
    while k >= 0:
        if np.array_equal(coeff[:, k], trips[k + 1] * coeff[:, k + 1]):
            trips = trips[:k] + (trips[k] * trips[k + 1],) + trips[k + 2 :]
            steps = steps[:k] + steps[k + 1 :]
            coeff = np.delete(coeff, k, axis=1)
        k -= 1
    loops = len(trips)
    one_loop_per_dim = (np.count_nonzero(coeff, axis=1) <= 1).all()
    one_dim_per_loop = (np.count_nonzero(coeff, axis=0) <= 1).all()
    if one_loop_per_dim and one_dim_per_loop and not base.any():
        results: list[AffineExpr] = []
        for j in range(len(shape)):
            walk = np.flatnonzero(coeff[j])
            if len(walk):
                steps[int(walk[0])] = int(coeff[j, walk[0]])
                results.append(AffineDim(int(walk[0])))
            else:
                results.append(AffineConst(0))
        return ITensorType(element, t.dtype, shape, trips, steps, AffineMap(loops, tuple(results)))
    results = []
    for j in range(len(shape)):
        expr: AffineExpr | None = None
        for k in np.flatnonzero(coeff[j]):
            term: AffineExpr = AffineDim(int(k)) if coeff[j, k] == 1 else AffineDim(int(k)) * int(coeff[j, k])
            expr = term if expr is None else expr + term
        if base[j]:
            expr = AffineConst(int(base[j])) if expr is None else expr + int(base[j])
        results.append(AffineConst(0) if expr is None else expr)
    return ITensorType(element, t.dtype, shape, trips, (1,) * loops, AffineMap(loops, tuple(results)))


# --- chunk -------------------------------------------------------------------------------------------------


def _inside(t: ITensorType, offsets: tuple[int, ...], sizes: tuple[int, ...]
            ) -> tuple[np.ndarray, np.ndarray]:
    """Per token: tile fully inside the region, tile overlapping the region."""
    lo = np.array(offsets, dtype=np.int64)
    hi = lo + np.array(sizes, dtype=np.int64)
    start = t.offsets()
    end = start + np.array(t.element_shape, dtype=np.int64)
    inside = ((start >= lo) & (end <= hi)).all(axis=1)
    overlap = ((start < hi) & (end > lo)).all(axis=1)
    return inside, overlap


def chunk_mask(t: ITensorType, offsets: tuple[int, ...], sizes: tuple[int, ...]) -> np.ndarray:
    """Tokens of ``t`` forwarded by a chunk of the region; ValueError when a tile straddles its boundary."""
    inside, overlap = _inside(t, offsets, sizes)
    straddle = overlap & ~inside
    if straddle.any():
        k = int(np.argmax(straddle))
        raise ValueError(f"token {k} of {t} (tile at {tuple(int(v) for v in t.offsets()[k])}) straddles the "
                         f"slice at {list(offsets)} of size {list(sizes)}")
    return inside


def chunk_error(source: ITensorType, offsets: tuple[int, ...], sizes: tuple[int, ...],
                result: ITensorType) -> str | None:
    """Why ``result`` is not the chunk of ``source`` at the region, or None when it is."""
    if result.tensor_shape != tuple(sizes) or result.dtype != source.dtype:
        return f"result tensor {result.tensor_shape} is not the slice shape {tuple(sizes)}"
    if result.element_shape != source.element_shape:
        return "a chunk keeps the tile shape"
    try:
        kept = chunk_mask(source, offsets, sizes)
    except ValueError as err:
        return str(err)
    rebased = source.offsets()[kept] - np.array(offsets, dtype=np.int64)
    if rebased.shape != result.offsets().shape or not np.array_equal(rebased, result.offsets()):
        return "the forwarded tokens are not the result stream in order"
    return None


def chunk_type(t: ITensorType, offsets: tuple[int, ...], sizes: tuple[int, ...]) -> ITensorType | None:
    """The chunk of a projected-permutation layout: the loop walking each sliced dim is restricted to the
    slice (the slice must start and end on tile boundaries; a loop left with one trip is dropped), or None."""
    if not t.iter_map.is_projected_permutation():
        return None
    trips = list(t.trip_counts)
    for j, (o, n) in enumerate(zip(offsets, sizes, strict=True)):
        if o == 0 and n == t.tensor_shape[j]:
            continue
        e, k = t.element_shape[j], t.iter_map.result_dim(j)
        if k is None or t.steps[k] != e or o % e or n % e:
            return None
        trips[k] = n // e
    return without_unit_loops(ITensorType(t.element_shape, t.dtype, tuple(sizes), trips, t.steps, t.iter_map))


def aligned_type(shape: tuple[int, ...], dtype: str, elements: list[tuple[int, ...]],
                 cuts: dict[int, list[int]]) -> ITensorType:
    """Row-major layout whose tiles divide every tile in ``elements`` (gcd) and start a tile at every cut
    point of ``cuts`` (dim -> boundaries): the layout every chunk/concat of those regions accepts."""
    element = []
    for j, size in enumerate(shape):
        e = size
        for other in elements:
            e = math.gcd(e, other[j])
        for cut in cuts.get(j, []):
            e = math.gcd(e, cut)
        element.append(e)
    return row_major_type(shape, tuple(element), dtype)


# --- concat ------------------------------------------------------------------------------------------------


def concat_regions(shapes: list[tuple[int, ...]], dim: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(offsets, sizes) of every input inside the concatenated tensor."""
    regions, start = [], 0
    for s in shapes:
        offsets = tuple(start if j == dim else 0 for j in range(len(s)))
        regions.append((offsets, tuple(s)))
        start += s[dim]
    return regions


def concat_sources(inputs: list[ITensorType], dim: int, result: ITensorType) -> np.ndarray:
    """Input index of every result token; ValueError unless the concat is legal (module docstring)."""
    source = np.full(result.num_tokens, -1, dtype=np.int64)
    for i, (offsets, sizes) in enumerate(concat_regions([t.tensor_shape for t in inputs], dim)):
        err = chunk_error(result, offsets, sizes, inputs[i])
        if err is not None:
            raise ValueError(f"input {i} ({inputs[i]}) is not the chunk of {result} at its region: {err}")
        source[chunk_mask(result, offsets, sizes)] = i
    if (source < 0).any():
        raise ValueError(f"token {int(np.argmax(source < 0))} of {result} lies in no input region")
    return source
