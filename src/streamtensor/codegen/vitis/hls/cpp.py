"""C++ text for the HLS code generator: element and token types, a small indenting writer, affine expressions
and loop counters as C++."""

from __future__ import annotations

import math
from collections.abc import Sequence

from streamtensor.codegen.vitis.hbm import c_identifier
from streamtensor.errors import StreamTensorError
from streamtensor.ir.affine import AffineBinary, AffineExpr
from streamtensor.ir.dataflow import DataflowGraph, Node
from streamtensor.ir.itensor import ITensorType

C_TYPES: dict[str, str] = {"f64": "double", "f32": "float", "i64": "int64_t", "index": "int64_t", "i32": "int32_t",
                           "i16": "int16_t", "i8": "int8_t", "i4": "ap_int<4>", "i1": "bool"}


class HlsCodegenError(StreamTensorError):
    """The dataflow graph has something the Vitis HLS code generator cannot express."""


def c_type(dtype: str) -> str:
    if dtype not in C_TYPES:
        raise HlsCodegenError(f"element type {dtype} has no C++ type in the generated HLS code "
                              f"(supported: {', '.join(C_TYPES)})")
    return C_TYPES[dtype]


def token_struct(t: ITensorType) -> str:
    """The C++ struct of one token of ``t``: its dtype and element count (the tile is row-major)."""
    return f"tok_{t.dtype}x{t.token_elements}"


def stream_struct(t: ITensorType, max_bits: int) -> str:
    """The C++ struct of one element of a stream of ``t``: the token when it fits ``max_bits`` (the target's
    stream limit), else one beat of it (``ITensorType.beat_elements``; ``read_token`` / ``write_token`` of the
    tokens header move a token as its beats, in element order)."""
    return f"tok_{t.dtype}x{t.beat_elements(max_bits)}"


def stream_port(t: ITensorType, var: str, max_bits: int) -> str:
    return f"hls::stream<{stream_struct(t, max_bits)}>& {var}"


def stream_var(name: str) -> str:
    return f"s_{c_identifier(name)}"


def declare_token(code: Code, t: ITensorType, var: str) -> None:
    """A local token at the top of a process, its elements in registers: a whole token moves in one step."""
    code.line(f"{token_struct(t)} {var};")
    if t.token_elements > 1:
        code.pragma(f"array_partition variable={var}.data type=complete")


def read_into(code: Code, graph: DataflowGraph, stream: str, var: str, max_bits: int) -> None:
    """Read one token of dataflow stream ``stream`` into the declared local ``var`` (its beats when wide)."""
    t = graph.streams[stream].type
    if t.beats(max_bits) == 1:
        code.line(f"{var} = {stream_var(stream)}.read();")
    else:
        code.line(f"read_token({stream_var(stream)}, {var});")


# --- small C++ writer -------------------------------------------------------------------------------------------


