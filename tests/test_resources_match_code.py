"""The resource estimate is of the code the generator emits: every kernel accumulator is charged the banks its
``array_partition`` pragma makes and the memory its ``bind_storage`` names, every FIFO the implementation of its
``bind_storage``, and the per-process estimates add up to the totals and, per SLR, to the SLR plan's use."""

from __future__ import annotations

import math
import re

import pytest
from conftest import tiny_block

from streamtensor.analysis.memory import onchip_buffers
from streamtensor.analysis.resources import allocate, used_values, value_copies
from streamtensor.codegen.vitis.hls.cpp import stream_var
from streamtensor.codegen.vitis.hls.kernel import KernelWriter
from streamtensor.ir.dataflow import KernelNode
from streamtensor.ir.dtypes import DTYPE_BITS
from streamtensor.target import RESOURCES


@pytest.mark.parametrize(("family", "mode"), [("gpt2", "prefill"), ("llama", "decode")])
def test_accumulators_and_fifos_are_charged_as_the_code_declares_them(tiny_project, family: str, mode: str) -> None:
    design, _ = tiny_block(family, mode)
    graph, target = design.dataflow, design.target
    cpp = (tiny_project(family, mode) / "src" / f"{family}_{mode}.cpp").read_text()
    buffers = {b.name: b for b in onchip_buffers(graph, target)}
    seen = set()
    for node in graph.nodes.values():
        if not isinstance(node, KernelNode):
            continue
        body = cpp.split(f"static void {node.name}(")[1].split("\nstatic void ")[0]
        for r in range(len(node.op.results)):
            buffer = buffers.get(f"{node.name}.acc{r}")
            if f" acc{r}[" not in body:  # the output token accumulates a reduction inside one tile, if any
                continue
            assert buffer is not None
            part = re.search(rf"array_partition variable=acc{r} type=(\w+)(?: factor=(\d+))?", body)
            if part is None:
                seen.add("none")
                assert buffer.banks == 1
            elif part.group(1) == "cyclic":
                seen.add("cyclic")
                bits = DTYPE_BITS[node.op.results[r].type.dtype]
                assert buffer.banks == int(part.group(2)) and buffer.width_bits == bits  # one element a word
            else:
                seen.add("complete")
                assert buffer.depth == node.pending_tiles  # one register per tile element
            impl = re.search(rf"bind_storage variable=acc{r} type=ram_2p impl=(\w+)", body)
            assert (impl is None) == (part is not None and part.group(1) == "complete")
            if impl is not None:
                assert impl.group(1) == allocate(buffer, target.memory).kind
    assert "cyclic" in seen
    for stream in graph.streams.values():
        impl = re.search(rf"bind_storage variable={stream_var(stream.name)} type=fifo impl=(\w+)\)", cpp)
        assert impl is not None
        fifo = buffers[f"{stream.name}.fifo"]
        srl = fifo.width_bits * fifo.depth <= target.memory.srl_max_bits  # a shift register, as timed
        assert impl.group(1) == ("srl" if srl else allocate(fifo, target.memory).kind)


@pytest.mark.parametrize(("family", "mode"), [("gpt2", "prefill"), ("llama", "decode")])
def test_per_process_estimates_add_up_per_slr(family: str, mode: str) -> None:
    design, _ = tiny_block(family, mode)
    res = design.report["resources"]
    processes = res["processes"]
    assert set(processes) == set(design.dataflow.nodes)
    for r in RESOURCES:
        assert sum(p[r] for p in processes.values()) == res[r]
        for slr in res["per_slr"]:
            assert sum(p[r] for p in processes.values() if p["slr"] == slr["slr"]) == slr[r]
            assert slr[r] <= res["die"][r]
    for name, p in processes.items():
        assert design.dataflow.nodes[name].attributes["slr"] == p["slr"]


def _emitted_copies(function: str) -> dict[str, int]:
    """Per ``const T name = ...;`` of a kernel function: the product of the trips of the unrolled loops
    around it (how many instances of it the HLS tool builds)."""
    copies: dict[str, int] = {}
    stack: list[int] = []  # per open brace: the trip of an unrolled loop, else 1
    lines = function.splitlines()
    for k, text in enumerate(lines):
        text = text.strip()
        if text.startswith("}"):
            stack.pop()
        loop = re.match(r"\w+: for \(int \w+ = 0; \w+ < (\d+);", text)
        if text.endswith("{"):
            unrolled = loop is not None and lines[k + 1].strip() == "HLS_PRAGMA(unroll)"
            stack.append(int(loop.group(1)) if unrolled else 1)  # type: ignore[union-attr]
        const = re.match(r"const [\w:<>, ]+ (\w+) = ", text)
        if const:
            copies[const.group(1)] = math.prod(stack)
    return copies


@pytest.mark.parametrize(("family", "mode"), [("gpt2", "prefill"), ("llama", "decode")])
def test_datapath_ops_are_charged_as_often_as_the_code_builds_them(tiny_project, family: str, mode: str) -> None:
    design, _ = tiny_block(family, mode)
    graph = design.dataflow
    cpp = (tiny_project(family, mode) / "src" / f"{family}_{mode}.cpp").read_text()
    hoisted = 0
    for node in graph.nodes.values():
        if not isinstance(node, KernelNode):
            continue
        writer = KernelWriter(graph, node, design.target.stream_max_bits)
        names = writer.value_names(used_values(node.op.body))
        emitted = _emitted_copies(cpp.split(f"static void {node.name}(")[1].split("\nstatic void ")[0])
        lanes = math.prod(lt.unroll for lt in node.loops)
        for value, n in value_copies(node.op, node.loops, node.point_order).items():
            if value in dict(node.op.body.args) or any(o.result == value and o.name == "arith.constant"
                                                       for o in node.op.body.ops):
                continue  # operand reads and literals cost no datapath
            if names[value] not in emitted:  # a tree-summed combiner: one per lane, in the tree
                assert writer.tree is not None and value in node.op.body.yields
                continue
            assert emitted[names[value]] == n, (node.name, value)
            hoisted += n < lanes
    assert hoisted  # some lane-invariant math is built fewer times than the kernel has lanes
