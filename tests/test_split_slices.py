"""The slice-splitting pass on small Linalg IR: one kernel per slice, bit-identical results, uses it refuses."""

from __future__ import annotations

import numpy as np
from linalg_builders import build, check_exec, empty, fill, graph, matmul, unary, value

from streamtensor.interp.linalg_interpreter import run_graph
from streamtensor.ir.linalg import GenericOp, Graph, Op, ReshapeOp, SliceOp, Value, print_graph
from streamtensor.transforms.split_slices import split_sliced_results


def cut(name: str, source: Value, offsets: tuple[int, ...], sizes: tuple[int, ...],
        result_shape: tuple[int, ...] | None = None) -> SliceOp:
    return SliceOp([value(name, *(result_shape or sizes))], source, offsets, sizes, (1,) * len(offsets))


def qkv_graph(slices: list[tuple[int, int]] | None = None, extra_use: bool = False) -> Graph:
    """y = neg(x @ w), x 4x8, w 8x12, sliced into column ranges (q, k, v by default) each negated again: the
    shape of GPT-2's fused QKV projection and bias."""
    x, w = value("x", 4, 8), value("w", 8, 12)
    e0, e1 = empty("e0", 4, 12), empty("e1", 4, 12)
    zero = fill("z", e0.results[0], "fill_1")
    mm = matmul("p", x, w, zero.results[0], "matmul_1")
    biased = unary("y", mm.results[0], e1.results[0], "elementwise_1", "(d0, d1) -> (d0, d1)")
    ops: list[Op] = [e0, e1, zero, mm, biased]
    outputs = []
    for i, (start, size) in enumerate(slices or [(0, 4), (4, 4), (8, 4)]):
        s = cut(f"s{i}", biased.results[0], (0, start), (4, size))
        out = empty(f"o{i}", 4, size)
        ops += [s, out, unary(f"r{i}", s.results[0], out.results[0], f"elementwise_{i + 2}", "(d0, d1) -> (d0, d1)")]
        outputs.append(ops[-1].results[0])
    if extra_use:
        outputs.append(biased.results[0])
    return graph([x, w], ops, outputs)


def generics(g: Graph) -> list[GenericOp]:
    return [op for op in g.ops if isinstance(op, GenericOp)]


def same_results(a: Graph, b: Graph) -> None:
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(v.type.shape).astype(np.float32) for v in a.inputs]
    for got, want in zip(run_graph(b, args), run_graph(a, args), strict=True):
        np.testing.assert_array_equal(got, want)


def test_fused_projection_splits_into_one_kernel_per_slice_back_to_the_matmul() -> None:
    g = qkv_graph()
    split = split_sliced_results(g)
    kernels = generics(split)
    matmuls = [op for op in kernels if op.name.startswith("matmul")]
    assert len(matmuls) == 3 and [op.results[0].type.shape for op in matmuls] == [(4, 4)] * 3
    # Each matmul reads its own 4 columns of w (a slice of the weight, read from external memory).
    weight_cuts = [op for op in split.ops if isinstance(op, SliceOp) and op.source.name == "w"]
    assert sorted(op.offsets for op in weight_cuts) == [(0, 0), (0, 4), (0, 8)]
    assert all(op.sizes == (8, 4) for op in weight_cuts)
    # No kernel result is sliced any more: every slice cuts a block input or an init.
    produced = {r.name for op in kernels for r in op.results}
    assert not [op for op in split.ops if isinstance(op, SliceOp) and op.source.name in produced]
    assert "matmul_1" not in {op.name for op in kernels}
    same_results(g, split)
    text = print_graph(split)
    assert text.count("linalg.generic @matmul_") == 3
    check_exec(split, build(split, 2))


def test_rank_reducing_slice_keeps_its_type_through_a_collapse() -> None:
    x = value("x", 1, 4, 12)
    e = empty("e", 1, 4, 12)
    y = unary("y", x, e.results[0], "elementwise_1", "(d0, d1, d2) -> (d0, d1, d2)")
    ops: list[Op] = [e, y]
    outputs = []
    for i in range(2):
        s = cut(f"s{i}", y.results[0], (0, 0, 6 * i), (1, 4, 6), (4, 6))
        out = empty(f"o{i}", 4, 6)
        ops += [s, out, unary(f"r{i}", s.results[0], out.results[0], f"elementwise_{i + 2}", "(d0, d1) -> (d0, d1)")]
        outputs.append(ops[-1].results[0])
    g = graph([x], ops, outputs)
    split = split_sliced_results(g)
    collapses = [op for op in split.ops if isinstance(op, ReshapeOp)]
    assert len(collapses) == 2 and all(not op.expand and op.reassociation == [[0, 1], [2]] for op in collapses)
    assert [op.results[0].type.shape for op in collapses] == [(4, 6), (4, 6)]
    same_results(g, split)
    check_exec(split, build(split, 2))


def test_columns_no_slice_reads_are_not_computed() -> None:
    g = qkv_graph([(0, 4), (8, 4)])
    split = split_sliced_results(g)
    matmuls = [op for op in generics(split) if op.name.startswith("matmul")]
    assert sum(op.results[0].type.elements for op in matmuls) == 2 * 16
    same_results(g, split)


def test_results_with_other_uses_or_overlapping_slices_stay_whole() -> None:
    for g in (qkv_graph(extra_use=True), qkv_graph([(0, 6), (4, 4)])):
        assert print_graph(split_sliced_results(g)) == print_graph(g)


def test_slices_cutting_two_dims_stay_whole() -> None:
    x = value("x", 4, 12)
    e = empty("e", 4, 12)
    y = unary("y", x, e.results[0], "elementwise_1", "(d0, d1) -> (d0, d1)")
    a, b = cut("a", y.results[0], (0, 0), (2, 12)), cut("b", y.results[0], (0, 0), (4, 6))
    g = graph([x], [e, y, a, b], [a.results[0], b.results[0]])
    assert print_graph(split_sliced_results(g)) == print_graph(g)
