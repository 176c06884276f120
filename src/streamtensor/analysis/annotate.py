"""Analysis results written into the dataflow IR as attributes: what code generation prints, and nothing it
has to recompute.

Per node (``Node.attributes``):

- ``ii``, ``depth``: the firing II and pipeline depth of its process (``timing_model``); ``lag``: how many
  firings its writes trail its reads, ``ceil(depth / ii)`` for a node with inputs and outputs, else 1;
- kernels: ``firings`` (tiles) and ``pipeline_ii`` (II of the pipelined point loops);
- ``<buffer>_memory``: ``lutram``, ``bram`` or ``uram`` for each of its on-chip buffers (``pingpong`` of a
  converter, ``acc<r>`` accumulators and ``in<p>`` input tiles of a kernel; ``resources.memory_kind``);
- ``slr``: the die of the SLR plan, when the design has one (an estimate: see ``AllocationResult``).

Per stream (``Stream.attributes``): ``impl``, the FIFO's implementation: ``srl`` (a shift register: at most
the target's SRL bits, as the timing simulation assumes), else the memory of its buffer.
"""

from __future__ import annotations

from collections.abc import Mapping

from streamtensor.ir.dataflow import DataflowGraph, KernelNode
from streamtensor.target import Target

from .memory import FIFO_DEFAULT_DEPTH, onchip_buffers
from .process_network import ProcessNetwork
from .resources import allocate
from .timing_model import kernel_node_timing


def annotate_timing(graph: DataflowGraph, networks: list[ProcessNetwork], target: Target) -> None:
    """``ii``, ``depth``, ``lag`` of every node (from the process networks of its fusion groups) and the
    kernels' ``firings`` and ``pipeline_ii``."""
    for net in networks:
        for p in net.processes:
            node = graph.nodes.get(p.name)
            if node is None:  # an implicit DMA of a stream that crosses fusion groups
                continue
            node.attributes["ii"] = p.ii
            node.attributes["depth"] = p.depth
            node.attributes["lag"] = -(-p.depth // p.ii) if node.inputs and node.outputs else 1
            if isinstance(node, KernelNode):
                t = kernel_node_timing(graph, node, target)
                node.attributes["firings"] = t.firings
                node.attributes["pipeline_ii"] = t.pipeline_ii
                if t.write_behind:
                    node.attributes["write_behind"] = ",".join(map(str, t.write_behind))
                if t.read_ahead:
                    node.attributes["read_ahead"] = ",".join(map(str, t.read_ahead))


def annotate_memory(graph: DataflowGraph, target: Target) -> None:
    """Every buffer's memory kind on its owner, every FIFO's implementation on its stream."""
    for buffer in onchip_buffers(graph, target):
        kind = allocate(buffer, target.memory).kind
        if buffer.kind == "fifo":
            stream = graph.streams[buffer.name.removesuffix(".fifo")]
            depth = stream.depth if stream.depth is not None else FIFO_DEFAULT_DEPTH
            srl = stream.type.token_bits * depth <= target.memory.srl_max_bits
            stream.attributes["impl"] = "srl" if srl else kind
        elif buffer.kind != "dma":  # DMA buffers are the m_axi adapters' own
            graph.nodes[buffer.owner].attributes[f"{buffer.name.removeprefix(buffer.owner + '.')}_memory"] = kind


def annotate_slrs(graph: DataflowGraph, assignment: Mapping[str, int]) -> None:
    for name, slr in assignment.items():
        graph.nodes[name].attributes["slr"] = slr
