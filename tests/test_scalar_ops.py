"""Every scalar op the frontend imports (``SUPPORTED_SCALAR_OPS``), one by one: the interpreter
(``ir.scalar_eval``) and the generated C++ expression (``codegen.vitis.hls.kernel.scalar_expression``) against
numpy references written here from the MLIR definitions, in the i64 and i1 forms the frontend emits too.
Comparisons (every predicate, i32 and i64) are in ``test_scalar_compare.py``; ``linalg.index`` needs a loop nest
and is covered by the kernel tests.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from streamtensor.codegen.vitis.hls.cpp import c_type
from streamtensor.codegen.vitis.hls.kernel import SCALAR_HELPERS, scalar_expression
from streamtensor.frontend.mlir_import import SUPPORTED_SCALAR_OPS
from streamtensor.ir.linalg import ScalarOp
from streamtensor.ir.scalar_eval import eval_scalar_op

_NAN, _INF = float("nan"), float("inf")
_FLOATS = [-2.5, -1.0, -0.0, 0.0, 0.25, 1.0, 3.0, _NAN, _INF, -_INF]  # any float op: NaN and infinities too
_FINITE = [-100.75, -2.5, -1.0, -0.5, 0.0, 0.5, 1.0, 2.75, 100.25]  # float to integer: in range
_ROUNDING = [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, -0.75, 0.25, 1.75]  # ties both ways
_INTS = [-(2**31), -7, -1, 0, 1, 5, 2**31 - 1]
_INTS64 = [-(2**40) - 3, -(2**31) - 1, -7, -1, 0, 1, 5, 2**31, 2**40 + 9]  # positions, indices: i64
_DIVISORS = [-3, -2, 2, 7]  # no zero divisor, no INT_MIN / -1 (undefined in C++ and MLIR)


@dataclass(frozen=True)
class Case:
    name: str
    operand_types: tuple[str, ...]
    result_type: str
    reference: Callable[..., np.ndarray]  # numpy, on arrays of the operand types
    values: tuple[list, ...]  # type: ignore[type-arg]
    attrs: tuple[tuple[str, object], ...] = ()
    rtol: float = 0.0  # transcendental functions: libm and numpy may differ in the last bit


def _f32(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    return lambda *xs: np.asarray(fn(*xs), np.float32)


def _erf(x: np.ndarray) -> np.ndarray:
    return np.array([math.erf(float(v)) for v in x], np.float32)


def _trunc_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Signed division rounding toward zero (C and MLIR), remainder with the dividend's sign."""
    q = np.abs(a.astype(np.int64)) // np.abs(b.astype(np.int64))
    return (np.sign(a.astype(np.int64)) * np.sign(b) * q).astype(a.dtype)


