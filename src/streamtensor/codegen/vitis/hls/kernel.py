"""C++ of a kernel node: its tile loop nest, accumulators, pipelined point loops and the scalar body."""

from __future__ import annotations

import math
from collections.abc import Callable

from streamtensor.analysis.memory import accumulator_partition
from streamtensor.analysis.resources import lane_dims, used_values, value_lane_levels
from streamtensor.analysis.stream_beats import BeatSchedule, kernel_beats, pipelined_loops, read_in_pipeline
from streamtensor.analysis.timing_model import drained_inputs, fpowi_steps, recurrence_distance, tree_combiners
from streamtensor.codegen.vitis.hbm import c_identifier
from streamtensor.codegen.vitis.hls.cpp import (
    Code,
    ProcessWrites,
    c_type,
    declare_token,
    flat_index,
    read_into,
    stream_port,
    stream_var,
    token_struct,
)
from streamtensor.codegen.vitis.package_data import template
from streamtensor.errors import UnsupportedOpError
from streamtensor.ir.dataflow import DataflowGraph, KernelNode, input_loops
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
          "arith.maximumf": "maximumf", "arith.minimumf": "minimumf"}
_CASTS = {"arith.sitofp", "arith.fptosi", "arith.extf", "arith.truncf", "arith.extsi", "arith.trunci",
          "arith.index_cast"}
_UNSIGNED_CASTS = {"arith.uitofp", "arith.extui"}
_COMPARE = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
# An unordered float predicate is the negation of the ordered inverse (C++ comparisons are false on NaN).
_ORDERED_INVERSE = {"eq": "({a} < {b} || {a} > {b})", "ne": "{a} == {b}", "lt": "{a} >= {b}", "le": "{a} > {b}",
                    "gt": "{a} <= {b}", "ge": "{a} < {b}"}

# Helpers emitted into the tokens header only when a body uses them (templates/<name>.h).
SCALAR_HELPERS = {name: template(f"{name}.h") for name in ("maximumf", "minimumf", "fpowi")}


