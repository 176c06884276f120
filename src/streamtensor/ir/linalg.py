"""The project's Linalg graph IR: what the frontend hands to tiling.

A ``Graph`` is a function of tensor values. Compute is ``GenericOp`` (a ``linalg.generic`` with its iteration
domain, indexing maps, iterator types and a scalar body of arith/math ops); data movement that survives Linalg
optimization is ``ReshapeOp`` (expand/collapse_shape), ``SliceOp`` (extract_slice), ``ConcatOp``; constants and
empty inits are ``ConstantOp`` and ``EmptyOp``. The text form is MLIR-like (see ``print_graph``).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from streamtensor.errors import VerificationError
from streamtensor.ir.affine import AffineMap
from streamtensor.ir.dtypes import DTYPE_BITS
from streamtensor.ir.text import format_dense


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_BITS:
            raise VerificationError(f"unknown element type '{self.dtype}'")

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def bytes(self) -> int:
        return (self.elements * DTYPE_BITS[self.dtype] + 7) // 8

    def __str__(self) -> str:
        return "tensor<" + "".join(f"{d}x" for d in self.shape) + self.dtype + ">"


@dataclass(frozen=True)
class Value:
    """An SSA tensor value: ``%name : type``."""

    name: str
    type: TensorType

    def __str__(self) -> str:
        return f"%{self.name}"


@dataclass(frozen=True)
class ScalarOp:
    """One arith/math op of a generic body. Operands name body values (block args or earlier results)."""

    result: str
    name: str  # "arith.addf", "math.exp", "linalg.index", "arith.constant", ...
    operands: tuple[str, ...]
    dtype: str  # result element type
    attrs: tuple[tuple[str, object], ...] = ()  # e.g. (("predicate", "olt"),), (("value", 1.0),)

    def attr(self, key: str) -> object:
        return dict(self.attrs)[key]


@dataclass(frozen=True)
class ScalarBody:
    args: tuple[tuple[str, str], ...]  # (name, dtype): one per input, then one per init
    ops: tuple[ScalarOp, ...]
    yields: tuple[str, ...]

    def op_names(self) -> list[str]:
        return [op.name for op in self.ops]


@dataclass
class Op:
    results: list[Value]
    location: str | None = field(default=None, kw_only=True)

    @property
    def operands(self) -> list[Value]:
        raise NotImplementedError

    @property
    def kind(self) -> str:
        raise NotImplementedError


@dataclass
class GenericOp(Op):
    name: str  # readable label, e.g. "matmul_3"
    inputs: list[Value]
    inits: list[Value]
    indexing_maps: list[AffineMap]  # inputs then inits
    iterator_types: list[str]  # "parallel" | "reduction"
    body: ScalarBody

    @property
    def operands(self) -> list[Value]:
        return self.inputs + self.inits

    @property
    def kind(self) -> str:
        return "linalg.generic"

    @property
    def domain(self) -> tuple[int, ...]:
        """Loop ranges, read off the operand shapes through the indexing maps."""
        sizes: list[int | None] = [None] * len(self.iterator_types)
        for value, amap in zip(self.operands, self.indexing_maps, strict=True):
            for i in range(amap.num_results):
                d = amap.result_dim(i)
                if d is not None and sizes[d] is None:
                    sizes[d] = value.type.shape[i]
        if any(s is None for s in sizes):
            raise VerificationError(f"{self.name}: a loop dimension is not indexed by any operand")
        return tuple(s for s in sizes if s is not None)

    @property
    def reduction_dims(self) -> list[int]:
        return [i for i, t in enumerate(self.iterator_types) if t == "reduction"]


@dataclass
class ReshapeOp(Op):
    source: Value
    reassociation: list[list[int]]  # groups of the higher-rank side's dims
    expand: bool  # True: tensor.expand_shape, False: tensor.collapse_shape

    @property
    def operands(self) -> list[Value]:
        return [self.source]

    @property
    def kind(self) -> str:
        return "tensor.expand_shape" if self.expand else "tensor.collapse_shape"


@dataclass
class SliceOp(Op):
    source: Value
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    strides: tuple[int, ...]

    @property
    def operands(self) -> list[Value]:
        return [self.source]

    @property
    def kind(self) -> str:
        return "tensor.extract_slice"


@dataclass
class ConcatOp(Op):
    inputs: list[Value]
    dim: int

    @property
    def operands(self) -> list[Value]:
        return list(self.inputs)

    @property
    def kind(self) -> str:
        return "tensor.concat"


@dataclass
class ConstantOp(Op):
    value: np.ndarray

    @property
    def operands(self) -> list[Value]:
        return []

    @property
    def kind(self) -> str:
        return "arith.constant"


@dataclass
class EmptyOp(Op):
    """An init whose contents are never read (``tensor.empty``)."""

    @property
    def operands(self) -> list[Value]:
        return []

    @property
    def kind(self) -> str:
        return "tensor.empty"


def fresh_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base`` with the first number that makes it unused; recorded in ``taken``."""
    name = next(f"{base}{k or ''}" for k in range(len(taken) + 1) if f"{base}{k or ''}" not in taken)
    taken.add(name)
    return name


