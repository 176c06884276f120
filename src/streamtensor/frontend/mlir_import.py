"""Translate an optimized linalg-on-tensors MLIR module into the project's Linalg graph IR."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence

import numpy as np
from torch_mlir import ir

from streamtensor.errors import UnsupportedOpError
from streamtensor.frontend.lowering import short_location
from streamtensor.ir.affine import AffineConst, AffineDim, AffineExpr, AffineMap, parse_affine_map
from streamtensor.ir.linalg import (
    ConcatOp,
    ConstantOp,
    EmptyOp,
    GenericOp,
    Graph,
    Op,
    ReshapeOp,
    ScalarBody,
    ScalarOp,
    SliceOp,
    TensorType,
    Value,
    unit_dim_groups,
)

_CMPI = ["eq", "ne", "slt", "sle", "sgt", "sge", "ult", "ule", "ugt", "uge"]
_CMPF = ["false", "oeq", "ogt", "oge", "olt", "ole", "one", "ord", "ueq", "ugt", "uge", "ult", "ule", "une",
         "uno", "true"]
# Scalar ops the interpreter and the code generator implement.
SUPPORTED_SCALAR_OPS = {
    "arith.addf", "arith.subf", "arith.mulf", "arith.divf", "arith.negf", "arith.maximumf", "arith.minimumf",
    "arith.maxnumf", "arith.minnumf", "arith.remf", "arith.cmpf", "arith.cmpi", "arith.select", "arith.sitofp",
    "arith.uitofp", "arith.fptosi", "arith.extf", "arith.truncf", "arith.extsi", "arith.extui", "arith.trunci",
    "arith.index_cast", "arith.andi", "arith.ori", "arith.xori", "arith.addi", "arith.subi", "arith.muli",
    "arith.divsi", "arith.remsi", "arith.maxsi", "arith.minsi", "arith.constant", "math.exp", "math.log", "math.log1p",
    "math.expm1", "math.exp2", "math.log2", "math.log10", "math.tan", "math.floor", "math.ceil", "math.trunc",
    "math.round", "math.roundeven", "math.sqrt", "math.rsqrt", "math.tanh", "math.sin", "math.cos", "math.fpowi",
    "math.powf", "math.erf", "math.absf", "linalg.index",
}
_IGNORED_OPS = {"cf.assert", "func.return"}


def _dtype(t: ir.Type) -> str:
    s = str(t)
    return "f32" if s == "f32" else s


def _tensor_type(t: ir.Type) -> TensorType:
    rt = ir.RankedTensorType(t)
    if not rt.has_static_shape:
        raise UnsupportedOpError("tensor", "builtin", f"dynamic shape {t}: give maximum sizes")
    return TensorType(tuple(rt.shape), _dtype(rt.element_type))


def _dense_resources(module_text: str) -> dict[str, bytes]:
    """Blobs of ``dense_resource`` constants, read from the module's ``dialect_resources`` section."""
    out: dict[str, bytes] = {}
    for name, hexdata in re.findall(r'^\s*([\w.]+): "0x([0-9A-Fa-f]+)"', module_text, re.M):
        out[name] = bytes.fromhex(hexdata)[4:]  # the first 4 bytes hold the alignment
    return out


_NP_DTYPES = {"f32": np.float32, "f64": np.float64, "f16": np.float16, "i64": np.int64, "i32": np.int32,
              "i8": np.int8, "i1": np.bool_}


def _constant_array(attr: ir.Attribute, ttype: TensorType, resources: dict[str, bytes]) -> np.ndarray:
    text = str(attr)
    np_dtype = _NP_DTYPES.get(ttype.dtype)
    if np_dtype is None:
        raise UnsupportedOpError("arith.constant", "arith", f"constant of element type {ttype.dtype}")
    m = re.match(r"dense_resource<([\w.]+)>", text)
    if m:
        return np.frombuffer(resources[m.group(1)], dtype=np_dtype).reshape(ttype.shape).copy()
    return np.array(ir.DenseElementsAttr(attr), dtype=np_dtype).reshape(ttype.shape)


def _scalar_value(attr: ir.Attribute) -> float | int | bool:
    if isinstance(attr, ir.FloatAttr):
        return float(ir.FloatAttr(attr).value)
    if isinstance(attr, ir.IntegerAttr):
        it = ir.IntegerAttr(attr)
        return bool(it.value) if str(it.type) == "i1" else int(it.value)
    raise UnsupportedOpError("arith.constant", "arith", f"constant attribute {attr}")


