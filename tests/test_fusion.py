"""Kernel fusion (spec §4.2, Algorithm 2) on hand-built dataflow graphs.

The builders here are shared with test_memory_resources.py and test_slr_partition.py. Layouts are chosen
for the converters they need (the paper's (b) -> (c) example, 128 bytes of ping-pong buffer on 8x8 f32);
the analyses under test read only stream types, loop tilings and scalar bodies.
"""

from __future__ import annotations

import pytest

from streamtensor.analysis.memory import absorbed_converters, crossing_streams, fusion_report
from streamtensor.codegen.vitis.boards import U55C
from streamtensor.errors import OptionError
from streamtensor.ir.affine import AffineMap, parse_affine_map
from streamtensor.ir.converter_buffer import infer_converter_buffer
from streamtensor.ir.dataflow import (
    ConverterNode,
    DataflowGraph,
    DmaNode,
    ForkNode,
    KernelNode,
    LoopTiling,
    Node,
    Stream,
)
from streamtensor.ir.itensor import ITensorType
from streamtensor.ir.linalg import GenericOp, ScalarBody, ScalarOp, TensorType, Value
from streamtensor.transforms.fusion import apply_fusion, edge_memory_cost, fuse_kernels

F32 = "f32"


def tensor(name: str, shape: tuple[int, ...] = (8, 8), dtype: str = F32) -> Value:
    return Value(name, TensorType(shape, dtype))


def ew_kernel(name: str, arity: int, scalar_op: str, tiles: tuple[int, int] = (4, 2),
              tile_order: tuple[int, int] = (1, 0), unroll: tuple[int, int] = (2, 1), size: int = 8) -> KernelNode:
    """Elementwise kernel on ``size x size`` f32: ``math.exp(a)``, ``a * 2.0`` (``arith.mulf``) or ``a + b``.

    Ports are ``{name}.in{i}`` / ``{name}.out``; their types follow from the tiling (``operand_type``)."""
    args = tuple((f"a{i}", F32) for i in range(arity)) + (("o", F32),)
    if scalar_op == "arith.mulf":
        ops = (ScalarOp("c", "arith.constant", (), F32, (("value", 2.0),)), ScalarOp("r", scalar_op, ("a0", "c"), F32))
    else:
        ops = (ScalarOp("r", scalar_op, tuple(a for a, _ in args[:arity]), F32),)
    shape = (size, size)
    op = GenericOp([tensor(f"{name}_y", shape)], f"{name}_op", [tensor(f"{name}_x{i}", shape) for i in range(arity)],
                   [tensor(f"{name}_init", shape)], [AffineMap.identity(2)] * (arity + 1), ["parallel"] * 2,
                   ScalarBody(args, ops, ("r",)))
    loops = [LoopTiling(size, t, u, False) for t, u in zip(tiles, unroll, strict=True)]
    return KernelNode(name, [f"{name}.in{i}" for i in range(arity)], [f"{name}.out"], op, loops,
                      list(tile_order), [0, 1], list(range(arity)), [0])


def matmul_kernel(name: str, tiles: tuple[int, int, int] = (2, 4, 4), unroll: tuple[int, int, int] = (2, 2, 2),
                  size: int = 8) -> KernelNode:
    """``y[m, n] = sum_k a[k, m] * w[k, n]`` (f32), loops (m, n, k) in that tile order, accumulator from 0.

    Ports ``{name}.a``, ``{name}.w`` -> ``{name}.out``."""
    shape = (size, size)
    body = ScalarBody((("a", F32), ("w", F32), ("acc", F32)),
                      (ScalarOp("p", "arith.mulf", ("a", "w"), F32), ScalarOp("s", "arith.addf", ("acc", "p"), F32)),
                      ("s",))
    maps = [parse_affine_map(m) for m in ("(d0, d1, d2) -> (d2, d0)", "(d0, d1, d2) -> (d2, d1)",
                                          "(d0, d1, d2) -> (d0, d1)")]
    op = GenericOp([tensor(f"{name}_y", shape)], f"{name}_op", [tensor(f"{name}_a", shape), tensor(f"{name}_w", shape)],
                   [tensor(f"{name}_init", shape)], maps, ["parallel", "parallel", "reduction"], body)
    loops = [LoopTiling(size, t, u, i == 2) for i, (t, u) in enumerate(zip(tiles, unroll, strict=True))]
    return KernelNode(name, [f"{name}.a", f"{name}.w"], [f"{name}.out"], op, loops, [0, 1, 2], [2, 0, 1],
                      [0, 1], [0], init_constants={0: 0.0})


