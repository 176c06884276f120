"""itensor types: stream semantics of the paper's examples, verifier messages, text form, token streams.

Property-based tests over random layouts live in test_converter_buffer.py (one generator for both)."""


import numpy as np
import pytest

from streamtensor.errors import VerificationError
from streamtensor.ir.affine import AffineMap, parse_affine_map
from streamtensor.ir.itensor import (
    ITensorType,
    ITensorVerificationError,
    assemble_tokens,
    parse_itensor_type,
    stack_tokens,
    stream_tokens,
)

# Paper examples (spec §2), all over tensor<8x8xf32>.
A = "itensor<2x2xf32, tensor 8x8, [4, 4] * [2, 2], (d0, d1) -> (d0, d1)>"
B = "itensor<4x2xf32, tensor 8x8, [4, 2] * [2, 4], (d0, d1) -> (d1, d0)>"
C = "itensor<4x2xf32, tensor 8x8, [4, 2, 2] * [2, 1, 4], (d0, d1, d2) -> (d2, d0)>"

EXPECTED_OFFSETS = {
    A: [(r, c) for r in range(0, 8, 2) for c in range(0, 8, 2)],
    B: [(0, 0), (4, 0), (0, 2), (4, 2), (0, 4), (4, 4), (0, 6), (4, 6)],
    C: [
        (0, 0), (4, 0), (0, 0), (4, 0),
        (0, 2), (4, 2), (0, 2), (4, 2),
        (0, 4), (4, 4), (0, 4), (4, 4),
        (0, 6), (4, 6), (0, 6), (4, 6),
    ],
}  # fmt: skip


def make(
    element: tuple[int, ...],
    tensor: tuple[int, ...],
    trips: tuple[int, ...],
    steps: tuple[int, ...],
    iter_map: str,
    dtype: str = "f32",
) -> ITensorType:
    return ITensorType(element, dtype, tensor, trips, steps, parse_affine_map(iter_map))


# --- paper examples ---------------------------------------------------------------------------------------


def test_paper_example_a_fields() -> None:
    a = parse_itensor_type(A)
    assert a == ITensorType((2, 2), "f32", (8, 8), (4, 4), (2, 2), AffineMap.identity(2))
    assert a.num_tokens == 16
    assert a.repeat_loops() == ()
    assert (a.token_elements, a.token_bits, a.tensor_elements) == (4, 128, 64)


@pytest.mark.parametrize("text", [A, B, C])
def test_paper_examples_stream_the_spec_offsets(text: str) -> None:
    t = parse_itensor_type(text)
    t.verify()
    assert t.offsets().tolist() == [list(o) for o in EXPECTED_OFFSETS[text]]
    assert t.num_tokens == len(EXPECTED_OFFSETS[text])


def test_paper_example_c_has_one_repeat_loop() -> None:
    c = parse_itensor_type(C)
    assert c.repeat_loops() == (1,)
    assert (c.num_tokens, c.token_elements, c.token_bits) == (16, 8, 256)


@pytest.mark.parametrize("text", [A, B, C])
def test_stream_tokens_carries_the_tiles(text: str) -> None:
    t = parse_itensor_type(text)
    x = np.arange(64, dtype=np.float32).reshape(8, 8)
    tokens = stream_tokens(t, x)
    assert len(tokens) == t.num_tokens
    er, ec = t.element_shape
    for token, (r, c) in zip(tokens, EXPECTED_OFFSETS[text], strict=True):
        np.testing.assert_array_equal(token, x[r : r + er, c : c + ec])
    np.testing.assert_array_equal(assemble_tokens(t, tokens), x)
    np.testing.assert_array_equal(assemble_tokens(t, np.stack(tokens)), x)


def test_stream_tokens_are_copies() -> None:
    x = np.zeros((8, 8))
    tokens = stream_tokens(parse_itensor_type(A), x)
    tokens[0][...] = 1.0
    assert x.sum() == 0.0


def test_assemble_rejects_disagreeing_repeated_tokens() -> None:
    c = parse_itensor_type(C)
    tokens = stream_tokens(c, np.arange(64.0).reshape(8, 8))
    tokens[3] = tokens[3] + 1.0  # token 3 repeats token 1's tile (4, 0)
    with pytest.raises(ValueError, match=r"token 3 repeats the tile at offset \(4, 0\) with different data"):
        assemble_tokens(c, tokens)


def test_assemble_treats_repeated_nans_as_equal() -> None:
    c = parse_itensor_type(C)
    x = np.full((8, 8), np.nan)
    assert np.isnan(assemble_tokens(c, stream_tokens(c, x))).all()