_F, _I32, _I64 = "f32", "i32", "i64"
_BIN_F = (_F, _F)
_CASES = [
    Case("arith.addf", _BIN_F, _F, _f32(np.add), (_FLOATS, _FLOATS)),
    Case("arith.subf", _BIN_F, _F, _f32(np.subtract), (_FLOATS, _FLOATS)),
    Case("arith.mulf", _BIN_F, _F, _f32(np.multiply), (_FLOATS, _FLOATS)),
    Case("arith.divf", _BIN_F, _F, _f32(np.divide), (_FLOATS, _FLOATS)),
    Case("arith.remf", _BIN_F, _F, _f32(np.fmod), (_FLOATS, _FLOATS)),
    Case("arith.maximumf", _BIN_F, _F, _f32(np.maximum), (_FLOATS, _FLOATS)),  # NaN propagates
    Case("arith.minimumf", _BIN_F, _F, _f32(np.minimum), (_FLOATS, _FLOATS)),
    Case("arith.maxnumf", _BIN_F, _F, _f32(np.fmax), (_FLOATS, _FLOATS)),  # NaN dropped
    Case("arith.minnumf", _BIN_F, _F, _f32(np.fmin), (_FLOATS, _FLOATS)),
    Case("math.powf", _BIN_F, _F, _f32(np.power), ([0.5, 1.0, 2.0, 3.0], [-2.0, -0.5, 0.0, 1.5, 3.0]), rtol=1e-6),
    Case("arith.negf", (_F,), _F, _f32(np.negative), (_FLOATS,)),
    Case("math.absf", (_F,), _F, _f32(np.abs), (_FLOATS,)),
    Case("math.exp", (_F,), _F, _f32(np.exp), (_FLOATS,), rtol=1e-6),
    Case("math.log", (_F,), _F, _f32(np.log), (_FLOATS,), rtol=1e-6),
    Case("math.log1p", (_F,), _F, _f32(np.log1p), (_FLOATS + [1e-7, -0.999],), rtol=1e-6),
    Case("math.expm1", (_F,), _F, _f32(np.expm1), (_FLOATS + [1e-7, -1e-7],), rtol=1e-6),
    Case("math.exp2", (_F,), _F, _f32(np.exp2), (_FLOATS,), rtol=1e-6),
    Case("math.log2", (_F,), _F, _f32(np.log2), (_FLOATS,), rtol=1e-6),
    Case("math.log10", (_F,), _F, _f32(np.log10), (_FLOATS,), rtol=1e-6),
    Case("math.tan", (_F,), _F, _f32(np.tan), (_FLOATS,), rtol=1e-6),
    Case("math.floor", (_F,), _F, _f32(np.floor), (_FLOATS + _ROUNDING,)),
    Case("math.ceil", (_F,), _F, _f32(np.ceil), (_FLOATS + _ROUNDING,)),
    Case("math.trunc", (_F,), _F, _f32(np.trunc), (_FLOATS + _ROUNDING,)),
    Case("math.round", (_F,), _F, _f32(lambda x: [math.copysign(math.floor(abs(v) + 0.5), v) if math.isfinite(v)
                                                  else v for v in x.tolist()]), (_FLOATS + _ROUNDING,)),
    Case("math.roundeven", (_F,), _F, _f32(lambda x: [round(v) if math.isfinite(v) else v for v in x.tolist()]),
         (_FLOATS + _ROUNDING,)),  # Python's round() of a float: ties to even
    Case("math.sqrt", (_F,), _F, _f32(np.sqrt), (_FLOATS,), rtol=1e-6),
    Case("math.rsqrt", (_F,), _F, _f32(lambda x: 1 / np.sqrt(x)), (_FLOATS,), rtol=1e-6),
    Case("math.tanh", (_F,), _F, _f32(np.tanh), (_FLOATS,), rtol=1e-6),
    Case("math.sin", (_F,), _F, _f32(np.sin), (_FLOATS,), rtol=1e-6),
    Case("math.cos", (_F,), _F, _f32(np.cos), (_FLOATS,), rtol=1e-6),
    Case("math.erf", (_F,), _F, _erf, (_FLOATS,), rtol=1e-6),
    Case("math.fpowi", (_F, _I64), _F, _f32(lambda x, n: x.astype(np.float64) ** n.astype(np.float64)),
         ([-2.0, -0.5, 1.5, 3.0], [-3, -1, 0, 1, 2, 5]), rtol=1e-6),
    Case("arith.sitofp", (_I32,), _F, lambda x: x.astype(np.float32), (_INTS,)),
    Case("arith.uitofp", (_I32,), _F, lambda x: x.view(np.uint32).astype(np.float32), (_INTS,)),
    Case("arith.fptosi", (_F,), _I32, lambda x: np.trunc(x).astype(np.int32), (_FINITE,)),
    Case("arith.extf", (_F,), "f64", lambda x: x.astype(np.float64), (_FLOATS,)),
    Case("arith.truncf", ("f64",), _F, lambda x: x.astype(np.float32), ([1.0 / 3.0, -2.5e10, 1e-30, _NAN, _INF],)),
    Case("arith.extsi", (_I32,), _I64, lambda x: x.astype(np.int64), (_INTS,)),
    Case("arith.extui", (_I32,), _I64, lambda x: x.view(np.uint32).astype(np.int64), (_INTS,)),
    Case("arith.extui", ("i1",), _I64, lambda x: x.astype(np.int64), ([False, True],)),
    Case("arith.trunci", (_I64,), _I32, lambda x: x.astype(np.int32), ([-(2**40) - 3, -1, 0, 2**33 + 5],)),
    Case("arith.index_cast", ("index",), _I64, lambda x: x.astype(np.int64), ([0, 3, 2**40],)),
    Case("arith.addi", (_I32, _I32), _I32, lambda a, b: (a.astype(np.int64) + b).astype(np.int32), (_INTS, _INTS)),
    Case("arith.subi", (_I32, _I32), _I32, lambda a, b: (a.astype(np.int64) - b).astype(np.int32), (_INTS, _INTS)),
    Case("arith.muli", (_I64, _I64), _I64, np.multiply, ([-7, -1, 0, 3, 2**20], [-5, 0, 1, 9])),
    Case("arith.divsi", (_I32, _I32), _I32, _trunc_div, (_INTS, _DIVISORS)),
    Case("arith.remsi", (_I32, _I32), _I32, lambda a, b: (a - _trunc_div(a, b) * b).astype(np.int32),
         (_INTS, _DIVISORS)),
    Case("arith.maxsi", (_I32, _I32), _I32, np.maximum, (_INTS, _INTS)),
    Case("arith.minsi", (_I32, _I32), _I32, np.minimum, (_INTS, _INTS)),
    Case("arith.andi", (_I32, _I32), _I32, np.bitwise_and, (_INTS, _INTS)),
    Case("arith.ori", (_I32, _I32), _I32, np.bitwise_or, (_INTS, _INTS)),
    Case("arith.xori", (_I32, _I32), _I32, np.bitwise_xor, (_INTS, _INTS)),
    Case("arith.andi", ("i1", "i1"), "i1", np.logical_and, ([False, True], [False, True])),
    Case("arith.ori", ("i1", "i1"), "i1", np.logical_or, ([False, True], [False, True])),
    Case("arith.xori", ("i1", "i1"), "i1", np.logical_xor, ([False, True], [False, True])),
    Case("arith.select", ("i1", _F, _F), _F, np.where, ([False, True], [-1.5, _NAN], [2.0, _INF])),
    # The i64 and i1 forms the frontend emits (positions, indices, masks; PyTorch's integers are i64)
    Case("arith.sitofp", (_I64,), _F, lambda x: x.astype(np.float32), (_INTS64,)),
    Case("arith.uitofp", ("i1",), _F, lambda x: x.astype(np.float32), ([False, True],)),
    Case("arith.fptosi", (_F,), _I64, lambda x: np.trunc(x).astype(np.int64), (_FINITE + [3e9, -3e9],)),
    Case("arith.extui", ("i1",), _I32, lambda x: x.astype(np.int32), ([False, True],)),
    Case("arith.trunci", (_I64,), "i1", lambda x: (x & 1).astype(np.bool_), ([-3, -2, 0, 1, 2**40 + 1],)),
    Case("arith.addi", (_I64, _I64), _I64, np.add, (_INTS64, _INTS64)),
    Case("arith.subi", (_I64, _I64), _I64, np.subtract, (_INTS64, _INTS64)),
    Case("arith.divsi", (_I64, _I64), _I64, _trunc_div, (_INTS64, _DIVISORS)),
    Case("arith.remsi", (_I64, _I64), _I64, lambda a, b: a - _trunc_div(a, b) * b, (_INTS64, _DIVISORS)),
    Case("arith.maxsi", (_I64, _I64), _I64, np.maximum, (_INTS64, _INTS64)),
    Case("arith.minsi", (_I64, _I64), _I64, np.minimum, (_INTS64, _INTS64)),
    Case("arith.andi", (_I64, _I64), _I64, np.bitwise_and, (_INTS64, _INTS64)),
    Case("arith.ori", (_I64, _I64), _I64, np.bitwise_or, (_INTS64, _INTS64)),
    Case("arith.xori", (_I64, _I64), _I64, np.bitwise_xor, (_INTS64, _INTS64)),
    Case("arith.select", ("i1", _I64, _I64), _I64, np.where, ([False, True], [-7, 2**40], [3, -(2**40)])),
    Case("arith.select", ("i1", "i1", "i1"), "i1", np.where, ([False, True], [False, True], [True, False])),
    Case("arith.constant", (), "i1", lambda: np.bool_(True), (), (("value", True),)),
    Case("arith.constant", (), _F, lambda: np.float32(-0.1), (), (("value", -0.1),)),
    Case("arith.constant", (), _I64, lambda: np.int64(-(2**63)), (), (("value", -(2**63)),)),
]
_NP = {"f32": np.float32, "f64": np.float64, "i32": np.int32, "i64": np.int64, "index": np.int64, "i1": np.bool_}


