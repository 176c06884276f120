"""On-chip memory (unfused vs fused), memory allocation and resource estimates on hand-built graphs.

Every expected number is worked out by hand in the comments (f32 = 4 bytes; default FIFO depth 2 tokens).
"""

from __future__ import annotations

import pytest
from conftest import tiny_block
from test_fusion import CONVERTER_BYTES, GraphBuilder, chain_graph, diamond_graph, ew_kernel, matmul_kernel

from streamtensor.analysis.memory import (
    Buffer,
    converter_report,
    external_input_streams,
    fusion_report,
    memory_report,
    onchip_buffers,
)
from streamtensor.analysis.resources import (
    allocate,
    bram36_blocks,
    datapath_cost,
    estimate_resources,
    kernel_compute,
    lane_dims,
    memory_kind,
    scalar_op_cost,
    uram_blocks,
    value_copies,
)
from streamtensor.codegen.vitis.boards import U55C
from streamtensor.errors import UnsupportedOpError
from streamtensor.ir.affine import parse_affine_map
from streamtensor.ir.dataflow import DataflowGraph, DmaNode, KernelNode, LoopTiling
from streamtensor.ir.linalg import GenericOp, ScalarBody, ScalarOp, TensorType, Value
from streamtensor.transforms.fusion import apply_fusion


def chain_with_deep_fifo() -> DataflowGraph:
    graph = chain_graph()
    graph.streams["k1.in0"].depth = 5
    return graph


def test_chain_memory_by_hand() -> None:
    report = memory_report(chain_with_deep_fifo(), U55C)
    # Unfused: k0's and k1's results feed kernels (k1; k2 through conv), 8x8 f32 = 256 B each. k2's result only
    # reaches dma_out: a block output.
    assert report["unfused_tensors"] == {"k1.in0": 256, "conv.in": 256}
    assert report["intermediate_unfused_bytes"] == 512
    # Converter (b) -> (c): 2 x 8x2 f32.
    assert report["converter_bytes"] == CONVERTER_BYTES == 2 * 8 * 2 * 4
    # Kernel-local: input tiles k1 (4x2) 32 + k2.a (4x2) 32; k2's accumulator is one 2x4 output tile, 32. k0/k1
    # have no reduction, so no accumulator. k0's (4x2) 32 and k2.w's (4x4) 64 tiles hold data from dma_x and
    # dma_w: input streams.
    assert report["kernel_local_bytes"] == 32 + 32 + 32
    # FIFOs: conv.in, k2.a, k2.out: 2 x 8 f32 = 64 each; k1.in0: depth 5 -> 160. Input streams: k0.in0 64 and
    # k2.w 2 x 16 f32 = 128.
    assert report["fifo_bytes"] == 3 * 64 + 160
    assert report["input_stream_bytes"] == 32 + 64 + 64 + 128
    assert report["intermediate_fused_bytes"] == 128 + 96 + 352 == 576
    assert report["fused_to_unfused"] == pytest.approx(576 / 512)
    # DMA ping-pong: 2 tokens each: dma_x 2 x 32, dma_w 2 x 64, dma_out 2 x 32 (not counted as intermediate).
    assert report["dma_bytes"] == 64 + 128 + 64


def test_input_streams_are_the_data_read_from_external_memory() -> None:
    design, _ = tiny_block("gpt2", "decode")
    graph = design.dataflow
    external = external_input_streams(graph)
    reads: dict[str, list[str]] = {}
    for n in graph.nodes.values():
        if isinstance(n, DmaNode) and n.direction == "read":
            reads.setdefault(n.role, []).extend(n.outputs)
    # Weights, the hidden state, the KV cache as read and the position (a scalar register); the updated cache is
    # a kernel's result.
    assert set(reads) == {"weight", "input", "kv_cache", "scalar"}
    for role in ("weight", "input", "kv_cache"):
        assert reads[role] and all(s in external for s in reads[role])
    for s in reads["kv_cache"]:
        update = graph.consumer(s)
        assert isinstance(update, KernelNode) and not set(update.outputs) & external
    # A forwarding node passes the mark on only when every input carries external data.
    for n in graph.nodes.values():
        if isinstance(n, KernelNode):
            assert not set(n.outputs) & external
    memory = memory_report(graph, U55C)
    buffers = onchip_buffers(graph, U55C)
    assert memory["input_stream_bytes"] == sum(b.bytes for b in buffers if b.input_stream) > 0
    assert memory["intermediate_fused_bytes"] + memory["input_stream_bytes"] + memory["dma_bytes"] == \
        sum(b.bytes for b in buffers)
    assert all(b.kind in ("fifo", "input_tile", "converter", "reassociate") for b in buffers if b.input_stream)