def test_token_stream_shape_errors() -> None:
    a = parse_itensor_type(A)
    tokens = stream_tokens(a, np.zeros((8, 8)))
    with pytest.raises(ValueError, match="expected 16 tokens, got 15"):
        assemble_tokens(a, tokens[:-1])
    with pytest.raises(ValueError, match=r"tokens must have shape \(2, 2\)"):
        stack_tokens(a, [*tokens[:-1], np.zeros((2, 3))])
    with pytest.raises(ValueError, match=r"expected a token stream of shape \(16, 2, 2\), got \(16, 4\)"):
        stack_tokens(a, np.zeros((16, 4)))
    with pytest.raises(ValueError, match=r"tensor has shape \(8, 4\), expected \(8, 8\)"):
        stream_tokens(a, np.zeros((8, 4)))


def test_compound_map_streams_and_verifies() -> None:
    # dim 0 split over two loops: tile row = 4 * n0 + 2 * n1 (not a projected permutation).
    t = make((2, 3), (8, 3), (2, 2), (4, 2), "(d0, d1) -> (d0 + d1, 0)")
    t.verify()
    assert t.offsets().tolist() == [[0, 0], [2, 0], [4, 0], [6, 0]]


def test_rank0_type() -> None:
    t = make((), (), (3,), (1,), "(d0) -> ()", dtype="i8")
    t.verify()
    assert str(t) == "itensor<i8, tensor scalar, [3] * [1], (d0) -> ()>"
    assert parse_itensor_type(str(t)) == t
    assert t.offsets().shape == (3, 0)
    tokens = stream_tokens(t, np.array(7, dtype=np.int8))
    assert [int(tok) for tok in tokens] == [7, 7, 7]
    assert assemble_tokens(t, tokens) == 7


def test_zero_loop_type_is_one_token() -> None:
    t = make((4,), (4,), (), (), "() -> (0)")
    t.verify()
    assert t.num_tokens == 1
    assert t.offsets().tolist() == [[0]]
    assert parse_itensor_type(str(t)) == t


def test_offsets_of_1e5_tokens() -> None:
    t = make((4, 1), (400, 1000), (1000, 100), (1, 4), "(d0, d1) -> (d1, d0)")
    t.verify()
    offsets = t.offsets()
    assert offsets.shape == (100_000, 2)
    assert offsets[:3].tolist() == [[0, 0], [4, 0], [8, 0]]
    assert offsets[-1].tolist() == [396, 999]
    x = np.arange(400_000, dtype=np.float32).reshape(400, 1000)
    np.testing.assert_array_equal(assemble_tokens(t, stream_tokens(t, x)), x)


def test_offsets_are_read_only() -> None:
    offsets = parse_itensor_type(A).offsets()
    with pytest.raises(ValueError):
        offsets[0, 0] = 1


# --- verifier: one test per message -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "itensor<2x2xq4, tensor 8x8, [4, 4] * [2, 2], (d0, d1) -> (d0, d1)>",
            "unknown dtype 'q4'",
        ),
        (
            "itensor<2xf32, tensor 8x8, [4, 4] * [2, 2], (d0, d1) -> (d0, d1)>",
            "element rank 1 does not match tensor rank 2",
        ),
        (
            "itensor<2x2xf32, tensor 8x8, [4, 4] * [2, 2], (d0, d1) -> (d0)>",
            "iteration map has 1 results but the tensor has rank 2",
        ),
        (
            "itensor<2x2xf32, tensor 8x8, [4, 4] * [2], (d0, d1) -> (d0, d1)>",
            "2 trip counts but 1 steps",
        ),
        (
            "itensor<2x2xf32, tensor 8x8, [4, 4] * [2, 2], (d0, d1, d2) -> (d0, d1)>",
            "iteration map has 3 dims but the iteration space has 2 loops",
        ),
        (
            "itensor<2x0xf32, tensor 8x8, [4, 4] * [2, 2], (d0, d1) -> (d0, d1)>",
            "element size 0 at position 1 must be positive",
        ),
        (
            "itensor<2x2xf32, tensor -8x8, [4, 4] * [2, 2], (d0, d1) -> (d0, d1)>",
            "tensor size -8 at position 0 must be positive",
        ),
        (
            "itensor<2x2xf32, tensor 8x8, [4, 0] * [2, 2], (d0, d1) -> (d0, d1)>",
            "trip count 0 at position 1 must be positive",
        ),
        (
            "itensor<2x2xf32, tensor 8x8, [4, 4] * [0, 2], (d0, d1) -> (d0, d1)>",
            "step 0 at position 0 must be positive",
        ),
        (
            "itensor<2x2xf32, tensor 8x8, [5, 4] * [2, 2], (d0, d1) -> (d0, d1)>",
            r"token 16 at offset \(8, 0\) carries a 2x2 tile outside the 8x8 tensor",
        ),
        (
            "itensor<2x2xf32, tensor 8x8, [4, 4] * [2, 2], (d0, d1) -> (d0 + 6, d1)>",
            r"token 4 at offset \(8, 0\) carries a 2x2 tile outside the 8x8 tensor",
        ),
        (
            "itensor<3x2xf32, tensor 8x8, [4, 4] * [2, 2], (d0, d1) -> (d0, d1)>",
            r"token 12 at offset \(6, 0\) carries a 3x2 tile outside the 8x8 tensor",
        ),
        (
            "itensor<2x2xf32, tensor 8x8, [3, 4] * [2, 2], (d0, d1) -> (d0, d1)>",
            r"element \(6, 0\) is covered by no tile",
        ),
        (
            "itensor<2x2xf32, tensor 8x8, [4, 4] * [2, 2], (d0, d1) -> (d0, 0)>",
            r"element \(0, 2\) is covered by no tile",
        ),
        (
            "itensor<2x2xf32, tensor 8x8, [4, 4] * [1, 2], (d0, d1) -> (d0, d1)>",
            r"tiles of iteration points \(0, 0\) and \(1, 0\) overlap at element \(1, 0\)",
        ),
        (
            "itensor<2xf32, tensor 8, [3, 2] * [2, 2], (d0, d1) -> (d0 + d1)>",
            r"tiles of iteration points \(0, 1\) and \(1, 0\) overlap at element \(2,\)",
        ),
        (
            "itensor<2x8xf32, tensor 8x8, [4, 2, 2] * [2, 1, 1], (d0, d1, d2) -> (d0, d2 * 0)>",
            r"tiles of iteration points \(0, 0, 0\) and \(0, 0, 1\) overlap at element \(0, 0\)",
        ),
    ],
)
def test_verifier_messages(text: str, message: str) -> None:
    t = parse_itensor_type(text)
    with pytest.raises(ITensorVerificationError, match=message) as info:
        t.verify()
    assert str(info.value).startswith(str(t))  # the message names the offending type
    assert isinstance(info.value, ValueError) and isinstance(info.value, VerificationError)


