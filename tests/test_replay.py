"""Replay ports: a kernel whose accumulators hold its whole result drains them again instead of forking it."""

from __future__ import annotations

import copy

import pytest
from linalg_builders import build, check_exec, empty, fill, graph, matmul, value

from streamtensor.analysis.allocation import run_allocation
from streamtensor.analysis.memory import memory_report
from streamtensor.codegen.vitis.boards import U55C
from streamtensor.errors import VerificationError
from streamtensor.ir.affine import parse_affine_map
from streamtensor.ir.dataflow import ForkNode, KernelNode, print_dataflow
from streamtensor.ir.linalg import GenericOp, Graph, ScalarBody, ScalarOp
from streamtensor.transforms.build_dataflow import build_dataflow
from streamtensor.transforms.replay import replay_forked_accumulators, summarizes
from streamtensor.transforms.tiling import tile_graph
from streamtensor.transforms.tiling.plan import TilingOptions


def projection_then_norm() -> Graph:
    """y = x @ w (1x32 @ 32x16), s = sum(y^2), out = y / s: a norm's statistic and scaling after a projection."""
    x, w = value("x", 1, 32), value("w", 32, 16)
    e_y, e_s, e_o = empty("e_y", 1, 16), empty("e_s", 1), empty("e_o", 1, 16)
    z = fill("z", e_y.results[0], "fill_1")
    mm = matmul("y", x, w, z.results[0], "matmul_1")
    y = mm.results[0]
    sq = ScalarBody((("a", "f32"), ("acc", "f32")), (ScalarOp("p", "arith.mulf", ("a", "a"), "f32"),
                                                     ScalarOp("t", "arith.addf", ("acc", "p"), "f32")), ("t",))
    s = GenericOp([value("s", 1)], "reduce_sum_1", [y], [e_s.results[0]],
                  [parse_affine_map("(d0, d1) -> (d0, d1)"), parse_affine_map("(d0, d1) -> (d0)")],
                  ["parallel", "reduction"], sq)
    scale = ScalarBody((("a", "f32"), ("r", "f32"), ("o", "f32")), (ScalarOp("q", "arith.divf", ("a", "r"), "f32"),),
                       ("q",))
    out = GenericOp([value("out", 1, 16)], "scale_1", [y, s.results[0]], [e_o.results[0]],
                    [parse_affine_map(t) for t in ("(d0, d1) -> (d0, d1)", "(d0, d1) -> (d0)",
                                                   "(d0, d1) -> (d0, d1)")], ["parallel", "parallel"], scale)
    return graph([x, w], [e_y, e_s, e_o, z, mm, s, out], [out.results[0]])


def test_the_scaling_branch_reads_a_replay_instead_of_holding_the_result() -> None:
    g = projection_then_norm()
    tiling = tile_graph(g, U55C, TilingOptions(4))
    tiling.ops["matmul_1"].tile_order = [2, 0, 1]  # the reduction outermost: all 4 output tiles pending
    forked = build_dataflow(g, tiling)
    node = forked.nodes["matmul_1"]
    assert isinstance(node, KernelNode) and node.holds_whole_result()
    replayed = copy.deepcopy(forked)
    assert replay_forked_accumulators(replayed) == ["fork_y"]
    node = replayed.nodes["matmul_1"]
    assert isinstance(node, KernelNode) and node.output_results == [0, 0]
    assert [replayed.consumer(s).name for s in node.outputs] == ["reduce_sum_1", "scale_1"]
    assert summarizes(replayed, node.outputs[0]) and not summarizes(replayed, node.outputs[1])
    _, writes = node.port_firings()
    assert list(writes[1]) == [node.firings + t for t in range(4)]  # after the last firing, in token order
    assert "replays = [0]" in print_dataflow(replayed)
    assert not any(isinstance(n, ForkNode) for n in replayed.nodes.values())
    check_exec(g, replayed)
    # Sized FIFOs: with the fork, the scaling branch holds all 4 tokens (64 B) while the sum completes; with the
    # replay it holds one.
    for dfg in (forked, replayed):
        run_allocation(dfg, U55C)
    held = forked.streams["y_3"]
    assert held.target == "scale_1" and held.depth == 4
    assert replayed.streams["y_3"].depth == 1  # the replay starts once the sum is complete
    assert memory_report(replayed, U55C)["fifo_bytes"] < memory_report(forked, U55C)["fifo_bytes"] - 32  # 68 B, was 116


def test_a_replay_needs_the_whole_result_pending() -> None:
    g = projection_then_norm()
    dfg = build(g, 4)  # output-stationary matmul: one pending tile
    node = dfg.nodes["matmul_1"]
    assert isinstance(node, KernelNode) and not node.holds_whole_result()
    assert replay_forked_accumulators(dfg) == []
    fork = dfg.nodes["fork_y"]
    stream = fork.outputs[1]
    node.outputs.append(stream)
    node.output_results.append(0)
    dfg.streams[stream].source = node.name
    fork.outputs.remove(stream)
    with pytest.raises(VerificationError, match="replay ports"):
        dfg.verify()