class GraphBuilder:
    """Wires nodes with streams whose types come from the kernels' tilings.

    Ports are named ``kernel.in{i}`` / ``kernel.a`` / ``kernel.out``; a stream into a kernel is named after
    the input port it feeds. Kernel ports have their tiling's types; a DMA read, a fork or a converter result
    takes the type of the port it feeds. Converters get the inferred buffer."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: dict[str, Node] = {}
        self.streams: dict[str, Stream] = {}

    def add(self, *nodes: Node) -> GraphBuilder:
        self.nodes.update({n.name: n for n in nodes})
        return self

    def port_type(self, port: str) -> ITensorType:
        node_name, _, which = port.partition(".")
        node = self.nodes[node_name]
        assert isinstance(node, KernelNode)
        if which == "out":
            return node.result_type(0)
        return node.operand_type(node.input_operands[node.inputs.index(port)])

    def stream(self, name: str, t: ITensorType, source: str, target: str) -> GraphBuilder:
        self.streams[name] = Stream(name, t, source, target)
        return self

    def dma_in(self, name: str, port: str, role: str = "input") -> GraphBuilder:
        t = self.port_type(port)
        self.add(DmaNode(name, [], [port], "read", tensor(f"{name}_t", t.tensor_shape), role))
        return self.stream(port, t, name, port.partition(".")[0])

    def dma_out(self, name: str, port: str) -> GraphBuilder:
        t = self.port_type(port)
        self.add(DmaNode(name, [port], [], "write", tensor(f"{name}_t", t.tensor_shape), "output"))
        return self.stream(port, t, port.partition(".")[0], name)

    def direct(self, src: str, dst: str) -> GraphBuilder:
        """Kernel output straight into a kernel input (the stream is named after the input port)."""
        assert self.port_type(src) == self.port_type(dst)
        self.nodes[src.partition(".")[0]].outputs = [dst]
        return self.stream(dst, self.port_type(dst), src.partition(".")[0], dst.partition(".")[0])

    def convert(self, name: str, src: str, dst: str) -> GraphBuilder:
        """Kernel output -> converter ``name`` -> kernel input."""
        source, result = self.port_type(src), self.port_type(dst)
        self.nodes[src.partition(".")[0]].outputs = [f"{name}.in"]
        self.add(ConverterNode(name, [f"{name}.in"], [dst], infer_converter_buffer(source, result)))
        self.stream(f"{name}.in", source, src.partition(".")[0], name)
        return self.stream(dst, result, name, dst.partition(".")[0])

    def fork(self, name: str, src: str, dsts: list[str]) -> GraphBuilder:
        """Kernel output -> fork ``name`` -> the kernel input ports ``dsts``."""
        t = self.port_type(src)
        assert all(self.port_type(dst) == t for dst in dsts)
        self.nodes[src.partition(".")[0]].outputs = [f"{name}.in"]
        self.add(ForkNode(name, [f"{name}.in"], list(dsts)))
        self.stream(f"{name}.in", t, src.partition(".")[0], name)
        for dst in dsts:
            self.stream(dst, t, name, dst.partition(".")[0])
        return self

    def graph(self) -> DataflowGraph:
        graph = DataflowGraph(self.name, self.nodes, self.streams)
        graph.verify()
        return graph


def chain_graph() -> DataflowGraph:
    """dma_x -> k0 (exp) -> k1 (x2) -> conv -> k2 (matmul, weight from dma_w) -> dma_out.

    k0/k1 stream 4x2 tiles in column-major tile order: the paper's layout (b). The matmul reads the tensor as
    its ``a[k, m]`` operand with 4x2 tiles over (m, n, k), re-reading each tile column for both n tiles: the
    paper's layout (c), whose converter from (b) needs an 8x2 ping-pong buffer, 2 x 16 x 4 B = 128 B."""
    b = GraphBuilder("chain").add(ew_kernel("k0", 1, "math.exp"), ew_kernel("k1", 1, "arith.mulf"),
                                  matmul_kernel("k2"))
    b.dma_in("dma_x", "k0.in0").direct("k0.out", "k1.in0").convert("conv", "k1.out", "k2.a")
    return b.dma_in("dma_w", "k2.w", "weight").dma_out("dma_out", "k2.out").graph()


