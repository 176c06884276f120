"""Read a one-token block's activation input in the packing its output is written in (the chained layers).

A decoder runs its blocks back to back: layer ``l + 1`` reads what layer ``l`` wrote. The packed layout of a DMA
buffer follows the DMA's stream type (``streamtensor.packing``), so where a read DMA of the block's activation
input streams another tile order than the output's write DMA, the next layer cannot read the previous layer's
output buffer as it is, and the host would read it back and repack it once per layer and token. This pass makes
such a read stream the output's packing (its type spelled over the read's view, ``layout.reassociate_type``) and
puts a layout converter between it and its consumer: on chip, the converter reorders what the host would have.

Only one-token (decode) blocks: their activation is one row, so a converter holds at most that row and its
consumer waits for the row's statistics (a norm) anyway; a prefill block's would hold up to the whole prompt. A
read whose stream repeats tiles, or whose view slices the tensor, keeps its own packing (the report lists the
buffers the host writes).
"""

from __future__ import annotations

import math

from streamtensor.ir.converter_buffer import infer_converter_buffer, layout_difference
from streamtensor.ir.dataflow import ConverterNode, DataflowGraph, Stream
from streamtensor.ir.layout import reassociate_type, same_packing
from streamtensor.ir.linalg import SliceOp


def read_input_as_output(graph: DataflowGraph) -> list[str]:
    """Rewrite the chained reads of a one-token block (module docstring) in place; the names of the converters
    added."""
    chain = graph.chained_activation()
    if chain is None or math.prod(graph.inputs[0].type.shape[:-1]) != 1:
        return []  # a block of several rows keeps its reads (module docstring)
    out, reads = chain
    written = graph.streams[out.inputs[0]].type
    if written.repeat_loops():
        return []
    added: list[str] = []
    for dma in reads:
        (name,) = dma.outputs
        stream = graph.streams[name]
        wanted = stream.type
        if wanted.repeat_loops() or any(isinstance(op, SliceOp) for op in dma.view):
            continue
        if same_packing(wanted, written):
            continue  # already the output's packing
        packed = reassociate_type(written, wanted.tensor_shape)
        if packed is None or packed == wanted:
            continue
        conv = ConverterNode(f"conv_{dma.name}", [], [], infer_converter_buffer(packed, wanted),
                             f"{dma.name} reads %{dma.tensor.name} in the packing of the block's output, so that "
                             f"a layer reads the previous layer's output buffer: {layout_difference(packed, wanted)}")
        read = f"{name}_packed"
        graph.streams[read] = Stream(read, packed, dma.name, conv.name)
        stream.source = conv.name
        conv.inputs, conv.outputs = [read], [name]
        dma.outputs = [read]
        graph.nodes[conv.name] = conv
        added.append(conv.name)
    if added:
        graph.verify()
    return added
