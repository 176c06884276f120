"""Dataflow graph IR: kernels, converters, forks, reassociations, chunks/concats and DMAs joined by streams.

Every stream has exactly one producer and one consumer and carries an ``ITensorType`` (its token order). A
node lists its input and output stream names in port order. ``groups`` (fusion) partitions the nodes; a
stream whose ends lie in different groups goes through external memory. Text form: ``print_dataflow``.

Node semantics (executable in ``interp.stream_exec``; ``verify`` checks every static condition they need):

- ``KernelNode``: a tiled ``linalg.generic``; see its docstring and ``kernel_operand_type``.
- ``ConverterNode``: re-orders a stream through its ping-pong buffer (``interp.converter_exec``); only between
  different types, and its buffer is the one ``infer_converter_buffer`` gives.
- ``ForkNode``: one input, every output a copy of it (same type everywhere).
- ``ReassociateNode``: token k out = token k in, tile reshaped row-major (``ir.layout``, reassociation).
- ``ChunkNode``: forwards the tokens inside ``offsets``/``sizes`` (unit strides), re-based (``ir.layout``).
- ``ConcatNode``: walks its output type; each token comes from the input region holding it (``ir.layout``).
- ``DmaNode``: a read streams ``view(tensor)`` in its output type; a write assembles its input stream and
  stores ``view(stream tensor)``, where ``view`` applies the node's Linalg reshapes/slices in order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Container
from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np

from streamtensor.errors import VerificationError
from streamtensor.ir.affine import AffineConst, AffineDim, AffineMap
from streamtensor.ir.converter_buffer import ConverterBuffer, infer_converter_buffer
from streamtensor.ir.itensor import ITensorType
from streamtensor.ir.layout import chunk_error, concat_sources, reassociation_error
from streamtensor.ir.linalg import GenericOp, Op, ReshapeOp, SliceOp, Value, print_op, verify_generic
from streamtensor.ir.text import (
    CONSTANT_NUMPY_TYPES,
    AttributeValue,
    attribute_error,
    format_attribute_dict,
    format_dense,
)


@dataclass
class Stream:
    """A FIFO between two node ports. ``depth`` is set by FIFO sizing (tokens)."""

    name: str
    type: ITensorType
    source: str
    target: str
    depth: int | None = None
    # Analysis results kept with the stream (printed ``attributes {key = value}``); see ``text.attribute_error``.
    attributes: dict[str, AttributeValue] = field(default_factory=dict)


@dataclass
class LoopTiling:
    """How one loop of a Linalg op is tiled: ``trip`` tiles of ``tile`` points, ``unroll`` points in parallel."""

    size: int  # full loop range
    tile: int  # points per tile (divides size)
    unroll: int  # parallel points inside a tile (divides tile)
    reduction: bool

    @property
    def trip(self) -> int:
        return self.size // self.tile


def reads_init(op: GenericOp, result: int) -> bool:
    """Does the body read the block argument of init ``result`` (an accumulator or an in-place update)?"""
    arg = op.body.args[len(op.inputs) + result][0]
    return arg in op.body.yields or any(arg in s.operands for s in op.body.ops)


def port_operands(op: GenericOp, folded: Container[int]) -> list[int]:
    """The operands of ``op``'s kernel that have an input port, in port order: its inputs, then the inits its
    body reads (by operand index) but those ``folded`` (result indices of inits folded from a constant fill)."""
    n_in = len(op.inputs)
    return list(range(n_in)) + [n_in + r for r in range(len(op.inits)) if reads_init(op, r) and r not in folded]


def input_loops(op: GenericOp, tile_order: list[int], operand: int) -> list[int]:
    """Tile loops an input operand's reads follow: ``tile_order`` down to the innermost loop its indexing map
    uses. The loops inside it do not move the operand's tile, so the token read last is held across them."""
    used = op.indexing_maps[operand].used_dims()
    depth = max((i + 1 for i, d in enumerate(tile_order) if d in used), default=0)
    return tile_order[:depth]


