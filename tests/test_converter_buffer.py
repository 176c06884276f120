"""Converter buffer inference (spec §2.1), its proof by simulation, and property tests of random layouts."""

import functools
import math
import operator
from dataclasses import dataclass, replace

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import streamtensor.interp.converter_exec as converter_exec
from streamtensor.interp.converter_exec import ConverterBufferError, run_converter
from streamtensor.ir.affine import AffineConst, AffineDim, AffineExpr, AffineMap
from streamtensor.ir.converter_buffer import ConverterBuffer, infer_converter_buffer, needs_converter, shared_loop_dims
from streamtensor.ir.itensor import (
    ITensorType,
    ITensorVerificationError,
    assemble_tokens,
    parse_itensor_type,
    stream_tokens,
)

A = parse_itensor_type("itensor<2x2xf32, tensor 8x8, [4, 4] * [2, 2], (d0, d1) -> (d0, d1)>")
B = parse_itensor_type("itensor<4x2xf32, tensor 8x8, [4, 2] * [2, 4], (d0, d1) -> (d1, d0)>")
C = parse_itensor_type("itensor<4x2xf32, tensor 8x8, [4, 2, 2] * [2, 1, 4], (d0, d1, d2) -> (d2, d0)>")
SRC64 = parse_itensor_type("itensor<16x16xf32, tensor 64x64, [4, 4] * [16, 16], (d0, d1) -> (d0, d1)>")
RES64 = parse_itensor_type(
    "itensor<16x16xf32, tensor 64x64, [4, 4, 4] * [16, 16, 16], (d0, d1, d2) -> (d0, d2)>"
)
X8 = np.arange(64, dtype=np.float32).reshape(8, 8)
X64 = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)


def assert_streams_equal(got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)


# --- paper examples ---------------------------------------------------------------------------------------


def test_paper_b_to_c_buffer() -> None:
    buf = infer_converter_buffer(B, C)
    assert (buf.shape, buf.shared_loops, buf.direct) == ((8, 2), 1, False)
    assert (buf.banks, buf.elements, buf.bytes) == (2, 32, 128)  # ping-pong: 2 x 8 x 2 f32


def test_a_single_shared_iteration_needs_one_bank() -> None:
    # Nothing shared (or shared loops of one trip): the window is filled once and drained once per run, so
    # the second ping-pong bank would never be written.
    whole = infer_converter_buffer(A, B)
    assert (whole.shape, whole.shared_loops, whole.banks) == ((8, 8), 0, 1)
    assert (whole.elements, whole.bytes) == (64, 256)
    rows = parse_itensor_type("itensor<1x2x2xf32, tensor 1x4x8, [1, 2, 4] * [1, 2, 2], (d0, d1, d2) -> (d0, d1, d2)>")
    cols = parse_itensor_type("itensor<1x2x2xf32, tensor 1x4x8, [1, 4, 2] * [1, 2, 2], (d0, d1, d2) -> (d0, d2, d1)>")
    buf = infer_converter_buffer(rows, cols)  # loop 0 is shared, but it has one trip
    assert (buf.shape, buf.shared_loops, buf.banks) == ((1, 4, 8), 1, 1)
    x = np.arange(32, dtype=np.float32).reshape(1, 4, 8)
    assert_streams_equal(run_converter(rows, cols, stream_tokens(rows, x)), stream_tokens(cols, x))


def test_paper_64x64_buffer_is_4x_smaller_than_the_tensor() -> None:
    buf = infer_converter_buffer(SRC64, RES64)
    assert (buf.shape, buf.shared_loops) == ((16, 64), 1)
    assert buf.elements == 2 * 16 * 64
    assert math.prod(buf.shape) * 4 == SRC64.tensor_elements


@pytest.mark.parametrize(
    ("source", "result", "shape", "shared"),
    [
        (B, C, (8, 2), 1),
        (C, B, (8, 2), 1),
        (A, B, (8, 8), 0),  # loop 0 walks rows in (a), columns in (b): nothing shared, whole tensor
        (A, C, (8, 8), 0),
        (B, A, (8, 8), 0),
        (C, A, (8, 8), 0),
        (SRC64, RES64, (16, 64), 1),
        (RES64, SRC64, (16, 64), 1),
    ],
)
def test_paper_pairs_buffer_and_simulation(
    source: ITensorType, result: ITensorType, shape: tuple[int, ...], shared: int
) -> None:
    buf = infer_converter_buffer(source, result)
    assert (buf.shape, buf.shared_loops) == (shape, shared)
    x = X8 if source.tensor_shape == (8, 8) else X64
    assert_streams_equal(run_converter(source, result, stream_tokens(source, x)), stream_tokens(result, x))


