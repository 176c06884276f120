"""Linalg -> dataflow (spec pipeline step 4): every tiled generic becomes a kernel joined by itensor streams.

Construction, one Linalg op at a time in program order; every value carried on chip gets a *definition* (the
node port producing it, with its type) and *uses* (node ports, each with the type it needs):

- **Kernels**: each tiled ``linalg.generic``; port types from the tiling (``kernel_operand_type``). Inits read
  by the body that are constant fills are folded into the kernel (``init_constants``).
- **External tensors** (block inputs, weights, KV cache, ``arith.constant``): every use gets its own read DMA
  streaming directly in the type that use needs; reshapes and slices of an external tensor fold into the DMA's
  view. Block outputs get a write DMA in the producer's type (reshapes between the output and its producer
  fold into the write view).
- **Reshapes** between kernels become an ``itensor_reassociate``. Its result type is the type the consumer
  needs when that is a reassociation of the producer's stream (no converter at all); else the cheapest
  (converter bytes, then converter count) of: converting after it (from the fitted reassociation of the
  producer's type, ``layout.reassociate_type``), converting before it (to the consumer's type pulled back over
  the source shape), or reassociating a row-major *segment* layout (flat runs that tile both shapes,
  ``layout.segment_types``) with converters on either side as needed. The segments always include the whole
  tensor as one token, so a reshape never fails.
- **Slices** become an ``itensor_chunk`` on the producer's stream when the slice starts and ends on tile
  boundaries; else a converter first re-tiles the stream row-major with tiles that divide the producer's tiles
  and the slice bounds (``layout.aligned_type``). A rank-reducing slice is a chunk followed by a reshape.
- **Concats** become an ``itensor_concat`` whose output is either the consumer's type (when its chunk at every
  input region exists; converters then sit on the inputs) or an aligned row-major type (converters on inputs
  whose layout differs, and one after the concat), whichever needs fewer converter bytes.

Wiring: a value with several uses gets a ``fork_<value>``; uses needing the same type different from the
definition share one ``conv_<producer>_to_<first consumer>`` (forked after it if several), or a reassociate
when the two types stream the same tokens (they differ only in how the iteration space is spelled, e.g.
trip-1 loops). Finally chains of reassociates merge into one and identity reassociates disappear; the graph is
verified.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

import numpy as np

from streamtensor.errors import UnsupportedOpError
from streamtensor.ir.converter_buffer import infer_converter_buffer, layout_difference
from streamtensor.ir.dataflow import (
    CacheRows,
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
    kernel_operand_type,
    reads_init,
)
from streamtensor.ir.itensor import ITensorType
from streamtensor.ir.layout import (
    aligned_type,
    chunk_type,
    concat_regions,
    reassociate_type,
    reassociation_error,
    row_major_type,
    segment_types,
)
from streamtensor.ir.linalg import (
    ConcatOp,
    ConstantOp,
    EmptyOp,
    GenericOp,
    Graph,
    ReshapeOp,
    SliceOp,
    TensorType,
    Value,
)
from streamtensor.transforms.tiling.edges import forks_external_read
from streamtensor.transforms.tiling.liveness import fill_value, init_constants, live_values, output_root
from streamtensor.transforms.tiling.plan import Tiling
from streamtensor.transforms.tiling.tile_sizes import tile_size

_LAYOUT = "layout mismatch"  # the default reason of a converter: producer and consumer stream differently


@dataclass
class _Use:
    node: str
    type: ITensorType | None  # None: any type will do (a write DMA takes the producer's)
    reason: str  # why a converter in front of this use is needed
    stream: str = ""


@dataclass
class _Def:
    node: str
    type: ITensorType
    stream: str = ""


def _role(graph: Graph, name: str) -> str:
    if name in graph.weight_names:
        return "weight"
    if name in graph.scalar_names:
        return "scalar"
    return "kv_cache" if graph.cache_update_of(name) is not None or name.endswith("cache") else "input"


class _Builder:
    def __init__(self, graph: Graph, tiling: Tiling) -> None:
        self.graph = graph
        self.tiling = tiling
        self.producers = graph.producers()
        self.users = graph.users()
        self.live = live_values(graph)
        self.nodes: dict[str, Node] = {}
        self.streams: dict[str, Stream] = {}
        self.ports_in: dict[str, list[_Use]] = {}
        self.ports_out: dict[str, list[_Def]] = {}
        self.defs: dict[str, _Def] = {}
        self.uses: dict[str, list[_Use]] = {}
        self.values: dict[str, TensorType] = {}
        # External value -> (tensor in memory, view ops from it, DMA role).
        self.external: dict[str, tuple[Value, list[ReshapeOp | SliceOp], str]] = {}
        self.constants: dict[str, np.ndarray] = {}
        self.output_nodes: list[str] = []
        self.shared_reads: dict[tuple[str, ITensorType], str] = {}  # (external value, type) -> its read's key

    # --- bookkeeping ---------------------------------------------------------------------------------------

    def _unique(self, base: str, taken: Container[str]) -> str:
        name, k = base, 2
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        return name

    def _add(self, node: Node) -> Node:
        node.name = self._unique(node.name, self.nodes)
        self.nodes[node.name] = node
        self.ports_in[node.name] = []
        self.ports_out[node.name] = []
        return node

    def _stream(self, value: str, t: ITensorType, source: str, target: str) -> str:
        name = self._unique(value, self.streams)
        self.streams[name] = Stream(name, t, source, target)
        return name

    def _define(self, value: str, node: str, t: ITensorType) -> None:
        d = _Def(node, t)
        self.ports_out[node].append(d)
        self.defs[value] = d

    def _use(self, value: str, node: str, t: ITensorType | None, reason: str = _LAYOUT) -> None:
        u = _Use(node, t, reason)
        self.ports_in[node].append(u)
        if value in self.external:
            self._dma_read(value, u)
        else:
            self.uses.setdefault(value, []).append(u)

    def _dma_read(self, value: str, use: _Use) -> None:
        tensor, view, role = self.external[value]
        t = use.type if use.type is not None else self._default_type(self.values[value])
        shared = role != "constant" and forks_external_read(t, role == "scalar")
        if shared and (value, t) in self.shared_reads:  # read once, forked when the uses are wired
            self.uses[self.shared_reads[value, t]].append(use)
            return
        dma = self._add(DmaNode(f"dma_{tensor.name}_to_{use.node}", [], [], "read", tensor, role, list(view),
                                rows=self._cache_rows(tensor.name, view, t.tensor_shape)))
        if shared:
            key = self._unique(value, self.defs)
            self.shared_reads[value, t] = key
            self.values[key] = self.values[value]
            self._define(key, dma.name, t)
            self.uses[key] = [use]
            return
        use.stream = self._stream(value, t, dma.name, use.node)
        dma.outputs = [use.stream]

    def _cache_rows(self, name: str, view: list[ReshapeOp | SliceOp], streamed: tuple[int, ...],
                    into: str | None = None) -> CacheRows | None:
        """The row window of a DMA of a KV cache read or updated in place (``CacheUpdate``), else None; its dim is
        the streamed tensor's (views may only add or drop unit dims: the stream is the cache as it is stored)."""
        update = self.graph.cache_update_of(name)
        if update is None:
            return None
        shape = self.graph.inputs[[v.name for v in self.graph.inputs].index(name)].type.shape
        kept = [n for n in shape if n != 1]
        if any(isinstance(op, SliceOp) for op in view) or [n for n in streamed if n != 1] != kept:
            raise UnsupportedOpError("tensor.extract_slice", "tensor", f"KV cache %{name} {list(shape)} is "
                                     f"streamed as {list(streamed)}: an in-place cache is streamed as it is stored "
                                     "(unit dims aside)")
        if shape[update.dim] == 1:
            return CacheRows(update.position, streamed.index(1), into)
        rank = sum(1 for n in shape[:update.dim] if n != 1)  # the row dim among the dims above 1
        dim = [j for j, n in enumerate(streamed) if n != 1][rank]
        return CacheRows(update.position, dim, into)

    def _default_type(self, tt: TensorType) -> ITensorType:
        default = self.tiling.options.default_tile_size
        return row_major_type(tt.shape, tuple(tile_size(n, default) for n in tt.shape), tt.dtype)

    def _cost(self, *pairs: tuple[ITensorType | None, ITensorType | None]) -> tuple[int, int]:
        """(converter bytes, converters) to turn each source layout into its result layout (nothing where
        either end accepts any layout or the two stream the same tokens). Ties in bytes go to fewer
        converters."""
        convs = [(s, r) for s, r in pairs
                 if s is not None and r is not None and s != r and reassociation_error(s, r) is not None]
        return sum(infer_converter_buffer(s, r).bytes for s, r in convs), len(convs)

    # --- ops -----------------------------------------------------------------------------------------------

    def _demand(self, value: str) -> ITensorType | None:
        """The type the first kernel reading ``value`` (possibly through reshapes) needs, over its shape."""
        for op in self.users.get(value, []):
            if isinstance(op, GenericOp) and op.name in self.tiling.ops:
                t = self.tiling.ops[op.name]
                n_in = len(op.inputs)
                for j, v in enumerate(op.operands):
                    if v.name != value:
                        continue
                    folded = j >= n_in and (not reads_init(op, j - n_in)
                                            or fill_value(self.graph, value, self.producers) is not None)
                    if not folded:
                        return kernel_operand_type(op, t.loops, t.tile_order, j)
            elif isinstance(op, ReshapeOp) and op.results[0].name in self.live:
                d = self._demand(op.results[0].name)
                # The reshape's own operand type: a chain of reshapes asks before the builder reaches ``value``.
                q = reassociate_type(d, op.source.type.shape) if d is not None else None
                if q is not None:
                    return q
        return None

    def _kernel(self, op: GenericOp) -> None:
        t = self.tiling.ops[op.name]
        node = KernelNode(op.name, [], [], op, t.loops, t.tile_order, t.point_order,
                          min_pipeline_ii=t.min_pipeline_ii)
        node.init_constants = init_constants(self.graph, op, self.producers)
        node.input_operands = node.streamed_operands()
        node.output_results = list(range(len(op.results)))
        self._add(node)
        for j in node.input_operands:
            self._use(op.operands[j].name, node.name, node.operand_type(j))
        for r, v in enumerate(op.results):
            self._define(v.name, node.name, node.result_type(r))

    def _reshape(self, source: str, result: str) -> None:
        produced = self.defs[source].type
        src_shape, res_tt = self.values[source].shape, self.values[result]
        target = self._demand(result)
        if target is not None and reassociation_error(produced, target) is None:
            in_type, out_type = produced, target
        else:
            options: list[tuple[tuple[int, int], ITensorType, ITensorType]] = []
            after = reassociate_type(produced, res_tt.shape)
            if after is not None:
                options.append((self._cost((after, target)), produced, after))
            before = reassociate_type(target, src_shape) if target is not None else None
            if before is not None and target is not None:
                options.append((self._cost((produced, before)), before, target))
            # Segments finer than both ends only add tokens (and cost time to evaluate on large tensors).
            limit = max(produced.num_tokens, target.num_tokens if target is not None else 1)
            for seg_in, seg_out in segment_types(src_shape, res_tt.shape, res_tt.dtype):
                if seg_in.num_tokens <= limit:
                    options.append((self._cost((produced, seg_in), (seg_out, target)), seg_in, seg_out))
            _, in_type, out_type = min(options, key=lambda o: o[0])
        node = self._add(ReassociateNode(f"reassociate_{result}", [], []))
        self._use(source, node.name, in_type,
                  f"reshape to {list(res_tt.shape)}: the stream does not reassociate")
        self._define(result, node.name, out_type)

    def _chunk(self, op: SliceOp) -> None:
        if any(s != 1 for s in op.strides):
            raise UnsupportedOpError("tensor.extract_slice", "tensor", f"strides {list(op.strides)} of a "
                                     "slice between kernels (only unit strides are streamed)", op.location)
        source, result = op.source.name, op.results[0]
        produced = self.defs[source].type
        in_type = produced
        out_type = chunk_type(produced, op.offsets, op.sizes)
        if out_type is None:
            cuts = {j: [o, o + n] for j, (o, n) in enumerate(zip(op.offsets, op.sizes, strict=True))}
            in_type = aligned_type(op.source.type.shape, produced.dtype, [produced.element_shape], cuts)
            out_type = chunk_type(in_type, op.offsets, op.sizes)
            assert out_type is not None  # an aligned row-major layout always chunks
        node = self._add(ChunkNode(f"chunk_{result.name}", [], [], tuple(op.offsets), tuple(op.sizes)))
        self._use(source, node.name, in_type, f"slice {list(op.offsets)}{list(op.sizes)} cuts through tiles")
        if tuple(op.sizes) == result.type.shape:
            self._define(result.name, node.name, out_type)
            return
        # Rank-reducing slice: a chunk over the unreduced slice shape, then a reshape dropping the unit dims.
        sliced = f"{result.name}_slice"
        self.values[sliced] = TensorType(tuple(op.sizes), result.type.dtype)
        self._define(sliced, node.name, out_type)
        self._reshape(sliced, result.name)

    def _concat(self, op: ConcatOp) -> None:
        result = op.results[0]
        regions = concat_regions([v.type.shape for v in op.inputs], op.dim)
        sources = [self.defs[v.name].type if v.name in self.defs else None for v in op.inputs]
        target = self._demand(result.name)
        options: list[tuple[tuple[int, int], ITensorType, list[ITensorType | None]]] = []
        if target is not None:
            subs = [chunk_type(target, o, s) for o, s in regions]
            if all(sub is not None for sub in subs):
                options.append((self._cost(*zip(sources, subs, strict=True)), target, subs))
        hints = [p.element_shape for p in sources if p is not None]
        hints += [target.element_shape] if target is not None else []
        cuts = {op.dim: [o[op.dim] for o, _ in regions]}
        aligned = aligned_type(result.type.shape, result.type.dtype, hints, cuts)
        subs = [chunk_type(aligned, o, s) for o, s in regions]  # an aligned row-major layout always chunks
        options.append((self._cost(*zip(sources, subs, strict=True), (aligned, target)), aligned, subs))
        _, out_type, in_types = min(options, key=lambda o: o[0])
        node = self._add(ConcatNode(f"concat_{result.name}", [], [], op.dim))
        for v, t in zip(op.inputs, in_types, strict=True):
            self._use(v.name, node.name, t, "concat inputs must be chunks of its output layout")
        self._define(result.name, node.name, out_type)

    def _output(self, index: int, value: Value) -> None:
        root, chain = output_root(value.name, self.producers)
        update = next((u for u in self.graph.cache_updates if u.output == index), None)
        streamed = chain[0].operands[0].type.shape if chain else value.type.shape
        rows = None if update is None else self._cache_rows(update.cache, list(chain), streamed, update.cache)
        node = self._add(DmaNode(f"dma_{value.name}_to_output", [], [], "write", value,
                                 "output" if rows is None else "kv_cache", list(chain), rows=rows))
        self.output_nodes.append(node.name)
        self._use(root, node.name, None)

    # --- wiring --------------------------------------------------------------------------------------------

    def _connect(self, value: str, d: _Def, uses: list[_Use]) -> None:
        if len(uses) == 1:
            d.stream = uses[0].stream = self._stream(value, d.type, d.node, uses[0].node)
            return
        fork = self._add(ForkNode(f"fork_{value}", [], []))
        d.stream = self._stream(value, d.type, d.node, fork.name)
        fork.inputs = [d.stream]
        for u in uses:
            u.stream = self._stream(value, d.type, fork.name, u.node)
            fork.outputs.append(u.stream)

    def _wire(self, value: str, d: _Def) -> None:
        uses = self.uses.get(value, [])
        if not uses:
            raise UnsupportedOpError("linalg.generic", "linalg",
                                     f"%{value} of {d.node} is computed but never used")
        by_type: dict[ITensorType, list[_Use]] = {}
        for u in uses:
            by_type.setdefault(u.type if u.type is not None else d.type, []).append(u)
        endpoints: list[_Use] = []
        for t, group in by_type.items():
            if t == d.type:
                endpoints.extend(group)
                continue
            node: Node
            if reassociation_error(d.type, t) is None:
                # Same tokens, another spelling of the iteration space (trip-1 loops): relabel, no buffer.
                node = self._add(ReassociateNode(f"reassociate_{value}", [], []))
            else:
                reason = group[0].reason
                if reason == _LAYOUT:
                    reason = f"{group[0].node} reads %{value} of {d.node} in another layout"
                node = self._add(ConverterNode(f"conv_{d.node}_to_{group[0].node}", [], [],
                                               infer_converter_buffer(d.type, t),
                                               f"{reason}: {layout_difference(d.type, t)}"))
            entry = _Use(node.name, d.type, "")
            self.ports_in[node.name].append(entry)
            endpoints.append(entry)
            converted = _Def(node.name, t)
            self.ports_out[node.name].append(converted)
            self._connect(value, converted, group)
        self._connect(value, d, endpoints)

    def _drop_reassociates(self) -> None:
        """Merge chains of reassociates (legal by transitivity) and bypass identity ones."""
        for name in [n for n, node in self.nodes.items() if isinstance(node, ReassociateNode)]:
            node = self.nodes[name]
            (s_in,), (s_out,) = node.inputs, node.outputs
            out = self.streams[s_out]
            consumer = self.nodes[out.target]
            if self.streams[s_in].type == out.type:
                self.streams[s_in].target = out.target
                consumer.inputs[consumer.inputs.index(s_out)] = s_in
                del self.streams[s_out], self.nodes[name]
            elif isinstance(consumer, ReassociateNode):
                # Fold this node into its consumer, which then reads this node's input.
                self.streams[s_in].target = consumer.name
                consumer.inputs = [s_in]
                del self.streams[s_out], self.nodes[name]

    def build(self) -> DataflowGraph:
        g = self.graph
        for v in g.inputs:
            self.values[v.name] = v.type
            self.external[v.name] = (v, [], _role(g, v.name))
        for op in g.ops:
            for r in op.results:
                self.values[r.name] = r.type
            if isinstance(op, ConstantOp):
                self.external[op.results[0].name] = (op.results[0], [], "constant")
                self.constants[op.results[0].name] = op.value
            elif isinstance(op, ReshapeOp | SliceOp) and op.source.name in self.external:
                tensor, view, role = self.external[op.source.name]
                self.external[op.results[0].name] = (tensor, [*view, op], role)
            elif not any(r.name in self.live for r in op.results):
                continue
            elif isinstance(op, GenericOp):
                self._kernel(op)
            elif isinstance(op, ReshapeOp):
                self._reshape(op.source.name, op.results[0].name)
            elif isinstance(op, SliceOp):
                self._chunk(op)
            elif isinstance(op, ConcatOp):
                self._concat(op)
            elif isinstance(op, EmptyOp):
                raise UnsupportedOpError("tensor.empty", "tensor", f"%{op.results[0].name} is read as data",
                                         op.location)
        for i, v in enumerate(g.outputs):
            self._output(i, v)
        # Reads of external tensors first, in the order of their first use (as their streams are named).
        shared = set(self.shared_reads.values())
        for value, d in sorted(self.defs.items(), key=lambda item: item[0] not in shared):
            self._wire(value, d)
        for name, node in self.nodes.items():
            if self.ports_in[name] or self.ports_out[name]:
                node.inputs = [u.stream for u in self.ports_in[name]]
                node.outputs = [d.stream for d in self.ports_out[name]]
        self._drop_reassociates()
        dfg = DataflowGraph(g.name, self.nodes, self.streams, inputs=list(g.inputs),
                            outputs=self.output_nodes, constants=dict(self.constants))
        dfg.verify()
        _check_cache_layouts(dfg)
        return dfg


def _check_cache_layouts(graph: DataflowGraph) -> None:
    """A cache updated in place is one buffer: its row write addresses the packed layout its reads stream."""
    for w in graph.nodes.values():
        if not isinstance(w, DmaNode) or w.rows is None or w.rows.into is None:
            continue
        written = graph.streams[w.inputs[0]].type
        reads = [graph.streams[r.outputs[0]].type for r in graph.nodes.values()
                 if isinstance(r, DmaNode) and r.direction == "read" and r.tensor.name == w.rows.into]
        if not reads or any(t != written for t in reads):
            raise UnsupportedOpError("linalg.generic", "linalg", f"KV cache %{w.rows.into} is streamed in "
                                     f"{sorted(set(map(str, reads)))} but its update in {written}: an in-place "
                                     "cache needs one layout")


def build_dataflow(graph: Graph, tiling: Tiling) -> DataflowGraph:
    """The dataflow graph of a tiled Linalg graph (module docstring); verified."""
    return _Builder(graph, tiling).build()
