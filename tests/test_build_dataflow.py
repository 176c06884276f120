"""Linalg -> dataflow on small hand-built graphs (IR in, dataflow out), the layout algebra, driver and CLI."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from linalg_builders import build as _build
from linalg_builders import check_exec as _check_exec
from linalg_builders import empty as _empty
from linalg_builders import fill as _fill
from linalg_builders import graph as _graph
from linalg_builders import matmul as _matmul
from linalg_builders import matmul_graph as _matmul_graph
from linalg_builders import nodes_of as _of
from linalg_builders import unary as _unary
from linalg_builders import value as _v

from streamtensor import compile, compile_llm_block
from streamtensor.cli import main
from streamtensor.driver import Progress
from streamtensor.errors import VerificationError
from streamtensor.ir import layout
from streamtensor.ir.affine import AffineDim, AffineMap, parse_affine_map
from streamtensor.ir.dataflow import (
    ChunkNode,
    ConcatNode,
    ConverterNode,
    DmaNode,
    ForkNode,
    KernelNode,
    ReassociateNode,
    print_dataflow,
)
from streamtensor.ir.itensor import ITensorType, parse_itensor_type
from streamtensor.ir.layout import (
    aligned_type,
    chunk_error,
    chunk_type,
    concat_sources,
    flat_offsets,
    reassociate_type,
    reassociation_error,
    reassociation_key,
    row_major_type,
    segment_types,
)
from streamtensor.ir.linalg import ConcatOp, Graph, ReshapeOp, SliceOp

# --- kernels and DMAs --------------------------------------------------------------------------------------


def test_matmul_tile4_stream_types() -> None:
    graph, _ = _matmul_graph()
    dfg = _build(graph, 4)
    assert sorted(dfg.nodes) == ["dma_a_to_matmul_1", "dma_b_to_matmul_1", "dma_c_to_output", "matmul_1"]
    kernel = dfg.nodes["matmul_1"]
    assert isinstance(kernel, KernelNode)
    assert [(lt.size, lt.tile, lt.unroll, lt.reduction) for lt in kernel.loops] == [
        (8, 4, 1, False), (8, 4, 1, False), (8, 4, 1, True)]
    assert kernel.tile_order == [0, 1, 2] and kernel.point_order == [2, 0, 1]
    # The fill feeding the accumulator is folded: no fill kernel, no init stream.
    assert kernel.init_constants == {0: 0.0} and kernel.input_operands == [0, 1]
    types = [str(dfg.streams[s].type) for s in kernel.inputs + kernel.outputs]
    assert types == [
        "itensor<4x4xf32, tensor 8x8, [2, 2, 2] * [4, 4, 4], (d0, d1, d2) -> (d0, d2)>",
        "itensor<4x4xf32, tensor 8x8, [2, 2, 2] * [4, 4, 4], (d0, d1, d2) -> (d2, d1)>",
        "itensor<4x4xf32, tensor 8x8, [2, 2] * [4, 4], (d0, d1) -> (d0, d1)>",
    ]
    # DMAs read in the kernel's types directly and the write takes the producer's type.
    assert dfg.streams[dfg.nodes["dma_a_to_matmul_1"].outputs[0]].type == kernel.operand_type(0)
    assert dfg.streams[dfg.nodes["dma_c_to_output"].inputs[0]].type == kernel.result_type(0)
    assert dfg.outputs == ["dma_c_to_output"] and [v.name for v in dfg.inputs] == ["a", "b"]
    text = print_dataflow(dfg)
    assert "kernel @matmul_1(%a, %b) -> (%c)" in text and "init0 = 0.0" in text
    _check_exec(graph, dfg)


def test_transposed_consumer_gets_full_converter() -> None:
    graph, ops = _matmul_graph()
    c = ops[-1].results[0]
    empty = _empty("e2", 8, 8)
    tr = _unary("t", c, empty.results[0], "transpose_1", "(d0, d1) -> (d1, d0)")
    graph = _graph(graph.inputs, [*ops, empty, tr], [tr.results[0]])
    # Layout-aware tile orders: the transpose (all parallel) walks its tiles in the matmul's order (its d1
    # indexes c's rows), writing its own output column-major: the write DMA addresses memory in any order.
    dfg = _build(graph, 4)
    assert not _of(dfg, ConverterNode) and dfg.nodes["transpose_1"].tile_order == [1, 0]
    _check_exec(graph, dfg)
    dfg = _build(graph, 4, layout_aware_order=False)
    (conv,) = _of(dfg, ConverterNode)
    assert conv.name == "conv_matmul_1_to_transpose_1"
    assert str(dfg.streams[conv.outputs[0]].type) == \
        "itensor<4x4xf32, tensor 8x8, [2, 2] * [4, 4], (d0, d1) -> (d1, d0)>"
    # Column-major tiles of a row-major stream: nothing shared, the whole 8x8 tensor is buffered, in one bank
    # (filled once and drained once per run).
    assert conv.buffer.shape == (8, 8) and conv.buffer.shared_loops == 0
    assert (conv.buffer.banks, conv.buffer.bytes) == (1, 64 * 4)
    assert "transpose_1 reads %c of matmul_1 in another layout" in conv.reason
    _check_exec(graph, dfg)


def test_fork_and_shared_row_buffer() -> None:
    """C feeds a second matmul (A operand, re-read per column tile) and an elementwise kernel: a fork, one
    branch direct, the other through a converter buffering one row of tiles."""
    graph, ops = _matmul_graph()
    c = ops[-1].results[0]
    w = _v("w", 8, 8)
    empty2, empty3 = _empty("e2", 8, 8), _empty("e3", 8, 8)
    fill2 = _fill("z2", empty2.results[0], "fill_2")
    mm2 = _matmul("d", c, w, fill2.results[0], "matmul_2")
    ex = _unary("x", c, empty3.results[0], "elementwise_1", "(d0, d1) -> (d0, d1)")
    graph = _graph([*graph.inputs, w], [*ops, empty2, fill2, mm2, empty3, ex],
                   [mm2.results[0], ex.results[0]])
    # Layout-aware: matmul_2 puts its reduction outside its column loop (order m, k, n), so it reads every
    # tile of c once, in c's order: no converter, two pending accumulator tiles (one row of output tiles).
    dfg = _build(graph, 4)
    assert not _of(dfg, ConverterNode)
    mm2_node = dfg.nodes["matmul_2"]
    assert isinstance(mm2_node, KernelNode) and mm2_node.tile_order == [0, 2, 1] and mm2_node.pending_tiles == 2
    _check_exec(graph, dfg)
    dfg = _build(graph, 4, layout_aware_order=False)
    (fork,) = _of(dfg, ForkNode)
    assert fork.name == "fork_c" and len(fork.outputs) == 2
    targets = sorted(dfg.streams[s].target for s in fork.outputs)
    assert targets == ["conv_matmul_1_to_matmul_2", "elementwise_1"]
    conv = dfg.nodes["conv_matmul_1_to_matmul_2"]
    assert str(dfg.streams[conv.outputs[0]].type) == \
        "itensor<4x4xf32, tensor 8x8, [2, 2, 2] * [4, 4, 4], (d0, d1, d2) -> (d0, d2)>"
    # Loop 0 walks the rows in both layouts: one row of tiles (4x8) per ping-pong half.
    assert conv.buffer.shape == (4, 8) and conv.buffer.shared_loops == 1 and conv.buffer.bytes == 2 * 32 * 4
    _check_exec(graph, dfg)


def test_reshape_becomes_reassociate_when_legal() -> None:
    graph, ops = _matmul_graph()
    c = ops[-1].results[0]
    expand = ReshapeOp([_v("c3", 1, 8, 8)], c, [[0, 1], [2]], expand=True)
    empty = _empty("e3", 1, 8, 8)
    ex = _unary("y", expand.results[0], empty.results[0], "elementwise_1", "(d0, d1, d2) -> (d0, d1, d2)")
    graph = _graph(graph.inputs, [*ops, expand, empty, ex], [ex.results[0]])
    dfg = _build(graph, 4)
    (re,) = _of(dfg, ReassociateNode)
    assert re.name == "reassociate_c3" and not _of(dfg, ConverterNode)
    src, res = dfg.streams[re.inputs[0]].type, dfg.streams[re.outputs[0]].type
    # Kernel port types leave out one-trip loops (the unit dim is at offset 0).
    assert str(res) == "itensor<1x4x4xf32, tensor 1x8x8, [2, 2] * [4, 4], (d0, d1) -> (0, d0, d1)>"
    assert src == dfg.nodes["matmul_1"].result_type(0) and reassociation_error(src, res) is None
    _check_exec(graph, dfg)


def test_reshape_that_splits_tiles_falls_back_to_a_converter() -> None:
    """8x8 in 4x4 tiles flattened to 64 (tiles of 4): the 4x4 tiles are not contiguous and the consumer's
    4-element runs cut rows of tiles, so one converter re-tiles the matrix into row segments of 4 first."""
    graph, ops = _matmul_graph()
    c = ops[-1].results[0]
    flat = ReshapeOp([_v("f", 64)], c, [[0, 1]], expand=False)
    empty = _empty("e4", 64)
    ex = _unary("y", flat.results[0], empty.results[0], "elementwise_1", "(d0) -> (d0)")
    graph = _graph(graph.inputs, [*ops, flat, empty, ex], [ex.results[0]])
    # Agreed tiles: the matmul's rows shrink to 1, its 1x4 tiles are the consumer's runs of 4, the reshape is
    # a plain reassociation.
    dfg = _build(graph, 4)
    assert not _of(dfg, ConverterNode) and len(_of(dfg, ReassociateNode)) == 1
    assert [lt.tile for lt in dfg.nodes["matmul_1"].loops] == [1, 4, 4]
    _check_exec(graph, dfg)
    dfg = _build(graph, 4, agree_tiles=False)
    (conv,) = _of(dfg, ConverterNode)
    (re,) = _of(dfg, ReassociateNode)
    assert dfg.consumer(conv.outputs[0]) is re and dfg.consumer(re.outputs[0]).name == "elementwise_1"
    assert str(dfg.streams[conv.outputs[0]].type) == \
        "itensor<1x4xf32, tensor 8x8, [8, 2] * [1, 4], (d0, d1) -> (d0, d1)>"
    assert conv.buffer.shape == (8, 8) and "reshape to [64]" in conv.reason
    _check_exec(graph, dfg)


def test_reshape_of_external_tensor_folds_into_dma_view() -> None:
    a, b = _v("a", 64), _v("b", 8, 8)
    expand = ReshapeOp([_v("a2", 8, 8)], a, [[0, 1]], expand=True)
    empty, e2 = _empty("e", 8, 8), _empty("e2", 8, 8)
    fill = _fill("z", empty.results[0], "fill_1")
    mm = _matmul("c", expand.results[0], b, fill.results[0], "matmul_1")
    graph = _graph([a, b], [expand, empty, fill, mm, e2], [mm.results[0]])
    dfg = _build(graph, 4)
    dma = dfg.nodes["dma_a_to_matmul_1"]
    assert isinstance(dma, DmaNode) and dma.view == [expand] and dma.view_shape() == (8, 8)
    assert not _of(dfg, ReassociateNode) and not _of(dfg, ConverterNode)
    _check_exec(graph, dfg)


def _rotate_half_graph() -> Graph:
    """y = exp(concat(x[:, 4:], x[:, :4])) with x = exp(a): a kernel, two slices, a concat, a kernel."""
    a = _v("a", 4, 8)
    e1, e2 = _empty("e1", 4, 8), _empty("e2", 4, 8)
    x = _unary("x", a, e1.results[0], "elementwise_1", "(d0, d1) -> (d0, d1)", "math.exp")
    lo = SliceOp([_v("lo", 4, 4)], x.results[0], (0, 0), (4, 4), (1, 1))
    hi = SliceOp([_v("hi", 4, 4)], x.results[0], (0, 4), (4, 4), (1, 1))
    cat = ConcatOp([_v("r", 4, 8)], [hi.results[0], lo.results[0]], 1)
    y = _unary("y", cat.results[0], e2.results[0], "elementwise_2", "(d0, d1) -> (d0, d1)")
    return _graph([a], [e1, e2, x, lo, hi, cat, y], [y.results[0]])


def test_slices_and_concat_on_tile_boundaries_stream_directly() -> None:
    graph = _rotate_half_graph()
    dfg = _build(graph, 4)
    chunks, (concat,) = _of(dfg, ChunkNode), _of(dfg, ConcatNode)
    assert sorted(c.name for c in chunks) == ["chunk_hi", "chunk_lo"] and concat.name == "concat_r"
    assert {c.offsets for c in chunks} == {(0, 0), (0, 4)} and concat.dim == 1
    assert not _of(dfg, ConverterNode) and len(_of(dfg, ForkNode)) == 1
    assert str(dfg.streams[concat.outputs[0]].type) == \
        "itensor<4x4xf32, tensor 4x8, [2] * [4], (d0) -> (0, d0)>"
    _check_exec(graph, dfg)


def test_slice_cutting_tiles_gets_an_aligning_converter() -> None:
    graph = _rotate_half_graph()
    # Agreed tiles: the producer's columns shrink to the slice bounds (4), the slices stream directly.
    dfg = _build(graph, 8)
    assert not _of(dfg, ConverterNode) and [lt.tile for lt in dfg.nodes["elementwise_1"].loops] == [4, 4]
    _check_exec(graph, dfg)
    dfg = _build(graph, 8, agree_tiles=False)  # the producer streams one 4x8 tile: the slices cut it in half
    convs = _of(dfg, ConverterNode)
    reasons = sorted(c.reason for c in convs)
    assert any("slice" in r and "cuts through tiles" in r for r in reasons)
    before_chunk = [c for c in convs if isinstance(dfg.consumer(c.outputs[0]), ChunkNode | ForkNode)]
    assert str(dfg.streams[before_chunk[0].outputs[0]].type) == \
        "itensor<4x4xf32, tensor 4x8, [2] * [4], (d0) -> (0, d0)>"
    for c in convs:
        assert dfg.streams[c.inputs[0]].type != dfg.streams[c.outputs[0]].type
    _check_exec(graph, dfg)


def test_verify_rejects_broken_graphs() -> None:
    graph, _ = _matmul_graph()
    dfg = _build(graph, 4)
    kernel = dfg.nodes["matmul_1"]
    stream = dfg.streams[kernel.inputs[0]]
    good = stream.type
    stream.type = ITensorType((4, 4), "f32", (8, 8), (2, 2), (4, 4), parse_affine_map("(d0, d1) -> (d0, d1)"))
    with pytest.raises(VerificationError, match="kernel matmul_1: input port 0 has type"):
        dfg.verify()
    stream.type = good
    kernel.tile_order = [2, 0, 1]  # a legal order, but the streams still carry the (m, n, k) types
    with pytest.raises(VerificationError, match="input port 0 has type .* its tiling gives itensor<4x4xf32, "
                       "tensor 8x8, \\[2, 2\\] \\* \\[4, 4\\], \\(d0, d1\\) -> \\(d1, d0\\)>"):
        dfg.verify()
    kernel.tile_order = [0, 0, 1]
    with pytest.raises(VerificationError, match="loops / tile_order do not cover"):
        dfg.verify()


# --- layout algebra ----------------------------------------------------------------------------------------


def test_reassociate_type_fits_and_rejects() -> None:
    rows = parse_itensor_type("itensor<4x8xf32, tensor 8x8, [2] * [4], (d0) -> (d0, 0)>")
    flat = reassociate_type(rows, (64,))
    assert str(flat) == "itensor<32xf32, tensor 64, [2] * [32], (d0) -> (d0)>"
    assert reassociation_error(rows, flat) is None and reassociate_type(flat, (8, 8)) == rows
    # Row-major 4-element tiles of a flat 64 cover half a row of 8x8: offsets (n // 2, n % 2 * 4) are affine
    # once the 16-trip loop is split into 8 x 2 (same tokens, one more loop).
    quarter = row_major_type((64,), (4,), "f32")
    split = reassociate_type(quarter, (8, 8))
    assert str(split) == "itensor<1x4xf32, tensor 8x8, [8, 2] * [1, 4], (d0, d1) -> (d0, d1)>"
    assert reassociation_error(quarter, split) is None
    # 16x16 tiles of 32x1024 (q of the QKV projection) viewed as 32 x 16 heads x 64: the column loop splits
    # into heads x 4 column tiles per head, in either loop order.
    for text, want in (("[2, 64] * [16, 16], (d0, d1) -> (d0, d1)",
                        "[2, 16, 4] * [16, 1, 16], (d0, d1, d2) -> (d0, d1, d2)"),
                       ("[64, 2] * [16, 16], (d0, d1) -> (d1, d0)",
                        "[16, 4, 2] * [1, 16, 16], (d0, d1, d2) -> (d2, d0, d1)")):
        q = parse_itensor_type(f"itensor<16x16xf32, tensor 32x1024, {text}>")
        heads = reassociate_type(q, (32, 16, 64))
        assert str(heads) == f"itensor<16x1x16xf32, tensor 32x16x64, {want}>"
        assert reassociation_error(q, heads) is None
    # 6-element runs of a flat 60 viewed as 6x10 straddle rows: no split walks them affinely.
    assert reassociate_type(row_major_type((60,), (6,), "f32"), (6, 10)) is None
    # Column tiles are not contiguous in the flat index space at all.
    cols = parse_itensor_type("itensor<8x4xf32, tensor 8x8, [2] * [4], (d0) -> (0, d0)>")
    assert reassociate_type(cols, (64,)) is None
    assert "flat index patterns" in reassociation_error(cols, row_major_type((64,), (32,), "f32"))


def test_reassociation_key_is_equal_exactly_when_reassociation_error_is_none() -> None:
    """The tile-order search compares ``reassociation_key``s (one per type) instead of asking
    ``reassociation_error`` about every pair: over reshapes, splits, segment layouts, another order, other tiles
    and an uneven split of one tensor, the two must agree on every pair."""
    rows = parse_itensor_type("itensor<4x8xf32, tensor 8x8, [2] * [4], (d0) -> (d0, 0)>")
    quarter = row_major_type((64,), (4,), "f32")
    q = parse_itensor_type("itensor<16x16xf32, tensor 32x1024, [2, 64] * [16, 16], (d0, d1) -> (d0, d1)>")
    q_cols = parse_itensor_type("itensor<16x16xf32, tensor 32x1024, [64, 2] * [16, 16], (d0, d1) -> (d1, d0)>")
    types = [rows, reassociate_type(rows, (64,)), quarter, reassociate_type(quarter, (8, 8)),
             parse_itensor_type("itensor<8x4xf32, tensor 8x8, [2] * [4], (d0) -> (0, d0)>"),
             row_major_type((64,), (32,), "f32"), row_major_type((8, 8), (8, 4), "f32"),
             q, q_cols, reassociate_type(q, (32, 16, 64)), reassociate_type(q_cols, (32, 16, 64)),
             *(t for pair in segment_types((2, 4, 6), (8, 6), "f32") for t in pair)]
    agree = {(reassociation_key(a) == reassociation_key(b), reassociation_error(a, b) is None)
             for a in types for b in types if a is not None and b is not None}
    assert agree == {(True, True), (False, False)}
    assert any(a != b and reassociation_error(a, b) is None for a in types for b in types)  # not only equal types


def test_segment_layouts_reassociate() -> None:
    pairs = segment_types((2, 4, 6), (8, 6), "f32")
    lengths = [src.token_elements for src, _ in pairs]
    assert lengths == [1, 2, 3, 6, 12, 24, 48]  # runs both shapes can tile; 48 = the whole tensor
    for src, res in pairs:
        assert reassociation_error(src, res) is None
    src, res = pairs[-2]
    assert src.element_shape == (1, 4, 6) and res.element_shape == (4, 6)


def test_chunk_and_concat_layouts() -> None:
    t = row_major_type((8, 8), (4, 4), "f32")
    right = chunk_type(t, (0, 4), (8, 4))
    assert str(right) == "itensor<4x4xf32, tensor 8x4, [2] * [4], (d0) -> (d0, 0)>"  # one-trip loop dropped
    assert chunk_error(t, (0, 4), (8, 4), right) is None
    assert chunk_type(t, (0, 2), (8, 4)) is None
    assert "straddles" in chunk_error(t, (0, 2), (8, 4), right)
    aligned = aligned_type((8, 8), "f32", [(4, 4)], {1: [2, 6]})
    assert aligned.element_shape == (4, 2) and chunk_type(aligned, (0, 2), (8, 4)) is not None
    left = chunk_type(t, (0, 0), (8, 4))
    assert list(concat_sources([left, right], 1, t)) == [0, 1, 0, 1]
    halves = parse_itensor_type("itensor<8x4xf32, tensor 8x8, [2] * [4], (d0) -> (0, d0)>")
    with pytest.raises(ValueError, match="input 0 .* is not the chunk"):
        concat_sources([left, right], 1, halves)  # 8x4 result tiles vs 4x4 input tiles


# --- driver and command line -------------------------------------------------------------------------------


def test_cli_writes_dataflow_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gpt2"
    assert main(["compile", "gpt2", "--mode", "decode", "--max-len", "16", "-o", str(out), "-q",
                 "--default-tile-size", "8", "--overall-unroll-size", "64", "--uniform-unroll",
                 "--no-permute"]) == 0
    printed = capsys.readouterr().out
    assert "  dataflow: " in printed and " kernels, " in printed and " converters (" in printed
    text = (out / "dataflow.mlir").read_text()
    assert text.splitlines()[0] == "// Generated by streamtensor 0.1.0"
    assert "kernel @matmul_1(" in text and "itensor_converter @conv_" in text
    report = json.loads((out / "report.json").read_text())
    assert {"tiling", "dataflow", "fusion"} <= set(report["stages"])
    assert report["tiling"]["default_tile_size"] == 8 and report["tiling"]["intensity_aware_unroll"] is False
    assert report["tiling"]["total_lanes"] <= 64
    kernels = {k["name"]: k for k in report["kernels"]}
    mm = kernels["matmul_1"]
    assert all(lp["tile"] <= 8 and lp["size"] % lp["tile"] == 0 for lp in mm["loops"])
    assert mm["point_order"] == mm["tile_order"]  # --no-permute
    assert all(parse_itensor_type(t) for t in mm["inputs"] + mm["outputs"])
    assert report["converters"], "a GPT-2 block needs converters"
    for c in report["converters"]:
        assert c["source_type"] != c["result_type"] and c["bytes"] > 0
        assert c["node"].startswith("conv_") and c["reason"]
    assert report["dataflow"]["nodes"]["kernel"] == len(report["kernels"])


def test_cli_can_stop_after_the_dataflow_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The dataflow graph without FIFO sizing: the same kernels, converters and fusion, FIFOs left unsized, no
    # allocation in the report and no Vitis project.
    sized, plain = tmp_path / "sized", tmp_path / "plain"
    common = ["compile", "gpt2", "--mode", "decode", "--max-len", "16", "-q"]
    assert main([*common, "-o", str(sized)]) == 0
    assert main([*common, "-o", str(plain), "--stop-after-dataflow"]) == 0
    assert "stopped after the dataflow graph" in capsys.readouterr().out
    assert sorted(p.name for p in plain.iterdir()) == ["dataflow.mlir", "linalg.mlir", "report.json"]
    text = (plain / "dataflow.mlir").read_text()
    assert ", depth " not in text and ", depth " in (sized / "dataflow.mlir").read_text()
    report, full = (json.loads((d / "report.json").read_text()) for d in (plain, sized))
    assert "simulation" not in report and "fifo_lp" not in report and "allocation.fifo_lp" not in report["stages"]
    assert report["kernels"] == full["kernels"] and report["converters"] == full["converters"]
    assert [g["nodes"] for g in report["fusion"]["groups"]] == [g["nodes"] for g in full["fusion"]["groups"]]
    assert report["options"]["size_fifos"] is False


def test_cli_can_keep_the_norms_unfused(tmp_path: Path) -> None:
    # By default the RMSNorm scaling before Q/K/V moves into the projections (its rsqrt stays a kernel over the
    # rows); with --no-fuse-into-contractions the norm is one kernel whose result is forked to them.
    common = ["compile", "llama", "--mode", "prefill", "--seq-len", "8", "-q", "--stop-after-dataflow"]
    fused, kept = tmp_path / "fused", tmp_path / "kept"
    assert main([*common, "-o", str(fused)]) == 0
    assert main([*common, "-o", str(kept), "--no-fuse-into-contractions"]) == 0
    reports = {d: json.loads((d / "report.json").read_text()) for d in (fused, kept)}
    assert reports[fused]["options"]["fuse_into_contractions"] is True
    assert reports[kept]["options"]["fuse_into_contractions"] is False
    assert "fuse_into_contractions" in reports[fused]["stages"]
    assert "fuse_into_contractions" not in reports[kept]["stages"]
    q = {d: next(k for k in reports[d]["kernels"] if k["name"] == "matmul_1") for d in (fused, kept)}
    # fused: the weight, then the norm's input, its weight and the rsqrt of each row; kept: the weight, the norm
    assert len(q[fused]["inputs"]) == 4 and len(q[kept]["inputs"]) == 2
    rsqrt = {d: next(k for k in reports[d]["kernels"] if k["name"] == "elementwise_rsqrt_1") for d in (fused, kept)}
    assert len(rsqrt[fused]["loops"]) == 1 and len(rsqrt[kept]["loops"]) == 2  # over the rows / the elements


def test_cli_rejects_bad_tiling_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["compile", "gpt2", "-o", "/tmp/unused", "--default-tile-size", "0"])
    assert "argument --default-tile-size: 0 must be at least 1" in capsys.readouterr().err


def test_fill_read_as_data_stays_a_kernel_and_outputs_of_inputs_are_copied() -> None:
    """A fill that an elementwise kernel reads is computed on chip (the matmul's init still folds); a block
    output that is a reshape of a block input is read and written back through DMA views."""
    graph, (e, z, mm) = _matmul_graph()
    a = graph.inputs[0]
    e2 = _empty("e2", 8, 8)
    neg = _unary("n", z.results[0], e2.results[0], "elementwise_1", "(d0, d1) -> (d0, d1)")
    flat = ReshapeOp([_v("af", 64)], a, [[0, 1]], expand=False)
    graph = _graph(graph.inputs, [e, z, mm, e2, neg, flat], [mm.results[0], neg.results[0], flat.results[0]])
    dfg = _build(graph, 4)
    assert isinstance(dfg.nodes["fill_1"], KernelNode) and dfg.nodes["matmul_1"].init_constants == {0: 0.0}
    write = dfg.nodes[dfg.outputs[2]]
    assert isinstance(write, DmaNode) and write.direction == "write" and write.view == [flat]
    read = dfg.producer(write.inputs[0])
    assert isinstance(read, DmaNode) and read.tensor.name == "a" and read.view == []
    _check_exec(graph, dfg)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["prefill", "decode"])
def test_paper_size_dataflow(family: str, mode: str) -> None:
    design, _ = compile_llm_block(family, mode=mode, seq_len=32, max_len=128, size="paper")
    assert design.dataflow is not None
    design.dataflow.verify()
    # A prefill block's dataflow graph is built by the token-tile judge, inside "tiling", and taken as it is: no
    # second build (a decode block has one candidate, no judge: it is built after the tiling).
    assert ("dataflow" in design.stages) == (mode == "decode")
    for c in design.report["converters"]:
        assert c["source_type"] != c["result_type"]


def test_a_stage_run_again_adds_up_and_each_design_keeps_its_own_times() -> None:
    """The FIFO sizing runs again after a contention re-size: its stage time is both runs'. A progress shared by
    several compiles (an LLM build's kernels) keeps adding up, but each design keeps the times of its own."""
    progress = Progress(False, "test")
    for _ in range(2):
        progress.run("allocation.fifo_lp", lambda: time.sleep(0.01))
    assert progress.seconds["allocation.fifo_lp"] >= 0.02
    other = Progress(False, "kernel")
    other.run("tiling", lambda: time.sleep(0.01))
    progress.merge(other)
    assert progress.seconds["tiling"] == other.seconds["tiling"]
    module, args = torch.nn.Linear(4, 3), [torch.ones(2, 4)]
    first = compile(module, args, size_fifos=False, _progress=progress)
    before = dict(first.stages)
    compile(module, args, size_fifos=False, _progress=progress)
    assert first.stages == before  # the second compile's stages went to the progress, not to the first design


def _fit_token_by_token(coords: np.ndarray, trips: tuple[int, ...]) -> np.ndarray | None:
    """The affine fit spelled out over every token's coordinates (rank x tokens) and loop counters."""
    counters = np.indices(trips, dtype=np.int64).reshape(len(trips), -1)
    coeff = np.zeros((coords.shape[0], len(trips)), dtype=np.int64)
    for k, trip in enumerate(trips):
        if trip > 1:
            coeff[:, k] = coords[:, math.prod(trips[k + 1 :])] - coords[:, 0]
    if not np.array_equal(coords, coords[:, :1] + coeff @ counters) or (coeff < 0).any():
        return None
    return coeff


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_affine_fit_equals_the_token_by_token_fit(data: st.DataObject) -> None:
    """``layout._fit`` checks the flat origins and the corners, not every token's coordinates: on the tile streams
    of random tilings, loop orders and reshapes it answers as the fit over every token does."""
    dims = data.draw(st.lists(st.sampled_from([1, 2, 3, 4, 6, 8]), min_size=1, max_size=3))
    tile = [data.draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0])) for n in dims]
    order = data.draw(st.permutations(range(len(dims))))
    t = ITensorType(tuple(tile), "f32", tuple(dims), tuple(dims[k] // tile[k] for k in order),
                    tuple(tile[k] for k in order),
                    AffineMap(len(dims), tuple(AffineDim(order.index(j)) for j in range(len(dims)))))
    elements = math.prod(dims)
    factors = [f for f in range(1, elements + 1) if elements % f == 0]
    first = data.draw(st.sampled_from(factors))
    second = data.draw(st.sampled_from([f for f in range(1, elements // first + 1) if elements // first % f == 0]))
    shape = tuple(n for n in (first, second, elements // first // second))
    flat = flat_offsets(t)
    coords = np.array(np.unravel_index(flat, shape), dtype=np.int64).reshape(len(shape), -1)
    want = _fit_token_by_token(coords, t.trip_counts)
    got = layout._fit(flat, shape, t.trip_counts)
    assert (got is None) == (want is None) and (got is None or np.array_equal(got, want))
    r = reassociate_type(t, shape)
    assert r is None or reassociation_error(t, r) is None