class KernelWriter:
    """C++ of one ``KernelNode`` (see the module docstring)."""

    def __init__(self, graph: DataflowGraph, node: KernelNode, max_bits: int) -> None:
        self.graph = graph
        self.node = node
        self.op = node.op
        self.loops = node.loops
        self.n_in = len(node.op.inputs)
        self.max_bits = max_bits
        # Reduction loops of more than one trip carry accumulators from firing to firing; the parallel loops
        # inside the outermost of them index the pending output tiles (KernelNode).
        self.reductions = [d for d in node.tile_order if node.loops[d].reduction and node.loops[d].trip > 1]
        self.accumulate = bool(self.reductions)
        outer = node.tile_order.index(self.reductions[0]) if self.reductions else len(node.tile_order)
        self.pending_loops = [d for d in node.tile_order[outer + 1:] if not node.loops[d].reduction]
        self.pending = node.pending_tiles
        # Point loops: pipelined (not fully unrolled) in point order, then the unrolled lanes in point order.
        self.pipelined = pipelined_loops(self.loops, node.point_order)
        self.behind, self.ahead = (tuple(int(r) for r in str(node.attributes.get(key, "")).split(",") if r)
                                   for key in ("write_behind", "read_ahead"))
        self.beats = kernel_beats(node.op, self.loops, node.point_order,
                                  read_in_pipeline(node.op, self.loops, node.tile_order, node.input_operands),
                                  max_bits, self.behind, self.ahead)
        # With a tree reduction (timing_model.tree_combiners) every lane's value is collected; each output lane
        # then sums its reduction lanes by a tree and folds the sum into its element once.
        reduction_lanes = math.prod(lp.unroll for lp in self.loops if lp.reduction)
        self.tree = tree_combiners(node.op.body, self.n_in) if reduction_lanes > 1 else None
        self.lanes = lane_dims(node.op, self.loops, node.point_order)
        self.reduction_lanes = reduction_lanes
        # An accumulator array when a result is read-modify-written across pipelined steps or firings; else the
        # output token itself holds the tile.
        self.distance = recurrence_distance(self.loops, node.point_order)
        self.use_acc = self.accumulate or self.distance is not None
        self.writes = ProcessWrites(graph, node, max_bits)
        self.helpers: set[str] = set()

    @property
    def tile_distance(self) -> int:
        """Firings between two updates of one accumulator element: the trips of the tile loops inside the
        innermost reduction tile loop of more than one trip."""
        if not self.reductions:
            return 1
        inner = self.node.tile_order[self.node.tile_order.index(self.reductions[-1]) + 1:]
        return math.prod(self.loops[d].trip for d in inner)

    # Index expressions inside a firing: point index i<d> (0 for a unit tile), tile counter t<d>.
    def point(self, d: int) -> str:
        return "0" if self.loops[d].tile == 1 else f"i{d}"

    def tile_counter(self, d: int) -> str | None:
        return None if self.loops[d].trip == 1 else f"t{d}"

    def point_counter(self, d: int) -> str:
        """Counter of pipelined point loop ``d`` (a step of ``unroll`` lanes when it has more than one)."""
        return f"i{d}" if self.loops[d].unroll == 1 else f"p{d}"

    def level_mark(self, level: int, starts: list[int], drained: int) -> tuple[str | None, bool] | None:
        """The firing mark at tile level ``level`` (see ``write``): its condition (None: always) and whether the
        firing is drained; None when the level marks no firing."""
        if level not in starts:
            return None
        k = starts.index(level)
        between = [] if k == 0 else [c for e in self.node.tile_order[starts[k - 1]:level]
                                       if (c := self.tile_counter(e)) is not None]
        if k != 0 and not between:
            return None
        return " || ".join(f"{c} != 0" for c in between) or None, level <= drained

    def level_statements(self, code: Code, mark: tuple[str | None, bool] | None,
                         reads: list[tuple[int, str, str]], guard: list[str], in_pipeline: bool,
                         period_end: list[str] | None = None) -> None:
        """A tile level's firing mark and token reads, run where every counter in ``guard`` holds (and, in the
        pipeline's body, at the firing's first step); ``period_end``: where the firing before the next read of
        this level runs (None: no next read), for the inputs read ahead."""
        if mark is not None:
            condition, drained = mark
            first = [*guard, *self.step_condition(0)] if in_pipeline else guard
            if condition is not None and first and " || " in condition:
                condition = f"({condition})"
            terms = [*first, condition] if condition is not None else first
            self.writes.firing(code, " && ".join(terms) or None, drained)
        self.read_tokens(code, reads, guard, in_pipeline, period_end)

    def step_condition(self, step: int) -> list[str]:
        """The pipelined point loops' counters at step ``step`` of a firing (row-major over them)."""
        terms: list[str] = []
        for d in reversed(self.pipelined):
            lt = self.loops[d]
            step, digit = divmod(step, lt.tile // lt.unroll)
            terms.insert(0, f"{self.point_counter(d)} == {digit * lt.unroll}")
        return terms

    def step_index(self) -> str:
        """The step of a firing the pipelined point loops are at (row-major over them)."""
        index = ""
        for d in self.pipelined:
            lt = self.loops[d]
            digit = self.point_counter(d) if lt.unroll == 1 else f"{self.point_counter(d)} / {lt.unroll}"
            scaled = f"({index})" if " " in index else index
            index = digit if not index else f"{scaled} * {lt.tile // lt.unroll} + {digit}"
        return index

    def beat_moves(self, schedule: BeatSchedule) -> list[tuple[list[str], str]]:
        """The stream accesses that move a token by ``schedule``, one per access slot of a step: (the conditions
        on the firing's step, the beat index)."""
        if schedule.steps == 1:
            return [(self.step_condition(schedule.first), str(slot)) for slot in range(schedule.beats)]
        step = self.step_index()
        relative = step if schedule.first == 0 else f"({step} - {schedule.first})"
        moves = []
        for slot in range(schedule.per_step):
            steps = -(-(schedule.beats - slot) // schedule.per_step)  # the steps of this slot's beats
            cond = [f"{step} >= {schedule.first}"] if schedule.first else []
            cond.append(f"{relative} < {steps}")
            beat = relative if schedule.per_step == 1 else f"{relative} * {schedule.per_step} + {slot}"
            moves.append((cond, beat))
        return moves

    def read_tokens(self, code: Code, reads: list[tuple[int, str, str]], guard: list[str],
                    in_pipeline: bool, period_end: list[str] | None = None) -> None:
        """Tokens (operand, stream, local) read where every counter in ``guard`` holds; in the pipeline's body
        at the firing's first step, a token wider than a stream element beat by beat (``stream_beats``); one
        read ahead taken from its copy there, and the next one read into the copy where ``period_end`` holds."""
        for operand, stream, var in reads:
            schedule = self.beats.reads.get(operand) if in_pipeline else None
            if schedule is not None and schedule.ahead:
                self.guarded(code, [*guard, *self.step_condition(0)], lambda c, operand=operand, var=var: c.line(
                    f"{var} = ahead{operand};"))
                if period_end is not None:
                    for step, beat in self.beat_moves(schedule):
                        self.guarded(code, [*period_end, *step], lambda c, stream=stream, operand=operand,
                                     beat=beat: c.line(f"read_beat({stream_var(stream)}, ahead{operand}, {beat});"))
                continue
            if schedule is None:
                cond = [*guard, *self.step_condition(0)] if in_pipeline else guard
                self.guarded(code, cond, lambda c, stream=stream, var=var: read_into(
                    c, self.graph, stream, var, self.max_bits))
                continue
            for step, beat in self.beat_moves(schedule):
                self.guarded(code, [*guard, *step], lambda c, stream=stream, var=var, beat=beat: c.line(
                    f"read_beat({stream_var(stream)}, {var}, {beat});"))

    @staticmethod
    def guarded(code: Code, cond: list[str], emit: Callable[[Code], None]) -> None:
        if cond:
            code.open(f"if ({' && '.join(cond)})")
        emit(code)
        if cond:
            code.close()

    def start_tile(self, code: Code, in_pipeline: bool) -> None:
        """Start of a firing's point loops (``in_pipeline``: in the pipeline's body): its pending output tile
        and its init tokens."""
        if self.pending > 1:
            inner = [d for d in self.pending_loops if self.loops[d].trip > 1]
            index = flat_index([f"t{d}" for d in inner], [self.loops[d].trip for d in inner])
            code.line(f"const int tile = {index};  // the pending output tile of this firing")
        self.read_inits(code, in_pipeline)

    def operand_index(self, operand: int) -> str:
        amap = self.op.indexing_maps[operand]
        dims = [amap.result_dim(j) for j in range(amap.num_results)]
        shape = [1 if d is None else self.loops[d].tile for d in dims]
        return flat_index(["0" if d is None else self.point(d) for d in dims], shape)

    def operand_dims(self, operand: int) -> set[int]:
        amap = self.op.indexing_maps[operand]
        return {d for j in range(amap.num_results) if (d := amap.result_dim(j)) is not None}

    def result_shape(self, r: int) -> list[int]:
        amap = self.op.indexing_maps[self.n_in + r]
        return [1 if (d := amap.result_dim(j)) is None else self.loops[d].tile for j in range(amap.num_results)]

    def write(self) -> str:
        node, op = self.node, self.op
        code = Code()
        ports = [stream_port(self.graph.streams[s].type, stream_var(s), self.max_bits)
                 for s in node.inputs + node.outputs]
        tiles = ", ".join(f"d{d} {lt.trip}x{lt.tile}" + (f" unroll {lt.unroll}" if lt.unroll > 1 else "")
                          + (" reduction" if lt.reduction else "") for d, lt in enumerate(self.loops))
        code.line(f"// {node.name}: linalg.generic @{op.name}" + (f" ({op.location})" if op.location else ""))
        code.line(f"//   loops {tiles}; tile order {node.tile_order}, point order {node.point_order}; "
                  f"{node.attributes['firings']} firings of {node.attributes['ii']} cycles"
                  + (f"; {self.pending} output tiles pending" if self.pending > 1 else ""))
        code.open(f"static void {c_identifier(node.name)}({', '.join(ports)})")
        if self.use_acc:
            for r, value in enumerate(op.results):
                self.declare_accumulator(code, r, value.type.dtype)
        # Tokens live at function scope, in registers (a token moves whole): inputs, init tokens, results.
        for port, s in enumerate(node.inputs):
            operand = node.input_operands[port]
            name = f"in{operand}" if operand < self.n_in else f"init{operand - self.n_in}"
            if operand >= self.n_in and not self.use_acc:
                continue  # an init token is read into its result token
            declare_token(code, self.graph.streams[s].type, name)
        for r in range(len(op.results)):
            declare_token(code, self.graph.streams[node.outputs[r]].type, f"out{r}")
        for j in self.ahead:
            # Read ahead (stream_beats): the next token comes into a copy in the previous firing's first steps.
            declare_token(code, self.graph.streams[node.inputs[node.input_operands.index(j)]].type, f"ahead{j}")
        for r in self.behind:
            # Written behind (stream_beats): a copy of the result leaves in the next firing's first steps.
            declare_token(code, self.graph.streams[node.outputs[r]].type, f"behind{r}")
            code.line(f"bool behind{r}_pending = false;")
        # An input's token is read where its tile starts to move: at the top of the innermost tile loop its
        # indexing map uses (input_loops), and held by the loops inside (their firings reuse it).
        used = self.used_values()
        hoist: dict[int, list[int]] = {}
        for j in range(self.n_in):
            hoist.setdefault(len(input_loops(op, node.tile_order, j)), []).append(j)
        self.writes.declare(code)
        for j in self.ahead:
            read_into(code, self.graph, node.inputs[node.input_operands.index(j)], f"ahead{j}", self.max_bits)
        # A firing's first read is at the shallowest level that runs for it: level m runs at the firings whose
        # counters of the loops from m inward are 0, so it starts the firing unless the previous level that
        # reads ran too (every counter between the two levels 0).
        depth = len(node.tile_order)
        starts = sorted({level for level in hoist if level < depth} | {depth})
        # A firing that reads a drained input starts at its level or outside it.
        lag = node.attributes["lag"]
        assert isinstance(lag, int)
        drained = max((len(input_loops(op, node.tile_order, j))
                       for j in drained_inputs(op, node.loops, node.tile_order, lag - 1)), default=-1)
        # With every point loop unrolled, the innermost tile loop is the pipeline (at the firing II, which
        # includes the pending tiles' recurrence and the beats of wide tokens): its pragma heads its body.
        counted = [d for d in node.tile_order if self.tile_counter(d) is not None]
        tile_pipeline = f"pipeline II={node.attributes['ii']}" if not self.pipelined else None
        # The loops from the drained level inward (all of them without a drain) and the pipelined point loops
        # form one perfect nest, which Vitis flattens into one pipeline: the firings overlap as the timing
        # model has them. What a level runs between those loops moves to the head of the pipeline's body,
        # under the condition it runs at (every counter inside its level at 0); a drained read stays between
        # its loops, where the pipeline is meant to drain.
        outer = max(drained, 0)
        pipeline = bool(self.pipelined or counted)

        def moved(level: int) -> bool:
            return pipeline and any(self.tile_counter(e) is not None for e in node.tile_order[outer:level])

        def zeros(level: int) -> list[str]:
            return [f"{c} == 0" for e in node.tile_order[level:] if (c := self.tile_counter(e)) is not None]

        def period_end(level: int) -> list[str] | None:
            """The last firing before the next read at ``level`` (None: it reads once)."""
            def lasts(dims: list[int]) -> list[str]:
                return [f"{c} == {self.loops[e].trip - 1}" for e in dims if (c := self.tile_counter(e)) is not None]
            outer_lasts = lasts(node.tile_order[:level])
            if not outer_lasts:
                return None
            return [*lasts(node.tile_order[level:]), f"!({' && '.join(outer_lasts)})"]

        head: list[Callable[[Code], None]] = []
        for level in range(depth + 1):
            marks = self.level_mark(level, starts, drained)
            reads = [(j, node.inputs[node.input_operands.index(j)], f"in{j}") for j in hoist.get(level, [])]
            if moved(level):
                head.append(lambda c, level=level, marks=marks, reads=reads: self.level_statements(
                    c, marks, reads, zeros(level), True, period_end(level)))
            else:
                self.level_statements(code, marks, reads, [], False)
            if level == depth:
                break
            d = node.tile_order[level]
            if (name := self.tile_counter(d)) is not None:
                code.loop(name, self.loops[d].trip, pragma=tile_pipeline if d == counted[-1] else None)
                if tile_pipeline and d == counted[-1] and self.use_acc and self.tile_distance > 1:
                    # The pipelined tile loops take the pending output tiles in turn: an accumulator element
                    # comes back `tile_distance` iterations later (the firing II covers that recurrence).
                    for r in range(len(self.op.results)):
                        code.pragma(f"dependence variable=acc{r} type=inter direction=RAW dependent=true "
                                    f"distance={self.tile_distance}")
        inner = moved(depth)
        if inner:
            head.append(lambda c: self.start_tile(c, True))
        else:
            self.start_tile(code, False)

        def tail(c: Code) -> None:
            self.write_results(c, inner)
        # Flattened across the innermost reduction tile loop, an accumulator element comes back to the pipeline
        # `tile_distance` firings later (sooner when a point loop recurs within the firing).
        across = inner and bool(self.reductions) and self.reductions[-1] in node.tile_order[outer:]
        self.point_loops(code, int(node.attributes["pipeline_ii"]), used, head, tail if inner else None, across)
        if not inner:
            tail(code)
        for _ in counted:
            code.close()
        if inner:
            self.write_last_behind(code)
        self.writes.drain(code)
        self.write_replays(code)
        code.close()
        return code.text()

    def write_replays(self, code: Code) -> None:
        """Replay ports: every pending tile (the whole result, in completion order) drained once more, a tile
        per step as fast as the accumulator's banks give it out (two ports each)."""
        for port, r in enumerate(self.node.replay_results, start=len(self.op.results)):
            stream = self.node.outputs[port]
            size = math.prod(self.result_shape(r))
            banks = self.acc_banks(r)
            code.line(f"// replay of result {r}: the accumulators hold all of it")
            declare_token(code, self.graph.streams[stream].type, f"replay{r}")
            code.loop("tile", self.pending, pragma=f"pipeline II={-(-size // (2 * banks))}")
            code.loop("k", size, pragma="unroll")
            code.line(f"replay{r}.data[k] = {self.acc(r)}[k];")
            code.close()
            code.line(f"write_token({stream_var(stream)}, replay{r});")
            code.close()

    def acc(self, r: int) -> str:
        """The accumulator tile of result ``r`` this firing works on."""
        return f"acc{r}[tile]" if self.pending > 1 else f"acc{r}"

    def acc_banks(self, r: int) -> int:
        return accumulator_partition(self.node, r).factor

    def declare_accumulator(self, code: Code, r: int, dtype: str) -> None:
        shape = self.result_shape(r)
        tiles = f"[{self.pending}]" if self.pending > 1 else ""
        what = f"{self.pending} pending {'x'.join(map(str, shape)) or 'scalar'} output tiles" if self.pending > 1 \
            else f"one {'x'.join(map(str, shape)) or 'scalar'} output tile"
        # Zero-initialized because g++ cannot prove that a tile's first firing fills it before every read (the
        # fill is what the kernel relies on; this costs one pass at the start of a run).
        code.line(f"{c_type(dtype)} acc{r}{tiles}[{math.prod(shape)}] = {{}};  // {what}, read-modify-written by "
                  "the reduction")
        dim = " dim=2" if self.pending > 1 else ""
        part = accumulator_partition(self.node, r)  # the banks the memory model charges
        if part.kind == "cyclic":
            code.pragma(f"array_partition variable=acc{r} type=cyclic factor={part.factor}{dim}")
        elif part.kind == "complete":
            code.pragma(f"array_partition variable=acc{r} type=complete{dim}")
        if part.kind != "complete":
            impl = self.node.attributes.get(f"acc{r}_memory")
            if impl is not None:
                code.pragma(f"bind_storage variable=acc{r} type=ram_2p impl={impl}")

    def reduction_condition(self, last: bool, points: bool) -> list[str]:
        """First (or last) update of an output element: every tile reduction counter at 0 (or its last trip)
        and, with ``points``, every point reduction index too (with a tree, the pipelined part of it: the
        tree sums the unrolled lanes)."""
        terms = [f"t{d} == {self.loops[d].trip - 1 if last else 0}" for d in self.reductions]
        if points:
            for d in self.node.point_order:
                lt = self.loops[d]
                if not lt.reduction or lt.tile == 1 or (self.tree and lt.unroll == lt.tile):
                    continue
                index = f"p{d}" if self.tree and lt.unroll > 1 else f"i{d}"
                terms.append(f"{index} == {lt.tile - lt.unroll if self.tree and lt.unroll > 1 else lt.tile - 1}"
                             if last else f"{index} == 0")
        return terms

    def result_token(self, r: int) -> str:
        return token_struct(self.graph.streams[self.node.outputs[r]].type)

    def init_value(self, r: int) -> str | None:
        """Value of result ``r``'s element before its reduction: its init token's element or the constant fill
        (None: the init token was read into the result token itself)."""
        operand = self.n_in + r
        if operand in self.node.input_operands:
            return f"init{r}.data[{self.operand_index(operand)}]" if self.use_acc else None
        fill = self.node.init_constants.get(r, 0)
        return _literal(fill, self.op.results[r].type.dtype)

    def read_inits(self, code: Code, in_pipeline: bool) -> None:
        """Start of an output tile: its init tokens read (the first update of each element selects them)."""
        reads = [(self.n_in + r, self.node.inputs[self.node.input_operands.index(self.n_in + r)],
                  f"init{r}" if self.use_acc else f"out{r}") for r in range(len(self.op.results))
                 if self.n_in + r in self.node.input_operands]
        self.read_tokens(code, reads, self.reduction_condition(last=False, points=False), in_pipeline)

    def write_results(self, code: Code, in_pipeline: bool) -> None:
        """End of a firing: its results written at the end of their output tile (``in_pipeline``: at the last
        step of the pipelined point loops, a token wider than a stream element beat by beat)."""
        steps = math.prod(self.loops[d].tile // self.loops[d].unroll for d in self.pipelined)
        reduction = self.reduction_condition(last=True, points=False)
        for r in range(len(self.op.results)):
            stream = self.node.outputs[r]
            schedule = self.beats.writes.get(r) if in_pipeline else None
            if schedule is None:
                step = self.step_condition(steps - 1) if in_pipeline else []
                self.guarded(code, [*step, *reduction], lambda c, stream=stream, r=r: c.line(
                    self.writes.write(stream, f"out{r}")))
                continue
            if schedule.behind:
                self.write_behind(code, r, schedule, [*self.step_condition(steps - 1), *reduction])
                continue
            for step, beat in self.beat_moves(schedule):
                self.guarded(code, [*step, *reduction], lambda c, stream=stream, r=r, beat=beat: c.line(
                    self.writes.write_beat(stream, f"out{r}", beat)))

    def write_behind(self, code: Code, r: int, schedule: BeatSchedule, last: list[str]) -> None:
        """Result ``r`` written behind: the copy of the previous result leaves in this firing's first steps
        (before this firing's copy, which its last step may make), and a finished result is copied where
        ``last`` holds."""
        stream = self.node.outputs[r]
        for step, beat in self.beat_moves(schedule):
            self.guarded(code, [f"behind{r}_pending", *step], lambda c, beat=beat: c.line(
                self.writes.write_beat(stream, f"behind{r}", beat, behind=True)))
        self.guarded(code, [f"behind{r}_pending", *self.step_condition(schedule.steps - 1)],
                     lambda c: c.line(f"behind{r}_pending = false;"))

        def copy(c: Code) -> None:
            c.line(f"behind{r} = out{r};")
            c.line(f"behind{r}_pending = true;")
        self.guarded(code, last, copy)

    def write_last_behind(self, code: Code) -> None:
        """After the loops: the last result written behind leaves (no next firing moves it)."""
        for r in self.behind:
            stream = self.node.outputs[r]
            beats = self.graph.streams[stream].type.beats(self.max_bits)
            code.open(f"if (behind{r}_pending)")
            code.loop(f"b{r}", beats, pragma="pipeline II=1")
            code.line(self.writes.write_beat(stream, f"behind{r}", f"b{r}"))
            code.close()
            code.close()

    def point_loops(self, code: Code, pipeline_ii: int, used: set[str], head: list[Callable[[Code], None]],
                    tail: Callable[[Code], None] | None, across: bool) -> None:
        """Pipelined point loops (point order), the innermost with the pipeline pragma (and the accumulators'
        recurrence distance), then the lanes; each body value is computed at the shallowest lane loop whose
        counters it depends on (lane-invariant math once per step, not once per lane). ``head`` and ``tail``
        run at the top and the bottom of the pipeline's body; ``across``: the pipeline runs on across the
        innermost reduction tile loop."""
        opened = 0
        distance = self.distance
        if distance is None and across:
            distance = self.tile_distance * math.prod(self.loops[d].tile // self.loops[d].unroll
                                                      for d in self.pipelined)
        for k, d in enumerate(self.pipelined):
            lt = self.loops[d]
            innermost = k == len(self.pipelined) - 1
            code.loop(self.point_counter(d), lt.tile, lt.unroll,
                      f"pipeline II={pipeline_ii}" if innermost else None)
            if innermost and self.use_acc and distance is not None:
                # The same accumulator element comes back `distance` steps later (recurrence_distance, or the
                # next firing of its output tile): stated so the scheduler needs no conservative guess; the II
                # above honours it.
                for r in range(len(self.op.results)):
                    code.pragma(f"dependence variable=acc{r} type=inter direction=RAW dependent=true "
                                f"distance={distance}")
            opened += 1
        for emit in head:
            emit(code)
        if self.tree:
            used = self.used_values([op.operands[1 - op.operands.index(self.op.body.args[self.n_in + r][0])]
                                     for r, op in enumerate(self.tree)])
            parallel = [d for d in self.lanes if not self.loops[d].reduction]
            reducing = [d for d in self.lanes if self.loops[d].reduction]
            for r, value in enumerate(self.op.results):
                code.line(f"{c_type(value.type.dtype)} part{r}[{self.reduction_lanes}]"
                          f"[{math.prod(self.loops[d].unroll for d in parallel)}];"
                          "  // each output lane's reduction lane values")
                code.pragma(f"array_partition variable=part{r} type=complete dim=0")
        levels = self.value_levels(used)
        self.body(code, used, levels, 0)
        lanes_opened = self.open_lanes(code, self.lanes, lambda level: self.body(code, used, levels, level))
        if self.tree:
            names = self.value_names(used)
            for r, op in enumerate(self.tree):
                value = op.operands[1 - op.operands.index(self.op.body.args[self.n_in + r][0])]
                code.line(f"part{r}[{self.lane_index(reducing)}][{self.lane_index(parallel)}] = {names[value]};")
            for _ in range(lanes_opened):
                code.close()
            # The output lanes again: each sums its reduction lanes by a tree and folds the sum in once.
            lanes_opened = self.open_lanes(code, parallel, lambda level: None)
            self.fold_tree(code, self.lane_index(parallel))
        for _ in range(lanes_opened):
            code.close()
        if tail is not None:
            tail(code)
        for _ in range(opened):
            code.close()

    def open_lanes(self, code: Code, lanes: list[int], emit: Callable[[int], None]) -> int:
        """The unrolled lane loops of ``lanes`` (their point indices declared), ``emit(level)`` inside each."""
        for level, d in enumerate(lanes, start=1):
            lt = self.loops[d]
            full = lt.unroll == lt.tile
            code.loop(f"i{d}" if full else f"u{d}", lt.unroll, pragma="unroll")
            if not full:
                code.line(f"const int i{d} = p{d} + u{d};")
            emit(level)
        return len(lanes)

    def lane_index(self, lanes: list[int]) -> str:
        """Flat index of the current lane among the unrolled loops ``lanes``."""
        return flat_index([f"i{d}" if self.loops[d].unroll == self.loops[d].tile else f"u{d}" for d in lanes],
                          [self.loops[d].unroll for d in lanes])

    def fold_tree(self, code: Code, lane: str) -> None:
        """The reduction lanes' values of output lane ``lane`` summed by a balanced tree, folded into each
        result's element once."""
        body = self.op.body
        types = dict(body.args)
        assert self.tree is not None
        for r, op in enumerate(self.tree):
            acc = body.args[self.n_in + r][0]
            value = op.operands[1 - op.operands.index(acc)]
            ctype = c_type(op.dtype)
            level = [f"part{r}[{k}][{lane}]" for k in range(self.reduction_lanes)]
            depth = 0
            while len(level) > 1:
                nxt = []
                for k in range(0, len(level) - 1, 2):
                    name = f"tree{r}_{depth}_{k // 2}"
                    pair = self.scalar(op, {acc: level[k], value: level[k + 1]}, types)
                    code.line(f"const {ctype} {name} = {pair};")
                    nxt.append(name)
                level = nxt + ([level[-1]] if len(level) % 2 else [])
                depth += 1
            code.line(f"const {ctype} acc{r}_prev = {self.result_read(r)};")
            folded = self.scalar(op, {acc: f"acc{r}_prev", value: level[0]}, types)
            code.line(f"const {ctype} acc{r}_next = {folded};")
            index = self.operand_index(self.n_in + r)
            if self.use_acc:
                code.line(f"{self.acc(r)}[{index}] = acc{r}_next;")
            code.line(f"out{r}.data[{index}] = acc{r}_next;")

    def used_values(self, roots: list[str] | None = None) -> set[str]:
        """Body values the yields (or ``roots``) depend on (only these are emitted: no dead C++)."""
        return used_values(self.op.body, roots)

    def value_levels(self, used: set[str]) -> dict[str, int]:
        """The lane loop (1-based position in ``self.lanes``; 0: before the lanes) each used body value belongs
        in (``analysis.resources.value_lane_levels``, which the resource estimate charges)."""
        levels = value_lane_levels(self.op, self.loops, self.node.point_order)
        return {v: n for v, n in levels.items() if v in used}

    def body(self, code: Code, used: set[str], levels: dict[str, int], level: int) -> None:
        """The body values of lane level ``level``; at the innermost level also the results' updates."""
        body = self.op.body
        types = dict(body.args) | {op.result: op.dtype for op in body.ops}  # operands may sit at outer levels
        names = self.value_names(used)
        for j, (arg, dtype) in enumerate(body.args):
            if arg not in used or levels[arg] != level:
                continue
            if j < self.n_in:
                source = f"in{j}.data[{self.operand_index(j)}]"
            else:
                source = self.result_read(j - self.n_in)
            code.line(f"const {c_type(dtype)} {names[arg]} = {source};")
        for op in body.ops:
            if op.result not in used or levels[op.result] != level:
                continue
            code.line(f"const {c_type(op.dtype)} {names[op.result]} = {self.scalar(op, names, types)};")
        if level != len(self.lanes) or self.tree:
            return
        for r, y in enumerate(body.yields):
            index = self.operand_index(self.n_in + r)
            if self.use_acc:
                code.line(f"{self.acc(r)}[{index}] = {names[y]};")
            code.line(f"out{r}.data[{index}] = {names[y]};")

    def result_read(self, r: int) -> str:
        """Result ``r``'s current element: its init value at the element's first update, else the stored one."""
        index = self.operand_index(self.n_in + r)
        stored = f"{self.acc(r)}[{index}]" if self.use_acc else f"out{r}.data[{index}]"
        init = self.init_value(r)
        if init is None:
            return stored
        first = self.reduction_condition(last=False, points=True)
        return f"({' && '.join(first)}) ? {init} : {stored}" if first else init

    def value_names(self, used: set[str]) -> dict[str, str]:
        body = self.op.body
        names = {arg: f"a{j}" for j, (arg, _) in enumerate(body.args) if arg in used}
        taken = {f"a{j}" for j in range(len(body.args))}  # a result may carry an argument's IR name
        for op in body.ops:
            if op.result not in used:
                continue
            ident = c_identifier(op.result)
            while ident in taken:
                ident += "_"
            taken.add(ident)
            names[op.result] = ident
        return names

    def scalar(self, op: ScalarOp, names: dict[str, str], types: dict[str, str]) -> str:
        """C++ expression of one scalar op of the body."""
        if op.name == "linalg.index":
            d = int(op.attr("dim"))  # type: ignore[call-overload]
            t = self.tile_counter(d)
            tile = self.loops[d].tile
            parts = ([f"{tile} * {t}" if tile > 1 else t] if t is not None else []) + \
                    ([self.point(d)] if tile > 1 else [])
            return " + ".join(parts) or "0"
        expression = scalar_expression(op, [names[o] for o in op.operands], types, self.helpers,
                                       self.constant(op.operands[1]) if op.name == "math.fpowi" else None)
        if expression is None:
            raise UnsupportedOpError(op.name, op.name.split(".")[0], f"no C++ translation (kernel {self.node.name})",
                                     self.op.location)
        return expression

    def constant(self, value: str) -> int | None:
        """The integer a body value is, when an ``arith.constant`` defines it."""
        for op in self.op.body.ops:
            if op.result == value and op.name == "arith.constant":
                return int(op.attr("value"))  # type: ignore[call-overload]
        return None

def scalar_expression(op: ScalarOp, x: list[str], types: dict[str, str], helpers: set[str],
                      exponent: int | None = None) -> str | None:
    """C++ expression of one scalar op (other than ``linalg.index``) on the C++ operands ``x``; ``types`` maps
    operand names to IR types, ``helpers`` collects the helper functions used; None for an op without one."""
    if op.name == "math.fpowi":  # unrolled squarings: the bit length of a constant ``exponent``, else every bit
        helpers.add("fpowi")
        return f"fpowi<{fpowi_steps(exponent)}>({', '.join(x)})"
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
    if name == "arith.trunci" and op.dtype == "i1":  # keeps the low bit (a bool cast would test nonzero)
        return f"((({x[0]}) & 1) != 0)"
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