def two_converter_chain() -> DataflowGraph:
    """dma_x -> k0 -> conv0 -> k1 -> conv1 -> k2 -> dma_out, elementwise, 4x2 tiles alternating between
    column-major (b) and row-major tile order: nothing is shared, each converter buffers the whole tensor
    once (one bank: 64 x 4 B = 256 B)."""
    b = GraphBuilder("two_converters").add(ew_kernel("k0", 1, "math.exp"),
                                           ew_kernel("k1", 1, "arith.mulf", tile_order=(0, 1)),
                                           ew_kernel("k2", 1, "math.exp"))
    b.dma_in("dma_x", "k0.in0").convert("conv0", "k0.out", "k1.in0").convert("conv1", "k1.out", "k2.in0")
    return b.dma_out("dma_out", "k2.out").graph()


def diamond_graph() -> DataflowGraph:
    """dma_x -> k0 -> fork -> {k1 -> conv_a ; k2 -> conv_w} -> k3 (matmul) -> dma_out.

    conv_a is the 128 B (b) -> (c) converter; conv_w feeds the matmul's ``w`` operand (4x4 tiles re-read for
    every m tile), which shares no loop with (b): the whole tensor, 512 B."""
    b = GraphBuilder("diamond").add(ew_kernel("k0", 1, "math.exp"), ew_kernel("k1", 1, "arith.mulf"),
                                    ew_kernel("k2", 1, "math.exp"), matmul_kernel("k3"))
    b.dma_in("dma_x", "k0.in0").fork("fork", "k0.out", ["k1.in0", "k2.in0"])
    b.convert("conv_a", "k1.out", "k3.a").convert("conv_w", "k2.out", "k3.w")
    return b.dma_out("dma_out", "k3.out").graph()


CONVERTER_BYTES = 128  # (b) -> (c)
FULL_CONVERTER_BYTES = 8 * 8 * 4  # nothing shared: the whole 8x8 f32 tensor, one bank


def test_u55c_capacity_is_bram_plus_uram() -> None:
    assert U55C.onchip_bytes == 2016 * 36 * 1024 // 8 + 960 * 288 * 1024 // 8 == 44_679_168


def test_converter_cost_is_charged_on_its_input_edge() -> None:
    graph = chain_graph()
    assert graph.nodes["conv"].buffer.shape == (8, 2)
    assert graph.nodes["conv"].buffer.bytes == CONVERTER_BYTES
    assert edge_memory_cost(graph, "conv.in") == CONVERTER_BYTES
    assert [edge_memory_cost(graph, s) for s in ("k0.in0", "k1.in0", "k2.a", "k2.w", "k2.out")] == [0] * 5


def test_chain_fuses_into_one_group_under_the_u55c_cap() -> None:
    graph = apply_fusion(chain_graph(), U55C.onchip_bytes)
    assert graph.groups == [["dma_x", "dma_w", "k0", "k1", "conv", "k2", "dma_out"]]
    assert crossing_streams(graph) == absorbed_converters(graph) == []
    (group,) = fusion_report(graph, U55C)["groups"]
    assert group["kernels"] == ["k0", "k1", "k2"]
    assert group["converter_bytes"] == CONVERTER_BYTES
    assert group["external_in"] == group["external_out"] == []


def test_cap_exactly_at_the_converter_buffer_still_fuses() -> None:
    # C[g] + cost > C_max opens a group; equality joins.
    assert fuse_kernels(chain_graph(), CONVERTER_BYTES) == [["dma_x", "dma_w", "k0", "k1", "conv", "k2", "dma_out"]]