def _int_array(attr: ir.Attribute) -> tuple[int, ...]:
    body = str(attr).split(":", 1)[1].rstrip(">").strip() if ":" in str(attr) else ""
    return tuple(int(x) for x in body.split(",")) if body else ()


class _Importer:
    def __init__(self, module: ir.Module, weight_names: set[str], input_names: list[str] | None) -> None:
        self.module = module
        self.resources = _dense_resources(module.operation.get_asm(large_elements_limit=None))
        self.names: dict[ir.Value, str] = {}
        self.values: dict[str, Value] = {}
        self.scalar_constants: dict[ir.Value, tuple[float | int | bool, str]] = {}
        self.weight_names = weight_names
        self.input_names = input_names
        self.counter = 0
        self.label_counts: dict[str, int] = {}
        # tensor.insert_slice chains not yet covering their destination: value -> (offsets, sizes, source) pieces
        self.partial: dict[ir.Value, list[tuple[tuple[int, ...], tuple[int, ...], Value]]] = {}

    def fresh(self, prefix: str = "v") -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def define(self, mlir_value: ir.Value, name: str) -> Value:
        v = Value(name, _tensor_type(mlir_value.type))
        self.names[mlir_value] = name
        self.values[name] = v
        return v

    def use(self, mlir_value: ir.Value, op: ir.Operation) -> Value:
        if mlir_value in self.partial:
            raise UnsupportedOpError("tensor.insert_slice", "tensor", "a tensor read while only part of it is "
                                     "written (inserts that do not cover it)", short_location(str(op.location)))
        if mlir_value not in self.names:
            raise UnsupportedOpError(op.name, op.name.split(".")[0],
                                     "operand is not a tensor produced by a supported op",
                                     short_location(str(op.location)))
        return self.values[self.names[mlir_value]]

    def run(self) -> Graph:
        func = self.module.body.operations[0]
        fname = ir.StringAttr(func.attributes["sym_name"]).value
        block = func.regions[0].blocks[0]
        inputs: list[Value] = []
        for i, arg in enumerate(block.arguments):
            name = self.input_names[i] if self.input_names else f"arg{i}"
            inputs.append(self.define(arg, name))
        ops: list[Op] = []
        outputs: list[Value] = []
        for op in block.operations:
            op = op.operation
            if op.name == "func.return":
                outputs = [self.use(v, op) for v in op.operands]
                continue
            imported = self.import_op(op)
            if isinstance(imported, list):
                ops.extend(imported)
            elif imported is not None:
                ops.append(imported)
        ops = _fold_expanded_elementwise(ops, inputs, outputs, self.fresh)
        graph = Graph(fname, inputs, outputs, _dead_code_elimination(ops, outputs),
                      weight_names={n for n in self.weight_names})
        graph.verify()
        return graph

    def import_op(self, op: ir.Operation) -> Op | list[Op] | None:
        loc = short_location(str(op.location))
        name = op.name
        if name in _IGNORED_OPS:
            return None
        if name == "arith.constant":
            if not isinstance(op.results[0].type, ir.RankedTensorType):
                self.scalar_constants[op.results[0]] = (_scalar_value(op.attributes["value"]),
                                                        _dtype(op.results[0].type))
                return None
            ttype = _tensor_type(op.results[0].type)
            array = _constant_array(op.attributes["value"], ttype, self.resources)
            return ConstantOp([self.define(op.results[0], self.fresh("cst"))], array, location=loc)
        if name == "tensor.empty":
            return EmptyOp([self.define(op.results[0], self.fresh("empty"))], location=loc)
        if name == "linalg.generic":
            return self.import_generic(op, loc)
        if name in ("tensor.expand_shape", "tensor.collapse_shape"):
            reassoc = json.loads(str(op.attributes["reassociation"]))
            source = self.use(op.operands[0], op)
            return ReshapeOp([self.define(op.results[0], self.fresh())], source, reassoc,
                             expand=name == "tensor.expand_shape", location=loc)
        if name == "tensor.extract_slice":
            if len(op.operands) != 1:
                raise UnsupportedOpError(name, "tensor", "dynamic offsets or sizes", loc)
            source = self.use(op.operands[0], op)
            sizes = _int_array(op.attributes["static_sizes"])
            result = self.define(op.results[0], self.fresh())
            offsets, strides = _int_array(op.attributes["static_offsets"]), _int_array(op.attributes["static_strides"])
            if any(s != 1 for s in strides):
                return unit_stride_slices(source, offsets, sizes, strides, result, self.fresh, loc)
            return SliceOp([result], source, offsets, sizes, strides, location=loc)
        if name == "tensor.insert_slice":
            return self.import_insert(op, loc)
        if name == "tensor.concat":
            ins = [self.use(v, op) for v in op.operands]
            return ConcatOp([self.define(op.results[0], self.fresh())], ins,
                            int(ir.IntegerAttr(op.attributes["dim"]).value), location=loc)
        raise UnsupportedOpError(name, name.split(".")[0], "no dataflow lowering for this op", loc)

    def import_insert(self, op: ir.Operation, loc: str | None) -> list[Op] | None:
        """``tensor.insert_slice`` chains that together overwrite their whole destination along one dim (the
        concatenation of rotary and pass-through features, ``torch.cat`` lowered in place) become one
        ``tensor.concat``; a destination only partly overwritten is not streamed."""
        if len(op.operands) != 2:
            raise UnsupportedOpError(op.name, "tensor", "dynamic offsets or sizes", loc)
        source = self.use(op.operands[0], op)
        dest = op.operands[1]
        offsets = tuple(_int_array(op.attributes["static_offsets"]))
        sizes = tuple(_int_array(op.attributes["static_sizes"]))
        if any(s != 1 for s in _int_array(op.attributes["static_strides"])):
            raise UnsupportedOpError(op.name, "tensor", "strided insert", loc)
        pieces = [*self.partial.get(dest, []), (offsets, sizes, source)]
        shape = _tensor_type(op.results[0].type).shape
        cut = {k for o, s, _ in pieces for k, n in enumerate(shape) if (o[k], s[k]) != (0, n)}
        if len(cut) > 1:
            raise UnsupportedOpError(op.name, "tensor", "inserts that cut more than one dim", loc)
        k = cut.pop() if cut else 0
        pieces.sort(key=lambda p: p[0][k])
        ends = [0] + [o[k] + s[k] for o, s, _ in pieces]
        if any(o[k] < end for (o, _, _), end in zip(pieces, ends, strict=False)):
            raise UnsupportedOpError(op.name, "tensor", "overlapping inserts", loc)
        if any(o[k] != end for (o, _, _), end in zip(pieces, ends, strict=False)) or ends[-1] != shape[k]:
            self.partial[op.results[0]] = pieces  # completed by a later insert, else its use is refused
            return None
        ops: list[Op] = []
        parts: list[Value] = []
        for _, piece_sizes, piece in pieces:
            if piece.type.shape != piece_sizes:  # rank-reduced source: its unit dims back
                full = Value(self.fresh(), TensorType(piece_sizes, piece.type.dtype))
                ops.append(ReshapeOp([full], piece, unit_dim_groups(piece_sizes, piece.type.shape), expand=True,
                                     location=loc))
                piece = full
            parts.append(piece)
        if len(parts) == 1:  # one insert overwriting everything: the result is its source
            self.names[op.results[0]] = parts[0].name
        else:
            ops.append(ConcatOp([self.define(op.results[0], self.fresh())], parts, k, location=loc))
        return ops

    def import_generic(self, op: ir.Operation, loc: str | None) -> GenericOp:
        maps = [parse_affine_map(str(m)) for m in ir.ArrayAttr(op.attributes["indexing_maps"])]
        iters = [re.search(r"<(\w+)>", str(a)).group(1)  # type: ignore[union-attr]
                 for a in ir.ArrayAttr(op.attributes["iterator_types"])]
        n_in = int(_int_array(op.attributes["operandSegmentSizes"])[0])
        inputs = [self.use(v, op) for v in list(op.operands)[:n_in]]
        inits = [self.use(v, op) for v in list(op.operands)[n_in:]]
        body = self.import_body(op, loc)
        label = _label(body, iters, len(inputs), maps)
        self.label_counts[label] = self.label_counts.get(label, 0) + 1
        label = f"{label}_{self.label_counts[label]}"
        results = [self.define(r, self.fresh()) for r in op.results]
        return GenericOp(results, label, inputs, inits, maps, iters, body, location=loc)

    def import_body(self, op: ir.Operation, loc: str | None) -> ScalarBody:
        block = op.regions[0].blocks[0]
        names: dict[ir.Value, str] = {}
        args: list[tuple[str, str]] = []
        for i, a in enumerate(block.arguments):
            names[a] = f"a{i}"
            args.append((f"a{i}", _dtype(a.type)))
        ops: list[ScalarOp] = []
        yields: tuple[str, ...] = ()

        def operand(v: ir.Value, user: ir.Operation) -> str:
            if v in names:
                return names[v]
            if v in self.scalar_constants:  # a constant captured from the enclosing function
                value, dtype = self.scalar_constants[v]
                n = f"c{len(ops)}"
                ops.append(ScalarOp(n, "arith.constant", (), dtype, (("value", value),)))
                names[v] = n
                return n
            raise UnsupportedOpError(user.name, user.name.split(".")[0],
                                     "body uses a value defined outside the op that is not a scalar constant", loc)

        for inner in block.operations:
            inner = inner.operation
            if inner.name == "linalg.yield":
                yields = tuple(operand(v, inner) for v in inner.operands)
                continue
            if inner.name == "cf.assert":  # a bounds check of PyTorch's indexing: no value, nothing to compute
                continue
            if inner.name == "tensor.extract":
                raise UnsupportedOpError(inner.name, "tensor", "a gather: the kernel body reads a tensor at a computed "
                                         "index (a table looked up by position ids, an embedding lookup); streaming "
                                         "it would need the table in on-chip memory read at a runtime index", loc)
            if inner.name not in SUPPORTED_SCALAR_OPS:
                raise UnsupportedOpError(inner.name, inner.name.split(".")[0], "scalar op has no implementation",
                                         loc)
            attrs: list[tuple[str, object]] = []
            if inner.name == "arith.constant":
                attrs.append(("value", _scalar_value(inner.attributes["value"])))
            elif inner.name in ("arith.cmpi", "arith.cmpf"):
                code = int(ir.IntegerAttr(inner.attributes["predicate"]).value)
                attrs.append(("predicate", (_CMPI if inner.name == "arith.cmpi" else _CMPF)[code]))
            elif inner.name == "linalg.index":
                attrs.append(("dim", int(ir.IntegerAttr(inner.attributes["dim"]).value)))
            operands = tuple(operand(v, inner) for v in inner.operands)
            n = f"s{len(ops)}"
            ops.append(ScalarOp(n, inner.name, operands, _dtype(inner.results[0].type), tuple(attrs)))
            names[inner.results[0]] = n
        return ScalarBody(tuple(args), tuple(ops), yields)