def test_fusion_cuts_memory_on_a_long_stream() -> None:
    # 256x256 f32 through three elementwise kernels in 16x16 tiles, no converter.
    b = GraphBuilder("long").add(*(ew_kernel(f"k{i}", 1, "math.exp", tiles=(16, 16), unroll=(4, 1), size=256)
                                   for i in range(3)))
    graph = b.dma_in("dma", "k0.in0").direct("k0.out", "k1.in0").direct("k1.out", "k2.in0").dma_out(
        "out", "k2.out").graph()
    report = memory_report(graph, U55C)
    tensor, tile = 256 * 256 * 4, 16 * 16 * 4
    assert report["intermediate_unfused_bytes"] == 2 * tensor
    # The input tiles of k1 and k2 + three FIFOs of two tiles; k0's tile and the FIFO from the DMA hold the
    # block input.
    assert report["intermediate_fused_bytes"] == 2 * tile + 3 * 2 * tile
    assert report["input_stream_bytes"] == tile + 2 * tile
    assert report["fused_to_unfused"] == pytest.approx(8 * tile / (2 * tensor)) == 0.015625


def test_converter_report() -> None:
    graph = chain_graph()
    assert converter_report(graph) == [{
        "node": "conv",
        "group": 0,
        "absorbed": False,
        "source_type": str(graph.streams["conv.in"].type),
        "result_type": str(graph.streams["k2.a"].type),
        "buffer_shape": [8, 2],
        "shared_loops": 1,
        "bytes": 128,
    }]
    assert converter_report(apply_fusion(chain_graph(), CONVERTER_BYTES - 1))[0]["absorbed"] is True


def test_split_fusion_moves_the_crossing_through_dmas() -> None:
    graph = apply_fusion(chain_graph(), CONVERTER_BYTES - 1)
    report = fusion_report(graph, U55C)
    # Group 0: dma_x 64 + tiles k0 32, k1 32 + FIFOs k0.in0 64, k1.in0 64 + write DMA of conv.in 64.
    # Group 1: dma_w 128 + k2 tiles/accumulator 128 + dma_out 64 + FIFOs k2.a 64, k2.w 128, k2.out 64
    # + read DMA of conv.in pushing (absorbed) conv's result tokens, 4x2 f32: 64. conv itself: no buffer.
    assert [g["onchip_bytes"] for g in report["groups"]] == [320, 640]
    assert [g["kernels"] for g in report["groups"]] == [["k0", "k1"], ["k2"]]
    memory = memory_report(graph, U55C)
    assert memory["converter_bytes"] == 0
    # k1.in0, k2.a (k1's result, back from external memory) and k2.out; k0.in0 64 and k2.w 128 are input streams.
    assert memory["fifo_bytes"] == 64 + 64 + 64
    assert memory["input_stream_bytes"] == 32 + 64 + 64 + 128
    names = {b.name: b for b in onchip_buffers(graph, U55C)}
    assert (names["conv.in.dma_write"].group, names["conv.in.dma_read"].group) == (0, 1)
    assert "conv.in.fifo" not in names


