"""Small hand-built Linalg graphs for the tiling / dataflow / stream-execution tests."""

from __future__ import annotations

import numpy as np

from streamtensor.codegen.vitis.boards import U55C
from streamtensor.interp.linalg_interpreter import run_graph
from streamtensor.interp.stream_exec import run_streams
from streamtensor.ir.affine import AffineMap, parse_affine_map
from streamtensor.ir.dataflow import DataflowGraph, Node
from streamtensor.ir.linalg import EmptyOp, GenericOp, Graph, Op, ScalarBody, ScalarOp, TensorType, Value
from streamtensor.transforms.build_dataflow import build_dataflow
from streamtensor.transforms.tiling import tile_graph
from streamtensor.transforms.tiling.plan import TilingOptions


def value(name: str, *shape: int) -> Value:
    return Value(name, TensorType(shape, "f32"))


def empty(name: str, *shape: int) -> EmptyOp:
    return EmptyOp([value(name, *shape)])


def fill(name: str, out: Value, label: str, constant: float = 0.0) -> GenericOp:
    rank = len(out.type.shape)
    body = ScalarBody((("o", "f32"),), (ScalarOp("c", "arith.constant", (), "f32", (("value", constant),)),),
                      ("c",))
    return GenericOp([value(name, *out.type.shape)], label, [], [out], [AffineMap.identity(rank)],
                     ["parallel"] * rank, body)


def matmul(name: str, a: Value, b: Value, init: Value, label: str) -> GenericOp:
    """C[m, n] = init[m, n] + sum_k A[m, k] * B[k, n]; loops (m, n, k)."""
    body = ScalarBody((("x", "f32"), ("y", "f32"), ("acc", "f32")),
                      (ScalarOp("p", "arith.mulf", ("x", "y"), "f32"),
                       ScalarOp("s", "arith.addf", ("acc", "p"), "f32")), ("s",))
    maps = [parse_affine_map(t) for t in ("(d0, d1, d2) -> (d0, d2)", "(d0, d1, d2) -> (d2, d1)",
                                          "(d0, d1, d2) -> (d0, d1)")]
    return GenericOp([value(name, a.type.shape[0], b.type.shape[1])], label, [a, b], [init], maps,
                     ["parallel", "parallel", "reduction"], body)


def unary(name: str, x: Value, out: Value, label: str, in_map: str, scalar_op: str = "arith.negf"
          ) -> GenericOp:
    """out = op(x) elementwise over out's shape, x read through ``in_map``."""
    rank = len(out.type.shape)
    body = ScalarBody((("x", "f32"), ("o", "f32")), (ScalarOp("r", scalar_op, ("x",), "f32"),), ("r",))
    return GenericOp([value(name, *out.type.shape)], label, [x], [out],
                     [parse_affine_map(in_map), AffineMap.identity(rank)], ["parallel"] * rank, body)


def graph(inputs: list[Value], ops: list[Op], outputs: list[Value]) -> Graph:
    g = Graph("g", inputs, outputs, ops)
    g.verify()
    return g


def exp_matmul_graph(m: int = 8, k: int = 32, n: int = 8) -> Graph:
    """y = exp(x) @ w, x m x k, w k x n (8x32 @ 32x8 by default): the matmul's A operand is another kernel's
    stream, read once per column tile of w; w is a block input, read from external memory."""
    x, w = value("x", m, k), value("w", k, n)
    e0, y0 = empty("e0", m, k), empty("y0", m, n)
    k0 = unary("e", x, e0.results[0], "exp_1", "(d0, d1) -> (d0, d1)", "math.exp")
    zero = fill("z", y0.results[0], "fill_1")
    mm = matmul("y", k0.results[0], w, zero.results[0], "matmul_1")
    return graph([x, w], [e0, k0, y0, zero, mm], [mm.results[0]])


def matmul_graph() -> tuple[Graph, list[Op]]:
    """c = a @ b over 8x8 matrices, the accumulator initialized by a zero fill."""
    a, b = value("a", 8, 8), value("b", 8, 8)
    e = empty("e", 8, 8)
    z = fill("z", e.results[0], "fill_1")
    mm = matmul("c", a, b, z.results[0], "matmul_1")
    return graph([a, b], [e, z, mm], [mm.results[0]]), [e, z, mm]


def build(g: Graph, tile: int, budget: int = 1, **options: bool | str) -> DataflowGraph:
    return build_dataflow(g, tile_graph(g, U55C, TilingOptions(tile, budget, **options)))


def nodes_of(dfg: DataflowGraph, cls: type) -> list[Node]:
    return [n for n in dfg.nodes.values() if isinstance(n, cls)]


def check_exec(g: Graph, dfg: DataflowGraph, seed: int = 0) -> None:
    """Stream-level execution equals the Linalg reference on random inputs."""
    rng = np.random.default_rng(seed)
    args = [rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs]
    for got, want in zip(run_streams(dfg, args), run_graph(g, args), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def two_gemvs(n: int, rows: int = 2) -> Graph:
    """y = (x @ w1) @ w2 with x rows x n and the weights n x n read from external memory (two projections: the
    second waits for the first's reduction, while its weight DMA could run ahead). Two rows by default: a block
    of several tokens, whose DMAs share their channels for the whole run (one token: ``transforms.stripes``)."""
    x, w1, w2 = value("x", rows, n), value("w1", n, n), value("w2", n, n)
    e = empty("e", rows, n)
    z = fill("z", e.results[0], "fill_1")
    h = matmul("h", x, w1, z.results[0], "matmul_1")
    y = matmul("y", h.results[0], w2, z.results[0], "matmul_2")
    return graph([x, w1, w2], [e, z, h, y], [y.results[0]])
