"""Kernel fusion (spec §4.2, paper Algorithm 2): group dataflow nodes under an on-chip memory cap ``C_max``.

Algorithm 2, over the non-DMA nodes in topological order::

    F = [{}]; C = [0]; M = {}
    for n in topological_order(G):
        cand = {}                                      # group -> cost of joining it
        for each input stream p -> n with p fused: cand[M[p]] += memory_cost(p -> n)
        g, cost = (max(cand), cand[max(cand)]) if cand else (last group, own(n))
        if C[g] + cost > C_max: open a new group {n}, C = 0 if cand else own(n)
        else: add n to g; C[g] += cost

``max(cand)`` is the most recently opened group among the predecessors' (groups are numbered in opening
order); a node with predecessors in older groups reads them through external memory.

**Edge cost.** ``memory_cost(p -> n)`` is the converter buffer on that edge: the ping-pong bytes of ``n`` when
``n`` is an ``itensor_converter`` (``ConverterBuffer.bytes``, 0 for matching layouts), else 0 (``own(n)``
likewise). Charging the buffer on the converter's input edge means a converter joins its producer's group
exactly when its buffer fits there; the consumer then joins the converter's group at no cost. ``C[g]`` is
the on-chip converter memory of group g (``memory.fusion_report``'s ``converter_bytes``).

**Decisions where the spec's pseudo-code is silent (reconstructed).**

- *A converter that opens a group is absorbed.* Its input edge then goes through external memory, and a
  read DMA can push tokens in any itensor order (spec §3), so it streams the converter's result layout
  directly: no buffer on chip, and the new group starts at ``C = 0`` as in the paper. ``memory`` counts no
  buffer for such a converter (``memory.absorbed_converters``).
- *No fused predecessor* (a node fed only by DMAs, i.e. by block inputs and weights): it joins the most
  recently opened group with cost ``own(n)`` (the first node lands in the initial empty group ``F[0]``).
  Read literally, the spec's "else new group" would split the block at every node that reads only
  inputs/weights, for no memory reason, and leave ``F[0]`` empty; Algorithm 2 only splits to respect
  ``C_max``. A DMA-fed converter keeps its buffer (the DMA is in its group), hence ``C = own(n)`` if it
  must open a group.
- *DMAs* are not placed by the algorithm: they are the boundary with external memory that the paper
  materializes at each fused kernel after fusion. A read DMA joins its consumer's group, a write DMA its
  producer's (a DMA wired only to another DMA: the most recent group).
- *Forks, reassociations, chunks, concats* are ordinary nodes of cost 0: they fuse with their nearest
  predecessor group like kernels.

A stream whose ends land in different groups goes through external memory (write DMA, then read DMA): see
``memory.crossing_streams`` and ``memory.fusion_report``, which lists these crossings per group.
"""

from __future__ import annotations

from streamtensor.errors import OptionError
from streamtensor.ir.dataflow import ConverterNode, DataflowGraph, DmaNode


def edge_memory_cost(graph: DataflowGraph, stream: str) -> int:
    """On-chip bytes of fusing the edge ``stream``: the buffer of the converter it feeds, else 0."""
    target = graph.consumer(stream)
    return target.buffer.bytes if isinstance(target, ConverterNode) else 0


def fuse_kernels(graph: DataflowGraph, c_max_bytes: int) -> list[list[str]]:
    """Fusion groups of Algorithm 2 (module docstring): node names per group, each in topological order,
    groups in the order they were opened (empty groups dropped). ``c_max_bytes``: the on-chip memory a group
    may take (the pipeline passes the target's whole BRAM and URAM, ``Target.onchip_bytes``: 44,679,168 bytes
    on the U55C; the spec's "about 41 MB" is that less headroom, left to the caller)."""
    if c_max_bytes < 0:
        raise OptionError(f"c_max_bytes must be >= 0, got {c_max_bytes}")
    order = graph.topological_order()
    groups: list[list[str]] = [[]]
    cost: list[int] = [0]
    member: dict[str, int] = {}
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, DmaNode):
            continue
        own = node.buffer.bytes if isinstance(node, ConverterNode) else 0
        cand: dict[int, int] = {}
        for s in node.inputs:
            p = graph.streams[s].source
            if p in member:
                cand[member[p]] = cand.get(member[p], 0) + edge_memory_cost(graph, s)
        g, join = (max(cand), cand[max(cand)]) if cand else (len(groups) - 1, own)
        if cost[g] + join > c_max_bytes:
            groups.append([name])
            cost.append(0 if cand else own)  # with fused predecessors, a converter here is absorbed
            g = len(groups) - 1
        else:
            groups[g].append(name)
            cost[g] += join
        member[name] = g
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, DmaNode):
            port = node.outputs[0] if node.direction == "read" else node.inputs[0]
            stream = graph.streams[port]
            neighbour = stream.target if node.direction == "read" else stream.source
            g = member.get(neighbour, len(groups) - 1)
            groups[g].append(name)
            member[name] = g
    position = {n: i for i, n in enumerate(order)}
    return [sorted(g, key=position.__getitem__) for g in groups if g]


def apply_fusion(graph: DataflowGraph, c_max_bytes: int) -> DataflowGraph:
    """Set ``graph.groups`` to the fusion groups (in place) and return the graph, verified."""
    graph.groups = fuse_kernels(graph, c_max_bytes)
    graph.verify()
    return graph
