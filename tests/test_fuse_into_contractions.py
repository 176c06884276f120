"""Fusing a multi-use elementwise kernel into the contractions that read it: IR in and out, bit-identical
results, the uses and inputs that forbid it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from linalg_builders import build, check_exec, empty, fill, graph, matmul, unary, value

from streamtensor.interp.linalg_interpreter import run_graph
from streamtensor.ir.affine import parse_affine_map
from streamtensor.ir.linalg import GenericOp, Graph, Op, ScalarBody, ScalarOp, Value, print_graph
from streamtensor.ir.linalg_parser import parse_graph
from streamtensor.transforms.fuse_into_contractions import (
    fuse_elementwise_into_contractions,
    hoist_recomputed_prologues,
)


def _sum_of_squares(x: Value) -> list[Op]:
    e = empty("e_s", x.type.shape[0])
    body = ScalarBody((("a", "f32"), ("acc", "f32")), (ScalarOp("sq", "arith.mulf", ("a", "a"), "f32"),
                                                       ScalarOp("t", "arith.addf", ("acc", "sq"), "f32")), ("t",))
    s = GenericOp([value("s", x.type.shape[0])], "reduce_sum_1", [x], [e.results[0]],
                  [parse_affine_map("(d0, d1) -> (d0, d1)"), parse_affine_map("(d0, d1) -> (d0)")],
                  ["parallel", "reduction"], body)
    return [e, s]


# The statistic as the scale reads it: s itself, rsqrt(s / 8 + eps) (an RMSNorm), or s with x replaced by exp(x).
_STATISTIC = {
    "plain": (),
    "rsqrt": (ScalarOp("c8", "arith.constant", (), "f32", (("value", 8.0),)),
              ScalarOp("m", "arith.divf", ("r", "c8"), "f32"),
              ScalarOp("eps", "arith.constant", (), "f32", (("value", 1e-6),)),
              ScalarOp("v", "arith.addf", ("m", "eps"), "f32"), ScalarOp("rs", "math.rsqrt", ("v",), "f32")),
    "exp": (ScalarOp("ex", "math.exp", ("a",), "f32"),),
}


def _scale(x: Value, s: Value, w: Value, statistic: str = "plain") -> list[Op]:
    """n = x * s[row] * w[col] (w a vector) or w[row, col]: the shape of an RMSNorm's last step."""
    e = empty("e_n", *x.type.shape)
    ops = _STATISTIC[statistic]
    a = "ex" if statistic == "exp" else "a"
    r = "rs" if statistic == "rsqrt" else "r"
    body = ScalarBody((("a", "f32"), ("r", "f32"), ("g", "f32"), ("o", "f32")),
                      (*ops, ScalarOp("p", "arith.mulf", (a, r), "f32"),
                       ScalarOp("q", "arith.mulf", ("p", "g"), "f32")), ("q",))
    w_map = "(d0, d1) -> (d1)" if len(w.type.shape) == 1 else "(d0, d1) -> (d0, d1)"
    maps = [parse_affine_map(t) for t in ("(d0, d1) -> (d0, d1)", "(d0, d1) -> (d0)", w_map,
                                          "(d0, d1) -> (d0, d1)")]
    return [e, GenericOp([value("n", *x.type.shape)], "scale_1", [x, s, w], [e.results[0]], maps,
                         ["parallel", "parallel"], body)]


def norm_then_two_projections(x_from_kernel: bool = False, extra_use: bool = False,
                              n_is_output: bool = False, statistic: str = "plain") -> Graph:
    """x (4x8) -> row sum of squares s -> n = x * s * w -> n @ w1 and n @ w2 (8x6 each)."""
    x_in, w, w1, w2 = value("x", 4, 8), value("w", 8), value("w1", 8, 6), value("w2", 8, 6)
    ops: list[Op] = []
    x = x_in
    if x_from_kernel:  # x itself an intermediate, and the scale reads a second intermediate (-x)
        ops += [empty("e_x", 4, 8), empty("e_m", 4, 8)]
        ops.append(unary("xe", x_in, ops[0].results[0], "exp_1", "(d0, d1) -> (d0, d1)", "math.exp"))
        ops.append(unary("xm", x_in, ops[1].results[0], "neg_1", "(d0, d1) -> (d0, d1)"))
        x = ops[2].results[0]
    ops += _sum_of_squares(x)
    s = ops[-1].results[0]
    ops += _scale(x, s, ops[3].results[0] if x_from_kernel else w, statistic)
    n = ops[-1].results[0]
    ops += [empty("e_y", 4, 6)]
    ops.append(fill("z", ops[-1].results[0], "fill_1"))
    z = ops[-1].results[0]
    ops += [matmul("y1", n, w1, z, "matmul_1"), matmul("y2", n, w2, z, "matmul_2")]
    outputs = [ops[-2].results[0], ops[-1].results[0]]
    if extra_use:
        ops += [empty("e_k", 4, 8)]
        ops.append(unary("k", n, ops[-1].results[0], "neg_2", "(d0, d1) -> (d0, d1)"))
        outputs.append(ops[-1].results[0])
    if n_is_output:
        outputs.append(n)
    inputs = [x_in, w1, w2] if x_from_kernel else [x_in, w, w1, w2]
    return graph(inputs, ops, outputs)