def test_equal_types_need_no_converter() -> None:
    assert not needs_converter(C, parse_itensor_type(str(C)))
    assert needs_converter(B, C)
    buf = infer_converter_buffer(C, C)
    assert buf == ConverterBuffer((0, 0), 3, "f32", direct=True)
    assert (buf.elements, buf.bytes) == (0, 0)
    tokens = stream_tokens(C, X8)
    out = run_converter(C, C, tokens)
    assert_streams_equal(out, tokens)
    assert out[0] is not tokens[0]


def test_rank0_direct_buffer_is_empty() -> None:
    t = parse_itensor_type("itensor<i1, tensor scalar, [2] * [1], (d0) -> ()>")
    buf = infer_converter_buffer(t, t)
    assert (buf.shape, buf.elements, buf.bytes) == ((), 0, 0)


def test_repeat_loops_of_both_sides_are_shared_whatever_their_step() -> None:
    # A repeat loop's step never reaches an offset, so differing steps do not prevent sharing.
    src = parse_itensor_type("itensor<4x2xf32, tensor 8x8, [3, 4, 2] * [1, 2, 4], (d0, d1, d2) -> (d2, d1)>")
    res = parse_itensor_type("itensor<2x2xf32, tensor 8x8, [3, 4, 4] * [5, 2, 2], (d0, d1, d2) -> (d2, d1)>")
    buf = infer_converter_buffer(src, res)
    assert (buf.shape, buf.shared_loops) == ((8, 2), 2)
    assert_streams_equal(run_converter(src, res, stream_tokens(src, X8)), stream_tokens(res, X8))


def test_loop_also_feeding_a_compound_result_is_shared() -> None:
    # d0 walks dim 0 exactly and also permutes dim 1's tiles: each shared iteration still streams its whole
    # 4x8 window, only in another order.
    rotated = parse_itensor_type(
        "itensor<4x4xf32, tensor 8x8, [2, 2] * [4, 4], (d0, d1) -> (d0, (d1 + d0) mod 8)>"
    )
    plain = parse_itensor_type("itensor<4x4xf32, tensor 8x8, [2, 2] * [4, 4], (d0, d1) -> (d0, d1)>")
    assert rotated.offsets().tolist() == [[0, 0], [0, 4], [4, 4], [4, 0]]
    buf = infer_converter_buffer(rotated, plain)
    assert (buf.shape, buf.shared_loops) == ((4, 8), 1)
    assert_streams_equal(run_converter(rotated, plain, stream_tokens(rotated, X8)), stream_tokens(plain, X8))


def test_loop_feeding_only_compound_results_is_not_shared() -> None:
    # Loop 0 walks no dim exactly on either side, but it is no repeat loop: it moves rows in one layout and
    # columns in the other, so materializing it around the converter would be wrong.
    rows = parse_itensor_type("itensor<2x8xf32, tensor 8x8, [2, 2] * [4, 2], (d0, d1) -> (d0 + d1, 0)>")
    cols = parse_itensor_type("itensor<8x2xf32, tensor 8x8, [2, 2] * [4, 2], (d0, d1) -> (0, d0 + d1)>")
    buf = infer_converter_buffer(rows, cols)
    assert (buf.shape, buf.shared_loops) == ((8, 8), 0)
    assert_streams_equal(run_converter(rows, cols, stream_tokens(rows, X8)), stream_tokens(cols, X8))
    with pytest.raises(ConverterBufferError, match="loop 0 is not shared"):
        run_converter(rows, cols, stream_tokens(rows, X8), ConverterBuffer((8, 8), 1, "f32"))


def test_large_stream_converter() -> None:
    # 1e5 tokens, nothing shared: one window over the whole tensor.
    src = parse_itensor_type("itensor<1x4xf32, tensor 400x1000, [400, 250] * [1, 4], (d0, d1) -> (d0, d1)>")
    res = parse_itensor_type("itensor<4x1xf32, tensor 400x1000, [1000, 100] * [1, 4], (d0, d1) -> (d1, d0)>")
    x = np.arange(400_000, dtype=np.float32).reshape(400, 1000)
    out = run_converter(src, res, np.stack(stream_tokens(src, x)))
    np.testing.assert_array_equal(np.stack(out), np.stack(stream_tokens(res, x)))


