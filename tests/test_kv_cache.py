"""The decode block's KV cache in place and its scalar position (issues 18/19): the generated code reads the cache
rows ``0..position`` only and writes the one new row into the cache's own buffer (an in/out argument), the C
simulation's HBM traffic on the cache is exactly that, ``position`` is an ``s_axilite`` scalar, and the timing
model charges the same bytes."""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import replace
from functools import cache

import numpy as np
import pytest
from conftest import TINY_MAX_LEN, tiny_block

from streamtensor import compile_llm_block
from streamtensor.analysis.timing_model import cache_dma_bytes, modelled_position, node_process
from streamtensor.codegen.vitis.boards import U55C
from streamtensor.codegen.vitis.hbm import graph_hbm_plan
from streamtensor.interp.stream_exec import run_streams
from streamtensor.ir.dataflow import DmaNode
from streamtensor.ir.dataflow_parser import parse_dataflow
from streamtensor.ir.linalg_parser import parse_graph
from streamtensor.kernel_interface import load_kernel_interface
from streamtensor.packing import WORD_BYTES
from streamtensor.passes import print_ir

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None or shutil.which("make") is None,
                               reason="the C simulation needs g++ and make")
CACHES = ("key_cache", "value_cache")


def cache_dmas(graph, cache_name: str) -> tuple[DmaNode, DmaNode]:  # noqa: ANN001
    """The read DMA of a cache and its in-place row write."""
    (read,) = [n for n in graph.nodes.values() if isinstance(n, DmaNode) and n.direction == "read"
               and n.tensor.name == cache_name]
    (write,) = [n for n in graph.nodes.values() if isinstance(n, DmaNode) and n.rows is not None
                and n.rows.into == cache_name]
    return read, write


@cache
def long_cache_block():  # noqa: ANN201 - (Design, DecoderBlock)
    """A tiny GPT-2 decode block whose cache spans several tiles along the tokens (64 rows, 16-row tiles)."""
    return compile_llm_block("gpt2", mode="decode", max_len=64, size="tiny")


def test_decode_graph_declares_the_scalar_and_the_in_place_caches(family: str) -> None:
    design, block = tiny_block(family, "decode")
    graph = design.graph
    assert graph.scalar_names == {"position"}
    assert [(u.output, u.cache, u.position, u.dim) for u in graph.cache_updates] == [
        (1, "key_cache", "position", 2), (2, "value_cache", "position", 2)]
    # Both IR texts carry it and read back to the same text.
    linalg = print_ir(graph)
    assert "%position: tensor<1xi64> {scalar}" in linalg
    assert "{kv_cache = result 1 row %position dim 2}" in linalg
    assert print_ir(parse_graph(linalg)) == linalg
    dataflow = print_ir(design.dataflow)
    assert print_ir(parse_dataflow(dataflow)) == dataflow
    for name in CACHES:
        read, write = cache_dmas(design.dataflow, name)
        assert read.rows is not None and read.rows.into is None and write.rows.into == name
        assert design.dataflow.streams[read.outputs[0]].type == design.dataflow.streams[write.inputs[0]].type
    assert all(n.role == "scalar" for n in design.dataflow.nodes.values()
               if isinstance(n, DmaNode) and n.tensor.name == "position")
    # Prefill has neither.
    prefill, _ = tiny_block(family, "prefill")
    assert not prefill.graph.scalar_names and not prefill.graph.cache_updates


def test_stream_execution_updates_only_the_row_and_reads_no_row_past_it() -> None:
    """Token-level execution of the graph: rows past ``position``'s tile are never read (NaN there changes
    nothing) and the returned cache is the input cache with row ``position`` rewritten."""
    design, block = long_cache_block()
    position = 40
    args = [a.numpy().copy() for a in block.example_inputs(seed=1, position=position)]
    hidden, keys, values = design.run_reference(*args)
    read, _ = cache_dmas(design.dataflow, "key_cache")
    t = design.dataflow.streams[read.outputs[0]].type
    first_unread = int(t.offsets()[~read.rows.read_tokens(t, position), read.rows.dim].min())
    assert first_unread == 48  # 16-row tiles: rows 0..47 are read
    poisoned = [a.copy() for a in args]
    for j in (2, 3):
        poisoned[j][:, :, first_unread:, :] = np.nan
    got = run_streams(design.dataflow, poisoned)
    np.testing.assert_allclose(got[0], hidden, atol=1e-5)
    unchanged = np.delete(np.arange(first_unread), position)
    for j, want in ((2, keys), (3, values)):
        np.testing.assert_allclose(got[j - 1][:, :, :first_unread], want[:, :, :first_unread], atol=1e-5)
        assert np.array_equal(got[j - 1][:, :, unchanged], args[j][:, :, unchanged])
        assert not np.array_equal(got[j - 1][:, :, position], args[j][:, :, position])


