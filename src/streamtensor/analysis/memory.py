"""On-chip memory of a dataflow graph: every buffer and FIFO, the unfused baseline and the fusion reports.

Fused design (what the graph, grouped by fusion, puts on chip), one ``Buffer`` per memory:

- ``converter``: the ping-pong pair of an ``itensor_converter`` (``ConverterBuffer.bytes``: 2 x prod(shape)
  elements, spec §2.1; one bank when its shared loops have a single iteration, ``ConverterBuffer.banks``).
  A bank word is the wider of the source/result tokens, so one token is written or read per access. A
  converter whose input stream crosses fusion groups is *absorbed*: the read DMA that brings its input back
  from external memory pushes the tokens in the result layout directly (spec §3), so it has no buffer
  (``absorbed_converters``; see ``transforms.fusion``).
- kernel-local buffers (all counted as ``kernel_local``):
  ``accumulator``: a kernel with reduction loops keeps, per result, one output tile for each of its
  ``KernelNode.pending_tiles`` (the tiles whose reduction is under way at once: 1 with the reductions
  innermost in ``tile_order``, the trips of the parallel loops inside the outermost reduction loop
  otherwise); tile extent along result dim j = ``tile`` of the loop the result's indexing map puts there (1
  for a constant). Kernels without reductions write straight to their FIFOs and have none.
  ``input_tile``: one token per input port (registers / partitioned array the body reads from; it also holds
  the token across the loops the operand does not index, see ``KernelNode``), streamed inits included.
  ``reassociate``: a reassociation that changes the token size packs / unpacks tokens through one register
  of the larger token; one that keeps the token size only relabels the stream and needs none.
  Input tiles are partitioned by the unroll factors of the loops the operand's map uses: bank word =
  ``lanes x dtype bits`` with ``lanes = min(elements, prod(unroll of those loops))``, depth =
  ``ceil(elements / lanes)``, so every unrolled lane has its own port. Accumulators are the memories the
  generated code declares (``accumulator_partition``, the one decision behind its ``array_partition`` pragma):
  ``cyclic factor=L`` is L banks of ``ceil(elements / L)`` words of the dtype, ``complete`` one register per
  element of the tile (a bank per element, ``pending`` deep), none a single bank.
- ``fifo``: every stream whose two ends are in the same fusion group: ``depth x token bits`` with
  ``depth = stream.depth`` when FIFO sizing has run, else 2 tokens (the ``hls::stream`` default depth, the
  least that lets producer and consumer overlap). A stream whose ends are in different groups goes through
  external memory and has no FIFO.
- ``dma``: the ping-pong buffer of each DMA engine (spec §3: it loads 512-bit HBM words while pushing the
  previous token): two banks of ``ceil(token bits / 512)`` 512-bit words. DMA nodes have one; a stream that
  crosses fusion groups gets an implicit write DMA in its producer's group and a read DMA in its consumer's
  (which pushes the result tokens when the consumer is an absorbed converter).

``intermediate_fused_bytes`` = converter + kernel-local + FIFO bytes of the buffers that hold intermediate
results: everything the fused design keeps on chip except the DMA buffers, which are the interface to
external memory (the unfused design has them too), and the *input-stream* buffers, which hold data read from
external memory on its way into a kernel (``external_input_streams``: weights, block inputs, the KV cache):
the FIFOs of those streams, the input tiles of the ports that read them, converters and reassociations on
them. They are reported apart (``input_stream_bytes``) and count in every on-chip total (fusion groups,
resources), but not in the ratio, which, like the paper's (spec §4.2, "weights excluded") and like the
unfused baseline below, compares the memory for intermediate results.

Unfused baseline (buffer-based dataflow, the paper's comparison point): every intermediate tensor held whole
on chip, counted once per tensor. An intermediate tensor is a kernel result some kernel consumes, following
the stream through forks, converters, reassociations, chunks and concats (which forward data without
computing). Block inputs and weights come from DMAs, not kernels; a result that reaches only write DMAs is a
block output. A result that is both written out and consumed on chip still needs its on-chip buffer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streamtensor.ir.dataflow import (
    ChunkNode,
    ConcatNode,
    ConverterNode,
    DataflowGraph,
    DmaNode,
    ForkNode,
    KernelNode,
    Node,
    ReassociateNode,
    Stream,
)
from streamtensor.ir.dtypes import DTYPE_BITS
from streamtensor.target import Target

FIFO_DEFAULT_DEPTH = 2  # tokens; hls::stream's default depth, used until FIFO sizing sets stream.depth

# Nodes that forward (a reordering or a part of) their input data without computing on it.
_TRANSPARENT = (ForkNode, ConverterNode, ReassociateNode, ChunkNode, ConcatNode)
_KERNEL_LOCAL_KINDS = ("accumulator", "input_tile", "reassociate")


@dataclass(frozen=True)
class Buffer:
    """One on-chip memory: ``banks`` independent memories of ``depth`` words of ``width_bits`` each.

    ``payload_bits`` is the data it holds (geometry may round up: a partitioned array's last word can be
    partly empty). ``owner`` is the node it belongs to (a FIFO belongs to the node that reads it)."""

    name: str
    owner: str
    kind: str  # converter | accumulator | input_tile | reassociate | fifo | dma
    width_bits: int
    depth: int
    banks: int
    payload_bits: int
    group: int
    input_stream: bool = False  # holds data read from external memory, not an intermediate result

    @property
    def bytes(self) -> int:
        return -(-self.payload_bits // 8)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def node_groups(graph: DataflowGraph) -> dict[str, int]:
    """Fusion group of every node; an ungrouped graph is one group (index 0)."""
    return graph.group_of() if graph.groups else dict.fromkeys(graph.nodes, 0)


def crossing_streams(graph: DataflowGraph) -> list[str]:
    """Streams whose ends lie in different fusion groups: they go through external memory."""
    group = node_groups(graph)
    return [s.name for s in graph.streams.values() if group[s.source] != group[s.target]]


def absorbed_converters(graph: DataflowGraph) -> list[str]:
    """Converters whose input crosses fusion groups: realized by the read DMA, no on-chip buffer."""
    group = node_groups(graph)
    return [n.name for n in graph.nodes.values()
            if isinstance(n, ConverterNode) and group[graph.streams[n.inputs[0]].source] != group[n.name]]


def external_input_streams(graph: DataflowGraph) -> set[str]:
    """Streams whose every token comes from external memory: written by a read DMA, or by a forwarding node
    (fork, converter, reassociate, chunk, concat) whose inputs all are such streams."""
    out: set[str] = set()
    for name in graph.topological_order():
        node = graph.nodes[name]
        if (isinstance(node, DmaNode) and node.direction == "read") or (
                isinstance(node, _TRANSPARENT) and all(s in out for s in node.inputs)):
            out.update(node.outputs)
    return out


def _partitioned(name: str, owner: str, kind: str, elements: int, dtype: str, lanes: int, group: int,
                 input_stream: bool = False) -> Buffer:
    # One bank word per unrolled lane group: lanes = min(elements, unroll product) elements wide.
    bits = DTYPE_BITS[dtype]
    lanes = max(1, min(elements, lanes))
    return Buffer(name, owner, kind, lanes * bits, _ceil_div(elements, lanes), 1, elements * bits, group,
                  input_stream)


def _map_lanes(node: KernelNode, operand: int) -> int:
    """Unrolled points that touch an operand at once: product of the unrolls of the loops its map uses."""
    return math.prod(node.loops[d].unroll for d in node.op.indexing_maps[operand].used_dims())


@dataclass(frozen=True)
class ArrayPartition:
    """How a kernel array is split so every unrolled lane of one pipelined step has a port of its own: the
    generated ``array_partition`` pragma (``codegen.vitis.hls.kernel``) and the banks the memory model charges."""

    kind: str  # none | cyclic | complete
    factor: int  # cyclic: banks; complete: the elements of the partitioned (tile) dimension; none: 1


def lane_offsets(node: KernelNode, operand: int) -> np.ndarray:
    """Flat offsets (relative to lane 0) in the tile of ``operand`` that the unrolled lanes of one pipelined step
    touch (the tile is row-major over the dims of the operand's indexing map)."""
    amap = node.op.indexing_maps[operand]
    dims = [amap.result_dim(j) for j in range(amap.num_results)]
    shape = [1 if d is None else node.loops[d].tile for d in dims]
    offsets = np.zeros(1, dtype=np.int64)
    for j, d in enumerate(dims):
        if d is not None and node.loops[d].unroll > 1:
            stride = math.prod(shape[j + 1:])
            lane = np.arange(node.loops[d].unroll, dtype=np.int64) * stride
            offsets = (offsets[:, None] + lane[None, :]).ravel()
    return offsets


def accumulator_partition(node: KernelNode, result: int) -> ArrayPartition:
    """Cyclic partitioning of result ``result``'s accumulator tile when the lanes of one step hit distinct banks,
    else complete partitioning (registers), none for one lane or a scalar."""
    operand = len(node.op.inputs) + result
    amap = node.op.indexing_maps[operand]
    elements = math.prod(1 if (d := amap.result_dim(j)) is None else node.loops[d].tile
                         for j in range(amap.num_results))
    offsets = lane_offsets(node, operand)
    lanes = len(offsets)
    if lanes == 1 or elements == 1:
        return ArrayPartition("none", 1)
    if len(set((offsets % lanes).tolist())) == lanes:
        return ArrayPartition("cyclic", lanes)
    return ArrayPartition("complete", elements)


def _kernel_buffers(graph: DataflowGraph, node: KernelNode, group: int, external: set[str]) -> list[Buffer]:
    out: list[Buffer] = []
    op = node.op
    if any(lt.reduction for lt in node.loops):
        for r, value in enumerate(op.results):
            amap = op.indexing_maps[len(op.inputs) + r]
            dims = [amap.result_dim(j) for j in range(amap.num_results)]
            tile = math.prod(1 if d is None else node.loops[d].tile for d in dims)
            elements, bits = node.pending_tiles * tile, DTYPE_BITS[value.type.dtype]
            part = accumulator_partition(node, r)
            # complete: one register per tile element, as deep as the pending tiles (array_partition dim=2)
            depth = node.pending_tiles if part.kind == "complete" else _ceil_div(elements, part.factor)
            out.append(Buffer(f"{node.name}.acc{r}", node.name, "accumulator", bits, depth, part.factor,
                              elements * bits, group))
    for port, stream_name in enumerate(node.inputs):
        t = graph.streams[stream_name].type
        # input_operands[port] indexes op.operands (inputs, then inits), as the indexing maps do.
        out.append(_partitioned(f"{node.name}.in{port}", node.name, "input_tile", t.token_elements, t.dtype,
                                _map_lanes(node, node.input_operands[port]), group, stream_name in external))
    return out


def _dma_buffer(name: str, owner: str, token_bits: int, group: int, word_bits: int) -> Buffer:
    words = _ceil_div(token_bits, word_bits)
    return Buffer(name, owner, "dma", word_bits, words, 2, 2 * token_bits, group)


def _node_buffers(graph: DataflowGraph, node: Node, group: int, absorbed: set[str], external: set[str],
                  word_bits: int) -> list[Buffer]:
    if isinstance(node, KernelNode):
        return _kernel_buffers(graph, node, group, external)
    input_stream = bool(node.inputs) and node.inputs[0] in external
    if isinstance(node, ConverterNode):
        src, res = graph.streams[node.inputs[0]].type, graph.streams[node.outputs[0]].type
        if node.buffer.elements == 0 or node.name in absorbed:
            return []
        width = max(src.token_bits, res.token_bits)
        banks = node.buffer.banks
        window_bits = node.buffer.window_elements * DTYPE_BITS[node.buffer.dtype]
        return [Buffer(f"{node.name}.pingpong", node.name, "converter", width, _ceil_div(window_bits, width), banks,
                       banks * window_bits, group, input_stream)]
    if isinstance(node, ReassociateNode):
        src, res = graph.streams[node.inputs[0]].type, graph.streams[node.outputs[0]].type
        if src.token_elements == res.token_elements:
            return []
        width = max(src.token_bits, res.token_bits)
        return [Buffer(f"{node.name}.token", node.name, "reassociate", width, 1, 1, width, group, input_stream)]
    if isinstance(node, DmaNode):
        port = node.outputs[0] if node.direction == "read" else node.inputs[0]
        return [_dma_buffer(f"{node.name}.pingpong", node.name, graph.streams[port].type.token_bits, group, word_bits)]
    if isinstance(node, ForkNode | ChunkNode | ConcatNode):
        return []  # forward tokens from FIFO to FIFO: no storage of their own
    raise ValueError(f"no memory model for node {node.name} of kind {node.kind}")


def _fifo(stream: Stream, group: int, input_stream: bool) -> Buffer:
    depth = stream.depth if stream.depth is not None else FIFO_DEFAULT_DEPTH
    bits = stream.type.token_bits
    return Buffer(f"{stream.name}.fifo", stream.target, "fifo", bits, depth, 1, bits * depth, group, input_stream)


def onchip_buffers(graph: DataflowGraph, target: Target) -> list[Buffer]:
    """Every on-chip memory of the fused design (see the module docstring), nodes in topological order; DMA
    buffers hold whole words of the target's m_axi ports."""
    word_bits = target.axi_word_bits
    group = node_groups(graph)
    absorbed = set(absorbed_converters(graph))
    external = external_input_streams(graph)
    out: list[Buffer] = []
    for name in graph.topological_order():
        out.extend(_node_buffers(graph, graph.nodes[name], group[name], absorbed, external, word_bits))
    for s in graph.streams.values():
        gs, gt = group[s.source], group[s.target]
        if gs == gt:
            out.append(_fifo(s, gs, s.name in external))
        else:
            pushed = graph.streams[graph.nodes[s.target].outputs[0]].type if s.target in absorbed else s.type
            out.append(_dma_buffer(f"{s.name}.dma_write", s.source, s.type.token_bits, gs, word_bits))
            out.append(_dma_buffer(f"{s.name}.dma_read", s.target, pushed.token_bits, gt, word_bits))
    return out


def _reaches_kernel(graph: DataflowGraph, stream: str) -> bool:
    """Does the data on ``stream`` reach a kernel, passing only through data-forwarding nodes?"""
    pending, seen = [stream], set()
    while pending:
        s = pending.pop()
        if s in seen:
            continue
        seen.add(s)
        target = graph.consumer(s)
        if isinstance(target, KernelNode):
            return True
        if isinstance(target, _TRANSPARENT):
            pending.extend(target.outputs)
    return False


def unfused_intermediates(graph: DataflowGraph) -> dict[str, int]:
    """Bytes of every intermediate tensor, keyed by the kernel output stream that carries it."""
    out: dict[str, int] = {}
    for node in graph.nodes.values():
        if not isinstance(node, KernelNode):
            continue
        for s in node.outputs[:len(node.op.results)]:  # a replay port carries its result once more
            if _reaches_kernel(graph, s):
                t = graph.streams[s].type
                out[s] = _ceil_div(t.tensor_elements * DTYPE_BITS[t.dtype], 8)
    return out


def memory_report(graph: DataflowGraph, target: Target) -> dict:
    """Unfused vs fused on-chip memory for intermediate results, in bytes, with the fused breakdown
    (``converter_bytes + kernel_local_bytes + fifo_bytes``); ``input_stream_bytes``: the on-chip buffers of
    data streamed in from external memory, outside the ratio (see the module docstring).

    ``fused_to_unfused`` is None for a graph without intermediate tensors (nothing to compare against)."""
    buffers = onchip_buffers(graph, target)

    def total(*kinds: str, input_stream: bool = False) -> int:
        return sum(b.bytes for b in buffers if b.kind in kinds and b.input_stream == input_stream)

    unfused_tensors = unfused_intermediates(graph)
    unfused = sum(unfused_tensors.values())
    converter, local, fifo = total("converter"), total(*_KERNEL_LOCAL_KINDS), total("fifo")
    fused = converter + local + fifo
    return {
        "intermediate_unfused_bytes": unfused,
        "intermediate_fused_bytes": fused,
        "fused_to_unfused": fused / unfused if unfused else None,
        "converter_bytes": converter,
        "kernel_local_bytes": local,
        "fifo_bytes": fifo,
        "input_stream_bytes": total("converter", *_KERNEL_LOCAL_KINDS, "fifo", input_stream=True),
        "dma_bytes": total("dma"),
        "unfused_tensors": unfused_tensors,
    }


def converter_report(graph: DataflowGraph) -> list[dict]:
    """One entry per converter: its layouts, buffer window (one ping-pong half) and buffer bytes (on chip
    unless ``absorbed``)."""
    group = node_groups(graph)
    absorbed = set(absorbed_converters(graph))
    out = []
    for name in graph.topological_order():
        node = graph.nodes[name]
        if isinstance(node, ConverterNode):
            out.append({
                "node": name,
                "group": group[name],
                "absorbed": name in absorbed,
                "source_type": str(graph.streams[node.inputs[0]].type),
                "result_type": str(graph.streams[node.outputs[0]].type),
                "buffer_shape": list(node.buffer.shape),
                "shared_loops": node.buffer.shared_loops,
                "bytes": node.buffer.bytes,
            })
    return out


def fusion_report(graph: DataflowGraph, target: Target) -> dict:
    """Per fusion group: members, kernels, on-chip bytes and the streams entering / leaving it through
    external memory; plus the external-memory traffic of one run (bytes streamed over crossing streams)."""
    group = node_groups(graph)
    order = graph.topological_order()
    count = max(group.values(), default=-1) + 1
    buffers = onchip_buffers(graph, target)
    crossing = crossing_streams(graph)
    groups = []
    for g in range(count):
        members = [n for n in order if group[n] == g]
        in_group = [b for b in buffers if b.group == g]
        groups.append({
            "index": g,
            "nodes": members,
            "kernels": [n for n in members if isinstance(graph.nodes[n], KernelNode)],
            "onchip_bytes": sum(b.bytes for b in in_group),
            # Algorithm 2's group cost C: the converter buffers fused into the group.
            "converter_bytes": sum(b.bytes for b in in_group if b.kind == "converter"),
            "external_in": [s for s in crossing if group[graph.streams[s].target] == g],
            "external_out": [s for s in crossing if group[graph.streams[s].source] == g],
        })
    traffic = {s: _ceil_div(graph.streams[s].type.num_tokens * graph.streams[s].type.token_bits, 8)
               for s in crossing}
    return {"groups": groups, "external_streams": crossing, "external_bytes": sum(traffic.values()),
            "external_stream_bytes": traffic}
