"""Timing model = generated code: for every process of the tiny blocks, the II, pipelined iterations and unrolled
lanes the timing model assumes are the ones the emitted loop nest asks Vitis for, and an accumulator's II is
what its recurrence (the distance the loop states, the adds the lanes chain) allows."""

from __future__ import annotations

import math

import pytest
from conftest import tiny_block

from streamtensor.analysis.hbm import dma_token_bytes, dma_token_cycles
from streamtensor.analysis.stream_beats import token_geometry
from streamtensor.analysis.timing_model import (
    accumulator_recurrence,
    dma_token_costs,
    drained_inputs,
    node_beats,
    recurrence_distance,
)
from streamtensor.codegen.vitis.boards import U55C
from streamtensor.codegen.vitis.hbm import c_identifier, graph_hbm_plan
from streamtensor.codegen.vitis.hls.generate import generate_hls
from streamtensor.codegen.vitis.host_cpp import kernel_header
from streamtensor.ir.dataflow import DmaNode, KernelNode, input_loops
from streamtensor.packing import PackedLayout
from streamtensor.verify.hls_lint import Loop, lint_processes, parse_functions

MODES = ("prefill", "decode")


def _pipelines(loops: list[Loop]) -> list[Loop]:
    return [lp for lp in loops if lp.pipeline_ii is not None]


def _flattened(loop: Loop) -> list[Loop]:
    """``loop`` and the loops around it that hold nothing else."""
    chain = [loop]
    while (parent := chain[0].parent) is not None and not parent.statements and len(parent.children) == 1:
        chain.insert(0, parent)
    return chain


def _trip(loop: Loop) -> int:
    trip = loop.trip({})
    assert trip is not None, loop.line
    return trip