def test_converter_over_the_cap_splits_the_chain() -> None:
    graph = apply_fusion(chain_graph(), CONVERTER_BYTES - 1)
    # conv cannot join k1's group: it opens group 1, where the read DMA of conv.in absorbs it (C = 0); k2
    # joins at cost 0; dma_w goes with its consumer k2, dma_out with its producer.
    assert graph.groups == [["dma_x", "k0", "k1"], ["dma_w", "conv", "k2", "dma_out"]]
    assert absorbed_converters(graph) == ["conv"]
    report = fusion_report(graph, U55C)
    assert report["external_streams"] == ["conv.in"]
    assert [g["external_out"] for g in report["groups"]] == [["conv.in"], []]
    assert [g["external_in"] for g in report["groups"]] == [[], ["conv.in"]]
    assert [g["converter_bytes"] for g in report["groups"]] == [0, 0]
    assert report["external_bytes"] == 8 * (4 * 2 * 4)  # 8 tokens of 4x2 f32 through external memory


def test_second_converter_opens_a_group_when_the_first_filled_the_cap() -> None:
    c_max = 400  # one 256 B converter fits, two do not
    graph = apply_fusion(two_converter_chain(), c_max)
    assert graph.groups == [["dma_x", "k0", "conv0", "k1"], ["conv1", "k2", "dma_out"]]
    assert crossing_streams(graph) == ["conv1.in"]
    assert absorbed_converters(graph) == ["conv1"]
    assert [g["converter_bytes"] for g in fusion_report(graph, U55C)["groups"]] == [FULL_CONVERTER_BYTES, 0]
    assert fuse_kernels(two_converter_chain(), 2 * FULL_CONVERTER_BYTES) == [
        ["dma_x", "k0", "conv0", "k1", "conv1", "k2", "dma_out"]
    ]


def test_diamond_with_fork_fuses_whole() -> None:
    graph = apply_fusion(diamond_graph(), U55C.onchip_bytes)
    assert graph.groups == [["dma_x", "k0", "fork", "k1", "k2", "conv_a", "conv_w", "k3", "dma_out"]]
    assert fusion_report(graph, U55C)["groups"][0]["converter_bytes"] == CONVERTER_BYTES + FULL_CONVERTER_BYTES


def test_diamond_join_picks_the_most_recent_predecessor_group() -> None:
    graph = apply_fusion(diamond_graph(), 300)
    # Topological order: k0, fork, k1, k2, conv_a, conv_w, k3. conv_a (128 B) fits group 0; conv_w (512 B)
    # does not and opens group 1. k3 has predecessors in groups 0 (conv_a) and 1 (conv_w): it joins the
    # most recently opened one, so conv_a -> k3 goes through external memory.
    assert graph.groups == [["dma_x", "k0", "fork", "k1", "k2", "conv_a"], ["conv_w", "k3", "dma_out"]]
    assert crossing_streams(graph) == ["k3.a", "conv_w.in"]
    report = fusion_report(graph, U55C)
    assert report["groups"][0]["external_out"] == ["k3.a", "conv_w.in"]
    assert report["groups"][1]["external_in"] == ["k3.a", "conv_w.in"]
    assert [g["converter_bytes"] for g in report["groups"]] == [CONVERTER_BYTES, 0]
    assert absorbed_converters(graph) == ["conv_w"]


def test_nodes_fed_only_by_dmas_join_the_current_group() -> None:
    # ka and kb read only DMAs (no fused predecessor): they join the open group instead of each opening
    # one, so the block stays whole.
    b = GraphBuilder("two_sources").add(ew_kernel("ka", 1, "math.exp"), ew_kernel("kb", 1, "math.exp"),
                                        matmul_kernel("kc"))
    b.dma_in("dma_a", "ka.in0").dma_in("dma_b", "kb.in0", "weight")
    b.convert("conv_a", "ka.out", "kc.a").convert("conv_b", "kb.out", "kc.w").dma_out("dma_out", "kc.out")
    assert fuse_kernels(b.graph(), U55C.onchip_bytes) == [
        ["dma_a", "dma_b", "ka", "kb", "conv_a", "conv_b", "kc", "dma_out"]]


def test_apply_fusion_sets_groups_on_the_graph() -> None:
    graph = chain_graph()
    assert graph.groups == []
    assert apply_fusion(graph, CONVERTER_BYTES - 1) is graph
    assert graph.group_of()["conv"] == 1


def test_negative_cap_is_rejected() -> None:
    with pytest.raises(OptionError, match="c_max_bytes"):
        fuse_kernels(chain_graph(), -1)
