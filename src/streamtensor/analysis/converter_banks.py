"""One window or a ping-pong pair for each converter over several shared iterations, by timing simulation.

A ping-pong converter fills shared iteration p in lock step with the drain of p - 1, so the drain of p - 1 ends
only with the fill of p: behind a slow producer (a row tile of a prefill block's projection every tens of
thousands of cycles) its consumer runs a whole producer iteration late. One window, drained and then filled
again, has no such wait, at a few more steps (``one_window_candidate``) and half the buffer;
behind a fast producer it only moves the next iteration's tokens into the FIFO in front of it. Which one a
converter's consumer runs faster with is the design's whole schedule: each candidate, in topological order, keeps
one window where the simulation of its group with unbounded FIFOs (the makespan the FIFO sizing then keeps)
finishes sooner, and its pair otherwise.
"""

from __future__ import annotations

from dataclasses import replace

from streamtensor.ir.converter_buffer import window_phases
from streamtensor.ir.dataflow import ConverterNode, DataflowGraph
from streamtensor.target import Target

from .memory import absorbed_converters, node_groups
from .sim_kernel import POS
from .timing_model import build_process_network, node_process
from .timing_sim import Simulator


def choose_converter_banks(graph: DataflowGraph, target: Target) -> list[str]:
    """Give one window to every candidate converter of ``graph`` whose group's unbounded-FIFO simulation then
    finishes sooner (module docstring); the names of those converters, in topological order."""
    groups = node_groups(graph)
    absorbed = set(absorbed_converters(graph))  # realised by their read DMA: no buffer
    candidates: dict[int, list[ConverterNode]] = {}
    for name in graph.topological_order():
        node = graph.nodes[name]
        if isinstance(node, ConverterNode) and node.buffer.banks == 2 and name not in absorbed:
            source, result = graph.streams[node.inputs[0]].type, graph.streams[node.outputs[0]].type
            if one_window_candidate(*window_phases(source, result, node.buffer)):
                candidates.setdefault(groups[name], []).append(node)
    chosen = []
    for group, nodes in candidates.items():
        net = build_process_network(graph, target, group)
        best = Simulator(net).makespan_by({}, POS)
        for node in nodes:
            node.buffer = replace(node.buffer, banks=1)
            trial = net.with_processes({node.name: node_process(graph, node, target)})
            # Only a sooner finish counts: a trial stops at its first event at or past the best makespan.
            makespan = Simulator(trial).makespan_by({}, POS if best is None else best - 1)
            if makespan is not None:
                net, best = trial, makespan
                chosen.append(node.name)
            else:
                node.buffer = replace(node.buffer, banks=2)
    return chosen


def one_window_candidate(windows: int, fill: int, drain: int) -> bool:
    """Whether a converter over ``windows`` shared iterations of ``fill`` source and ``drain`` result tokens may
    keep one window instead of a ping-pong pair and stay about as fast.

    The pair fills iteration p in lock step with the drain of iteration p - 1: ``fill + (windows - 1) * max(fill,
    drain) + drain`` steps, but the drain of p - 1 ends only with the fill of p, so its consumer runs a whole
    producer iteration behind (a slow producer's period: a prefill MLP that replays each normalised row tile once
    per output tile waits a row tile of the projection before it). One window drains iteration p - 1 and then
    fills it with p: ``windows * (fill + drain)`` steps, ``(windows - 1) * min(fill, drain)`` more, and no wait
    for the next iteration. A candidate where those extra steps are at most one iteration's (``max(fill,
    drain)``): a converter that replays short fills many times. Whether its consumer is then faster is the timing
    simulation's to tell (``choose_converter_banks``)."""
    return windows > 1 and (windows - 1) * min(fill, drain) <= max(fill, drain)