@pytest.mark.parametrize(("width", "depth", "kind"), [
    (32, 32, "lutram"),  # 1024 bits: the LUTRAM limit
    (64, 32, "lutram"),  # 2048 bits but only 32 deep: one LUT per bit column
    (32, 33, "bram"),  # 1056 bits, 33 deep
    (1024, 40, "bram"),
    (72, 4096, "uram"),  # 288 Kib, 4K deep: exactly one URAM
    (144, 2048, "uram"),  # 288 Kib at the 2K depth minimum
    (144, 2047, "bram"),  # just under 288 Kib
    (72, 4095, "bram"),
    (4096, 72, "bram"),  # 288 Kib but shallow: would waste URAM depth
])
def test_memory_kind_thresholds(width: int, depth: int, kind: str) -> None:
    assert memory_kind(width, depth, U55C.memory) == kind


def test_block_counts_by_aspect_ratio() -> None:
    m = U55C.memory
    assert bram36_blocks(36, 1024, m) == bram36_blocks(18, 2048, m) == bram36_blocks(9, 4096, m) == 1
    assert bram36_blocks(1, 32768, U55C.memory) == bram36_blocks(72, 512, U55C.memory) == 1
    assert bram36_blocks(32, 33, U55C.memory) == 1  # 36x1K
    assert bram36_blocks(37, 1024, U55C.memory) == 2
    assert bram36_blocks(72, 4095, U55C.memory) == 8  # 9x4K x8, 18x2K x4x2, 36x1K x2x4, 72x512 x8
    assert bram36_blocks(256, 40, U55C.memory) == 4  # 72x512: ceil(256 / 72) = 4
    assert bram36_blocks(4096, 72, U55C.memory) == 57  # 72x512: ceil(4096 / 72)
    assert uram_blocks(72, 4096, U55C.memory) == 1
    assert uram_blocks(144, 2048, U55C.memory) == 2
    assert uram_blocks(73, 8192, U55C.memory) == 4


def test_allocate_counts_every_bank() -> None:
    pingpong = Buffer("c", "c", "converter", 144, 2048, 2, 2 * 144 * 2048, 0)
    a = allocate(pingpong, U55C.memory)
    assert (a.kind, a.uram, a.bram36, a.lut) == ("uram", 4, 0, 0)
    fifo = Buffer("f", "k", "fifo", 256, 40, 1, 256 * 40, 0)
    a = allocate(fifo, U55C.memory)
    assert (a.kind, a.uram, a.bram36, a.lut) == ("bram", 0, 4, 0)
    tile = Buffer("t", "k", "input_tile", 64, 4, 1, 256, 0)
    a = allocate(tile, U55C.memory)
    assert (a.kind, a.uram, a.bram36, a.lut) == ("lutram", 0, 0, 64)  # 64 bits wide x one 32-deep LUT


def test_chain_resources_by_hand() -> None:
    graph = chain_graph()
    graph.streams["k1.in0"].depth = 40  # 256 bits x 40: a BRAM FIFO of 4 blocks (72x512)
    report = estimate_resources(graph, U55C)
    # DSP: k0 exp 7 x 2 lanes; k1 mulf 3 x 2; k2 (mulf 3 + addf 2) x 8 lanes.
    assert {n: r.dsp for n, r in report.nodes.items() if r.dsp} == {"k0": 14, "k1": 6, "k2": 40}
    assert report.dsp == 60
    assert report.bram36 == report.nodes["k1"].bram36 == 4
    assert report.uram == 0
    # k0: base 500 + 2 lanes x exp 800 + input tile 64x4 in LUTRAM (64) + its input FIFO 256x2 (256) + 30.
    assert report.nodes["k0"].lut == 500 + 1600 + 64 + 256 + 30
    # conv: base 400 + ping-pong 2 banks of 256 bits x 2 in LUTRAM + its input FIFO (256 + 30).
    assert report.nodes["conv"].lut == 400 + 2 * 256 + 256 + 30
    assert report.lut == sum(r.lut for r in report.nodes.values())
    assert report.fits and report.overflow == []
    assert report.groups == [{"dsp": 60, "bram36": 4, "uram": 0, "lut": report.lut}]


