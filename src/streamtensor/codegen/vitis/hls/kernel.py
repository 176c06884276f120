"""C++ of a kernel node: its tile loop nest, accumulators, pipelined point loops and the scalar body."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from streamtensor.codegen.vitis.hbm import c_identifier
from streamtensor.codegen.vitis.hls.cpp import (
    Code,
    ProcessWrites,
    c_type,
    flat_index,
    stream_var,
    token_struct,
)
from streamtensor.codegen.vitis.package_data import template
from streamtensor.errors import UnsupportedOpError
from streamtensor.ir.dataflow import DataflowGraph, KernelNode, input_loops, reads_init
from streamtensor.ir.itensor import ITensorType
from streamtensor.ir.linalg import ScalarOp

# Scalar ops with a C++ operator or <cmath> function (float overloads of std:: keep f32 math in f32).
_BINARY_OPERATORS = {"arith.addf": "+", "arith.subf": "-", "arith.mulf": "*", "arith.divf": "/", "arith.addi": "+",
                     "arith.subi": "-", "arith.muli": "*", "arith.divsi": "/", "arith.remsi": "%"}
_BITWISE = {"arith.andi": ("&", "&&"), "arith.ori": ("|", "||"), "arith.xori": ("^", "!=")}
_CALLS = {"math.exp": "std::exp", "math.log": "std::log", "math.log1p": "std::log1p",
          "math.expm1": "std::expm1", "math.exp2": "std::exp2", "math.log2": "std::log2", "math.log10": "std::log10",
          "math.tan": "std::tan", "math.floor": "std::floor", "math.ceil": "std::ceil", "math.trunc": "std::trunc",
          "math.round": "std::round", "math.roundeven": "std::nearbyint",  # ties to even in the default mode
          "math.sqrt": "std::sqrt",
          "math.tanh": "std::tanh", "math.sin": "std::sin", "math.cos": "std::cos", "math.erf": "std::erf",
          "math.absf": "std::fabs", "math.powf": "std::pow", "arith.remf": "std::fmod", "arith.maxnumf": "std::fmax",
          "arith.minnumf": "std::fmin", "arith.maxsi": "std::max", "arith.minsi": "std::min",
          "arith.maximumf": "maximumf", "arith.minimumf": "minimumf", "math.fpowi": "fpowi"}
_CASTS = {"arith.sitofp", "arith.fptosi", "arith.extf", "arith.truncf", "arith.extsi", "arith.trunci",
          "arith.index_cast"}
_UNSIGNED_CASTS = {"arith.uitofp", "arith.extui"}
_COMPARE = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
# An unordered float predicate is the negation of the ordered inverse (C++ comparisons are false on NaN).
_ORDERED_INVERSE = {"eq": "({a} < {b} || {a} > {b})", "ne": "{a} == {b}", "lt": "{a} >= {b}", "le": "{a} > {b}",
                    "gt": "{a} <= {b}", "ge": "{a} < {b}"}

# Helpers emitted into the tokens header only when a body uses them (templates/<name>.h).
SCALAR_HELPERS = {name: template(f"{name}.h") for name in ("maximumf", "minimumf", "fpowi")}


def _partitioning(shape: Sequence[int], lane_offsets: np.ndarray) -> str | None:
    """Cyclic partitioning of a flat array when the lanes of one pipelined step hit distinct banks, else
    complete partitioning (registers)."""
    lanes = len(lane_offsets)
    if lanes == 1:
        return None
    if len(set((lane_offsets % lanes).tolist())) == lanes:
        return f"type=cyclic factor={lanes}"
    return "type=complete" if math.prod(shape) > 1 else None


class KernelWriter:
    """C++ of one ``KernelNode`` (see the module docstring)."""

    def __init__(self, graph: DataflowGraph, node: KernelNode) -> None:
        self.graph = graph
        self.node = node
        self.op = node.op
        self.loops = node.loops
        self.n_in = len(node.op.inputs)
        # Reduction loops of more than one trip carry accumulators from firing to firing; the parallel loops
        # inside the outermost of them index the pending output tiles (KernelNode).
        self.reductions = [d for d in node.tile_order if node.loops[d].reduction and node.loops[d].trip > 1]
        self.accumulate = bool(self.reductions)
        outer = node.tile_order.index(self.reductions[0]) if self.reductions else len(node.tile_order)
        self.pending_loops = [d for d in node.tile_order[outer + 1:] if not node.loops[d].reduction]
        self.pending = node.pending_tiles
        self.writes = ProcessWrites(graph, node)
        self.helpers: set[str] = set()

    # Index expressions inside a firing: point index i<d> (0 for a unit tile), tile counter t<d>.
    def point(self, d: int) -> str:
        return "0" if self.loops[d].tile == 1 else f"i{d}"

    def tile_counter(self, d: int) -> str | None:
        return None if self.loops[d].trip == 1 else f"t{d}"

    def operand_index(self, operand: int) -> str:
        amap = self.op.indexing_maps[operand]
        dims = [amap.result_dim(j) for j in range(amap.num_results)]
        shape = [1 if d is None else self.loops[d].tile for d in dims]
        return flat_index(["0" if d is None else self.point(d) for d in dims], shape)

    def result_shape(self, r: int) -> list[int]:
        amap = self.op.indexing_maps[self.n_in + r]
        return [1 if (d := amap.result_dim(j)) is None else self.loops[d].tile for j in range(amap.num_results)]

    def lane_offsets(self, operand: int) -> np.ndarray:
        """Flat offsets (relative to lane 0) an operand's array sees in one pipelined step."""
        amap = self.op.indexing_maps[operand]
        dims = [amap.result_dim(j) for j in range(amap.num_results)]
        shape = [1 if d is None else self.loops[d].tile for d in dims]
        offsets = np.zeros(1, dtype=np.int64)
        for j, d in enumerate(dims):
            if d is not None and self.loops[d].unroll > 1:
                stride = math.prod(shape[j + 1:])
                lane = np.arange(self.loops[d].unroll, dtype=np.int64) * stride
                offsets = (offsets[:, None] + lane[None, :]).ravel()
        return offsets

    def write(self) -> str:
        node, op = self.node, self.op
        code = Code()
        ports = [f"hls::stream<{token_struct(self.graph.streams[s].type)}>& {stream_var(s)}"
                 for s in node.inputs + node.outputs]
        tiles = ", ".join(f"d{d} {lt.trip}x{lt.tile}" + (f" unroll {lt.unroll}" if lt.unroll > 1 else "")
                          + (" reduction" if lt.reduction else "") for d, lt in enumerate(self.loops))
        code.line(f"// {node.name}: linalg.generic @{op.name}" + (f" ({op.location})" if op.location else ""))
        code.line(f"//   loops {tiles}; tile order {node.tile_order}, point order {node.point_order}; "
                  f"{node.attributes['firings']} firings of {node.attributes['ii']} cycles"
                  + (f"; {self.pending} output tiles pending" if self.pending > 1 else ""))
        code.open(f"static void {c_identifier(node.name)}({', '.join(ports)})")
        if self.accumulate:
            for r, value in enumerate(op.results):
                self.declare_accumulator(code, r, value.type.dtype)
        # An input's token is read where its tile starts to move: at the top of the innermost tile loop its
        # indexing map uses (input_loops), and held by the loops inside (their firings reuse it).
        used = self.used_values()
        hoist: dict[int, list[int]] = {}
        for j in range(self.n_in):
            hoist.setdefault(len(input_loops(op, node.tile_order, j)), []).append(j)
        self.writes.declare(code)
        # A firing's first read is at the shallowest level that runs for it: level m runs at the firings whose
        # counters of the loops from m inward are 0, so it starts the firing unless the previous level that
        # reads ran too (every counter between the two levels 0).
        depth = len(node.tile_order)
        starts = sorted({level for level in hoist if level < depth} | {depth})
        pipelined = [d for d in node.point_order if self.loops[d].tile // self.loops[d].unroll > 1]
        # With every point loop unrolled, the innermost tile loop is the pipeline: its pragma heads its body.
        counted = [d for d in node.tile_order if self.tile_counter(d) is not None]
        tile_pipeline = f"pipeline II={node.attributes['pipeline_ii']}" if not pipelined else None
        opened: list[str] = []
        for level, d in enumerate([*node.tile_order, None]):
            if level in starts:
                k = starts.index(level)
                between = [] if k == 0 else [c for e in node.tile_order[starts[k - 1]:level]
                                               if (c := self.tile_counter(e)) is not None]
                if k == 0 or between:
                    self.writes.firing(code, " || ".join(f"{c} != 0" for c in between) or None)
            for j in hoist.get(level, []):
                self.read_input(code, j, used)
            if d is not None and (name := self.tile_counter(d)) is not None:
                code.loop(name, self.loops[d].trip, pragma=tile_pipeline if d == counted[-1] else None)
                opened.append(name)
        if self.pending > 1:
            inner = [d for d in self.pending_loops if self.loops[d].trip > 1]
            index = flat_index([f"t{d}" for d in inner], [self.loops[d].trip for d in inner])
            code.line(f"const int tile = {index};  // the pending output tile of this firing")
        self.init_results(code)
        self.point_loops(code, pipelined, int(node.attributes["pipeline_ii"]), used)
        self.write_results(code)
        for _ in opened:
            code.close()
        self.writes.drain(code)
        self.write_replays(code)
        code.close()
        return code.text()

    def write_replays(self, code: Code) -> None:
        """Replay ports: every pending tile (the whole result, in completion order) drained once more."""
        for port, r in enumerate(self.node.replay_results, start=len(self.op.results)):
            code.line(f"// replay of result {r}: the accumulators hold all of it")
            code.loop("tile", self.pending)
            code.line(f"{self.result_token(r)} t;")
            self.copy(code, math.prod(self.result_shape(r)), f"t.data[k] = {self.acc(r)}[k];")
            code.line(f"{stream_var(self.node.outputs[port])}.write(t);")
            code.close()

    def read_input(self, code: Code, j: int, used: set[str]) -> None:
        port = self.node.input_operands.index(j)
        token = f"{stream_var(self.node.inputs[port])}.read()"
        if self.op.body.args[j][0] in used:
            code.line(f"const {token_struct(self.port_type(port))} in{j} = {token};")
        else:
            code.line(f"{token};  // consumed, not used by the body")

    def port_type(self, port: int) -> ITensorType:
        return self.graph.streams[self.node.inputs[port]].type

    def acc(self, r: int) -> str:
        """The accumulator tile of result ``r`` this firing works on."""
        return f"acc{r}[tile]" if self.pending > 1 else f"acc{r}"

    def declare_accumulator(self, code: Code, r: int, dtype: str) -> None:
        shape = self.result_shape(r)
        tiles = f"[{self.pending}]" if self.pending > 1 else ""
        what = f"{self.pending} pending {'x'.join(map(str, shape)) or 'scalar'} output tiles" if self.pending > 1 \
            else f"one {'x'.join(map(str, shape)) or 'scalar'} output tile"
        # Zero-initialized because g++ cannot prove that a tile's first firing fills it before every read (the
        # fill is what the kernel relies on; this costs one pass at the start of a run).
        code.line(f"{c_type(dtype)} acc{r}{tiles}[{math.prod(shape)}] = {{}};  // {what}, live across the "
                  "reduction firings")
        dim = " dim=2" if self.pending > 1 else ""
        partition = _partitioning(shape, self.lane_offsets(self.n_in + r))
        if partition is not None:
            code.pragma(f"array_partition variable=acc{r} {partition}{dim}")
        if partition != "type=complete":
            impl = self.node.attributes.get(f"acc{r}_memory")
            if impl is not None:
                code.pragma(f"bind_storage variable=acc{r} type=ram_2p impl={impl}")

    def condition(self, last: bool) -> str | None:
        """First (or last) firing of the current output tile: every reduction loop at 0 (or its last trip)."""
        terms = [f"t{d} == {self.loops[d].trip - 1 if last else 0}" for d in self.reductions]
        return " && ".join(terms) or None

    def result_token(self, r: int) -> str:
        return token_struct(self.graph.streams[self.node.outputs[r]].type)

    def init_results(self, code: Code) -> None:
        """Start of an output tile: the accumulator (or output token) from its init token or constant."""
        cond = self.condition(last=False)
        if cond is not None:
            code.open(f"if ({cond})")
        for r, value in enumerate(self.op.results):
            target = self.acc(r) if self.accumulate else f"out{r}.data"
            size = math.prod(self.result_shape(r))
            operand = self.n_in + r
            if operand in self.node.input_operands:
                token = f"{stream_var(self.node.inputs[self.node.input_operands.index(operand)])}.read()"
                if self.accumulate:
                    code.line(f"const {self.result_token(r)} init{r} = {token};")
                    self.copy(code, size, f"{target}[k] = init{r}.data[k];")
                else:
                    code.line(f"{self.result_token(r)} out{r} = {token};")
                continue
            if not self.accumulate:
                code.line(f"{self.result_token(r)} out{r};")
            if reads_init(self.op, r):
                fill = _literal(self.node.init_constants.get(r, 0), value.type.dtype)
                self.copy(code, size, f"{target}[k] = {fill};")
        if cond is not None:
            code.close()

    @staticmethod
    def copy(code: Code, size: int, statement: str) -> None:
        code.loop("k", size, pragma="pipeline II=1")
        code.line(statement)
        code.close()

    def write_results(self, code: Code) -> None:
        cond = self.condition(last=True)
        if cond is not None:
            code.open(f"if ({cond})")
        for r in range(len(self.op.results)):
            out = stream_var(self.node.outputs[r])
            if self.accumulate:
                code.line(f"{self.result_token(r)} out{r};")
                self.copy(code, math.prod(self.result_shape(r)), f"out{r}.data[k] = {self.acc(r)}[k];")
            code.line(self.writes.write(out, f"out{r}"))
        if cond is not None:
            code.close()

    def point_loops(self, code: Code, pipelined: list[int], pipeline_ii: int, used: set[str]) -> None:
        """Pipelined point loops (point order), the innermost with the pipeline pragma, then the lanes."""
        opened = 0
        for k, d in enumerate(pipelined):
            lt = self.loops[d]
            pragma = f"pipeline II={pipeline_ii}" if k == len(pipelined) - 1 else None
            code.loop(f"i{d}" if lt.unroll == 1 else f"p{d}", lt.tile, lt.unroll, pragma)
            opened += 1
        partial: list[int] = []
        for d in self.node.point_order:
            lt = self.loops[d]
            if lt.unroll > 1:
                full = lt.unroll == lt.tile
                code.loop(f"i{d}" if full else f"u{d}", lt.unroll, pragma="unroll")
                opened += 1
                if not full:
                    partial.append(d)
        for d in partial:
            code.line(f"const int i{d} = p{d} + u{d};")
        self.body(code, used)
        for _ in range(opened):
            code.close()

    def used_values(self) -> set[str]:
        """Body values a yield depends on (only these are emitted: no dead C++)."""
        body = self.op.body
        producers = {op.result: op for op in body.ops}
        used: set[str] = set()
        todo = list(body.yields)
        while todo:
            v = todo.pop()
            if v in used:
                continue
            used.add(v)
            if v in producers:
                todo.extend(producers[v].operands)
        return used

    def body(self, code: Code, used: set[str]) -> None:
        body = self.op.body
        types = dict(body.args)
        names: dict[str, str] = {}
        for j, (arg, dtype) in enumerate(body.args):
            if arg not in used:
                continue
            names[arg] = f"a{j}"
            if j < self.n_in:
                source = f"in{j}.data[{self.operand_index(j)}]"
            else:
                r = j - self.n_in
                source = f"{self.acc(r) if self.accumulate else f'out{r}.data'}[{self.operand_index(j)}]"
            code.line(f"const {c_type(dtype)} a{j} = {source};")
        taken = {f"a{j}" for j in range(len(body.args))}  # a result may carry an argument's IR name
        for op in body.ops:
            if op.result not in used:
                continue
            types[op.result] = op.dtype
            ident = c_identifier(op.result)
            while ident in taken:
                ident += "_"
            taken.add(ident)
            names[op.result] = ident
            code.line(f"const {c_type(op.dtype)} {names[op.result]} = {self.scalar(op, names, types)};")
        for r, y in enumerate(body.yields):
            target = self.acc(r) if self.accumulate else f"out{r}.data"
            code.line(f"{target}[{self.operand_index(self.n_in + r)}] = {names[y]};")

    def scalar(self, op: ScalarOp, names: dict[str, str], types: dict[str, str]) -> str:
        """C++ expression of one scalar op of the body."""
        if op.name == "linalg.index":
            d = int(op.attr("dim"))  # type: ignore[call-overload]
            t = self.tile_counter(d)
            tile = self.loops[d].tile
            parts = ([f"{tile} * {t}" if tile > 1 else t] if t is not None else []) + \
                    ([self.point(d)] if tile > 1 else [])
            return " + ".join(parts) or "0"
        expression = scalar_expression(op, [names[o] for o in op.operands], types, self.helpers)
        if expression is None:
            raise UnsupportedOpError(op.name, op.name.split(".")[0], f"no C++ translation (kernel {self.node.name})",
                                     self.op.location)
        return expression


def scalar_expression(op: ScalarOp, x: list[str], types: dict[str, str], helpers: set[str]) -> str | None:
    """C++ expression of one scalar op (other than ``linalg.index``) on the C++ operands ``x``; ``types`` maps
    operand names to IR types, ``helpers`` collects the helper functions used; None for an op without one."""
    name, ctype = op.name, c_type(op.dtype)
    if name in _BINARY_OPERATORS:
        return f"{x[0]} {_BINARY_OPERATORS[name]} {x[1]}"
    if name in _BITWISE:
        integer, logical = _BITWISE[name]
        return f"{x[0]} {logical if op.dtype == 'i1' else integer} {x[1]}"
    if name == "arith.negf":
        return f"-{x[0]}"
    if name == "math.rsqrt":
        return f"{ctype}(1) / std::sqrt({x[0]})"
    if name in _CALLS:
        function = _CALLS[name]
        if function in SCALAR_HELPERS:
            helpers.add(function)
        return f"{function}({', '.join(x)})"
    if name in _CASTS:
        return f"static_cast<{ctype}>({x[0]})"
    if name in _UNSIGNED_CASTS:
        source = types[op.operands[0]]
        unsigned = x[0] if source == "i1" else f"static_cast<u{c_type(source)}>({x[0]})"
        return f"static_cast<{ctype}>({unsigned})"
    if name in ("arith.cmpf", "arith.cmpi"):
        return compare_expression(str(op.attr("predicate")), x, types[op.operands[0]])
    if name == "arith.select":
        return f"{x[0]} ? {x[1]} : {x[2]}"
    if name == "arith.constant":
        return _literal(op.attr("value"), op.dtype)  # type: ignore[arg-type]
    return None


def compare_expression(predicate: str, x: list[str], dtype: str) -> str:
    """C++ of ``arith.cmpf`` (``dtype`` a float type: ordered, unordered and NaN-test predicates) and of
    ``arith.cmpi`` (``u*`` predicates on the unsigned type of the same width)."""
    a, b = x
    if dtype.startswith("f"):
        if predicate in ("false", "true"):  # operands still read: no unused-variable warning
            return f"((void){a}, (void){b}, {predicate})"
        if predicate == "ord":
            return f"({a} == {a} && {b} == {b})"
        if predicate == "uno":
            return f"({a} != {a} || {b} != {b})"
        kind, order = predicate[0], predicate[1:]
        if kind == "o" and order == "ne":
            return f"({a} < {b} || {a} > {b})"
        if kind == "o":
            return f"{a} {_COMPARE[order]} {b}"
        return f"!({_ORDERED_INVERSE[order].format(a=a, b=b)})"
    if predicate in ("eq", "ne"):
        return f"{a} {_COMPARE[predicate]} {b}"
    if predicate[0] == "u" and dtype != "i1":
        a, b = (f"static_cast<u{c_type(dtype)}>({v})" for v in x)
    return f"{a} {_COMPARE[predicate[1:]]} {b}"


def _literal(value: float | int | bool, dtype: str) -> str:
    """A C++ literal of ``value`` that converts exactly to ``dtype``."""
    ctype = c_type(dtype)
    if dtype == "i1":
        return "true" if value else "false"
    if dtype in ("f32", "f64"):
        v = float(value)
        if math.isnan(v):
            return f"std::numeric_limits<{ctype}>::quiet_NaN()"
        if math.isinf(v):
            return f"{'-' if v < 0 else ''}std::numeric_limits<{ctype}>::infinity()"
        text = repr(v)
        return text + "f" if dtype == "f32" else text
    v = int(value)
    return f"({v + 1} - 1)" if v == -(2**63) else str(v)
