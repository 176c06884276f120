"""Split a kernel whose result is only ever sliced into one kernel per slice.

GPT-2 projects queries, keys and values with one matmul (``c_attn``: hidden -> 3 x hidden) and slices its
result into Q, K and V. As one kernel, its tile loop over the 3 x hidden output columns emits all of Q, then all
of K, then all of V; attention needs head h of all three at once, so the FIFOs from that kernel to attention
hold about two thirds of its result (measured on paper-size GPT-2 prefill: 168 KiB on the Q branch alone).
Three kernels over the three column ranges stream Q_h, K_h and V_h side by side.

Rewrite: a ``linalg.generic`` with one result, used only by ``tensor.extract_slice`` ops (not a block output)
that cut one result dim into disjoint ranges (unit strides, every other dim whole), where that result dim is a
parallel loop ``d`` that no other result dim uses, that every operand indexes at most by a plain ``d`` (no
compound expression), and that the body does not read through ``linalg.index``. Each slice becomes a copy of
the generic over ``d``'s range, every operand indexed by ``d`` cut to that range by a new ``extract_slice``
(a weight slice is read from external memory like the weight); a rank-reducing slice keeps its result type
through a ``collapse_shape``. The pass repeats until nothing changes, so a chain (bias add after the matmul)
splits back to its first kernel. Columns no slice reads are no longer computed. The results are bit-identical:
every output element is computed by the same body from the same operands.
"""

from __future__ import annotations

from dataclasses import replace

from streamtensor.ir.linalg import (
    GenericOp,
    Graph,
    Op,
    ReshapeOp,
    SliceOp,
    TensorType,
    Value,
    fresh_name,
    unit_dim_groups,
)


def _sliced_dim(result: Value, slices: list[SliceOp]) -> int | None:
    """The one dim of ``result`` the slices cut into disjoint ranges, or None."""
    shape = result.type.shape
    dims = {k for s in slices for k in range(len(shape)) if (s.offsets[k], s.sizes[k]) != (0, shape[k])}
    if len(dims) != 1 or any(set(s.strides) != {1} for s in slices):
        return None
    (k,) = dims
    ranges = sorted((s.offsets[k], s.offsets[k] + s.sizes[k]) for s in slices)
    if any(a[1] > b[0] for a, b in zip(ranges, ranges[1:], strict=False)):
        return None  # overlapping slices would compute their shared part twice
    return k


def _splittable_loop(op: GenericOp, k: int) -> int | None:
    """The parallel loop walking result dim ``k`` if every operand indexes it only plainly, else None."""
    out_map = op.indexing_maps[len(op.inputs)]
    d = out_map.result_dim(k)
    if d is None or op.iterator_types[d] != "parallel":
        return None
    if [out_map.result_dim(i) for i in range(out_map.num_results)].count(d) != 1:
        return None
    for amap in op.indexing_maps:
        for i in range(amap.num_results):
            if amap.result_dim(i) != d and d in amap.results[i].dims():
                return None
    if any(s.name == "linalg.index" and int(s.attr("dim")) == d for s in op.body.ops):
        return None
    return d


class _Names:
    def __init__(self, graph: Graph) -> None:
        self.values = {v.name for v in graph.inputs} | {r.name for op in graph.ops for r in op.results}
        self.labels = {op.name for op in graph.ops if isinstance(op, GenericOp)}

    def value(self, base: str) -> str:
        return fresh_name(base, self.values)

    def label(self, like: str) -> str:
        """A fresh kernel label of the same kind as ``like`` (``matmul_3`` -> the next free ``matmul_N``)."""
        stem = like.rsplit("_", 1)[0]
        name = next(f"{stem}_{k}" for k in range(1, len(self.labels) + 2) if f"{stem}_{k}" not in self.labels)
        self.labels.add(name)
        return name


def _split(op: GenericOp, k: int, d: int, slices: list[SliceOp], names: _Names) -> list[Op]:
    """The ops replacing ``op`` and its ``slices`` (module docstring), in program order."""
    out: list[Op] = []
    for s in sorted(slices, key=lambda s: s.offsets[k]):
        start, size = s.offsets[k], s.sizes[k]
        operands: list[Value] = []
        for value, amap in zip(op.operands, op.indexing_maps, strict=True):
            positions = [i for i in range(amap.num_results) if amap.result_dim(i) == d]
            if not positions:
                operands.append(value)
                continue
            shape = value.type.shape
            offsets = tuple(start if i in positions else 0 for i in range(len(shape)))
            sizes = tuple(size if i in positions else n for i, n in enumerate(shape))
            cut = Value(names.value(f"{value.name}_cols"), TensorType(sizes, value.type.dtype))
            out.append(SliceOp([cut], value, offsets, sizes, (1,) * len(shape), location=op.location))
            operands.append(cut)
        full = tuple(size if i == k else n for i, n in enumerate(op.results[0].type.shape))
        wanted = s.results[0]
        same = wanted.type.shape == full
        result = wanted if same else Value(names.value(wanted.name), TensorType(full, wanted.type.dtype))
        n_in = len(op.inputs)
        out.append(replace(op, results=[result], name=names.label(op.name), inputs=operands[:n_in],
                           inits=operands[n_in:]))
        if not same:
            groups = unit_dim_groups(full, wanted.type.shape)
            out.append(ReshapeOp([wanted], result, groups, False, location=s.location))
    return out


def _split_one(graph: Graph, names: _Names) -> Graph | None:
    """``graph`` with the first splittable generic split, or None when there is none."""
    users = graph.users()
    outputs = {v.name for v in graph.outputs}
    for op in graph.ops:
        if not isinstance(op, GenericOp) or len(op.results) != 1 or op.results[0].name in outputs:
            continue
        uses = users.get(op.results[0].name, [])
        if len(uses) < 2 or not all(isinstance(u, SliceOp) for u in uses):
            continue
        slices = [u for u in uses if isinstance(u, SliceOp)]
        k = _sliced_dim(op.results[0], slices)
        d = _splittable_loop(op, k) if k is not None else None
        if k is None or d is None:
            continue
        replaced = {id(s) for s in slices}
        ops: list[Op] = []
        for other in graph.ops:
            if other is op:
                ops.extend(_split(op, k, d, slices, names))
            elif id(other) not in replaced:
                ops.append(other)
        return replace(graph, ops=ops)
    return None


def split_sliced_results(graph: Graph) -> Graph:
    """``graph`` with every generic whose result is only sliced split per slice (module docstring)."""
    names = _Names(graph)
    while (split := _split_one(graph, names)) is not None:
        graph = split
    graph.verify()
    return graph