def _label(body: ScalarBody, iters: list[str], n_inputs: int, maps: list) -> str:
    """A readable stem for a generic: matmul, reduce_sum, reduce_max, fill, iota, transpose, elementwise."""
    names = [o for o in body.op_names() if o != "arith.constant"]
    reduces = "reduction" in iters
    if reduces:
        if n_inputs == 2 and names[-2:] in (["arith.mulf", "arith.addf"], ["arith.muli", "arith.addi"]):
            return "matmul"
        if "arith.maximumf" in names or "arith.maxnumf" in names:
            return "reduce_max"
        return "reduce_sum"
    if n_inputs == 0:
        return "iota" if "linalg.index" in names else "fill"
    if not names:
        return "copy" if all(m.is_projected_permutation() and m == maps[-1] for m in maps) else "transpose"
    for stem in ("math.exp", "math.tanh", "math.rsqrt", "math.erf", "math.sin", "math.cos"):
        if stem in names:
            return "elementwise_" + stem.split(".")[1]
    return "elementwise"


def unit_stride_slices(source: Value, offsets: Sequence[int], sizes: Sequence[int], strides: Sequence[int],
                       result: Value, fresh: Callable[[], str], loc: str | None = None) -> list[Op]:
    """A strided ``extract_slice`` (e.g. the even and odd features of interleaved rotary, ``x[..., ::2]``) as
    unit-stride ops the dataflow streams: each strided dim is cut to a window of ``size x stride`` elements that
    holds the ones it reads, expanded into (size, stride), and a unit-stride slice keeps one position of the
    stride dim. Same elements, same order."""
    shape = source.type.shape
    window: list[int] = []  # first element of each dim's window
    for n, o, c, s in zip(shape, offsets, sizes, strides, strict=True):
        if s != 1 and c * s > n:
            raise UnsupportedOpError("tensor.extract_slice", "tensor", f"stride {s} over a dim of {n} elements: "
                                     f"{c} x {s} elements do not fit in it", loc)
        window.append(0 if s == 1 else o - max(0, o + c * s - n))  # as late as needed to end inside the dim
    cut_size = tuple(n if s == 1 else c * s for n, c, s in zip(shape, sizes, strides, strict=True))
    ops: list[Op] = []
    cut = source
    if cut_size != shape:
        cut = Value(fresh(), TensorType(cut_size, source.type.dtype))
        ops.append(SliceOp([cut], source, tuple(window), cut_size, (1,) * len(shape), location=loc))
    groups: list[list[int]] = []
    expanded: list[int] = []
    last_off: list[int] = []
    last_size: list[int] = []
    for n, o, c, s, w in zip(cut_size, offsets, sizes, strides, window, strict=True):
        groups.append([len(expanded)] if s == 1 else [len(expanded), len(expanded) + 1])
        expanded += [n] if s == 1 else [c, s]
        last_off += [o] if s == 1 else [0, o - w]
        last_size += [c] if s == 1 else [c, 1]
    wide = Value(fresh(), TensorType(tuple(expanded), source.type.dtype))
    ops.append(ReshapeOp([wide], cut, groups, expand=True, location=loc))
    ops.append(SliceOp([result], wide, tuple(last_off), tuple(last_size), (1,) * len(expanded), location=loc))
    return ops


