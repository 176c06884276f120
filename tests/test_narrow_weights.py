"""W4A8's int4 weights narrowed from int8 containers to ``i4`` (transforms.narrow_weights): the retyped graph
computes the same integers, values outside [-8, 7] are refused, and uses that could see the narrower type are
errors rather than skipped inputs."""

import numpy as np
import pytest

from streamtensor.errors import ShapeError
from streamtensor.interp.linalg_interpreter import run_graph
from streamtensor.ir.linalg_parser import parse_graph
from streamtensor.transforms.narrow_weights import NarrowWeightsError, narrow_int4_weights

GRAPH = """func.func @g(%x: tensor<8xi32>, %w: tensor<4x8xi8> {weight}) -> (tensor<4x1xi32>) {
  %v = tensor.expand_shape %w [[0, 1], [2]] : tensor<4x8xi8> -> tensor<4x1x8xi8>
  %e = tensor.empty() : tensor<4x1xi32>
  %y = linalg.generic @mm {domain = [4, 1, 8], indexing_maps = [affine_map<(d0, d1, d2) -> (d2)>, """ \
    """affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = """ \
    """["parallel", "parallel", "reduction"]} ins(%x : tensor<8xi32>, %v : tensor<4x1x8xi8>) """ \
    """outs(%e : tensor<4x1xi32>) {
  ^bb0(%a0: i32, %a1: i8, %a2: i32):
    %s0 = WIDEN %a1 : i32
    %s1 = arith.muli %a0, %s0 : i32
    %s2 = arith.addi %s1, %a2 : i32
    linalg.yield %s2
  } -> tensor<4x1xi32>
  return %y
}
"""


def test_narrowed_weights_compute_the_same_integers() -> None:
    graph = parse_graph(GRAPH.replace("WIDEN", "arith.extsi"))
    narrow = narrow_int4_weights(graph, ["w"])
    assert [v.type.dtype for v in narrow.inputs] == ["i32", "i4"]
    assert narrow.ops[0].results[0].type.dtype == "i4"  # the reshape of the weight
    assert ("a1", "i4") in narrow.ops[2].body.args
    assert narrow.inputs[1].type.bytes == 16  # two per byte
    x = np.arange(8, dtype=np.int32) - 3
    w = (np.arange(32) % 16 - 8).astype(np.int8).reshape(4, 8)
    np.testing.assert_array_equal(run_graph(narrow, [x, w])[0].ravel(), w.astype(np.int32) @ x)
    with pytest.raises(ShapeError, match=r"input %w: values out of range for i4 \[-8, 7\]"):
        run_graph(narrow, [x, np.full((4, 8), -9, dtype=np.int8)])


def test_uses_that_would_see_the_narrow_type_are_refused() -> None:
    graph = parse_graph(GRAPH.replace("WIDEN", "arith.extsi"))
    with pytest.raises(NarrowWeightsError, match="%x is not an i8 weight input"):
        narrow_int4_weights(graph, ["x"])
    wraps = parse_graph(GRAPH.replace("WIDEN", "arith.extui"))  # zero extension of 4 bits is not of 8
    with pytest.raises(NarrowWeightsError, match="mm: reads %v with arith.extui, not only a widening cast"):
        narrow_int4_weights(wraps, ["w"])