def _run(g: Graph, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return run_graph(g, [rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs])


def test_the_scale_moves_into_both_projections_bit_identically() -> None:
    g = norm_then_two_projections()
    fused = fuse_elementwise_into_contractions(g)
    text = print_graph(fused)
    assert "@scale_1" not in text and "%e_n" not in text
    mm = {op.name: op for op in fused.ops if isinstance(op, GenericOp)}
    for name, weight in (("matmul_1", "w1"), ("matmul_2", "w2")):
        op = mm[name]
        # n's place goes to the scale's inputs, read through n's map (d0, d2): x by (d0, d2), s by row, w by k.
        assert [v.name for v in op.inputs] == [weight, "x", "s", "w"]
        assert [str(m) for m in op.indexing_maps] == ["(d0, d1, d2) -> (d2, d1)", "(d0, d1, d2) -> (d0, d2)",
                                                      "(d0, d1, d2) -> (d0)", "(d0, d1, d2) -> (d2)",
                                                      "(d0, d1, d2) -> (d0, d1)"]
        assert op.body.op_names() == ["arith.mulf", "arith.mulf", "arith.mulf", "arith.addf"]
    for got, want in zip(_run(fused), _run(g), strict=True):
        assert np.array_equal(got, want)  # the same scalar ops on the same operands
    check_exec(fused, build(fused, 4))


def test_an_rsqrt_of_the_row_statistic_is_hoisted_and_only_the_scaling_fused() -> None:
    """x * rsqrt(s / 8 + eps) * w: the division and rsqrt vary with the row only; they become a generic over the
    rows (computed once per row) that both projections read broadcast, and the multiplies fuse."""
    g = norm_then_two_projections(statistic="rsqrt")
    fused = fuse_elementwise_into_contractions(g)
    generics = {op.name: op for op in fused.ops if isinstance(op, GenericOp)}
    hoisted = generics["scale_1"]
    assert [v.name for v in hoisted.inputs] == ["s"] and hoisted.results[0].type.shape == (4,)
    assert [str(m) for m in hoisted.indexing_maps] == ["(d0) -> (d0)", "(d0) -> (d0)"]
    assert hoisted.body.op_names() == ["arith.constant", "arith.divf", "arith.constant", "arith.addf",
                                       "math.rsqrt"]
    r = hoisted.results[0].name
    for name, weight in (("matmul_1", "w1"), ("matmul_2", "w2")):
        op = generics[name]
        assert [v.name for v in op.inputs] == [weight, "x", "w", r]
        assert [str(m) for m in op.indexing_maps] == ["(d0, d1, d2) -> (d2, d1)", "(d0, d1, d2) -> (d0, d2)",
                                                      "(d0, d1, d2) -> (d2)", "(d0, d1, d2) -> (d0)",
                                                      "(d0, d1, d2) -> (d0, d1)"]
        assert op.body.op_names() == ["arith.mulf", "arith.mulf", "arith.mulf", "arith.addf"]
    for got, want in zip(_run(fused), _run(g), strict=True):
        assert np.array_equal(got, want)
    check_exec(fused, build(fused, 4))


def test_producers_it_must_keep() -> None:
    """A use that is no contraction, a block output, two streamed intermediate inputs (each consumer would
    need a converter for both where it needed one), or an expensive op on every element (exp(x): it would be
    computed per multiply-accumulate) leave the graph as it was."""
    for g in (norm_then_two_projections(extra_use=True), norm_then_two_projections(n_is_output=True),
              norm_then_two_projections(x_from_kernel=True), norm_then_two_projections(statistic="exp")):
        assert print_graph(fuse_elementwise_into_contractions(g)) == print_graph(g)


def _matvec(name: str, w: Value, v: Value, init: Value, label: str) -> GenericOp:
    """y[n] = init[n] + sum_k W[n, k] * v[k]; loops (n, k)."""
    body = ScalarBody((("a", "f32"), ("b", "f32"), ("acc", "f32")),
                      (ScalarOp("p", "arith.mulf", ("a", "b"), "f32"),
                       ScalarOp("t", "arith.addf", ("acc", "p"), "f32")), ("t",))
    maps = [parse_affine_map(t) for t in ("(d0, d1) -> (d0, d1)", "(d0, d1) -> (d1)", "(d0, d1) -> (d0)")]
    return GenericOp([value(name, w.type.shape[0])], label, [w, v], [init], maps, ["parallel", "reduction"], body)


def test_the_statistic_of_one_row_is_hoisted_into_a_one_point_generic() -> None:
    """Decode: x is one row (8), its sum of squares a 0-d tensor. The rsqrt reads no loop of the scale, so it is
    hoisted into a generic of one loop of one point, read by the matrix-vector products at index 0."""
    x, w, w1, w2 = value("x", 8), value("w", 8), value("w1", 6, 8), value("w2", 6, 8)
    sq = ScalarBody((("a", "f32"), ("acc", "f32")), (ScalarOp("sq", "arith.mulf", ("a", "a"), "f32"),
                                                     ScalarOp("t", "arith.addf", ("acc", "sq"), "f32")), ("t",))
    ops: list[Op] = [empty("e_s"), empty("e_n", 8)]
    ops.append(fill("z_s", ops[0].results[0], "fill_1"))
    ops.append(GenericOp([value("s")], "reduce_sum_1", [x], [ops[2].results[0]],
                         [parse_affine_map("(d0) -> (d0)"), parse_affine_map("(d0) -> ()")], ["reduction"], sq))
    scale = ScalarBody((("a", "f32"), ("r", "f32"), ("g", "f32"), ("o", "f32")),
                       (*_STATISTIC["rsqrt"], ScalarOp("p", "arith.mulf", ("a", "rs"), "f32"),
                        ScalarOp("q", "arith.mulf", ("p", "g"), "f32")), ("q",))
    ops.append(GenericOp([value("n", 8)], "scale_1", [x, ops[3].results[0], w], [ops[1].results[0]],
                         [parse_affine_map(t) for t in ("(d0) -> (d0)", "(d0) -> ()", "(d0) -> (d0)",
                                                        "(d0) -> (d0)")], ["parallel"], scale))
    ops += [empty("e_y", 6)]
    ops.append(fill("z", ops[-1].results[0], "fill_2"))
    z, n = ops[-1].results[0], ops[4].results[0]
    ops += [_matvec("y1", w1, n, z, "matmul_1"), _matvec("y2", w2, n, z, "matmul_2")]
    g = graph([x, w, w1, w2], ops, [ops[-2].results[0], ops[-1].results[0]])
    fused = fuse_elementwise_into_contractions(g)
    generics = {op.name: op for op in fused.ops if isinstance(op, GenericOp)}
    hoisted = generics["scale_1"]
    assert hoisted.results[0].type.shape == (1,) and hoisted.iterator_types == ["parallel"]
    assert [str(m) for m in hoisted.indexing_maps] == ["(d0) -> ()", "(d0) -> (d0)"]
    assert [str(m) for m in generics["matmul_1"].indexing_maps] == [
        "(d0, d1) -> (d0, d1)", "(d0, d1) -> (d1)", "(d0, d1) -> (d1)", "(d0, d1) -> (0)", "(d0, d1) -> (d0)"]
    for got, want in zip(_run(fused), _run(g), strict=True):
        assert np.array_equal(got, want)
    check_exec(fused, build(fused, 4))
    # a second run finds nothing to do: the one-point generic computes no fewer points than it would hoisted
    assert print_graph(fuse_elementwise_into_contractions(fused)) == print_graph(fused)


def _quantized_gemv() -> Graph:
    """y[32] = sum_k q(x[k] * s * m[k]) * w[j, k]: an int8 quantization of a scaled input fused into the GEMV
    (as the front end's elementwise fusion leaves a W8A8 projection), the output 32 columns wide."""
    return parse_graph((Path(__file__).parent / "ir" / "hoist-prologues" / "input.mlir").read_text())


def _run_ints(g: Graph, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return run_graph(g, [rng.integers(-128, 128, v.type.shape).astype(np.int8) if v.type.dtype == "i8"
                         else (rng.standard_normal(v.type.shape) * 40).astype(np.float32) for v in g.inputs])


def test_a_recomputed_quantizing_prologue_becomes_its_own_kernel_bit_identically() -> None:
    """At the default 16-column tiles the GEMV computes the quantized input once per output tile (twice); hoisted,
    it is computed once per element, in i8 (the widening cast stays in the GEMV), and the results are the same."""
    g = _quantized_gemv()
    hoisted = hoist_recomputed_prologues(g)
    generics = {op.name: op for op in hoisted.ops if isinstance(op, GenericOp)}
    prologue = generics["elementwise_1"]
    assert [v.name for v in prologue.inputs] == ["x", "s", "m"] and prologue.results[0].type.dtype == "i8"
    assert prologue.results[0].type.shape == (64,) and prologue.iterator_types == ["parallel"]
    gemv = generics["matmul_1"]
    assert [v.name for v in gemv.inputs] == ["w", prologue.results[0].name]
    assert gemv.body.op_names() == ["arith.extsi", "arith.extsi", "arith.muli", "arith.addi"]
    for got, want in zip(_run_ints(hoisted), _run_ints(g), strict=True):
        assert np.array_equal(got, want)
    # One output tile (32-column tiles): nothing is computed twice, the prologue stays fused.
    assert print_graph(hoist_recomputed_prologues(g, tile=32)) == print_graph(g)


def test_a_hoisted_prologue_is_not_fused_back() -> None:
    """The reverse rule in ``fuse_elementwise_into_contractions``: a quantization without a ``math`` op (which
    alone would keep it out: ``_is_expensive``), hoisted, stays a kernel while the GEMV tiles its columns more
    than once; at one 32-column tile it is fused back. An f32 scale (as wide as what it reads) is fused at any
    tile size."""
    text = (Path(__file__).parent / "ir" / "hoist-prologues" / "input.mlir").read_text()
    hoisted = hoist_recomputed_prologues(parse_graph(text.replace("math.roundeven %q", "arith.negf %q")))
    assert "@elementwise_1" in print_graph(hoisted)
    assert print_graph(fuse_elementwise_into_contractions(hoisted)) == print_graph(hoisted)
    refused = fuse_elementwise_into_contractions(hoisted, tile=32)
    assert "@elementwise_1" not in print_graph(refused)
    for got, want in zip(_run_ints(refused), _run_ints(hoisted), strict=True):
        assert np.array_equal(got, want)
    g = norm_then_two_projections()
    assert "@scale_1" not in print_graph(fuse_elementwise_into_contractions(g, tile=2))


def test_a_float_prologue_of_integer_positions_stays_fused() -> None:
    """Only quantizations are hoisted: an f32 prologue computed from i64 positions (a rotary angle) is narrower
    than what it reads but quantizes nothing, so it stays in the contraction (hoisting one broke CodeGen's
    decode keys)."""
    g = parse_graph((Path(__file__).parent / "ir" / "hoist-prologues" / "positions.mlir").read_text())
    assert print_graph(hoist_recomputed_prologues(g)) == print_graph(g)


def test_a_large_quantized_input_is_hoisted_before_an_expanding_projection_only() -> None:
    """A prefill block's quantized rows (32 x 1024 int8, 32 KiB: above the small-tensor bound) become a kernel of
    their own before a projection whose output is at least as wide as its input (2,048 or 1,024 columns: the
    buffer holds no more than the projection streams out); before a narrowing one (512 columns) they stay fused,
    unless the prologue computes a math function other than rounding (a down projection reading GELU's quantized
    rows, ``tanh``): fused, the projection would build it in every lane group."""
    text = (Path(__file__).parent / "ir" / "hoist-prologues" / "rows.mlir").read_text()
    gelu_like = text.replace("%q = arith.mulf %a, %g : f32",
                             "%h = math.tanh %a : f32\n    %q = arith.mulf %h, %g : f32")
    assert gelu_like != text
    for rows, cols, hoisted in ((text, 2048, True), (text, 1024, True), (text, 512, False), (gelu_like, 512, True)):
        g = parse_graph(rows.replace("COLS", str(cols)))
        assert ("@elementwise_1" in print_graph(hoist_recomputed_prologues(g))) is hoisted, cols
        assert ("@elementwise_1" in print_graph(fuse_elementwise_into_contractions(hoist_recomputed_prologues(g)))
                ) is hoisted, cols
