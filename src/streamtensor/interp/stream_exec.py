"""Stream-level executable semantics of a dataflow graph: every node consumes and produces token streams.

Nodes run one at a time in topological order with unbounded FIFOs (a DAG of blocking processes computes the
same tokens in any schedule). Semantics per node (see ``ir.dataflow``):

- read DMA: ``stream_tokens`` of the view of its tensor; write DMA: ``assemble_tokens``, then its view.
- kernel: walks its tile loop nest; an input port reads a token at the firings that start an iteration of its
  hoisted loops and holds it for the inner ones; every firing evaluates the body on the tile (``run_generic``
  on a tile-sized copy of the op, with ``linalg.index`` shifted to the tile's origin) with the accumulator of
  its output tile as inits, so reductions accumulate across firings. One accumulator per pending output tile:
  it starts from the init token (or folded constant, or zeros for an unread init) when the tile's reduction
  starts, and is written as one token per result when it completes (``KernelNode``); a replay port carries
  its result's tokens once more.
- converter: ``run_converter`` with the node's buffer (raises if the buffer is too small).
- fork: copies; reassociate: reshapes each token; chunk / concat: select / merge tokens by region.

Every stream must carry exactly the token count of its type, and every kernel must consume all of its input
tokens: a mismatch raises ``StreamExecError`` naming the node and stream.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from streamtensor.errors import ShapeError, VerificationError
from streamtensor.interp.converter_exec import run_converter
from streamtensor.interp.linalg_interpreter import run_generic
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
    apply_view,
    input_loops,
)
from streamtensor.ir.itensor import assemble_tokens, stream_tokens
from streamtensor.ir.layout import chunk_mask, concat_sources
from streamtensor.ir.linalg import GenericOp, TensorType, Value
from streamtensor.ir.scalar_eval import NP_DTYPES, input_array


class StreamExecError(VerificationError):
    """A token stream that does not match its type, or a kernel that does not consume what it is given."""


def _tile_op(node: KernelNode) -> GenericOp:
    """The op with every operand shrunk to its tile: its domain is one tile of the kernel's loops."""
    op = node.op

    def tiled(v: Value, operand: int) -> Value:
        amap = op.indexing_maps[operand]
        dims = [amap.result_dim(i) for i in range(amap.num_results)]
        tile = tuple(1 if d is None else node.loops[d].tile for d in dims)
        return Value(v.name, TensorType(tile, v.type.dtype))

    n_in = len(op.inputs)
    inits = [tiled(v, n_in + r) for r, v in enumerate(op.inits)]
    return replace(op, inputs=[tiled(v, i) for i, v in enumerate(op.inputs)], inits=inits,
                   results=[Value(r.name, t.type) for r, t in zip(op.results, inits, strict=True)])


def _run_kernel(node: KernelNode, ins: list[np.ndarray]) -> list[np.ndarray]:
    op = node.op
    n_in = len(op.inputs)
    tile_op = _tile_op(node)
    port = {operand: p for p, operand in enumerate(node.input_operands)}
    cursor = [0] * len(ins)

    def read(p: int) -> np.ndarray:
        if cursor[p] >= len(ins[p]):
            raise StreamExecError(f"kernel {node.name}: input port {p} ({node.inputs[p]}) runs out of tokens "
                                  f"after {cursor[p]}")
        cursor[p] += 1
        return ins[p][cursor[p] - 1]

    loops = node.loops
    reductions = [d for d in node.tile_order if loops[d].reduction]
    parallel = [d for d in node.tile_order if not loops[d].reduction]
    # Input port p reads when every loop inside its input_loops is at 0 (KernelNode docstring).
    inner = {p: node.tile_order[len(input_loops(op, node.tile_order, j)):]
             for p, j in enumerate(node.input_operands) if j < n_in}
    held: list[np.ndarray] = [np.empty(0)] * len(ins)
    outs: list[list[np.ndarray]] = [[] for _ in op.results]
    pending: dict[tuple[int, ...], list[np.ndarray]] = {}  # accumulators by the output tile's parallel counters
    for counters in itertools.product(*(range(loops[d].trip) for d in node.tile_order)):
        n = [0] * len(loops)
        for d, c in zip(node.tile_order, counters, strict=True):
            n[d] = c
        for p, dims in inner.items():
            if all(n[d] == 0 for d in dims):
                held[p] = read(p)
        operands = [held[port[j]] for j in range(n_in)]
        tile = tuple(n[d] for d in parallel)
        if all(n[d] == 0 for d in reductions):
            acc = []
            for r, init in enumerate(tile_op.inits):
                dtype = NP_DTYPES[init.type.dtype]
                if n_in + r in port:
                    acc.append(read(port[n_in + r]))
                else:
                    acc.append(np.full(init.type.shape, node.init_constants.get(r, 0), dtype=dtype))
            pending[tile] = acc
        origin = [n[d] * loops[d].tile for d in range(len(loops))]
        pending[tile] = run_generic(tile_op, operands + pending[tile], origin)
        if all(n[d] == loops[d].trip - 1 for d in reductions):
            for r, acc_tile in enumerate(pending.pop(tile)):
                outs[r].append(acc_tile)
    for p, data in enumerate(ins):
        if cursor[p] != len(data):
            raise StreamExecError(f"kernel {node.name}: read {cursor[p]} of the {len(data)} tokens on input "
                                  f"port {p} ({node.inputs[p]})")
    return [np.stack(o) for o in outs]