# --- errors -----------------------------------------------------------------------------------------------


def test_different_tensors_cannot_be_converted() -> None:
    other_shape = parse_itensor_type("itensor<4x2xf32, tensor 8x4, [2, 2] * [2, 4], (d0, d1) -> (d1, d0)>")
    with pytest.raises(ValueError, match="same tensor shape and dtype") as info:
        infer_converter_buffer(B, other_shape)
    assert str(B) in str(info.value) and str(other_shape) in str(info.value)
    other_dtype = parse_itensor_type(str(C).replace("f32", "f16"))
    with pytest.raises(ValueError, match=r"source itensor<4x2xf32.*result itensor<4x2xf16"):
        infer_converter_buffer(B, other_dtype)


def test_invalid_types_are_rejected() -> None:
    holey = parse_itensor_type("itensor<4x2xf32, tensor 8x8, [3, 2] * [2, 4], (d0, d1) -> (d1, d0)>")
    with pytest.raises(ITensorVerificationError, match="covered by no tile"):
        infer_converter_buffer(holey, C)


def test_the_memoized_inference_answers_like_a_fresh_one_and_rejects_bad_types_every_time() -> None:
    # The inference is memoized (the tile-order search asks the same pairs again): a repeated question gets
    # the first answer, equal to one computed afresh; a rejected pair is not remembered as an answer.
    first = infer_converter_buffer(B, C)
    assert infer_converter_buffer(B, C) is first
    assert first == infer_converter_buffer.__wrapped__(B, C)
    holey = parse_itensor_type("itensor<4x2xf32, tensor 8x8, [3, 2] * [2, 4], (d0, d1) -> (d1, d0)>")
    for _ in range(2):
        with pytest.raises(ITensorVerificationError, match="covered by no tile"):
            infer_converter_buffer(holey, C)
    assert infer_converter_buffer(holey, C, checked=False) == infer_converter_buffer.__wrapped__(holey, C, False)


@pytest.mark.parametrize(
    ("source", "result", "shrunk", "x"),
    [
        (B, C, (4, 2), X8),
        (B, C, (8, 1), X8),
        (C, B, (7, 2), X8),
        (SRC64, RES64, (8, 64), X64),
        (SRC64, RES64, (16, 32), X64),
        (A, B, (8, 4), X8),
    ],
)
def test_shrunk_paper_buffers_fail(
    source: ITensorType, result: ITensorType, shrunk: tuple[int, ...], x: np.ndarray
) -> None:
    inferred = infer_converter_buffer(source, result)
    buf = ConverterBuffer(shrunk, inferred.shared_loops, inferred.dtype)
    with pytest.raises(ConverterBufferError, match=r"source token \d+ .* falls outside the .* buffer window"):
        run_converter(source, result, stream_tokens(source, x), buf)


def test_buffer_claiming_an_unshared_loop_fails() -> None:
    with pytest.raises(ConverterBufferError, match="loop 1 is not shared"):
        run_converter(B, C, stream_tokens(B, X8), ConverterBuffer((4, 2), 2, "f32"))
    with pytest.raises(ConverterBufferError, match="does not match the rank"):
        run_converter(B, C, stream_tokens(B, X8), ConverterBuffer((8,), 0, "f32"))
    with pytest.raises(ConverterBufferError, match="direct buffer between different types"):
        run_converter(B, C, stream_tokens(B, X8), ConverterBuffer((0, 0), 2, "f32", direct=True))


def test_reading_unwritten_data_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend loop 0 of (a) -> (b) were a shared repeat loop: iteration 0 then writes (a)'s first tile row
    # (rows 0-1) while (b)'s first tokens read 4x2 tiles of rows 0-3 from the same window.
    monkeypatch.setattr(converter_exec, "shared_loop_dims", lambda source, result, loop: ())
    with pytest.raises(ConverterBufferError, match=r"result token 0 reads element \(2, 0\), not written"):
        run_converter(A, B, stream_tokens(A, X8), ConverterBuffer((8, 8), 1, "f32"))


def test_wrong_token_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="expected 8 tokens, got 7"):
        run_converter(B, C, stream_tokens(B, X8)[:-1])


# --- random layouts (hypothesis) --------------------------------------------------------------------------