def _operands(case: Case) -> list[np.ndarray]:
    """Every combination of the case's operand values (the outer product, flattened)."""
    grids = np.meshgrid(*[np.arange(len(v)) for v in case.values], indexing="ij") if case.values else []
    return [np.array(v, dtype=_NP[t])[g.ravel()] for v, t, g in zip(case.values, case.operand_types, grids,
                                                                      strict=True)]


def _op(case: Case) -> ScalarOp:
    return ScalarOp("r", case.name, tuple(f"x{i}" for i in range(len(case.operand_types))), case.result_type,
                    case.attrs)


def _check(case: Case, got: np.ndarray, operands: list[np.ndarray]) -> None:
    with np.errstate(all="ignore"):  # NaN and infinities are expected results
        want = np.atleast_1d(np.asarray(case.reference(*operands), dtype=_NP[case.result_type]))
    got = np.broadcast_to(np.asarray(got).astype(_NP[case.result_type]), want.shape)
    if case.result_type.startswith("f"):
        np.testing.assert_allclose(got, want, rtol=case.rtol, atol=0, equal_nan=True, err_msg=case.name)
    else:
        np.testing.assert_array_equal(got, want, err_msg=case.name)


def test_every_supported_scalar_op_has_a_case() -> None:
    assert {c.name for c in _CASES} | {"arith.cmpf", "arith.cmpi", "linalg.index"} == SUPPORTED_SCALAR_OPS


