"""The widening-cast sinking pass on small Linalg IR: text in and out, bit-identical results, uses it refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from linalg_builders import build, check_exec, value

from streamtensor.analysis.allocation import size_fifos
from streamtensor.codegen.vitis.boards import U55C
from streamtensor.interp.linalg_interpreter import run_graph
from streamtensor.ir.affine import AffineMap, parse_affine_map
from streamtensor.ir.linalg import (
    EmptyOp,
    GenericOp,
    Graph,
    Op,
    ReshapeOp,
    ScalarBody,
    ScalarOp,
    TensorType,
    Value,
    print_graph,
)
from streamtensor.ir.linalg_parser import parse_graph
from streamtensor.transforms.sink_casts import sink_widening_casts
from streamtensor.verify.simulate import simulate_graph


def wide(name: str, *shape: int) -> Value:
    return Value(name, TensorType(shape, "f64"))


def cast(x: Value, out: Value, body_ops: tuple[ScalarOp, ...] | None = None) -> GenericOp:
    rank = len(x.type.shape)
    ops = body_ops or (ScalarOp("w", "arith.extf", ("a",), "f64"),)
    return GenericOp([wide("w", *x.type.shape)], "elementwise_1", [x], [out], [AffineMap.identity(rank)] * 2,
                     ["parallel"] * rank, ScalarBody((("a", "f32"), ("o", "f64")), ops, (ops[-1].result,)))


def layer_norm_statistics(cast_body: tuple[ScalarOp, ...] | None = None, output_cast: bool = False) -> Graph:
    """x (f32) widened to f64, reshaped, then a row sum of squares and an elementwise negation of the rows."""
    x = value("x", 4, 8)
    ops: list[Op] = [EmptyOp([wide("e", 4, 8)])]
    ops.append(cast(x, ops[0].results[0], cast_body))
    w3 = wide("w3", 1, 4, 8)
    ops.append(ReshapeOp([w3], ops[1].results[0], [[0, 1], [2]], True))
    ops.append(EmptyOp([wide("z", 1, 4)]))
    square_sum = ScalarBody((("a0", "f64"), ("acc", "f64")),
                            (ScalarOp("sq", "arith.mulf", ("a0", "a0"), "f64"),
                             ScalarOp("s", "arith.addf", ("sq", "acc"), "f64")), ("s",))
    maps = [parse_affine_map("(d0, d1, d2) -> (d0, d1, d2)"), parse_affine_map("(d0, d1, d2) -> (d0, d1)")]
    ops.append(GenericOp([wide("ss", 1, 4)], "reduce_sum_1", [w3], [ops[3].results[0]], maps,
                         ["parallel", "parallel", "reduction"], square_sum))
    ops.append(EmptyOp([wide("e3", 1, 4, 8)]))
    negate = ScalarBody((("a0", "f64"), ("o", "f64")), (ScalarOp("n", "arith.negf", ("a0",), "f64"),), ("n",))
    ops.append(GenericOp([wide("neg", 1, 4, 8)], "elementwise_2", [w3], [ops[5].results[0]],
                         [AffineMap.identity(3)] * 2, ["parallel"] * 3, negate))
    outputs = [ops[4].results[0], ops[6].results[0]] + ([ops[1].results[0]] if output_cast else [])
    g = Graph("g", [x], outputs, ops)
    g.verify()
    return g


EXPECTED = """\
// Linalg graph IR of @g
func.func @g(%x: tensor<4x8xf32>) -> (tensor<1x4xf64>, tensor<1x4x8xf64>) {
  %w3_f32 = tensor.expand_shape %x [[0, 1], [2]] : tensor<4x8xf32> -> tensor<1x4x8xf32>
  %z = tensor.empty() : tensor<1x4xf64>
  %ss = linalg.generic @reduce_sum_1 {domain = [1, 4, 8], indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, \
affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} \
ins(%w3_f32 : tensor<1x4x8xf32>) outs(%z : tensor<1x4xf64>) {
  ^bb0(%a0_f32: f32, %acc: f64):
    %a0 = arith.extf %a0_f32 : f64
    %sq = arith.mulf %a0, %a0 : f64
    %s = arith.addf %sq, %acc : f64
    linalg.yield %s
  } -> tensor<1x4xf64>
  %e3 = tensor.empty() : tensor<1x4x8xf64>
  %neg = linalg.generic @elementwise_2 {domain = [1, 4, 8], indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, \
affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} \
ins(%w3_f32 : tensor<1x4x8xf32>) outs(%e3 : tensor<1x4x8xf64>) {
  ^bb0(%a0_f32: f32, %o: f64):
    %a0 = arith.extf %a0_f32 : f64
    %n = arith.negf %a0 : f64
    linalg.yield %n
  } -> tensor<1x4x8xf64>
  return %ss, %neg
}
"""


def test_cast_sinks_into_every_consumer() -> None:
    before = layer_norm_statistics()
    after = sink_widening_casts(before)
    assert print_graph(after) == EXPECTED
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    for got, want in zip(run_graph(after, [x]), run_graph(before, [x]), strict=True):
        assert got.dtype == want.dtype == np.float64 and np.array_equal(got, want)  # widening is exact
    check_exec(after, build(after, 4))  # and the stream level agrees


@pytest.mark.parametrize("case", ["output", "not_a_pure_cast"])
def test_cast_stays_where_a_use_or_its_body_forbids(case: str) -> None:
    scaled = (ScalarOp("w0", "arith.extf", ("a",), "f64"), ScalarOp("w", "arith.mulf", ("w0", "w0"), "f64"))
    g = layer_norm_statistics(output_cast=case == "output", cast_body=scaled if case == "not_a_pure_cast" else None)
    assert print_graph(sink_widening_casts(g)) == print_graph(g)


def test_sunk_casts_c_simulate_bit_identically() -> None:
    # The widening result takes its argument's IR name, here torch-mlir's %a0: C++ names must not clash.
    after = sink_widening_casts(layer_norm_statistics())
    dfg = build(after, 4)
    size_fifos(dfg, U55C)
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    report = simulate_graph(dfg, "stats", {"x": x}, U55C)
    assert report.failure is None, report.failure
    for got, want in zip(report.outputs, run_graph(layer_norm_statistics(), [x]), strict=True):
        assert np.array_equal(got, want)


QUANTIZE = Path(__file__).parent / "ir" / "sink-casts"


def quantize_graph(edits: tuple[tuple[str, str], ...] = ()) -> Graph:
    """An int8 quantize yielding ``extsi`` to i32, read through a collapse by an i32 GEMV and through a transpose
    by an elementwise square."""
    text = (QUANTIZE / "quantize-input.mlir").read_text()
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return parse_graph(text)


def test_trailing_cast_leaves_a_quantize_past_reshapes_and_a_transpose() -> None:
    # The stream into the GEMV carries i8 and the GEMV widens in its body, as a fused W8A8 projection does; the
    # transpose only copies, so it carries i8 too and the square after it widens.
    before = quantize_graph()
    after = sink_widening_casts(before)
    assert print_graph(after) == (QUANTIZE / "quantize-expected.mlir").read_text()
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((2, 4)) * 100).astype(np.float32)  # past the clamp on both sides
    w = rng.integers(-8, 8, (3, 8)).astype(np.int8)
    for got, want in zip(run_graph(after, [x, w]), run_graph(before, [x, w]), strict=True):
        assert got.dtype == want.dtype == np.int32 and np.array_equal(got, want)


FILL_INIT = """%e0 = tensor.empty() : tensor<2x4xi32>
  %e = linalg.generic @fill_2 {domain = [2, 4], indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>], \