def _collapsed_operand(amap: AffineMap, groups: list[list[int]], domain: tuple[int, ...]
                       ) -> tuple[list[list[int]], list[AffineExpr]] | None:
    """How an operand of a generic reads the domain with ``groups`` of loop dims joined into one: its result dims
    grouped the same way (a group's dims consecutive and in order; its unit dims may be left out), a unit dim of a
    group it does not otherwise read becoming the constant 0. None when it reads a group otherwise."""
    group_of = {d: k for k, group in enumerate(groups) for d in group}
    # the groups it reads: through a dim above 1, or any dim of a group of unit dims only
    used = {group_of[d] for d in amap.used_dims()
            if domain[d] != 1 or all(domain[x] == 1 for x in groups[group_of[d]])}
    res_groups: list[list[int]] = []
    results: list[AffineExpr] = []
    seen: set[int] = set()
    i = 0
    while i < amap.num_results:
        d = amap.result_dim(i)
        if d is None:
            if amap.results[i] != AffineConst(0):
                return None
            res_groups.append([i])
            results.append(AffineConst(0))
            i += 1
            continue
        k = group_of[d]
        if k not in used:  # a unit loop dim of a group read nowhere else by this operand
            res_groups.append([i])
            results.append(AffineConst(0))
            i += 1
            continue
        if k in seen:
            return None
        seen.add(k)
        run = [i]
        while run[-1] + 1 < amap.num_results and (n := amap.result_dim(run[-1] + 1)) is not None and \
                group_of.get(n) == k:
            run.append(run[-1] + 1)
        dims = [amap.result_dim(j) for j in run]
        if dims != sorted(dims) or [x for x in groups[k] if domain[x] != 1] != [x for x in dims if domain[x] != 1]:
            return None
        res_groups.append(run)
        results.append(AffineDim(k))
        i = run[-1] + 1
    return res_groups, results