@pytest.mark.parametrize("mode", MODES)
def test_every_process_asks_for_the_modelled_ii(family: str, mode: str) -> None:
    design, _ = tiny_block(family, mode)
    graph = design.dataflow
    name = f"{family}_{mode}"
    hbm = graph_hbm_plan(graph, name, U55C.hbm)
    sources = {**generate_hls(graph, name, hbm, U55C), f"{name}.h": kernel_header(name, hbm)}
    assert lint_processes(sources, U55C) == []
    functions = {f.name: f for text in sources.values() for f in parse_functions(text)}
    kinds: set[str] = set()
    striped_dmas = 0
    for node in graph.nodes.values():
        f = functions[c_identifier(node.name)]
        pipelines = _pipelines(f.all_loops)
        kinds.add(node.kind)
        if isinstance(node, KernelNode):
            # A replay port drains the accumulators after the last firing, in a loop of its own.
            replays = [lp for lp in pipelines if (lp.label or "").startswith("tile_loop")]
            assert len(replays) == len(node.replay_results), node.name
            pipelines = [lp for lp in pipelines if lp not in replays]
            lanes = math.prod(lp.unroll for lp in node.loops)
            iterations = math.prod(lp.tile for lp in node.loops) // lanes
            # The beats the model schedules are those of the streams' tokens.
            max_bits = U55C.stream_max_bits
            ports = [*zip(node.input_operands, node.inputs, strict=True),
                     *((len(node.op.inputs) + r, s) for r, s in enumerate(node.outputs[:len(node.op.results)]))]
            for operand, s in ports:
                t = graph.streams[s].type
                assert token_geometry(node.op, node.loops, operand, max_bits) == (
                    t.beats(max_bits), t.beat_elements(max_bits)), (node.name, s)
            # The pipelined loop nest (perfect, so flattened) runs the firings the model overlaps: every firing
            # inside the loop that reads a drained input (all of them without one), the model's iterations
            # each, lanes unrolled.
            lag = node.attributes["lag"]
            assert isinstance(lag, int)
            outer = max((len(input_loops(node.op, node.tile_order, j))
                         for j in drained_inputs(node.op, node.loops, node.tile_order, lag - 1)), default=0)
            overlapped = math.prod(node.loops[d].trip for d in node.tile_order[outer:])
            if iterations == 1:
                # Every point unrolled: the innermost tile loop is the pipeline, at the firing II.
                assert [lp.pipeline_ii for lp in pipelines] in ([node.attributes["ii"]], []), node.name
                if pipelines:
                    assert math.prod(_trip(lp) for lp in _flattened(pipelines[0])) == overlapped, node.name
                continue
            (pipe,) = pipelines
            assert pipe.pipeline_ii == node.attributes["pipeline_ii"], node.name
            assert math.prod(_trip(lp) for lp in _flattened(pipe)) == overlapped * iterations, node.name
            # (a tree reduction opens the output lanes a second time, to fold each lane's tree: counted once)
            unrolled = {lp.counter: lp for lp in f.all_loops if lp.unrolled and lp.parent not in replays}
            assert math.prod(_trip(lp) for lp in unrolled.values()) == lanes, node.name
            distance = recurrence_distance(node.loops, node.point_order)
            reductions = [d for d in node.tile_order if node.loops[d].reduction and node.loops[d].trip > 1]
            if distance is None and reductions and reductions[-1] in node.tile_order[outer:]:
                # Flattened across the reduction: an element comes back at the next firing of its output tile.
                inner = node.tile_order[node.tile_order.index(reductions[-1]) + 1:]
                distance = math.prod(node.loops[d].trip for d in inner) * iterations
            stated = {p for p in pipe.pragmas if p.startswith("dependence")}
            if distance is None:
                assert not stated, node.name
            else:
                assert stated and all(p.endswith(f"distance={distance}") for p in stated), node.name
                recurrence = accumulator_recurrence(node.op, node.loops, U55C.ops)
                assert pipe.pipeline_ii >= -(-recurrence // distance), node.name
        elif isinstance(node, DmaNode) and node.role == "scalar":
            # A scalar register (s_axilite): its one token written once, no loop; the model charges one cycle.
            assert pipelines == [] and node.attributes["ii"] == 1, node.name
        elif isinstance(node, DmaNode):
            # A token of `words` bus words, read or written one word per cycle per port (a single unstriped
            # token: by load_tile's own pipelined word loop; a striped one: a one-step pipeline over its stripes'
            # word loops), no faster than the model moves it.
            ports = [a for a in hbm.arguments if a.dma == node.name]
            assert len(ports) == node.stripes and [a.stripe for a in ports] == list(range(node.stripes))
            layout = ports[0].layout  # a stripe's: ceil(words / stripes) per tile
            stream = node.outputs[0] if node.direction == "read" else node.inputs[0]
            t = graph.streams[stream].type
            assert layout.words_per_tile == -(-PackedLayout.of(t).words_per_tile // node.stripes)
            # A token a step, as slow as its words on a port or its beats on the stream (one access a cycle).
            step = max(layout.words_per_tile, t.beats(U55C.stream_max_bits))
            assert [lp.pipeline_ii for lp in pipelines] == ([step] if t.num_tokens > 1 or node.stripes > 1 else [])
            assert dma_token_cycles(dma_token_bytes(t, U55C) // 64, node.stripes, 1, U55C) >= layout.words_per_tile
            assert dma_token_costs(t, 1, node.stripes, U55C, None)[0].min() >= step * dma_token_costs(
                t, 1, node.stripes, U55C, None)[1]
            if node.stripes > 1:
                striped_dmas += 1
                calls = [s for _, s in f.statements if "load_tile_stripe<" in s]
                assert len(calls) == node.stripes, node.name
        else:
            # Fork, reassociate, chunk, concat, converter: one token per step, as many cycles as its beats.
            beats = node_beats(graph, node, U55C.stream_max_bits)
            assert node.attributes["ii"] == beats, node.name
            assert all(lp.pipeline_ii == beats for lp in pipelines), node.name
            tokens = max(graph.streams[s].type.num_tokens for s in node.inputs + node.outputs)
            assert pipelines or tokens == 1, node.name
    assert {"kernel", "dma_read", "dma_write"} <= kinds
    assert striped_dmas > 0
