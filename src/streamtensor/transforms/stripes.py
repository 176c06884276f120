"""HBM striping of the DMA nodes: every read-only external tensor spread over pseudo-channels in proportion to
its bandwidth demand (``analysis.hbm``, module docstring), recorded as ``DmaNode.stripes`` so that the timing
model, the placement and the Vitis backend (one m_axi port per stripe) all read one decision."""

from __future__ import annotations

from streamtensor.analysis.memory import node_groups
from streamtensor.analysis.timing_model import group_stripes
from streamtensor.ir.dataflow import DataflowGraph, DmaNode
from streamtensor.target import Target


def stripe_dmas(graph: DataflowGraph, target: Target) -> None:
    """Set every DMA node's ``stripes``: its tensor's share of the channels of its fusion group (an accelerator
    of its own: its DMAs stream concurrently); a scalar, a KV-cache row access and a write keep one."""
    groups = node_groups(graph)
    chosen = [group_stripes(graph, g, target) for g in range(max(groups.values(), default=-1) + 1)]
    for name, node in graph.nodes.items():
        if isinstance(node, DmaNode):
            node.stripes = 1 if node.role == "scalar" else chosen[groups[name]].get(node.placement_name, 1)
    graph.verify()
