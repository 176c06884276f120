"""The resource estimate is of the code the generator emits: every kernel accumulator is charged the banks its
``array_partition`` pragma makes and the memory its ``bind_storage`` names, every FIFO the implementation of its
``bind_storage``, and the per-process estimates add up to the totals and, per SLR, to the SLR plan's use."""

from __future__ import annotations

import re

import pytest
from conftest import tiny_block

from streamtensor.analysis.memory import onchip_buffers
from streamtensor.analysis.resources import allocate
from streamtensor.codegen.vitis.hls.cpp import stream_var
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