@pytest.mark.parametrize("case", _CASES, ids=[f"{c.name}:{','.join(c.operand_types)}" for c in _CASES])
def test_interpreter_against_numpy(case: Case) -> None:
    operands = _operands(case)
    env = {f"x{i}": a for i, a in enumerate(operands)}
    _check(case, eval_scalar_op(_op(case), env, []), operands)


def _literal(value: object, dtype: str) -> str:
    if dtype.startswith("f"):
        v = float(value)  # type: ignore[arg-type]
        if v != v:
            return f"std::numeric_limits<{c_type(dtype)}>::quiet_NaN()"
        if abs(v) == _INF:
            return f"{'-' if v < 0 else ''}std::numeric_limits<{c_type(dtype)}>::infinity()"
        return f"{c_type(dtype)}({v!r})"
    if dtype == "i1":
        return "true" if value else "false"
    return f"{c_type(dtype)}({int(value) + 1}LL - 1)"  # type: ignore[call-overload]


_PRINT = {"f32": ('"%a "', "double({})"), "f64": ('"%a "', "{}"), "i1": ('"%d "', "int({})")}


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_cpp_against_numpy(tmp_path: Path) -> None:
    """One C++ program evaluates every op's expression on every operand combination (built with the flags of
    the C simulation); hex-float output round-trips exactly."""
    helpers: set[str] = set()
    cases: list[str] = []
    for case in _CASES:
        operands = _operands(case)
        n = len(operands[0]) if operands else 1
        op = _op(case)
        types = {f"x{i}": t for i, t in enumerate(case.operand_types)}
        expr = scalar_expression(op, [f"x{i}[k]" for i in range(len(operands))], types, helpers)
        assert expr is not None, case.name
        arrays = [f"    static const {c_type(t)} x{i}[] = {{{', '.join(_literal(v, t) for v in a.tolist())}}};"
                  for i, (t, a) in enumerate(zip(case.operand_types, operands, strict=True))]
        fmt, arg = _PRINT.get(case.result_type, ('"%lld "', "(long long)({})"))
        cases += ["  {", *arrays, f"    for (int k = 0; k < {n}; ++k) {{",
                  f"      const {c_type(case.result_type)} r = {expr};",
                  f"      std::printf({fmt}, {arg.format('r')});", "    }", '    std::printf("\\n");', "  }"]
    source = ["#include <cmath>", "#include <cstdint>", "#include <cstdio>", "#include <limits>",
              "#define HLS_PRAGMA(x)",  # the helpers' pragmas (hls_dataflow_sim.h: nothing outside synthesis)
              *(SCALAR_HELPERS[h] for h in sorted(helpers)), "int main() {", *cases, "  return 0;", "}"]
    (tmp_path / "ops.cpp").write_text("\n".join(source) + "\n")
    subprocess.run(["g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-unused-variable",
                    "-Wno-unused-label",  # loop labels are for Vitis
                    str(tmp_path / "ops.cpp"), "-o", str(tmp_path / "ops")], check=True, capture_output=True,
                   text=True)
    lines = subprocess.run([str(tmp_path / "ops")], check=True, capture_output=True, text=True).stdout.splitlines()
    assert len(lines) == len(_CASES)
    for case, line in zip(_CASES, lines, strict=True):
        words = line.split()
        if case.result_type.startswith("f"):
            got = np.array([float.fromhex(w) if "nan" not in w and "inf" not in w else float(w) for w in words])
        else:
            got = np.array([int(w) for w in words])
        _check(case, got, _operands(case))