def _regrouped_indices(body: ScalarBody, groups: list[list[int]], domain: tuple[int, ...]) -> ScalarBody | None:
    """``body`` with its ``linalg.index`` dims renumbered to the joined loop dims; None when one reads a dim
    joined with another dim above 1 (its index would need a division)."""
    group_of = {d: k for k, group in enumerate(groups) for d in group}
    ops: list[ScalarOp] = []
    for op in body.ops:
        if op.name == "linalg.index":
            dim = int(op.attr("dim"))  # type: ignore[call-overload]
            if any(x != dim and domain[x] != 1 for x in groups[group_of[dim]]):
                return None
            op = ScalarOp(op.result, op.name, op.operands, op.dtype, (("dim", group_of[dim]),))
        ops.append(op)
    return ScalarBody(body.args, tuple(ops), body.yields)


def _fold_expanded_elementwise(ops: list[Op], inputs: list[Value], outputs: list[Value],
                               fresh: Callable[[str], str]) -> list[Op]:
    """A result computed elementwise from an argument of its own shape over an expanded loop domain, as
    ``collapse(generic(expand(arg), ...))``, is computed over the argument's own dims instead: the generic's loop
    dims joined by the reshape's groups, its other operands collapsed to match (readers of the expanded result
    read an expand of the new one). Elementwise fusion propagates a reshape of one operand (interleaved
    rotary's ``[.., d/2, 2] -> [.., d]`` key) through the whole op, the KV cache then read and written as
    ``[.., d/2, 2]``: a cache updated in place must stream as it is stored."""
    input_names = {v.name for v in inputs}
    output_names = {v.name for v in outputs}
    producers = {r.name: op for op in ops for r in op.results}
    users: dict[str, list[Op]] = {}
    for op in ops:
        for v in op.operands:
            users.setdefault(v.name, []).append(op)
    rewrites: dict[int, list[Op]] = {}  # id of the generic replaced -> the ops replacing it
    dropped: set[int] = set()  # ids of the collapses folded
    for collapse in ops:
        generic = producers.get(collapse.operands[0].name) if collapse.operands else None
        if not (isinstance(collapse, ReshapeOp) and not collapse.expand and collapse.results[0].name in output_names
                and isinstance(generic, GenericOp) and len(generic.results) == 1 and id(generic) not in rewrites
                and set(generic.iterator_types) == {"parallel"}
                and generic.indexing_maps[-1] == AffineMap.identity(len(generic.iterator_types))):
            continue
        groups = collapse.reassociation
        body = _regrouped_indices(generic.body, groups, generic.domain)
        if body is None:
            continue
        if not any(isinstance(p := producers.get(v.name), ReshapeOp) and p.expand and p.source.name in input_names
                   and p.reassociation == groups and amap == generic.indexing_maps[-1]
                   for v, amap in zip(generic.inputs, generic.indexing_maps, strict=False)):
            continue
        domain = generic.domain
        plans = [_collapsed_operand(m, groups, domain) for m in generic.indexing_maps]
        if any(p is None for p in plans):
            continue
        new_ops: list[Op] = []
        operands: list[Value] = []
        maps: list[AffineMap] = []
        for v, plan in zip(generic.operands, plans, strict=True):
            assert plan is not None
            res_groups, results = plan
            shape = tuple(int(np.prod([v.type.shape[j] for j in g])) for g in res_groups)
            p = producers.get(v.name)
            if all(len(g) == 1 for g in res_groups):
                new = v
            elif isinstance(p, EmptyOp):
                new = Value(fresh("empty"), TensorType(shape, v.type.dtype))
                new_ops.append(EmptyOp([new], location=p.location))
            elif isinstance(p, ReshapeOp) and p.expand and p.reassociation == res_groups:
                new = p.source
            else:
                new = Value(fresh("v"), TensorType(shape, v.type.dtype))
                new_ops.append(ReshapeOp([new], v, res_groups, expand=False, location=collapse.location))
            operands.append(new)
            maps.append(AffineMap(len(groups), tuple(results)))
        n_in = len(generic.inputs)
        new_ops.append(GenericOp(list(collapse.results), generic.name, operands[:n_in], operands[n_in:], maps,
                                 ["parallel"] * len(groups), body, location=generic.location))
        if users[generic.results[0].name] != [collapse]:  # other readers (decode attention) read it expanded
            new_ops.append(ReshapeOp(list(generic.results), collapse.results[0], groups, expand=True,
                                     location=collapse.location))
        rewrites[id(generic)] = new_ops
        dropped.add(id(collapse))
    return [new for op in ops if id(op) not in dropped for new in rewrites.get(id(op), [op])]


def _dead_code_elimination(ops: list[Op], outputs: list[Value]) -> list[Op]:
    live = {v.name for v in outputs}
    kept: list[Op] = []
    for op in reversed(ops):
        if any(r.name in live for r in op.results):
            kept.append(op)
            live.update(v.name for v in op.operands)
    return kept[::-1]


def import_linalg(module: ir.Module, input_names: list[str] | None = None,
                  weight_names: set[str] | None = None) -> Graph:
    with module.context:
        return _Importer(module, weight_names or set(), input_names).run()