def test_repeat_loops_may_restream_tiles() -> None:
    # Repeat loops anywhere, any step: only non-repeat points must tile the tensor.
    make((2, 2), (8, 8), (3, 4, 2, 4), (7, 2, 5, 2), "(d0, d1, d2, d3) -> (d1, d3)").verify()


# --- text form --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        A,
        B,
        C,
        "itensor<16x16xi8, tensor 64x64, [4, 4, 4] * [16, 16, 16], (d0, d1, d2) -> (d0, d2)>",
        "itensor<1xi1, tensor 8, [2, 4] * [4, 1], (d0, d1) -> (d0 + d1)>",
        "itensor<2x8xbf16, tensor 8x8, [4] * [2], (d0) -> (d0, 0)>",
        "itensor<f16, tensor scalar, [] * [], () -> ()>",
        "itensor<4xi64, tensor 16, [2, 2] * [8, 4], (d0, d1) -> ((d0 + d1) floordiv 2 * 2)>",
    ],
)
def test_text_round_trip(text: str) -> None:
    t = parse_itensor_type(text)
    assert str(t) == text
    assert parse_itensor_type(str(t)) == t


def test_parse_accepts_loose_spacing_and_prints_canonically() -> None:
    t = parse_itensor_type("  itensor<4x2xf32,tensor  8x8,[4,2]*[2,4],(d0,d1)->(d1,d0)>  ")
    assert str(t) == B


def test_invalid_types_print_and_parse_back() -> None:
    # Unverified types round-trip too, so verifier messages can quote them.
    t = make((2, 0), (-8, 8), (4, 4), (2, 2), "(d0, d1) -> (d0, d1)", dtype="q7")
    assert parse_itensor_type(str(t)) == t


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tensor<8x8xf32>", "expected 'itensor<...>'"),
        ("itensor<2x2xf32, [4, 4] * [2, 2], (d0, d1) -> (d0, d1)>", "expected 4 comma-separated parts"),
        ("itensor<2x2, tensor 8x8, [4, 4] * [2, 2], (d0, d1) -> (d0, d1)>", "bad element type '2x2'"),
        ("itensor<2x2xf32, tensor 8y8, [4, 4] * [2, 2], (d0, d1) -> (d0, d1)>", "bad tensor shape"),
        ("itensor<2x2xf32, tensor 8x8, [4, 4], (d0, d1) -> (d0, d1)>", "bad iteration space"),
        ("itensor<2x2xf32, tensor 8x8, [4, x] * [2, 2], (d0, d1) -> (d0, d1)>", "bad itensor type"),
        ("itensor<2x2xf32, tensor 8x8, [4, 4] * [2, 2], (d0, d1) -> (d0, d2)>", "d2 out of range"),
    ],
)
def test_parse_errors_quote_the_text(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_itensor_type(text)
    assert repr(text) in str(info.value)
