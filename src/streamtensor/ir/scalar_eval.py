"""Semantics of the scalar ops of a ``linalg.generic`` body, applied elementwise to numpy arrays.

Part of the IR: the reference interpreter executes bodies with it, and passes fold constant bodies with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from streamtensor.errors import ShapeError, UnsupportedOpError
from streamtensor.ir.dtypes import STORAGE_DTYPES, int_range
from streamtensor.ir.linalg import ScalarBody, ScalarOp

NP_DTYPES: dict[str, type] = {"f64": np.float64, "f32": np.float32, "f16": np.float16, "i64": np.int64,
                              "i32": np.int32, "i16": np.int16, "i8": np.int8, "i4": np.int8, "i1": np.bool_,
                              "index": np.int64}  # i4: int8 on the host (a storage type)


def np_dtype(dtype: str) -> type:
    """The numpy type of an IR element type."""
    if dtype not in NP_DTYPES:
        raise UnsupportedOpError(dtype, "builtin", "element type not supported by the reference interpreter")
    return NP_DTYPES[dtype]


def input_array(name: str, array: np.ndarray, dtype: str) -> np.ndarray:
    """A graph input as the host type of ``dtype``; a storage type's values must fit its width (an int4 weight
    outside [-8, 7] would be a different weight in packed memory)."""
    a = array.astype(np_dtype(dtype), copy=False)
    if dtype in STORAGE_DTYPES and a.size:
        lo, hi = int_range(dtype)
        if a.min() < lo or a.max() > hi or not np.array_equal(a, array):
            raise ShapeError(f"input %{name}: values out of range for {dtype} [{lo}, {hi}]")
    return a


def _erf(x: np.ndarray) -> np.ndarray:
    import torch  # here: importing the IR needs no PyTorch (issue 21: seconds of imports per compile)

    return torch.special.erf(torch.from_numpy(np.ascontiguousarray(x))).numpy()


_ORDER: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
    "ge": np.greater_equal,
}
_UNSIGNED: dict[type, type] = {np.int64: np.uint64, np.int32: np.uint32, np.int16: np.uint16, np.int8: np.uint8}


def compare_float(predicate: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``arith.cmpf``: ``o*`` predicates are false and ``u*`` true when an operand is NaN; ``ord``/``uno`` test
    for NaN only; ``false``/``true`` are constants."""
    unordered = np.isnan(a) | np.isnan(b)
    if predicate in ("false", "true"):
        return np.full(np.broadcast(a, b).shape, predicate == "true")
    if predicate == "ord":
        return ~unordered
    if predicate == "uno":
        return unordered
    result = _ORDER[predicate[1:]](a, b)
    return result & ~unordered if predicate[0] == "o" else result | unordered


def compare_int(predicate: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``arith.cmpi``: ``s*`` predicates compare as signed, ``u*`` as unsigned (two's complement bits)."""
    if predicate in ("eq", "ne"):
        return _ORDER[predicate](a, b)
    if predicate[0] == "u" and a.dtype.type in _UNSIGNED:
        a, b = a.astype(_UNSIGNED[a.dtype.type]), b.astype(_UNSIGNED[b.dtype.type])
    return _ORDER[predicate[1:]](a, b)


_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "arith.addf": np.add, "arith.subf": np.subtract, "arith.mulf": np.multiply, "arith.divf": np.divide,
    "arith.maximumf": np.maximum, "arith.minimumf": np.minimum, "arith.maxnumf": np.fmax,
    "arith.minnumf": np.fmin, "arith.remf": np.fmod, "arith.addi": np.add, "arith.subi": np.subtract,
    "arith.muli": np.multiply, "arith.andi": np.bitwise_and, "arith.ori": np.bitwise_or,
    "arith.xori": np.bitwise_xor, "arith.maxsi": np.maximum, "arith.minsi": np.minimum, "math.powf": np.power,
}
_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "arith.negf": np.negative, "math.exp": np.exp, "math.log": np.log, "math.log1p": np.log1p,
    "math.expm1": np.expm1, "math.exp2": np.exp2, "math.log2": np.log2, "math.log10": np.log10, "math.tan": np.tan,
    "math.floor": np.floor, "math.ceil": np.ceil, "math.trunc": np.trunc, "math.roundeven": np.rint,
    "math.round": lambda x: np.copysign(np.floor(np.abs(x) + 0.5), x),  # half away from zero
    "math.sqrt": np.sqrt,
    "math.rsqrt": lambda x: np.reciprocal(np.sqrt(x)), "math.tanh": np.tanh, "math.sin": np.sin,
    "math.cos": np.cos, "math.erf": _erf, "math.absf": np.abs,
}
_CASTS = {"arith.sitofp", "arith.uitofp", "arith.fptosi", "arith.extf", "arith.truncf", "arith.extsi",
          "arith.extui", "arith.trunci", "arith.index_cast"}
def eval_scalar_op(op: ScalarOp, env: dict[str, np.ndarray], index: Sequence[np.ndarray]) -> np.ndarray:
    """One scalar op applied elementwise to arrays (shared by every executor of the IR)."""
    name = op.name
    if op.dtype in STORAGE_DTYPES:  # int8 on the host: computing one would not wrap at its width
        raise UnsupportedOpError(name, name.split(".")[0], f"computes a {op.dtype}, a storage-only type")
    dt = np_dtype(op.dtype)
    xs = [env[o] for o in op.operands]
    with np.errstate(all="ignore"):
        if name in _BINARY:
            return _BINARY[name](xs[0], xs[1]).astype(dt, copy=False)
        if name in _UNARY:
            return _UNARY[name](xs[0]).astype(dt, copy=False)
        if name in ("arith.uitofp", "arith.extui") and xs[0].dtype.type in _UNSIGNED:  # the bits as unsigned
            return xs[0].astype(_UNSIGNED[xs[0].dtype.type]).astype(dt)
        if name == "arith.trunci" and dt == np.bool_:  # keeps the low bit (not "nonzero" as a bool cast)
            return (xs[0] & 1).astype(dt)
        if name in _CASTS:
            return xs[0].astype(dt)
        if name == "arith.divsi":
            return (np.trunc(xs[0] / xs[1])).astype(dt)
        if name == "arith.remsi":
            return np.fmod(xs[0], xs[1]).astype(dt)
        if name == "arith.cmpf":
            return compare_float(str(op.attr("predicate")), xs[0], xs[1])
        if name == "arith.cmpi":
            return compare_int(str(op.attr("predicate")), np.asarray(xs[0]), np.asarray(xs[1]))
        if name == "arith.select":
            return np.where(xs[0], xs[1], xs[2]).astype(dt, copy=False)
        if name == "math.fpowi":
            return np.power(xs[0], xs[1].astype(xs[0].dtype)).astype(dt, copy=False)
        if name == "arith.constant":
            return np.array(op.attr("value"), dtype=dt)
        if name == "linalg.index":
            return index[int(op.attr("dim"))]  # type: ignore[arg-type]
    raise UnsupportedOpError(name, name.split(".")[0], "not implemented by the reference interpreter")


def eval_body(body: ScalarBody, args: Sequence[np.ndarray], index: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The yielded values of ``body`` on ``args``, ``index`` holding the iteration-index arrays."""
    env: dict[str, np.ndarray] = {name: a for (name, _), a in zip(body.args, args, strict=True)}
    for op in body.ops:
        env[op.result] = eval_scalar_op(op, env, index)
    return [env[y] for y in body.yields]