def kernel_operand_type(op: GenericOp, loops: list[LoopTiling], tile_order: list[int], operand: int
                        ) -> ITensorType:
    """Stream type of operand ``operand`` (index into ``op.operands``: inputs, then inits) of a tiled kernel.

    Inputs: one token per iteration of ``input_loops`` (loops the operand does not index among them are repeat
    loops). Inits and results: one token per output tile, over the parallel loops of ``tile_order``. One-trip
    loops move nothing and are left out (canonical types: producer and consumer agree whatever the position of
    their one-trip loops). Tile along an operand dim = the tile of the loop its map puts there (1 for a
    constant-0 result)."""
    value = op.operands[operand]
    amap = op.indexing_maps[operand]
    if operand < len(op.inputs):
        order = [d for d in input_loops(op, tile_order, operand) if loops[d].trip > 1]
    else:
        order = [d for d in tile_order if not loops[d].reduction and loops[d].trip > 1]
    element, results = [], []
    for i in range(amap.num_results):
        d = amap.result_dim(i)
        element.append(1 if d is None else loops[d].tile)
        results.append(AffineDim(order.index(d)) if d in order else AffineConst(0))
    trips = tuple(loops[d].trip for d in order)
    steps = tuple(loops[d].tile for d in order)
    return ITensorType(tuple(element), value.type.dtype, value.type.shape, trips, steps,
                       AffineMap(len(order), tuple(results)))


def _outermost_reduction(loops: list[LoopTiling], tile_order: list[int]) -> int:
    """Position in ``tile_order`` of the outermost reduction loop of more than one trip (its length when none)."""
    return next((i for i, d in enumerate(tile_order) if loops[d].reduction and loops[d].trip > 1), len(tile_order))


def pending_tiles(loops: list[LoopTiling], tile_order: list[int]) -> int:
    """Output tiles whose reduction is under way at once (``KernelNode``): the product of the trips of the
    parallel loops inside the outermost reduction loop of more than one trip (1 when there is none)."""
    outer = _outermost_reduction(loops, tile_order)
    return math.prod(loops[d].trip for d in tile_order[outer + 1:] if not loops[d].reduction)


def first_output_fraction(loops: list[LoopTiling], tile_order: list[int]) -> float:
    """Fraction of a kernel's tile iterations before its first output tile is complete: those of the loops from
    its outermost reduction loop of more than one trip inwards (one tile when there is none)."""
    inner = math.prod(loops[d].trip for d in tile_order[_outermost_reduction(loops, tile_order):])
    return inner / math.prod(loops[d].trip for d in tile_order)


@dataclass
class Node:
    name: str
    inputs: list[str]  # stream names, in port order
    outputs: list[str]
    # Analysis results kept with the node (printed ``attributes {key = value}``); see ``text.attribute_error``.
    attributes: dict[str, AttributeValue] = field(default_factory=dict, kw_only=True)

    @property
    def kind(self) -> str:
        raise NotImplementedError