SIZES = (1, 2, 3, 4, 6, 8, 12)


@dataclass(frozen=True)
class Loop:
    dim: int | None  # data dim it walks; None for a repeat loop
    trip: int
    step: int


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def build(shape: tuple[int, ...], element: tuple[int, ...], loops: list[Loop]) -> ITensorType:
    """Map result of a dim: the sum of the loops walking it (d_l when one, d_a + d_b when split), else 0."""
    results: list[AffineExpr] = []
    for j in range(len(shape)):
        walking: list[AffineExpr] = [AffineDim(i) for i, loop in enumerate(loops) if loop.dim == j]
        results.append(functools.reduce(operator.add, walking) if walking else AffineConst(0))
    return ITensorType(
        element,
        "f32",
        shape,
        tuple(loop.trip for loop in loops),
        tuple(loop.step for loop in loops),
        AffineMap(len(loops), tuple(results)),
    )


@st.composite
def dim_loops(draw: st.DrawFn, dim: int, size: int, element: int) -> list[Loop]:
    """Loops that walk the tiles of one dim: one loop, a split into outer and inner loop, or none."""
    tiles = size // element
    if tiles == 1:
        return draw(st.sampled_from([[], [Loop(dim, 1, element)]]))
    splits = [f for f in divisors(tiles) if 1 < f < tiles]
    if splits and draw(st.booleans()):
        outer = draw(st.sampled_from(splits))
        return [Loop(dim, outer, element * (tiles // outer)), Loop(dim, tiles // outer, element)]
    return [Loop(dim, tiles, element)]


@st.composite
def layout_parts(
    draw: st.DrawFn, shape: tuple[int, ...], fixed: dict[int, int]
) -> tuple[tuple[int, ...], list[Loop]]:
    """Element shape and loop nest (random order, random repeat loops with random steps) for the dims not in
    ``fixed`` (dim -> element size; those dims are walked elsewhere)."""
    element = tuple(fixed.get(j) or draw(st.sampled_from(divisors(size))) for j, size in enumerate(shape))
    walking = [
        loop for j in range(len(shape)) if j not in fixed for loop in draw(dim_loops(j, shape[j], element[j]))
    ]
    loops = list(draw(st.permutations(walking)))
    for _ in range(draw(st.integers(0, 2))):
        repeat = Loop(None, draw(st.integers(1, 3)), draw(st.integers(1, 5)))
        loops.insert(draw(st.integers(0, len(loops))), repeat)
    return element, loops


shapes = (
    st.lists(st.sampled_from(SIZES), min_size=1, max_size=3).map(tuple).filter(lambda s: math.prod(s) <= 300)
)


@st.composite
def layouts(draw: st.DrawFn) -> ITensorType:
    shape = draw(shapes)
    return build(shape, *draw(layout_parts(shape, {})))


@dataclass(frozen=True)
class Pair:
    source: ITensorType
    result: ITensorType
    min_shared: int  # leading copied loops that repeat or walk one dim exactly: surely shared
    shrinks: bool  # one of those loops walks several tiles: the buffer must be smaller than the tensor


@st.composite
def pairs(draw: st.DrawFn, force_shrink: bool = False) -> Pair:
    """A source layout and a result over the same tensor that copies the source's first k loops (k chosen
    so no dim is walked both inside and outside the copied prefix) and lays out the rest afresh."""
    shape = draw(shapes)
    element, loops = draw(layout_parts(shape, {}))
    walked = [loop.dim for loop in loops if loop.dim is not None]
    split_dims = {dim for dim in walked if walked.count(dim) > 1}
    if force_shrink:
        # Move one single-loop, multi-tile walking loop outermost so the copied prefix can contain it.
        candidates = [i for i, lp in enumerate(loops) if lp.trip > 1 and lp.dim not in (None, *split_dims)]
        assume(candidates)
        loops.insert(0, loops.pop(draw(st.sampled_from(candidates))))
    cuts = [
        k
        for k in range(len(loops) + 1)
        if {loop.dim for loop in loops[:k]}.isdisjoint({loop.dim for loop in loops[k:]} - {None})
    ]
    k = draw(st.sampled_from([c for c in cuts if c > 0] if force_shrink else cuts))
    prefix = loops[:k]
    fixed = {loop.dim: element[loop.dim] for loop in prefix if loop.dim is not None}
    result_element, suffix = draw(layout_parts(shape, fixed))
    exact = [loop.dim not in split_dims for loop in prefix] + [False]
    min_shared = exact.index(False)
    shrinks = any(loop.trip > 1 and loop.dim is not None for loop in prefix[:min_shared])
    result = build(shape, result_element, prefix + suffix)
    return Pair(build(shape, element, loops), result, min_shared, shrinks)


def expected_tensor(t: ITensorType) -> np.ndarray:
    return np.arange(t.tensor_elements, dtype=np.float32).reshape(t.tensor_shape)


@settings(max_examples=150, deadline=None)
@given(layouts())
def test_random_layouts_verify_and_round_trip(t: ITensorType) -> None:
    t.verify()
    assert parse_itensor_type(str(t)) == t
    # Vectorized offsets agree with evaluating the map token by token.
    counters = np.ndindex(*t.trip_counts)
    reference = [t.iter_map.evaluate(tuple(n * s for n, s in zip(c, t.steps, strict=True))) for c in counters]
    assert t.offsets().tolist() == [list(o) for o in reference]
    x = expected_tensor(t)
    tokens = stream_tokens(t, x)
    assert len(tokens) == t.num_tokens
    np.testing.assert_array_equal(assemble_tokens(t, tokens), x)


def with_plus_zero(t: ITensorType) -> ITensorType:
    """Same layout with every result written ``e + 0``: no longer a projected permutation, so verify() takes
    its exhaustive path."""
    return replace(t, iter_map=AffineMap(t.num_loops, tuple(r + 0 for r in t.iter_map.results)))


def verdict(t: ITensorType) -> str:
    try:
        t.verify()
    except ITensorVerificationError as err:
        return str(err).split(">: ", 1)[1].split(" ")[0]  # first word of the message: token / element / tiles
    return "ok"


@settings(max_examples=150, deadline=None)
@given(layouts(), st.data())
def test_random_layout_mutations_are_caught(t: ITensorType, data: st.DataObject) -> None:
    assert verdict(with_plus_zero(t)) == "ok"
    walking = [i for i in sorted(t.iter_map.used_dims()) if t.trip_counts[i] > 1]
    assume(walking)
    loop = data.draw(st.sampled_from(walking))
    fewer = list(t.trip_counts)
    fewer[loop] -= 1
    holey = replace(t, trip_counts=tuple(fewer))
    with pytest.raises(ITensorVerificationError, match="is covered by no tile"):
        holey.verify()
    shorter = list(t.steps)
    shorter[loop] -= 1
    assume(shorter[loop] > 0)
    packed = replace(t, steps=tuple(shorter))
    # The fast product check and the exhaustive check agree on every mutated layout.
    for mutant in (holey, packed):
        assert verdict(mutant) != "ok"
        assert verdict(with_plus_zero(mutant)) == verdict(mutant)


def check_pair(pair: Pair) -> None:
    source, result = pair.source, pair.result
    source.verify()
    result.verify()
    buf = infer_converter_buffer(source, result)
    x = expected_tensor(source)
    tokens = stream_tokens(source, x)
    assert_streams_equal(run_converter(source, result, tokens, buf), stream_tokens(result, x))
    if buf.direct:
        assert source == result
        return
    assert buf.shared_loops >= pair.min_shared
    # The loop signatures the inference compares share exactly the loops ``shared_loop_dims`` shares one by one.
    scan = 0
    while shared_loop_dims(source, result, scan) is not None:
        scan += 1
    assert buf.shared_loops == scan
    assert math.prod(buf.shape) <= source.tensor_elements
    if pair.shrinks:
        assert math.prod(buf.shape) < source.tensor_elements
    # Each shared iteration fills its whole window, so no dim of the buffer can be any smaller.
    for j, size in enumerate(buf.shape):
        if size > 1:
            shrunk = replace(buf, shape=buf.shape[:j] + (size // 2,) + buf.shape[j + 1 :])
            with pytest.raises(ConverterBufferError):
                run_converter(source, result, tokens, shrunk)


@settings(max_examples=300, deadline=None)
@given(pairs())
def test_random_pairs_convert_through_the_inferred_buffer(pair: Pair) -> None:
    check_pair(pair)


@settings(max_examples=150, deadline=None)
@given(pairs(force_shrink=True))
def test_random_pairs_sharing_outer_loops_shrink_the_buffer(pair: Pair) -> None:
    assert pair.shrinks
    check_pair(pair)
