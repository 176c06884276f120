"""HBM striping of the DMA nodes (``analysis.hbm``), recorded as ``DmaNode.stripes`` so that the timing model, the
placement and the Vitis backend (one m_axi port per stripe) all read one decision.

Two regimes, by how the block's kernels overlap in time:

- A block of many tokens (prefill) streams its external tensors concurrently for most of its run: every
  read-only tensor is striped over the pseudo-channels in proportion to its bandwidth demand
  (``analysis.hbm.choose_stripes``), and each DMA streams at the placement's static share (its fair split of its
  busiest channel with the ports there, by their bytes).
- A block of one token (decode) runs its stages largely one after another, so one stage's weights may use the
  channels that the other stages' weights also live on: a read-only tensor gets the fewest stripes that keep
  pace with its consumer as tiled (``analysis.hbm.stripes_for_rate``, its channels to itself), and every DMA
  starts the contention fixed point of ``analysis.contention`` at share 1 (``DmaNode.share``), which the
  allocation raises to the contention the timing simulation shows.
"""

from __future__ import annotations

from fractions import Fraction

from streamtensor.analysis.hbm import stripes_for_rate
from streamtensor.analysis.memory import node_groups
from streamtensor.analysis.timing_model import group_stripes, node_process
from streamtensor.ir.dataflow import DataflowGraph, DmaNode
from streamtensor.packing import PackedLayout
from streamtensor.target import Target
from streamtensor.transforms.tiling.plan import block_rows


def stripe_dmas(graph: DataflowGraph, target: Target) -> None:
    """Set every DMA node's ``stripes`` (and, for a one-token block, its starting ``share``): module docstring.
    A scalar, a KV-cache row access and a write keep one stripe."""
    if block_rows(graph) == 1:
        _stripe_by_consumer(graph, target)
    else:
        groups = node_groups(graph)
        chosen = [group_stripes(graph, g, target) for g in range(max(groups.values(), default=-1) + 1)]
        for name, node in graph.nodes.items():
            if isinstance(node, DmaNode):
                node.stripes = 1 if node.role == "scalar" else chosen[groups[name]].get(node.placement_name, 1)
                node.share = None
    graph.verify()


def _stripe_by_consumer(graph: DataflowGraph, target: Target) -> None:
    for node in graph.nodes.values():
        if not isinstance(node, DmaNode) or node.role == "scalar":
            continue
        node.share = Fraction(1)
        node.stripes = 1
        if node.direction != "read" or node.rows is not None:
            continue
        (stream,) = node.outputs
        t = graph.streams[stream].type
        words = PackedLayout.of(t).words_per_tile
        consumer = node_process(graph, graph.consumer(stream), target)
        need = Fraction(t.num_tokens * words * target.axi_bytes_per_cycle, max(1, consumer.num_firings * consumer.ii))
        node.stripes = stripes_for_rate(words, need, target)
