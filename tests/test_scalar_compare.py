"""Every ``arith.cmpf`` and ``arith.cmpi`` predicate: the interpreter and the generated C++ against numpy.

The numpy reference is written here from the MLIR definitions (ordered float predicates are false and unordered
ones true on NaN; ``u*`` integer predicates compare the two's-complement bits as unsigned).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from streamtensor.codegen.vitis.hls.cpp import c_type
from streamtensor.codegen.vitis.hls.kernel import compare_expression
from streamtensor.frontend.mlir_import import _CMPF, _CMPI
from streamtensor.ir.linalg import ScalarOp
from streamtensor.ir.scalar_eval import eval_scalar_op

_NAN = float("nan")
_FLOATS = [-2.0, -0.0, 0.0, 1.5, _NAN, float("inf"), -float("inf")]
_INTS = [-3, -1, 0, 1, 2, 2**31 - 1, -(2**31)]


def _pairs(values: list) -> tuple[list, list]:  # type: ignore[type-arg]
    return [a for a in values for _ in values], [b for _ in values for b in values]


def _expected_float(predicate: str, a: float, b: float) -> bool:
    unordered = a != a or b != b
    ordered_results = {"eq": a == b, "ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}
    special = {"false": False, "true": True, "ord": not unordered, "uno": unordered}
    if predicate in special:
        return special[predicate]
    result = ordered_results[predicate[1:]] and not unordered
    return result if predicate[0] == "o" else result or unordered


_INTS64 = [-(2**63), -(2**31) - 5, -3, -1, 0, 1, 2**31 + 7, 2**63 - 1]  # positions and indices are i64


def _expected_int(predicate: str, a: int, b: int, bits: int = 32) -> bool:
    if predicate[0] == "u":
        a, b = a % 2**bits, b % 2**bits
    op = predicate if predicate in ("eq", "ne") else predicate[1:]
    return {"eq": a == b, "ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op]


def _cases(op: str, predicate: str, dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if op == "arith.cmpf":
        a, b = (np.array(v, np.float32) for v in _pairs(_FLOATS))
        expected = np.array([_expected_float(predicate, float(x), float(y)) for x, y in zip(a, b, strict=True)])
        return a, b, expected
    bits = int(dtype[1:])
    a, b = (np.array(v, {32: np.int32, 64: np.int64}[bits]) for v in _pairs(_INTS if bits == 32 else _INTS64))
    expected = np.array([_expected_int(predicate, int(x), int(y), bits) for x, y in zip(a, b, strict=True)])
    return a, b, expected


def _int_literal(v: int) -> str:
    return "(-9223372036854775807LL - 1)" if v == -(2**63) else f"{v}LL"


_PREDICATES = ([("arith.cmpf", p, "f32") for p in _CMPF] + [("arith.cmpi", p, "i32") for p in _CMPI]
               + [("arith.cmpi", p, "i64") for p in _CMPI])


@pytest.mark.parametrize(("op", "predicate", "dtype"), _PREDICATES)
def test_interpreter_compare(op: str, predicate: str, dtype: str) -> None:
    a, b, expected = _cases(op, predicate, dtype)
    scalar = ScalarOp("r", op, ("a", "b"), "i1", (("predicate", predicate),))
    got = eval_scalar_op(scalar, {"a": a, "b": b}, [])
    np.testing.assert_array_equal(np.broadcast_to(got, expected.shape), expected)


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_cpp_compare_every_predicate(tmp_path: Path) -> None:
    """One C++ program evaluates every predicate's translation on every operand pair (NaN, infinities and the
    signed extremes included), built with the flags of the C simulation."""
    lines = ["#include <cstdint>", "#include <cstdio>", "#include <limits>", "int main() {"]
    for op, predicate, dtype in _PREDICATES:
        a, b, _ = _cases(op, predicate, dtype)
        ctype = c_type(dtype)
        literal = (lambda v: "std::numeric_limits<float>::quiet_NaN()" if v != v else  # noqa: E731
                   f"{'-' if v < 0 else ''}std::numeric_limits<float>::infinity()" if abs(v) == float("inf") else
                   f"{float(v)!r}f") if dtype == "f32" else (lambda v: f"({_int_literal(int(v))})")
        lines.append(f"  {{ const {ctype} xs[] = {{{', '.join(literal(v) for v in a)}}};")
        lines.append(f"    const {ctype} ys[] = {{{', '.join(literal(v) for v in b)}}};")
        expr = compare_expression(predicate, ["xs[i]", "ys[i]"], dtype)
        lines.append(f"    for (unsigned i = 0; i < {len(a)}; ++i) std::printf(\"%d\", int({expr}));")
        lines.append('    std::printf("\\n"); }')
    lines += ["  return 0;", "}"]
    source = tmp_path / "compare.cpp"
    source.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "compare"
    subprocess.run(["g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", str(source),
                    "-o", str(exe)], check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()
    for (op, predicate, dtype), row in zip(_PREDICATES, out, strict=True):
        _, _, expected = _cases(op, predicate, dtype)
        assert [c == "1" for c in row] == expected.tolist(), f"{op} {predicate} {dtype}"