@dataclass(frozen=True)
class CacheUpdate:
    """Result ``output`` of a graph is input ``cache`` with only row ``position[0]`` along ``dim`` rewritten (a
    decode block's KV cache). The caller's contract: it lets the backend read rows ``0..position`` of the cache
    only and write the one new row back in place, the cache an in/out buffer, instead of copying it whole."""

    output: int  # index into ``Graph.outputs``
    cache: str  # input name
    position: str  # input name of the row index (a one-element integer tensor, a scalar argument)
    dim: int


@dataclass
class Graph:
    name: str
    inputs: list[Value]
    outputs: list[Value]
    ops: list[Op]
    weight_names: set[str] = field(default_factory=set)  # inputs that live in external memory as weights
    scalar_names: set[str] = field(default_factory=set)  # one-element inputs passed as scalar registers
    cache_updates: list[CacheUpdate] = field(default_factory=list)

    def cache_update_of(self, name: str) -> CacheUpdate | None:
        """The cache update reading input ``name`` as its cache, if any."""
        return next((u for u in self.cache_updates if u.cache == name), None)

    def producers(self) -> dict[str, Op]:
        return {r.name: op for op in self.ops for r in op.results}

    def users(self) -> dict[str, list[Op]]:
        out: dict[str, list[Op]] = {}
        for op in self.ops:
            for v in op.operands:
                out.setdefault(v.name, []).append(op)
        return out

    def op_counts(self) -> dict[str, int]:
        """Counts by kind; generics are further split by their label's stem (matmul, reduce_sum, ...)."""
        counts: Counter[str] = Counter()
        for op in self.ops:
            counts[op.kind] += 1
            if isinstance(op, GenericOp):
                counts["generic." + op.name.rsplit("_", 1)[0]] += 1
        return dict(sorted(counts.items()))

    def verify(self) -> None:
        """SSA well-formedness, map arities and shape agreement of every op."""
        defined = {v.name for v in self.inputs}
        for op in self.ops:
            for v in op.operands:
                if v.name not in defined:
                    raise VerificationError(f"{op.kind} uses %{v.name} before it is defined")
            if isinstance(op, GenericOp):
                verify_generic(op)
            for r in op.results:
                if r.name in defined:
                    raise VerificationError(f"%{r.name} is defined twice")
                defined.add(r.name)
        for v in self.outputs:
            if v.name not in defined:
                raise VerificationError(f"output %{v.name} is never defined")
        types = {v.name: v.type for v in self.inputs}
        for name in self.scalar_names:
            if name not in types or math.prod(types[name].shape) != 1:
                raise VerificationError(f"scalar argument %{name} is not a one-element input")
        for u in self.cache_updates:
            if u.position not in self.scalar_names:
                raise VerificationError(f"KV cache %{u.cache}: its row %{u.position} is not a scalar argument")
            if u.cache not in types or not 0 <= u.output < len(self.outputs):
                raise VerificationError(f"KV cache %{u.cache} -> result {u.output}: no such input or result")
            if self.outputs[u.output].type != types[u.cache] or not 0 <= u.dim < len(types[u.cache].shape):
                raise VerificationError(f"KV cache %{u.cache}: result {u.output} is not of its type, or no dim "
                                        f"{u.dim}")


def unit_dim_groups(high: tuple[int, ...], low: tuple[int, ...]) -> list[list[int]]:
    """Reassociation between a shape and the same shape without some unit dims (a rank-reducing slice): groups of
    ``high``'s dims, one per dim of ``low`` (the dropped dims are units, joined to a neighbouring group)."""
    groups: list[list[int]] = []
    i = 0
    for size in low:
        group = [i]
        product = high[i]
        i += 1
        while product != size:
            group.append(i)
            product *= high[i]
            i += 1
        groups.append(group)
    if groups:
        groups[-1].extend(range(i, len(high)))
    return groups