class Code:
    """Lines with two-space indentation; pragmas stay at the indentation of the code they annotate."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0
        self.labels: set[str] = set()

    def line(self, text: str = "") -> None:
        self.lines.append(("  " * self.depth + text) if text else "")

    def paste(self, text: str) -> None:
        """Lines of ``text`` as they are (no indentation added)."""
        self.lines.extend(text.rstrip("\n").split("\n"))

    def pragma(self, directive: str) -> None:
        self.line(f"HLS_PRAGMA({directive})")

    def open(self, head: str) -> None:
        self.line(head + " {")
        self.depth += 1

    def close(self) -> None:
        self.depth -= 1
        self.line("}")

    def loop(self, var: str, trip: int | str, step: int = 1, pragma: str | None = None) -> None:
        """A counted loop, labelled ``<var>_loop`` (unique in this Code: reports and directives name loops by
        label), its directive at the top of its body."""
        label = f"{var}_loop"
        while label in self.labels:
            label += "_"
        self.labels.add(label)
        inc = f"++{var}" if step == 1 else f"{var} += {step}"
        self.open(f"{label}: for (int {var} = 0; {var} < {trip}; {inc})")
        if pragma:
            self.pragma(pragma)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class ProcessWrites:
    """A process's stream writes and firing marks: plain ``write`` when its writes follow its reads in the same
    firing (lag 1), else through ``HLS_SIM_*`` so the C simulation holds them for ``lag`` firings (tokens header).
    """

    def __init__(self, graph: DataflowGraph, node: Node, max_bits: int) -> None:
        lag = node.attributes["lag"]
        assert isinstance(lag, int)
        self.lag = lag
        self.graph = graph
        self.max_bits = max_bits

    def declare(self, code: Code) -> None:
        if self.lag > 1:
            code.line(f"HLS_SIM_IN_FLIGHT({self.lag});  // writes trail reads by {self.lag} firings "
                      "(pipeline depth / II)")

    def firing(self, code: Code, condition: str | None = None, drained: bool = False) -> None:
        """The start of a firing; ``drained``: its writes in flight leave first (``drained_inputs``)."""
        if self.lag > 1:
            # A macro, not an `if` around one: the synthesis view has no firing marks, and no empty statements.
            mark = "HLS_SIM_DRAINED_FIRING" if drained else "HLS_SIM_FIRING"
            code.line(f"{mark}({condition or 'true'});")

    def write(self, stream: str, value: str) -> str:
        """A token to dataflow stream ``stream``: one ``write``, or its beats (``write_token``) when it is wider
        than a stream element may be."""
        var = stream_var(stream)
        if self.lag > 1:
            return f"HLS_SIM_WRITE({var}, {value});"
        wide = self.graph.streams[stream].type.beats(self.max_bits) > 1
        return f"write_token({var}, {value});" if wide else f"{var}.write({value});"

    def write_beat(self, stream: str, value: str, beat: str, behind: bool = False) -> str:
        """Beat ``beat`` (an index expression) of a token wider than a stream element to dataflow stream
        ``stream``; ``behind``: the token of the previous firing (``analysis.stream_beats``)."""
        var = stream_var(stream)
        if self.lag > 1:
            last = self.graph.streams[stream].type.beats(self.max_bits) - 1
            mark = "HLS_SIM_WRITE_BEHIND" if behind else "HLS_SIM_WRITE_BEAT"
            return f"{mark}({var}, {value}, {beat}, {last});"
        return f"write_beat({var}, {value}, {beat});"

    def drain(self, code: Code) -> None:
        if self.lag > 1:
            code.line("HLS_SIM_DRAIN();")


def linear(expr: AffineExpr, names: Sequence[str | None], scale: Sequence[int]) -> str:
    """C++ for an affine expression of loop counters: dim ``d`` is ``names[d] * scale[d]`` (None: counter 0)."""
    if not _has_division(expr):
        n = len(names)
        zero = (0,) * n
        base = expr.evaluate(zero)
        terms: list[str] = []
        for d in range(n):
            coeff = (expr.evaluate(tuple(1 if k == d else 0 for k in range(n))) - base) * scale[d]
            if coeff and names[d] is not None:
                terms.append(str(names[d]) if coeff == 1 else f"{coeff} * {names[d]}")
        if base or not terms:
            terms.append(str(base))
        return " + ".join(terms)
    if isinstance(expr, AffineBinary):
        op = {"floordiv": "/", "mod": "%"}.get(expr.op, expr.op)
        return f"({linear(expr.lhs, names, scale)}) {op} ({linear(expr.rhs, names, scale)})"
    raise HlsCodegenError(f"cannot render affine expression {expr}")


def _has_division(expr: AffineExpr) -> bool:
    if isinstance(expr, AffineBinary):
        return expr.op in ("floordiv", "mod") or _has_division(expr.lhs) or _has_division(expr.rhs)
    return False


def flat_index(indices: Sequence[str], shape: Sequence[int]) -> str:
    """Row-major flat index of ``indices`` (C++ strings, "0" for none) in an array of ``shape``."""
    terms: list[str] = []
    for j, idx in enumerate(indices):
        stride = math.prod(shape[j + 1:])
        if idx != "0":
            terms.append(idx if stride == 1 else f"{stride} * {idx}" if idx.isidentifier() else
                         f"{stride} * ({idx})")
    return " + ".join(terms) or "0"


def counter_loops(code: Code, t: ITensorType, prefix: str, ii: int = 1) -> list[str | None]:
    """Open one loop per loop of ``t`` with a trip count above 1, the innermost pipelined at ``ii``; returns the
    counter name per loop (None: a one-trip loop, counter 0)."""
    names: list[str | None] = [f"{prefix}{loop}" if trip > 1 else None for loop, trip in enumerate(t.trip_counts)]
    opened = [(n, trip) for n, trip in zip(names, t.trip_counts, strict=True) if n is not None]
    for k, (name, trip) in enumerate(opened):
        code.loop(name, trip, pragma=f"pipeline II={ii}" if k == len(opened) - 1 else None)
    return names


def close_loops(code: Code, names: Sequence[str | None]) -> None:
    for name in names:
        if name is not None:
            code.close()


def tile_offsets(t: ITensorType, names: Sequence[str | None]) -> list[str]:
    """C++ tile offset of the current token along every dim of ``t``'s tensor."""
    return [linear(r, names, t.steps) for r in t.iter_map.results]


def decode_counters(code: Code, flat: str, trips: Sequence[int], names: Sequence[str], needed: set[str]) -> None:
    """Declare the counters in ``needed`` of the loops ``trips`` (named ``names``) from the row-major step
    index ``flat``."""
    for i, (trip, name) in enumerate(zip(trips, names, strict=True)):
        if name not in needed:
            continue
        inner = math.prod(trips[i + 1:])
        value = flat if inner == 1 else f"{flat} / {inner}"
        if inner * trip < math.prod(trips):
            value = f"{value} % {trip}" if inner == 1 else f"({value}) % {trip}"
        code.line(f"const int {name} = {value};")