def test_dsp_overflow_is_named() -> None:
    # 64x64 matmul with 32 x 64 lanes: 2048 x (3 + 2) = 10,240 DSP > 9,024; everything else fits.
    b = GraphBuilder("big").add(matmul_kernel("mm", tiles=(64, 64, 2), unroll=(32, 64, 1), size=64))
    graph = b.dma_in("dma_a", "mm.a").dma_in("dma_w", "mm.w", "weight").dma_out("dma_out", "mm.out").graph()
    report = estimate_resources(graph, U55C)
    assert report.dsp == 10_240 > U55C.totals.dsp
    assert report.overflow == ["dsp"]
    assert not report.fits
    assert report.utilization()["dsp"] == pytest.approx(10_240 / 9_024)


def test_composite_and_integer_op_costs() -> None:
    assert scalar_op_cost(ScalarOp("t", "math.tanh", ("a",), "f32"), {"a": 32}, {}, U55C.ops) == (14, 2140)
    assert scalar_op_cost(ScalarOp("e", "math.erf", ("a",), "f32"), {"a": 32}, {}, U55C.ops) == (43, 3620)
    # x^4: two squarings.
    fpowi = ScalarOp("p", "math.fpowi", ("a", "n"), "f32")
    assert scalar_op_cost(fpowi, {"a": 32, "n": 32}, {"n": 4}, U55C.ops) == (9, 240)  # fpowi<3>: 3 steps of mulf
    # f64 cores are larger than f32 ones; tanh in f64 is built from f64 cores.
    assert scalar_op_cost(ScalarOp("s", "arith.addf", ("a", "b"), "f64"), {"a": 64, "b": 64}, {}, U55C.ops) == (3, 700)
    tanh = scalar_op_cost(ScalarOp("t", "math.tanh", ("a",), "f64"), {"a": 64}, {}, U55C.ops)
    assert tanh == (26 + 10 + 2 * 3, 2000 + 200 + 2 * 700 + 3200)  # exp + mulf + 2 addf + divf
    assert scalar_op_cost(ScalarOp("c", "arith.cmpf", ("a", "b"), "f64"), {"a": 64, "b": 64}, {}, U55C.ops) == (0, 150)
    with pytest.raises(UnsupportedOpError, match="unsupported op .math.cbrt. of dialect .math.: the resource model"):
        scalar_op_cost(ScalarOp("s", "math.cbrt", ("a",), "f32"), {"a": 32}, {}, U55C.ops)


def test_int8_matmul_packs_two_macs_per_dsp() -> None:
    # acc(i32) += extsi(a: i8) * extsi(w: i8): an 8x8 multiply (0.5 DSP) and a 32-bit adder (32 LUTs).
    i8, i32 = TensorType((8, 8), "i8"), TensorType((8, 8), "i32")
    body = ScalarBody((("a", "i8"), ("w", "i8"), ("acc", "i32")), (
        ScalarOp("ea", "arith.extsi", ("a",), "i32"), ScalarOp("ew", "arith.extsi", ("w",), "i32"),
        ScalarOp("p", "arith.muli", ("ea", "ew"), "i32"), ScalarOp("s", "arith.addi", ("acc", "p"), "i32"),
    ), ("s",))
    maps = [parse_affine_map(m) for m in ("(d0, d1, d2) -> (d0, d2)", "(d0, d1, d2) -> (d2, d1)",
                                          "(d0, d1, d2) -> (d0, d1)")]
    op = GenericOp([Value("y", i32)], "qmm", [Value("a", i8), Value("w", i8)], [Value("init", i32)], maps,
                   ["parallel", "parallel", "reduction"], body)
    loops = [LoopTiling(8, 4, 2, False), LoopTiling(8, 4, 1, False), LoopTiling(8, 4, 2, True)]
    node = KernelNode("qmm", [], [], op, loops, [0, 1, 2], [2, 0, 1])
    assert kernel_compute(node, U55C.ops) == (2, 4 * (20 + 32))  # 4 lanes x 0.5 DSP; 4 x (muli glue + adder)