def verify_generic(op: GenericOp) -> None:
    if len(op.indexing_maps) != len(op.operands):
        raise VerificationError(f"{op.name}: {len(op.indexing_maps)} maps for {len(op.operands)} operands")
    for value, amap in zip(op.operands, op.indexing_maps, strict=True):
        if amap.num_dims != len(op.iterator_types) or amap.num_results != len(value.type.shape):
            raise VerificationError(f"{op.name}: map {amap} does not fit %{value.name} : {value.type}")
    domain = op.domain  # needs every map to fit (above)
    for value, amap in zip(op.operands, op.indexing_maps, strict=True):
        for i in range(amap.num_results):
            d = amap.result_dim(i)
            if d is not None and domain[d] != value.type.shape[i]:
                raise VerificationError(f"{op.name}: %{value.name} dim {i} is {value.type.shape[i]} but loop d{d}"
                                        f" has range {domain[d]}")
    if len(op.body.args) != len(op.operands) or len(op.body.yields) != len(op.inits):
        raise VerificationError(f"{op.name}: body arity does not match its operands and results")


def _format_scalar_attr(value: object) -> str:
    """Floats with ``repr`` (reads back exactly), the rest (ints, bools, predicate words) as they are."""
    return repr(value) if isinstance(value, float) else str(value)


def print_op(op: Op) -> list[str]:
    """The text of one op, one string per line (a generic spans several), without indentation of its own."""
    res = ", ".join(str(r) for r in op.results)
    loc = f"  // {op.location}" if op.location else ""
    if isinstance(op, GenericOp):
        maps = ", ".join(f"affine_map<{m}>" for m in op.indexing_maps)
        iters = ", ".join(f'"{t}"' for t in op.iterator_types)
        ins = ", ".join(f"{v} : {v.type}" for v in op.inputs)
        outs = ", ".join(f"{v} : {v.type}" for v in op.inits)
        lines = [f'{res} = linalg.generic @{op.name} {{domain = {list(op.domain)}, indexing_maps = [{maps}], '
                 f'iterator_types = [{iters}]}} ins({ins}) outs({outs}) {{{loc}']
        args = ", ".join(f"%{n}: {t}" for n, t in op.body.args)
        lines.append(f"^bb0({args}):")
        for s in op.body.ops:
            attrs = "".join(f" {{{k} = {_format_scalar_attr(v)}}}" for k, v in s.attrs)
            operands = ", ".join(f"%{o}" for o in s.operands)
            line = f"%{s.result} = {s.name} {operands}{attrs} : {s.dtype}".replace("  ", " ")  # no operands
            lines.append(f"  {line}")
        lines.append(f"  linalg.yield {', '.join('%' + y for y in op.body.yields)}")
        lines.append(f"}} -> {', '.join(str(r.type) for r in op.results)}")
        return lines
    if isinstance(op, ReshapeOp):
        return [f"{res} = {op.kind} {op.source} {op.reassociation} : {op.source.type} -> {op.results[0].type}{loc}"]
    if isinstance(op, SliceOp):
        return [f"{res} = tensor.extract_slice {op.source}{list(op.offsets)}{list(op.sizes)}{list(op.strides)} : "
                f"{op.source.type} -> {op.results[0].type}{loc}"]
    if isinstance(op, ConcatOp):
        ins = ", ".join(str(v) for v in op.inputs)
        return [f"{res} = tensor.concat dim({op.dim}) {ins} -> {op.results[0].type}{loc}"]
    if isinstance(op, ConstantOp):
        ttype = op.results[0].type
        return [f"{res} = arith.constant {format_dense(op.value, ttype.dtype)} : {ttype}{loc}"]
    assert isinstance(op, EmptyOp), op.kind
    return [f"{res} = tensor.empty() : {op.results[0].type}{loc}"]


def _argument_attribute(graph: Graph, name: str) -> str:
    if name in graph.weight_names:
        return " {weight}"
    if name in graph.scalar_names:
        return " {scalar}"
    update = graph.cache_update_of(name)
    if update is not None:
        return f" {{kv_cache = result {update.output} row %{update.position} dim {update.dim}}}"
    return ""


def print_graph(graph: Graph) -> str:
    """MLIR-like text: one line per op, generics with their domain, maps, iterators and body. Complete: the
    Linalg parser (``ir.linalg_parser``) reads it back to the same graph."""
    lines = [f"// Linalg graph IR of @{graph.name}"]
    sig = ", ".join(f"%{v.name}: {v.type}{_argument_attribute(graph, v.name)}" for v in graph.inputs)
    lines.append(f"func.func @{graph.name}({sig}) -> ({', '.join(str(v.type) for v in graph.outputs)}) {{")
    for op in graph.ops:
        lines.extend("  " + line for line in print_op(op))
    lines.append(f"  return {', '.join(str(v) for v in graph.outputs)}")
    lines.append("}")
    return "\n".join(lines) + "\n"