def _run_node(graph: DataflowGraph, node: Node, ins: list[np.ndarray], memory: dict[str, np.ndarray]
              ) -> list[np.ndarray]:
    in_types = [graph.streams[s].type for s in node.inputs]
    out_types = [graph.streams[s].type for s in node.outputs]
    if isinstance(node, KernelNode):
        results = _run_kernel(node, ins)
        return [results[r] for r in node.output_results]  # replay ports: the result once more
    if isinstance(node, DmaNode):
        rows = node.rows
        position = 0 if rows is None else int(memory[rows.position].reshape(-1)[0])
        if node.direction == "read":
            tokens = np.stack(stream_tokens(out_types[0], apply_view(node.view, memory[node.tensor.name])))
            if rows is not None:  # rows past the position are not read: zero tiles
                tokens[~rows.read_tokens(out_types[0], position)] = 0
            return [tokens]
        streamed = assemble_tokens(in_types[0], ins[0])
        if rows is not None and rows.into is not None:  # only row `position` is stored, into the cache
            cache = memory[rows.into].reshape(streamed.shape).copy()
            if 0 <= position < streamed.shape[rows.dim]:
                at = (slice(None),) * rows.dim + (position,)
                cache[at] = streamed[at]
            memory[rows.into] = cache.reshape(memory[rows.into].shape)
            streamed = cache
        memory[node.name] = apply_view(node.view, streamed)
        return []
    if isinstance(node, ConverterNode):
        return [np.stack(run_converter(in_types[0], out_types[0], ins[0], node.buffer))]
    if isinstance(node, ForkNode):
        return [ins[0]] * len(node.outputs)  # tokens are never written in place: the copies may share memory
    if isinstance(node, ReassociateNode):
        return [ins[0].reshape(len(ins[0]), *out_types[0].element_shape)]
    if isinstance(node, ChunkNode):
        return [ins[0][chunk_mask(in_types[0], node.offsets, node.sizes)]]
    if isinstance(node, ConcatNode):
        source = concat_sources(in_types, node.dim, out_types[0])
        out = np.empty((out_types[0].num_tokens, *out_types[0].element_shape), dtype=ins[0].dtype)
        for i, data in enumerate(ins):
            taken = source == i
            if int(taken.sum()) != len(data):
                raise StreamExecError(f"concat {node.name}: input {i} brings {len(data)} tokens, the output "
                                      f"takes {int(taken.sum())}")
            out[taken] = data
        return [out]
    raise StreamExecError(f"no stream semantics for {node.kind} {node.name}")


def run_streams(graph: DataflowGraph, inputs: Sequence[np.ndarray | torch.Tensor]) -> list[np.ndarray]:
    """Execute the graph token by token; inputs in ``graph.inputs`` order, outputs in ``graph.outputs``
    order."""
    if len(inputs) != len(graph.inputs):
        raise ShapeError(f"@{graph.name} takes {len(graph.inputs)} inputs, got {len(inputs)}")
    memory: dict[str, np.ndarray] = dict(graph.constants)
    for value, array in zip(graph.inputs, inputs, strict=True):
        a = array.detach().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
        if tuple(a.shape) != value.type.shape:
            raise ShapeError(f"input %{value.name} has shape {list(a.shape)}, "
                             f"expected {list(value.type.shape)}")
        memory[value.name] = input_array(value.name, a, value.type.dtype)
    tokens: dict[str, np.ndarray] = {}
    for name in graph.topological_order():
        node = graph.nodes[name]
        outs = _run_node(graph, node, [tokens.pop(s) for s in node.inputs], memory)
        for s, data in zip(node.outputs, outs, strict=True):
            t = graph.streams[s].type
            if data.shape != (t.num_tokens, *t.element_shape):
                raise StreamExecError(f"{node.kind} {name} wrote {data.shape[0]} tokens of shape "
                                      f"{list(data.shape[1:])} on {s}; its type {t} has {t.num_tokens} "
                                      "tokens")
            tokens[s] = data
    return [memory[name] for name in graph.outputs]