def _quantized_gemv() -> GenericOp:
    """acc(i32) += extsi(fptosi(roundeven(x * s))) * extsi(w): a GEMV whose activation is quantized inside the
    contraction (as fuse_into_contractions builds it): the float math reads x[k] only."""
    f32, i8, i32 = TensorType((64,), "f32"), TensorType((32, 64), "i8"), TensorType((32,), "i32")
    body = ScalarBody((("x", "f32"), ("w", "i8"), ("acc", "i32")), (
        ScalarOp("c", "arith.constant", (), "f32", (("value", 0.5),)),
        ScalarOp("m", "arith.mulf", ("x", "c"), "f32"), ScalarOp("r", "math.roundeven", ("m",), "f32"),
        ScalarOp("q", "arith.fptosi", ("r",), "i8"), ScalarOp("eq", "arith.extsi", ("q",), "i32"),
        ScalarOp("ew", "arith.extsi", ("w",), "i32"), ScalarOp("p", "arith.muli", ("eq", "ew"), "i32"),
        ScalarOp("s", "arith.addi", ("acc", "p"), "i32"),
    ), ("s",))
    maps = [parse_affine_map(m) for m in ("(d0, d1) -> (d1)", "(d0, d1) -> (d0, d1)", "(d0, d1) -> (d0)")]
    return GenericOp([Value("y", i32)], "qgemv", [Value("x", f32), Value("w", i8)], [Value("init", i32)], maps,
                     ["parallel", "reduction"], body)


def test_lane_invariant_math_is_charged_once_per_lane_that_indexes_it() -> None:
    op = _quantized_gemv()
    # A MAC lane: 0.5 DSP (8x8 multiply packed two per DSP48E2), 20 + 32 LUTs (glue, 32-bit adder); the
    # quantizer: mulf (3 DSP, 80 LUT), roundeven (100), fptosi (200).
    # 16 output lanes share one quantized x[k]: its float math is built once, the MACs 16 times.
    outputs = [LoopTiling(32, 16, 16, False), LoopTiling(64, 16, 1, True)]
    assert value_copies(op, outputs, [1, 0])["q"] == 1 and value_copies(op, outputs, [1, 0])["p"] == 16
    node = KernelNode("qgemv", [], [], op, outputs, [0, 1], [1, 0])
    assert kernel_compute(node, U55C.ops) == (3 + 8, 380 + 16 * 52)
    # 4 reduction lanes read 4 elements of x: 4 quantizers, whichever loop is nested outside.
    both = [LoopTiling(32, 16, 4, False), LoopTiling(64, 16, 4, True)]
    for order in ([1, 0], [0, 1]):
        assert lane_dims(op, both, order) == [1, 0]  # the loop the float math reads goes outermost
        assert datapath_cost(op, both, order, U55C.ops) == (4 * 3 + 16 * 0.5, 4 * 380 + 16 * 52)


def test_diamond_fork_memory_and_resources() -> None:
    graph = apply_fusion(diamond_graph(), 300)
    # k0's result reaches k1 and k2 through the fork; k1's and k2's reach k3 through the converters.
    assert memory_report(graph, U55C)["unfused_tensors"] == {"fork.in": 256, "conv_a.in": 256, "conv_w.in": 256}
    report = estimate_resources(graph, U55C)
    # A fork stores nothing: 40 LUTs per output + the FIFO it reads (256 bits x 2 in LUTRAM + 30).
    assert report.nodes["fork"].lut == 2 * 40 + 256 + 30
    assert [n.group for n in report.nodes.values() if n.name in ("conv_a", "conv_w")] == [0, 1]
    assert len(report.groups) == 2
    assert sum(g["lut"] for g in report.groups) == report.lut
    # conv_w is absorbed by the read DMA of its crossing input: base LUTs + a DMA engine, no ping-pong; its
    # input FIFO is replaced by that DMA's ping-pong (2 x one 512-bit word, LUTRAM).
    assert report.nodes["conv_w"].lut == 400 + 2000 + 2 * 512
