"""HBM contention of a block whose stages run one after another: the share every DMA streams at, settled
against the timing simulation.

A one-token (decode) block's weights may live on the same pseudo-channels (``transforms.stripes``): the stages
that read them run at different times, so each weight streams at its channels' full rate while its stage runs.
Where two DMAs on one channel do transfer in the same cycles they split its bandwidth. ``DmaNode.share`` is the
number of ports a DMA splits its busiest channel with, on average over the cycles in which it transfers
(``analysis.hbm.contention_shares``: itself included, rounded up to a quarter); the timing model streams it at
``channel rate / share`` for its whole run.

A weight's stage starts when the stage before it ends, but its DMA may start at once and fill the FIFO in front of
its kernel: with a deep FIFO it would stream the weight during the earlier stages, on channels those stages'
DMAs stream on, buying the kernel a head start with on-chip memory and slowing the others (an unbounded-FIFO
simulation streams every weight at once). So the FIFO behind a read DMA holds at most what the DMA moves in one
HBM latency at its channels' full rate (:func:`prefetch_caps`; the FIFO sizing keeps its depth there and plans
the schedule those caps allow, ``analysis.fifo_search``): enough to keep the DMA streaming once its kernel runs.

:func:`settle_shares` starts from the shares the nodes carry (1: every DMA alone) and repeats: simulate, measure
the contention, raise every share below it. Shares only grow, so this ends: when no share is below the
contention its own simulation shows (``rounds`` simulations), or after ``MAX_ROUNDS``, when the DMAs still
raised get the placement's static count (every port on the channel: no simulation can show more). The
allocation settles with the other FIFOs unbounded first (cheap), then checks the simulation with the sized FIFOs
the same way and re-sizes while a share is below it (``analysis.allocation``).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from streamtensor.ir.dataflow import DataflowGraph, DmaNode
from streamtensor.packing import PackedLayout
from streamtensor.target import Target

from .hbm import contention_shares, dma_token_cycles
from .memory import node_groups
from .timing_model import GroupNetworks, dma_placement_of_group, serial_dmas
from .timing_sim import SimResult, simulate

MAX_ROUNDS = 8


def raise_shares(graph: DataflowGraph, target: Target, group: int, sim: SimResult) -> list[str]:
    """Raise the share of every DMA node of ``group`` to the contention ``sim`` shows; the names raised."""
    if not any(isinstance(node := graph.nodes.get(d), DmaNode) and node.share is not None for d in sim.firing_times):
        # No DMA with a share (not a one-token block): nothing to raise, and the measurement over every cycle of
        # a paper-size prefill block cost 2 CPU s (issue 21).
        return []
    placement = dma_placement_of_group(graph, group, target)
    busy = {d: busy_cycles(sim, d) for d in sim.firing_times if d in placement.dma_ranges}
    measured = contention_shares(placement, busy, target.hbm.channels)
    raised = []
    for name, share in measured.items():
        node = graph.nodes.get(name)
        if isinstance(node, DmaNode) and node.share is not None and share > node.share:
            node.share = share
            raised.append(name)
    return raised


def to_static(graph: DataflowGraph, target: Target, group: int, names: list[str]) -> None:
    """The placement's static count for ``names``: every port on its busiest channel."""
    placement = dma_placement_of_group(graph, group, target)
    for name in names:
        node = graph.nodes[name]
        assert isinstance(node, DmaNode)
        node.share = max(node.share or Fraction(1), Fraction(placement.ports[name]))


def prefetch_caps(graph: DataflowGraph, target: Target) -> dict[str, int]:
    """The depth of the FIFO behind every read DMA of a one-token block (module docstring)."""
    return {node.outputs[0]: prefetch_cap(graph, node, target) for node in graph.nodes.values()
            if isinstance(node, DmaNode) and node.share is not None and node.direction == "read"}


def prefetch_cap(graph: DataflowGraph, node: DmaNode, target: Target) -> int:
    """The tokens read DMA ``node`` moves in one HBM latency at its channels' full rate, at least 2: a FIFO that
    deep keeps it streaming once its kernel runs, and holds no head start beyond that."""
    t = graph.streams[node.outputs[0]].type
    token = dma_token_cycles(PackedLayout.of(t).words_per_tile, node.stripes, 1, target)
    return max(2, math.ceil(target.hbm.latency_cycles / token))


def settle_shares(graph: DataflowGraph, target: Target, networks: GroupNetworks | None = None) -> int:
    """Settle every group's shares (module docstring) on the simulation with the read DMAs' FIFOs at their
    prefetch caps and the others unbounded; the simulations it took. ``networks``: the groups' process networks
    kept so far (default: none)."""
    if not serial_dmas(graph):
        return 0
    groups = node_groups(graph)
    count = max(groups.values(), default=-1) + 1
    caps = prefetch_caps(graph, target)
    networks = networks or GroupNetworks(graph, target)
    sims = 0
    for g in range(count):
        raised: list[str] = []
        for _ in range(MAX_ROUNDS):
            sim = simulate(networks(g), caps)
            sims += 1
            raised = raise_shares(graph, target, g, sim)
            if not raised:
                break
        else:
            to_static(graph, target, g, raised)
    return sims


def busy_cycles(sim: SimResult, name: str) -> np.ndarray:
    """The cycles in which process ``name`` issued a firing (a DMA: transferred)."""
    issue = sim.firing_times[name].issue
    return issue[issue >= 0]