@dataclass
class KernelNode(Node):
    """A tiled ``linalg.generic``. ``tile_order`` lists loop dims outermost-first (all of them); parallel and
    reduction loops may come in any order.

    The tile loop nest runs in ``tile_order``; each iteration is one *firing*, numbered by the lexicographic rank
    of its tile counters. An *output tile* is one value of the parallel loops' counters; a firing works on the
    output tile of its parallel counters. Port semantics (types: ``kernel_operand_type``):

    - Streamed input (operand j): ``input_loops(j)`` are the loops of ``tile_order`` down to the innermost
      loop j's map uses. A token is read at every firing whose counters of the loops inside those are all 0,
      and held for the firings of those inner loops (j's tile does not move there); its stream walks
      ``input_loops(j)`` (loops of one trip left out, as in every kernel port type). Loops that j's map does
      not use but that enclose a used loop are repeat loops of its stream.
    - Output tile life: its reduction *starts* at the firing with every reduction counter at 0 and *completes*
      at the firing with every reduction counter at its last trip (the same firing when every reduction loop
      has one trip, or there is none). At the start the tile's accumulator is initialized: an init whose block
      argument the body reads takes one token from its stream (``streamed_operands``) unless it is a folded
      constant (``init_constants``); an unread init starts at 0. Every firing then evaluates the body on the
      tile with the accumulator as inits. At completion every result writes the accumulator as one token.
      Both happen in the lexicographic order of the parallel loops of ``tile_order``, the type of inits and
      results.
    - Accumulators: the output tiles started and not completed are *pending*. With ``r`` the outermost
      reduction loop of more than one trip, a tile starts and completes within one iteration of the loops
      enclosing ``r``, and every tile of the parallel loops inside ``r`` is pending at ``r``'s first
      iteration: ``pending_tiles = prod(trip of the parallel loops after r in tile_order)`` (1 when no
      reduction loop has more than one trip). A kernel with reduction loops keeps ``pending_tiles``
      accumulator tiles per result, addressed by the counters of those inner parallel loops. Reductions
      innermost give 1 (output-stationary). A reduction loop moved outside a parallel loop lets an input that
      does not use that parallel loop be held across it: matmul order (m, k, n) reads every A tile once and
      keeps ``trip(n)`` accumulator tiles pending (A-stationary).

    - Replay ports: output ports after the first ``len(op.results)`` each name a result again
      (``output_results``). A replay is legal only when that result's accumulators hold it whole
      (``holds_whole_result``): after the last firing the kernel drains them once more, one token per firing,
      in the result's token order, to each replay port in turn. A fork of such a result would hold a second
      copy in its FIFOs while one consumer waits for another's reduction (``transforms.replay``).

    ``port_firings`` gives the firing of every token read and written."""

    op: GenericOp
    loops: list[LoopTiling]
    tile_order: list[int]
    point_order: list[int]  # loop order inside a tile (reduction loops outward, parallel innermost)
    # For each input port: index into op.operands (inputs, then inits: an index >= len(op.inputs) is the
    # init stream of result index - len(op.inputs)); for each output port: index into op.results.
    input_operands: list[int] = field(default_factory=list)
    output_results: list[int] = field(default_factory=list)
    # Inits folded from a constant fill, by result index: the accumulator starts at this scalar.
    init_constants: dict[int, float | int | bool] = field(default_factory=dict)
    # Least II of the pipelined point loops: raised above the accumulator recurrence's II so the kernel reads
    # no external-memory input faster than its DMA delivers it (``transforms.tiling``, bandwidth-aware unrolling).
    min_pipeline_ii: int = 1

    @property
    def kind(self) -> str:
        return "kernel"

    def operand_type(self, operand: int) -> ITensorType:
        return kernel_operand_type(self.op, self.loops, self.tile_order, operand)

    def result_type(self, result: int) -> ITensorType:
        return self.operand_type(len(self.op.inputs) + result)

    def streamed_operands(self) -> list[int]:
        """The operands that must have an input port, in port order."""
        return port_operands(self.op, self.init_constants)

    @property
    def firings(self) -> int:
        return math.prod(lt.trip for lt in self.loops)

    @property
    def pending_tiles(self) -> int:
        return pending_tiles(self.loops, self.tile_order)

    @property
    def output_tiles(self) -> int:
        return math.prod(lt.trip for lt in self.loops if not lt.reduction)

    def holds_whole_result(self) -> bool:
        """Every output tile is pending at once: the accumulators hold the whole result at the last firing."""
        return any(lt.reduction and lt.trip > 1 for lt in self.loops) and self.pending_tiles == self.output_tiles

    @property
    def replay_results(self) -> list[int]:
        """The result each replay port carries (the output ports after the results)."""
        return self.output_results[len(self.op.results):]

    @property
    def replay_firings(self) -> int:
        """Firings after the tile loop nest that drain the accumulators to the replay ports."""
        return len(self.replay_results) * self.output_tiles

    def port_firings(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Firing index of every token, per input port and per output port (sorted; see the class docstring)."""
        trips = [self.loops[d].trip for d in self.tile_order]
        counters = np.indices(trips, dtype=np.int64).reshape(len(trips), self.firings)  # row i: tile_order[i]
        reductions = [i for i, d in enumerate(self.tile_order) if self.loops[d].reduction]
        last = np.array(trips, dtype=np.int64)[reductions, None] - 1
        starts = np.flatnonzero(np.all(counters[reductions] == 0, axis=0))
        ends = np.flatnonzero(np.all(counters[reductions] == last, axis=0))
        n_in = len(self.op.inputs)
        reads = []
        for operand in self.input_operands:
            if operand >= n_in:
                reads.append(starts)
                continue
            depth = len(input_loops(self.op, self.tile_order, operand))
            reads.append(np.arange(0, self.firings, math.prod(trips[depth:]), dtype=np.int64))
        writes = [ends] * len(self.op.results)
        for k in range(len(self.replay_results)):
            writes.append(self.firings + k * self.output_tiles + np.arange(self.output_tiles, dtype=np.int64))
        return reads, writes


@dataclass
class ConverterNode(Node):
    buffer: ConverterBuffer
    reason: str = ""  # why the layouts differ (for the report)

    @property
    def kind(self) -> str:
        return "itensor_converter"


@dataclass
class ForkNode(Node):
    @property
    def kind(self) -> str:
        return "itensor_fork"


@dataclass
class ReassociateNode(Node):
    """Reshape of the token stream without reordering (expand/collapse of element shape and iteration space)."""

    @property
    def kind(self) -> str:
        return "itensor_reassociate"


@dataclass
class ChunkNode(Node):
    """A static slice of the tensor: forwards the tokens inside ``offsets``/``sizes``, drops the rest."""

    offsets: tuple[int, ...]
    sizes: tuple[int, ...]

    @property
    def kind(self) -> str:
        return "itensor_chunk"


@dataclass
class ConcatNode(Node):
    dim: int

    @property
    def kind(self) -> str:
        return "itensor_concat"


@dataclass(frozen=True)
class CacheRows:
    """A KV-cache DMA bounded by a runtime row index (``ir.linalg.CacheUpdate``), its view reshapes only.

    A read streams from memory only the tiles whose first row along ``dim`` is at most ``position`` (rows
    ``0..position``: the rest are masked out of attention) and zero tiles in place of the others, so the stream
    keeps its static token count; a write (``into`` the cache input) takes every token of the updated cache but
    stores only the words holding row ``position`` into the cache's buffer, the read DMA's (same stream type)."""

    position: str  # the scalar input holding the row index
    dim: int  # of the streamed tensor
    into: str | None = None  # write: the cache input updated in place

    def read_tokens(self, t: ITensorType, position: int) -> np.ndarray:
        """Which tokens of stream ``t`` a read takes from memory (the others are zero tiles)."""
        return t.offsets()[:, self.dim] <= position

    def row_tokens(self, t: ITensorType, position: int) -> np.ndarray:
        """Which tokens of stream ``t`` hold row ``position`` (the tiles a write stores words of)."""
        start = t.offsets()[:, self.dim]
        return (start <= position) & (position < start + t.element_shape[self.dim])


@dataclass
class DmaNode(Node):
    """The boundary with external memory: ``read`` streams a tensor in, ``write`` streams one out. A read of role
    ``scalar`` streams a one-element input passed as a scalar register (``s_axilite``), not through memory."""

    direction: str  # "read" | "write"
    tensor: Value
    role: str  # "input" | "weight" | "kv_cache" | "constant" | "output" | "scalar"
    # Reshapes/slices between ``tensor`` and the streamed tensor, in program order: a read streams
    # view(tensor); a write stores view(streamed tensor) into ``tensor`` (reshapes only). External memory is
    # addressed in any order, so a view costs nothing.
    view: list[ReshapeOp | SliceOp] = field(default_factory=list)
    rows: CacheRows | None = None
    # HBM pseudo-channels (m_axi ports) its buffer is striped over, read in lock step (``analysis.hbm``): only
    # a read-only buffer (a read without ``rows``) is striped.
    stripes: int = 1
    # The ports it shares its pseudo-channels' bandwidth with, on average while it transfers (``analysis.hbm``,
    # contention): None where the placement's static count applies (every port on the busiest channel).
    share: Fraction | None = None

    @property
    def kind(self) -> str:
        return f"dma_{self.direction}"

    @property
    def buffer_name(self) -> str:
        """The tensor whose external buffer the DMA streams: a cache updated in place is its input's."""
        return self.rows.into if self.rows is not None and self.rows.into is not None else self.tensor.name

    @property
    def placement_name(self) -> str:
        """The unit ``analysis.hbm`` places on pseudo-channels: a read of anything but a KV cache streams a packed
        copy of its tensor of its own (one buffer per DMA, ``codegen.vitis.hbm``), placed apart from the tensor's
        other DMAs under its own name; a KV cache's DMAs (its read, its row write) stay on its buffer's channels."""
        return self.name if self.direction == "read" and self.role != "kv_cache" else self.buffer_name

    def view_shape(self) -> tuple[int, ...]:
        """Shape of the streamed tensor."""
        if self.direction == "read":
            return self.view[-1].results[0].type.shape if self.view else self.tensor.type.shape
        return self.view[0].operands[0].type.shape if self.view else self.tensor.type.shape


def apply_view(view: list[ReshapeOp | SliceOp], array: np.ndarray) -> np.ndarray:
    """The Linalg reshapes/slices of a DMA view applied to an array."""
    for op in view:
        if isinstance(op, SliceOp):
            array = array[tuple(slice(o, o + n * s, s) for o, n, s in zip(op.offsets, op.sizes, op.strides,
                                                                          strict=True))]
        array = array.reshape(op.results[0].type.shape)
    return array


@dataclass
class DataflowGraph:
    name: str
    nodes: dict[str, Node]
    streams: dict[str, Stream]
    groups: list[list[str]] = field(default_factory=list)  # fusion groups (node names), topological order
    inputs: list[Value] = field(default_factory=list)  # the block's inputs, in call order
    outputs: list[str] = field(default_factory=list)  # write DMA node of each block output, in return order
    constants: dict[str, np.ndarray] = field(default_factory=dict)  # data of constant DMA reads, by name

    def producer(self, stream: str) -> Node:
        return self.nodes[self.streams[stream].source]

    def consumer(self, stream: str) -> Node:
        return self.nodes[self.streams[stream].target]

    def chained_activation(self) -> tuple[DmaNode, list[DmaNode]] | None:
        """A block's activation chain: the write DMA of its first output when that output has the shape of its
        first input (the next layer reads it as that input), and the read DMAs of that input; None for any other
        graph."""
        out = self.nodes.get(self.outputs[0]) if self.outputs else None
        if not self.inputs or not isinstance(out, DmaNode) or out.role != "output":
            return None
        if out.tensor.type.shape != self.inputs[0].type.shape:
            return None
        return out, [n for n in self.nodes.values() if isinstance(n, DmaNode) and n.direction == "read"
                     and n.role == "input" and n.tensor.name == self.inputs[0].name]

    def topological_order(self) -> list[str]:
        indegree = {n: 0 for n in self.nodes}
        for s in self.streams.values():
            indegree[s.target] += 1
        ready = [n for n in self.nodes if indegree[n] == 0]
        order: list[str] = []
        while ready:
            n = ready.pop(0)
            order.append(n)
            for out in self.nodes[n].outputs:
                t = self.streams[out].target
                indegree[t] -= 1
                if indegree[t] == 0:
                    ready.append(t)
        if len(order) != len(self.nodes):
            raise VerificationError(f"dataflow graph @{self.name} has a cycle")
        return order

    def _arity(self, node: Node, inputs: int | None, outputs: int | None) -> None:
        for what, ports, want in (("inputs", node.inputs, inputs), ("outputs", node.outputs, outputs)):
            if want is not None and len(ports) != want:
                raise VerificationError(f"{node.kind} {node.name} has {len(ports)} {what}, expected {want}")

    def _verify_node(self, node: Node) -> None:
        """The static conditions each node's semantics relies on (module docstring)."""
        ins = [self.streams[p].type for p in node.inputs]
        outs = [self.streams[p].type for p in node.outputs]
        err: str | None = None
        if isinstance(node, KernelNode):
            verify_generic(node.op)
            err = _kernel_error(node, ins, outs)
        elif isinstance(node, ConverterNode):
            self._arity(node, 1, 1)
            if ins[0] == outs[0]:
                err = "converts a stream to its own type"
            elif ins[0].tensor_shape != outs[0].tensor_shape:
                err = "changes the tensor shape"
            elif replace(node.buffer, banks=(inferred := infer_converter_buffer(ins[0], outs[0])).banks) != inferred:
                err = f"buffer {node.buffer} is not the inferred one"
            elif node.buffer.banks not in {1, inferred.banks}:  # one window may serve a ping-pong pair's iterations
                allowed = "1" if inferred.banks == 1 else f"1 or {inferred.banks}"
                err = f"buffer {node.buffer} has {node.buffer.banks} banks, not {allowed}"
        elif isinstance(node, ForkNode):
            self._arity(node, 1, None)
            if len({str(t) for t in ins + outs}) != 1:
                err = f"changes the stream type: {sorted({str(t) for t in ins + outs})}"
        elif isinstance(node, ReassociateNode):
            self._arity(node, 1, 1)
            err = reassociation_error(ins[0], outs[0])
        elif isinstance(node, ChunkNode):
            self._arity(node, 1, 1)
            err = chunk_error(ins[0], node.offsets, node.sizes, outs[0])
        elif isinstance(node, ConcatNode):
            self._arity(node, None, 1)
            err = _concat_error(node, ins, outs[0])
        elif isinstance(node, DmaNode):
            self._arity(node, 0 if node.direction == "read" else 1, 1 if node.direction == "read" else 0)
            (t,) = outs or ins
            if t.tensor_shape != node.view_shape() or t.dtype != node.tensor.type.dtype:
                err = f"streams {t} but its view is tensor {node.view_shape()} of {node.tensor.type.dtype}"
            elif node.direction == "write" and any(isinstance(op, SliceOp) for op in node.view):
                err = "a write view may only reshape"
            elif node.role == "constant" and node.tensor.name not in self.constants:
                err = f"no data for constant %{node.tensor.name}"
            elif node.rows is not None and (any(isinstance(op, SliceOp) for op in node.view)
                                            or (node.rows.into is None) != (node.direction == "read")
                                            or not 0 <= node.rows.dim < len(t.tensor_shape)):
                err = f"rows {node.rows} need a view without slices, a dim of the stream and 'into' exactly on " \
                      "a write"
            elif node.stripes < 1 or (node.stripes > 1 and (node.direction != "read" or node.rows is not None
                                                             or node.role == "scalar")):
                err = f"stripes = {node.stripes}: at least 1, and only a read of a read-only buffer is striped"
            elif node.share is not None and (node.share < 1 or node.role == "scalar"):
                err = f"share = {node.share}: at least 1 (its own port), and a scalar register has none"
        if err is not None:
            raise VerificationError(f"{node.kind} {node.name}: {err}")

    def group_of(self) -> dict[str, int]:
        return {n: i for i, g in enumerate(self.groups) for n in g}

    def verify(self) -> None:
        """Both ends of every stream agree on it; ports are consistent; types verify; groups partition nodes."""
        for s in self.streams.values():
            for end, role in ((s.source, "outputs"), (s.target, "inputs")):
                if end not in self.nodes:
                    raise VerificationError(f"stream {s.name} references unknown node {end}")
                if getattr(self.nodes[end], role).count(s.name) != 1:
                    raise VerificationError(f"stream {s.name} is not exactly once in the {role} of {end}")
            s.type.verify()
            if (err := attribute_error(s.attributes)) is not None:
                raise VerificationError(f"stream {s.name}: {err}")
        for node in self.nodes.values():
            if (err := attribute_error(node.attributes)) is not None:
                raise VerificationError(f"node {node.name}: {err}")
            for port in node.inputs + node.outputs:
                if port not in self.streams:
                    raise VerificationError(f"node {node.name} uses unknown stream {port}")
            self._verify_node(node)
        for i, name in enumerate(self.outputs):
            node = self.nodes.get(name)
            if not isinstance(node, DmaNode) or node.direction != "write":
                raise VerificationError(f"output {i} of @{self.name} is not a write DMA: {name}")
        self.topological_order()
        if self.groups:
            seen = [n for g in self.groups for n in g]
            if sorted(seen) != sorted(self.nodes):
                raise VerificationError(f"fusion groups of @{self.name} do not partition its nodes")


def _kernel_error(node: KernelNode, ins: list[ITensorType], outs: list[ITensorType]) -> str | None:
    op = node.op
    if len(node.loops) != len(op.iterator_types) or sorted(node.tile_order) != list(range(len(node.loops))):
        return "loops / tile_order do not cover the op's loops"
    if sorted(node.point_order) != list(range(len(node.loops))):
        return "point_order is not a permutation of the loops"
    for d, (lt, size) in enumerate(zip(node.loops, op.domain, strict=True)):
        fits = size % lt.tile == 0 and lt.tile % lt.unroll == 0
        if lt.size != size or not fits or lt.reduction != (d in op.reduction_dims):
            return f"loop d{d} tiling {lt} does not fit range {size}"
    if node.input_operands != node.streamed_operands():
        return f"input ports {node.input_operands} but the streamed operands are {node.streamed_operands()}"
    results = len(op.results)
    if node.output_results[:results] != list(range(results)) or len(outs) != len(node.output_results):
        return f"output ports {node.output_results} must be the results in order, then replays"
    replays = node.replay_results
    if replays and not node.holds_whole_result():
        return (f"replay ports {replays} need every output tile pending at once "
                f"({node.pending_tiles} of {node.output_tiles} are)")
    if any(not 0 <= r < results for r in replays):
        return f"replay ports {replays} name results the op does not have"
    if len(ins) != len(node.input_operands):
        return f"{len(ins)} input ports for operands {node.input_operands}"
    for port, (operand, t) in enumerate(zip(node.input_operands, ins, strict=True)):
        if t != node.operand_type(operand):
            return f"input port {port} has type {t}, its tiling gives {node.operand_type(operand)}"
    for port, (r, t) in enumerate(zip(node.output_results, outs, strict=True)):
        if t != node.result_type(r):
            return f"output port {port} has type {t}, its tiling gives {node.result_type(r)}"
    return None


def _concat_error(node: ConcatNode, ins: list[ITensorType], out: ITensorType) -> str | None:
    shapes = [t.tensor_shape for t in ins]
    expect = list(shapes[0])
    expect[node.dim] = sum(s[node.dim] for s in shapes)
    if tuple(expect) != out.tensor_shape or any(len(s) != len(expect) for s in shapes):
        return f"inputs {shapes} do not concatenate along dim {node.dim} to {out.tensor_shape}"
    try:
        concat_sources(ins, node.dim, out)
    except ValueError as err:
        return str(err)
    return None


def print_dataflow(graph: DataflowGraph) -> str:
    """MLIR-like text: the signature (block inputs, output DMAs), constant data, then per fusion group its streams
    with types (and depths) and its nodes in group order; without groups, every stream and then every node in
    topological order. Kernels and DMAs carry the Linalg ops they stand for as a region. Complete: the dataflow
    parser (``ir.dataflow_parser``) reads it back to the same graph."""
    lines = [f"// Dataflow graph of @{graph.name}: {len(graph.nodes)} nodes, {len(graph.streams)} streams, "
             f"{len(graph.groups)} fusion group(s)"]
    sig = ", ".join(f"%{v.name}: {v.type}" for v in graph.inputs)
    outputs = ", ".join(f"@{n}" for n in graph.outputs)
    lines.append(f"dataflow.graph @{graph.name}({sig}) -> ({outputs}) {{")
    for name, array in graph.constants.items():
        lines.append(f"  %{name} = arith.constant {_format_constant(array)}")
    if not graph.groups:
        _print_members(graph, graph.topological_order(), "  ", lines)
    for gi, group in enumerate(graph.groups):
        lines.append(f"  dataflow.kernel @group{gi} {{  // one accelerator: {len(group)} nodes")
        _print_members(graph, group, "    ", lines)
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


_TYPE_OF_NUMPY = {np.dtype(t): name for name, t in CONSTANT_NUMPY_TYPES.items()}


def _format_constant(array: np.ndarray) -> str:
    dtype = _TYPE_OF_NUMPY[array.dtype]
    return f"{format_dense(array, dtype)} : tensor<{''.join(f'{d}x' for d in array.shape)}{dtype}>"


def _print_members(graph: DataflowGraph, members: list[str], indent: str, lines: list[str]) -> None:
    """The streams the ``members`` produce, then the members."""
    member_set = set(members)
    for s in graph.streams.values():
        if s.source in member_set:
            depth = f", depth {s.depth}" if s.depth is not None else ""
            attrs = f" attributes {format_attribute_dict(s.attributes)}" if s.attributes else ""
            lines.append(f"{indent}%{s.name} = itensor_instance : !{s.type}{depth}{attrs}  // {s.source} -> "
                         f"{s.target}")
    for n in members:
        node = graph.nodes[n]
        head = _print_node(node)
        if node.attributes:
            head += f" attributes {format_attribute_dict(node.attributes)}"
        region: list[Op] = [node.op] if isinstance(node, KernelNode) else []
        if isinstance(node, DmaNode):
            region = list(node.view)
        if not region:
            lines.append(indent + head)
            continue
        lines.append(indent + head + " {")
        lines.extend(f"{indent}  {line}" for op in region for line in print_op(op))
        lines.append(indent + "}")


def _print_node(node: Node) -> str:
    ins = ", ".join(f"%{s}" for s in node.inputs)
    outs = ", ".join(f"%{s}" for s in node.outputs)
    head = f"{node.kind} @{node.name}({ins}) -> ({outs})"
    if isinstance(node, KernelNode):
        tiles = ", ".join(f"d{d}: {lt.trip}x{lt.tile}/u{lt.unroll}{'r' if lt.reduction else ''}"
                          for d, lt in enumerate(node.loops))
        consts = "".join(f", init{r} = {v}" for r, v in sorted(node.init_constants.items()))
        rate = f", min_pipeline_ii = {node.min_pipeline_ii}" if node.min_pipeline_ii > 1 else ""
        replay = f", replays = {node.replay_results}" if node.replay_results else ""
        return f"{head} {{tiles = [{tiles}], tile_order = {node.tile_order}, point_order = {node.point_order}, " \
               f"operands = {node.input_operands}{consts}{rate}{replay}}}"
    if isinstance(node, ConverterNode):
        b = node.buffer
        half = "x".join(map(str, b.shape)) or "scalar"
        reason = f", reason = {json.dumps(node.reason)}" if node.reason else ""
        return f"{head} {{buffer = {b.banks}x{half}, shared_loops = {b.shared_loops}, bytes = {b.bytes}{reason}}}"
    if isinstance(node, ChunkNode):
        return f"{head} {{offsets = {list(node.offsets)}, sizes = {list(node.sizes)}}}"
    if isinstance(node, ConcatNode):
        return f"{head} {{dim = {node.dim}}}"
    if isinstance(node, DmaNode):
        rows = "" if node.rows is None else f", rows = %{node.rows.position} dim {node.rows.dim}" + (
            f" into %{node.rows.into}" if node.rows.into is not None else "")
        stripes = f", stripes = {node.stripes}" if node.stripes != 1 else ""
        share = f", share = {node.share}" if node.share is not None else ""
        return f"{head} {{tensor = %{node.tensor.name} : {node.tensor.type}, role = {node.role}{rows}{stripes}{share}}}"
    return head