def test_generated_code_reads_valid_rows_and_writes_one_row_in_place(family: str, tiny_project) -> None:  # noqa: ANN001
    design, _ = tiny_block(family, "decode")
    kernel = f"{family}_decode"
    out = tiny_project(family, "decode")
    cpp = (out / "src" / f"{kernel}.cpp").read_text()
    interface = load_kernel_interface(out)
    by_arg = {a.arg: a for a in interface.plan.arguments}
    # position: a scalar argument of the top function in a control register, not a buffer in HBM.
    top = re.search(rf'extern "C" void {kernel}\(([^)]*)\)', cpp).group(1)
    assert top.endswith("int64_t position") and "word512* position" not in top
    assert "HLS_PRAGMA(interface s_axilite port=position bundle=control)" in cpp
    assert "m_axi port=position" not in cpp
    entry = next(a for a in json.loads((out / "kernel.json").read_text())["arguments"] if a["arg"] == "position")
    assert (entry["role"], entry["bundle"], entry["channels"]) == ("scalar", "control", [])
    assert interface.plan.scalars == (by_arg["position"],)
    host = (out / "host" / "block_host.cpp").read_text()
    assert "std::memcpy(&scalar_" in host and "scalar_" in re.search(r"xrt::run run = kernel\((.*)\);", host).group(1)
    link = (out / "link.cfg").read_text()
    assert "position" not in link
    for name in CACHES:
        read, write = cache_dmas(design.dataflow, name)
        # The cache is one in/out buffer: read by one argument, its row written by another on the same buffer,
        # bank and bundle (a dataflow region gives each m_axi pointer one process).
        cache_arg, row_arg = by_arg[name], by_arg[f"{name}_row"]
        assert (cache_arg.direction, cache_arg.shares) == ("readwrite", None)
        assert (row_arg.direction, row_arg.shares) == ("write", name)
        assert interface.plan.bundle(name) == interface.plan.bundle(f"{name}_row")
        bank = re.search(rf"^sp={kernel}_1\.{name}:(\S+)$", link, re.M).group(1)
        assert f"sp={kernel}_1.{name}_row:{bank}\n" in link
        # The read DMA loads a tile only when its first row is at most `position` (zero tiles past it) ...
        body = re.search(rf"static void {read.name}\(([^)]*)\) \{{(.*?)\n\}}", cpp, re.S)
        assert "int64_t position" in body.group(1)
        assert re.search(r"if \([^;]*<= position\) load_tile\(", body.group(2))
        assert "else clear_tile(t.data);" in body.group(2)
        # ... the write DMA stores only the words of row `position`, and nothing else.
        body = re.search(rf"static void {write.name}\(([^)]*)\) \{{(.*?)\n\}}", cpp, re.S)
        assert f"word512* {name}_row" in body.group(1) and "int64_t position" in body.group(1)
        assert "store_tile(" not in body.group(2)
        t = design.dataflow.streams[write.inputs[0]].type
        extent = t.element_shape[write.rows.dim]
        assert f"if (row >= 0 && row < {extent})" in body.group(2)
        words = int(re.search(r"store_tile_words<(\d+)>", body.group(2)).group(1))
        assert words * WORD_BYTES * 8 < t.token_bits or t.element_shape[write.rows.dim] == 1
    # No variable trip count anywhere: the bounds are conditions inside constant-trip pipelined loops.
    assert not re.search(r"for \(int \w+ = 0; \w+ < (position|row)", cpp)


def test_timing_model_charges_the_valid_rows_and_one_row() -> None:
    design, _ = tiny_block("gpt2", "decode")
    graph = design.dataflow
    for name in CACHES:
        read, write = cache_dmas(graph, name)
        t = graph.streams[read.outputs[0]].type
        (length,) = {t.tensor_shape[read.rows.dim]}
        heads, head_dim = t.tensor_shape[1], t.tensor_shape[3]
        assert modelled_position(read, t) == modelled_position(write, t) == length - 1  # worst case: all valid
        row = head_dim * 4  # f32
        for position in (0, length // 2 - 1, length - 1):
            tile_rows = t.element_shape[read.rows.dim]
            rows_read = min(length, math.ceil((position + 1) / tile_rows) * tile_rows)
            assert cache_dma_bytes(read, t, position).sum() == rows_read * heads * row
            assert cache_dma_bytes(write, t, position).sum() == heads * row
        # The processes: the row write takes fewer cycles than a whole-cache write; the read, modelled with
        # every row valid, as many as a whole-cache read.
        assert node_process(graph, write, U55C).num_firings < node_process(graph, replace(write, rows=None),
                                                                            U55C).num_firings
        assert node_process(graph, read, U55C).num_firings == node_process(graph, replace(read, rows=None),
                                                                            U55C).num_firings
    # The report states the modelled position and the bytes there, next to what a whole-cache copy moved.
    entries = {(e["cache"], e["direction"]): e for e in design.report["kv_cache"]}
    assert sorted(entries) == sorted((c, d) for c in CACHES for d in ("read", "write"))
    for (_, direction), e in entries.items():
        assert e["modelled_position"] == e["rows"] - 1 == TINY_MAX_LEN - 1
        assert e["bytes"] == (e["whole_cache_bytes"] if direction == "read" else heads * row)


@needs_gxx
@pytest.mark.parametrize("position", [31, 40])
def test_simulation_traffic_on_the_cache_is_the_valid_rows_and_one_row(position: int) -> None:
    design, block = long_cache_block()
    report = design.simulate(*block.example_inputs(seed=2, position=position))
    assert report.ok, report.describe()
    read, _ = cache_dmas(design.dataflow, "key_cache")
    t = design.dataflow.streams[read.outputs[0]].type
    length, tile_rows = t.tensor_shape[read.rows.dim], t.element_shape[read.rows.dim]
    assert tile_rows < length  # the bound is visible: the cache spans several tiles
    heads, head_dim = block.spec.num_kv_heads, block.spec.head_dim
    row = heads * head_dim * 4  # one token's row over every head, f32
    rows_read = math.ceil((position + 1) / tile_rows) * tile_rows
    for name in CACHES:
        assert report.traffic[name] == (rows_read * row, row), name
    assert rows_read < length
    # The other tensors are read whole (a buffer once per DMA reading it: its own and those that share it) and
    # the output written whole.
    plan = graph_hbm_plan(design.dataflow, "gpt2_decode", U55C.hbm)
    for a in plan.arguments:
        if a.role in ("weight", "input") and a.shares is None:
            readers = [b for b in plan.arguments if b.arg == a.arg or b.shares == a.arg]
            assert report.traffic[a.arg][0] == sum(b.layout.streamed_bytes for b in readers)