iterator_types = ["parallel", "parallel"]} ins() outs(%e0 : tensor<2x4xi32>) {
  ^bb0(%a0: i32):
    %c0 = arith.constant {value = 0} : i32
    linalg.yield %c0
  } -> tensor<2x4xi32>"""


@pytest.mark.parametrize("case", ["output", "init_read", "init_not_empty"])
def test_trailing_cast_stays_where_the_kernel_or_a_use_forbids(case: str) -> None:
    edits = {
        # the wide tensor is a block result: it must stay wide
        "output": (("-> (tensor<3xi32>, tensor<4x2xi32>)", "-> (tensor<3xi32>, tensor<2x4xi32>)"),
                   ("return %y, %n", "return %y, %xq")),
        # the body reads its init: a narrow init would change what it reads
        "init_read": (("%s0 = math.roundeven %a0 : f32\n",
                       "%s0 = math.roundeven %a0 : f32\n    %u = arith.addi %a1, %a1 : i32\n"),),
        # the init is computed, not a tensor.empty the kernel could swap for a narrow one
        "init_not_empty": (("%e = tensor.empty() : tensor<2x4xi32>", FILL_INIT),),
    }[case]
    g = quantize_graph(edits)
    assert print_graph(sink_widening_casts(g)) == print_graph(g)
