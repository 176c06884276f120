"""HLS C++ of a dataflow graph for Vitis HLS: one top function, one dataflow process per node.

The generated code implements exactly the stream semantics of ``interp.stream_exec`` (the executable reference of
every node kind). Processes read and write their tokens at the firings of the timing model
(``analysis.timing_model``), so the LP's depths for that model are the C++ streams' depths; where the model takes
a firing's input tokens at once, a C++ process takes them one stream at a time, which can let it run on a FIFO a
few tokens shallower than the model's minimum. Two files per accelerator (a fused group):

``KERNEL_tokens.h``
    One ``struct tok_<dtype>x<N> { T data[N]; }`` per token shape: a tile in row-major order (reassociations
    keep the flat order, so a token struct is shared by every stream with the same dtype and element count),
    and the helpers the processes use: tile <-> packed 512-bit words (``streamtensor.packing``) and the scalar
    ops without a C++ operator.
``KERNEL.cpp``
    One ``static void`` function per node, named after it:

    - kernel: the tile loop nest in ``tile_order``, one firing per iteration (``KernelNode``): an input token is
      read at the top of the innermost tile loop its indexing map uses and held by the loops inside; an output
      tile starts (init token or constant fill) when every reduction counter is 0 and is written when every
      reduction counter is at its last trip; with a reduction loop outside parallel loops, one accumulator per
      pending output tile. Inside a firing, the point loops that are not fully unrolled run in ``point_order``,
      the innermost ``#pragma HLS pipeline II=<pipeline_ii>`` (the timing model's II), with the unrolled lanes
      inside (``#pragma HLS unroll``); the body is the Linalg scalar body, one C++ statement per op.
      Accumulators are arrays partitioned for the lanes, with ``bind_storage`` from the memory allocation.
    - itensor_converter: the ping-pong buffer of ``converter_buffer``; phase ``p`` fills window ``p % 2`` with
      shared iteration ``p`` while draining window ``(p - 1) % 2``, one token in and one out per step (one
      window, ``buf[1]``, when there is a single shared iteration: it is filled in phase 0 and drained in 1).
    - fork / reassociate / chunk / concat: per token, with the tile offsets as loop arithmetic.
    - DMA: walks its stream's loop nest; token ``(n_0, ...)`` is the tile at word ``sum n_l * word_strides[l]``
      of its argument (``PackedLayout``), read or written as whole 512-bit words.

    The top function ``extern "C" void KERNEL(word512* ARG, ...)`` has one m_axi bundle per argument
    (``gmem<i>``, in ``HbmPlan`` order), ``s_axilite`` control, ``#pragma HLS dataflow``, one
    ``hls::stream<T, DEPTH>`` per stream (``Stream.depth``) and the processes in topological order through
    ``HLS_SIM_PROCESS`` (threads in the bounded C simulation, plain calls under ``__SYNTHESIS__``).

Directives are written ``HLS_PRAGMA(pipeline II=1)``: ``_Pragma("HLS pipeline II=1")`` for Vitis HLS and nothing
for g++, whose ``-Wall`` rejects unknown pragmas (and whose C++ front end ignores ``#pragma GCC diagnostic`` for
them), so the sources compile warning-free with ``-Wall -Wextra -Werror``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from streamtensor._version import GENERATOR
from streamtensor.analysis.memory import FIFO_DEFAULT_DEPTH, onchip_buffers
from streamtensor.analysis.resources import allocate
from streamtensor.analysis.timing_model import kernel_timing, node_process
from streamtensor.analysis.timing_sim import SRL_FIFO_MAX_BITS
from streamtensor.codegen.vitis.hbm import HbmPlan, c_identifier
from streamtensor.errors import StreamTensorError, UnsupportedOpError
from streamtensor.ir.affine import AffineBinary, AffineExpr
from streamtensor.ir.dataflow import (
    ChunkNode,
    ConcatNode,
    ConverterNode,
    DataflowGraph,
    DmaNode,
    ForkNode,
    KernelNode,
    Node,
    ReassociateNode,
    input_loops,
    reads_init,
)
from streamtensor.ir.itensor import ITensorType
from streamtensor.ir.layout import concat_regions
from streamtensor.ir.linalg import ScalarOp

C_TYPES: dict[str, str] = {"f64": "double", "f32": "float", "i64": "int64_t", "index": "int64_t", "i32": "int32_t",
                           "i16": "int16_t", "i8": "int8_t", "i1": "bool"}

# Scalar ops with a C++ operator or <cmath> function (float overloads of std:: keep f32 math in f32).
_BINARY_OPERATORS = {"arith.addf": "+", "arith.subf": "-", "arith.mulf": "*", "arith.divf": "/", "arith.addi": "+",
                     "arith.subi": "-", "arith.muli": "*", "arith.divsi": "/", "arith.remsi": "%"}
_BITWISE = {"arith.andi": ("&", "&&"), "arith.ori": ("|", "||"), "arith.xori": ("^", "!=")}
_CALLS = {"math.exp": "std::exp", "math.log": "std::log", "math.sqrt": "std::sqrt", "math.tanh": "std::tanh",
          "math.sin": "std::sin", "math.cos": "std::cos", "math.erf": "std::erf", "math.absf": "std::fabs",
          "math.powf": "std::pow", "arith.remf": "std::fmod", "arith.maxnumf": "std::fmax",
          "arith.minnumf": "std::fmin", "arith.maxsi": "std::max", "arith.minsi": "std::min",
          "arith.maximumf": "maximumf", "arith.minimumf": "minimumf", "math.fpowi": "fpowi"}
_CASTS = {"arith.sitofp", "arith.fptosi", "arith.extf", "arith.truncf", "arith.extsi", "arith.trunci",
          "arith.index_cast"}
_UNSIGNED_CASTS = {"arith.uitofp", "arith.extui"}
_COMPARE = {"eq": "==", "ne": "!=", "slt": "<", "sle": "<=", "sgt": ">", "sge": ">=", "ult": "<", "ule": "<=",
            "ugt": ">", "uge": ">=", "oeq": "==", "ogt": ">", "oge": ">=", "olt": "<", "ole": "<="}

# Helpers emitted into the tokens header only when a body uses them.
_SCALAR_HELPERS = {
    "maximumf": """// arith.maximumf: NaN when either operand is NaN (std::fmax would drop it).
template <typename T>
T maximumf(T a, T b) {
  return (a != a || b != b) ? std::numeric_limits<T>::quiet_NaN() : (a > b ? a : b);
}
""",
    "minimumf": """// arith.minimumf: NaN when either operand is NaN (std::fmin would drop it).
template <typename T>
T minimumf(T a, T b) {
  return (a != a || b != b) ? std::numeric_limits<T>::quiet_NaN() : (a < b ? a : b);
}
""",
    "fpowi": """// math.fpowi: x to an integer power by repeated squaring (the multiplies the timing model counts).
template <typename T>
T fpowi(T x, int64_t n) {
  const bool invert = n < 0;
  uint64_t e = invert ? static_cast<uint64_t>(-(n + 1)) + 1 : static_cast<uint64_t>(n);
  T result = T(1);
  for (T base = x; e != 0; e >>= 1, base *= base) {
    if (e & 1) result *= base;
  }
  return invert ? T(1) / result : result;
}
""",
}

_PRAGMA_MACRO = """\
// HLS directives: a pragma for Vitis HLS, nothing for g++ (whose -Wall rejects unknown pragmas, and whose
// C++ front end ignores `#pragma GCC diagnostic` for them).
#ifdef __SYNTHESIS__
#define HLS_PRAGMA_TEXT(text) #text
#define HLS_PRAGMA(directive) _Pragma(HLS_PRAGMA_TEXT(HLS directive))
#else
#define HLS_PRAGMA(directive)
#endif
"""

_IN_FLIGHT = """\
// Iterations in flight. A pipelined loop whose writes trail its reads by `lag` firings (lag = ceil(depth / II)
// of the timing model's process) reads firing f + lag - 1 before its write of firing f leaves: the stall
// pipeline of the hardware, and the event order the FIFO-sizing LP and the timing simulator assume. The C
// simulation reproduces it by holding a process's writes until `lag` firings later; synthesis writes directly.
#ifdef __SYNTHESIS__
#define HLS_SIM_IN_FLIGHT(lag)
#define HLS_SIM_FIRING()
#define HLS_SIM_WRITE(stream, value) stream.write(value)
#define HLS_SIM_DRAIN()
#else
namespace streamtensor {

class InFlightWrites {
 public:
  explicit InFlightWrites(int lag) : lag_(static_cast<std::size_t>(lag)) {}

  // Start of a firing, before its reads: the writes of firing f - lag leave now.
  void firing() {
    pending_.emplace_back();
    release(lag_);
  }
  template <typename T>
  void write(hls::stream<T>& s, const T& value) {
    pending_.back().emplace_back([&s, value] { s.write(value); });
  }
  // End of the process: the writes still in flight leave in order.
  void drain() { release(0); }

 private:
  void release(std::size_t keep) {
    for (; pending_.size() > keep; pending_.pop_front()) {
      for (const std::function<void()>& w : pending_.front()) w();
    }
  }

  std::size_t lag_;
  std::deque<std::vector<std::function<void()>>> pending_;  // writes of the firings in flight, oldest first
};

}  // namespace streamtensor
#define HLS_SIM_IN_FLIGHT(lag) streamtensor::InFlightWrites hls_sim_in_flight_(lag)
#define HLS_SIM_FIRING() hls_sim_in_flight_.firing()
#define HLS_SIM_WRITE(stream, value) hls_sim_in_flight_.write(stream, value)
#define HLS_SIM_DRAIN() hls_sim_in_flight_.drain()
#endif
"""

_TILE_HELPERS = """\
// Tiles <-> words of the packed external-memory layout (streamtensor.packing): element j of a
// tile of b-bit elements occupies tile bits [j*b, (j+1)*b), tile bit k is bit k % 512 of word k / 512, words
// are little-endian byte arrays, and every tile is padded with zero bits to whole words.
template <typename T>
constexpr int element_bits() {
  return std::is_same_v<T, bool> ? 1 : 8 * static_cast<int>(sizeof(T));
}

template <typename T, int N>
constexpr int tile_words() {
  return (N * element_bits<T>() + 511) / 512;
}

template <typename T, int N>
void load_tile(const streamtensor::word512* src, T (&data)[N]) {
  streamtensor::word512 words[tile_words<T, N>()];
  for (int w = 0; w < tile_words<T, N>(); ++w) {
    HLS_PRAGMA(pipeline II=1)
    words[w] = src[w];
  }
  for (int j = 0; j < N; ++j) {
    HLS_PRAGMA(unroll)
    const int bit = j * element_bits<T>();
    const uint8_t* bytes = &words[bit / 512].bytes[bit % 512 / 8];
    if constexpr (std::is_same_v<T, bool>) {
      data[j] = (*bytes >> (bit % 8)) & 1;
    } else {
      std::memcpy(&data[j], bytes, sizeof(T));
    }
  }
}

template <typename T, int N>
void store_tile(const T (&data)[N], streamtensor::word512* dst) {
  streamtensor::word512 words[tile_words<T, N>()] = {};
  for (int j = 0; j < N; ++j) {
    HLS_PRAGMA(unroll)
    const int bit = j * element_bits<T>();
    uint8_t* bytes = &words[bit / 512].bytes[bit % 512 / 8];
    if constexpr (std::is_same_v<T, bool>) {
      *bytes = static_cast<uint8_t>(*bytes | (data[j] ? 1 << (bit % 8) : 0));
    } else {
      std::memcpy(bytes, &data[j], sizeof(T));
    }
  }
  for (int w = 0; w < tile_words<T, N>(); ++w) {
    HLS_PRAGMA(pipeline II=1)
    dst[w] = words[w];
  }
}
"""


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


def stream_var(name: str) -> str:
    return f"s_{c_identifier(name)}"


# --- small C++ writer -------------------------------------------------------------------------------------------


class _Code:
    """Lines with two-space indentation; pragmas stay at the indentation of the code they annotate."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def line(self, text: str = "") -> None:
        self.lines.append(("  " * self.depth + text) if text else "")

    def pragma(self, directive: str) -> None:
        self.line(f"HLS_PRAGMA({directive})")

    def open(self, head: str) -> None:
        self.line(head + " {")
        self.depth += 1

    def close(self) -> None:
        self.depth -= 1
        self.line("}")

    def loop(self, var: str, trip: int | str, step: int = 1, pragma: str | None = None) -> None:
        inc = f"++{var}" if step == 1 else f"{var} += {step}"
        self.open(f"for (int {var} = 0; {var} < {trip}; {inc})")
        if pragma:
            self.pragma(pragma)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class _Writes:
    """A process's stream writes and firing marks: plain ``write`` when its writes follow its reads in the same
    firing (lag 1), else through ``HLS_SIM_*`` so the C simulation holds them for ``lag`` firings (tokens header).
    """

    def __init__(self, graph: DataflowGraph, node: Node) -> None:
        process = node_process(graph, node)
        self.lag = -(-process.depth // process.ii) if node.inputs and node.outputs else 1

    def declare(self, code: _Code) -> None:
        if self.lag > 1:
            code.line(f"HLS_SIM_IN_FLIGHT({self.lag});  // writes trail reads by {self.lag} firings "
                      "(pipeline depth / II)")

    def firing(self, code: _Code, condition: str | None = None) -> None:
        if self.lag > 1:
            code.line("HLS_SIM_FIRING();" if condition is None else f"if ({condition}) HLS_SIM_FIRING();")

    def write(self, stream: str, value: str) -> str:
        return f"{stream}.write({value});" if self.lag == 1 else f"HLS_SIM_WRITE({stream}, {value});"

    def drain(self, code: _Code) -> None:
        if self.lag > 1:
            code.line("HLS_SIM_DRAIN();")


def _linear(expr: AffineExpr, names: Sequence[str | None], scale: Sequence[int]) -> str:
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
        return f"({_linear(expr.lhs, names, scale)}) {op} ({_linear(expr.rhs, names, scale)})"
    raise HlsCodegenError(f"cannot render affine expression {expr}")


def _has_division(expr: AffineExpr) -> bool:
    if isinstance(expr, AffineBinary):
        return expr.op in ("floordiv", "mod") or _has_division(expr.lhs) or _has_division(expr.rhs)
    return False


def _flat(indices: Sequence[str], shape: Sequence[int]) -> str:
    """Row-major flat index of ``indices`` (C++ strings, "0" for none) in an array of ``shape``."""
    terms: list[str] = []
    for j, idx in enumerate(indices):
        stride = math.prod(shape[j + 1:])
        if idx != "0":
            terms.append(idx if stride == 1 else f"{stride} * {idx}" if idx.isidentifier() else
                         f"{stride} * ({idx})")
    return " + ".join(terms) or "0"


def _counter_loops(code: _Code, t: ITensorType, prefix: str, ii: int = 1) -> list[str | None]:
    """Open one loop per loop of ``t`` with a trip count above 1, the innermost pipelined at ``ii``; returns the
    counter name per loop (None: a one-trip loop, counter 0)."""
    names: list[str | None] = [f"{prefix}{loop}" if trip > 1 else None for loop, trip in enumerate(t.trip_counts)]
    opened = [(n, trip) for n, trip in zip(names, t.trip_counts, strict=True) if n is not None]
    for k, (name, trip) in enumerate(opened):
        code.loop(name, trip, pragma=f"pipeline II={ii}" if k == len(opened) - 1 else None)
    return names


def _close_loops(code: _Code, names: Sequence[str | None]) -> None:
    for name in names:
        if name is not None:
            code.close()


def _offsets(t: ITensorType, names: Sequence[str | None]) -> list[str]:
    """C++ tile offset of the current token along every dim of ``t``'s tensor."""
    return [_linear(r, names, t.steps) for r in t.iter_map.results]


def _decode(code: _Code, flat: str, trips: Sequence[int], names: Sequence[str], needed: set[str]) -> None:
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


# --- kernels ----------------------------------------------------------------------------------------------------


def _partitioning(shape: Sequence[int], lane_offsets: np.ndarray) -> str | None:
    """Cyclic partitioning of a flat array when the lanes of one pipelined step hit distinct banks, else
    complete partitioning (registers)."""
    lanes = len(lane_offsets)
    if lanes == 1:
        return None
    if len(set((lane_offsets % lanes).tolist())) == lanes:
        return f"type=cyclic factor={lanes}"
    return "type=complete" if math.prod(shape) > 1 else None


class _KernelWriter:
    """C++ of one ``KernelNode`` (see the module docstring)."""

    def __init__(self, graph: DataflowGraph, node: KernelNode, storage: dict[str, str]) -> None:
        self.graph = graph
        self.node = node
        self.op = node.op
        self.loops = node.loops
        self.n_in = len(node.op.inputs)
        self.storage = storage
        # Reduction loops of more than one trip carry accumulators from firing to firing; the parallel loops
        # inside the outermost of them index the pending output tiles (KernelNode).
        self.reductions = [d for d in node.tile_order if node.loops[d].reduction and node.loops[d].trip > 1]
        self.accumulate = bool(self.reductions)
        outer = node.tile_order.index(self.reductions[0]) if self.reductions else len(node.tile_order)
        self.pending_loops = [d for d in node.tile_order[outer + 1:] if not node.loops[d].reduction]
        self.pending = node.pending_tiles
        self.writes = _Writes(graph, node)
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
        return _flat(["0" if d is None else self.point(d) for d in dims], shape)

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
        code = _Code()
        ports = [f"hls::stream<{token_struct(self.graph.streams[s].type)}>& {stream_var(s)}"
                 for s in node.inputs + node.outputs]
        tiles = ", ".join(f"d{d} {lt.trip}x{lt.tile}" + (f" unroll {lt.unroll}" if lt.unroll > 1 else "")
                          + (" reduction" if lt.reduction else "") for d, lt in enumerate(self.loops))
        timing = kernel_timing(op, self.loops, node.tile_order, node.point_order, node.min_pipeline_ii)
        code.line(f"// {node.name}: linalg.generic @{op.name}" + (f" ({op.location})" if op.location else ""))
        code.line(f"//   loops {tiles}; tile order {node.tile_order}, point order {node.point_order}; "
                  f"{timing.firings} firings of {timing.ii} cycles"
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
                code.loop(name, self.loops[d].trip)
                opened.append(name)
        pipelined = [d for d in node.point_order if self.loops[d].tile // self.loops[d].unroll > 1]
        if not pipelined and opened:
            code.pragma(f"pipeline II={timing.pipeline_ii}")
        if self.pending > 1:
            inner = [d for d in self.pending_loops if self.loops[d].trip > 1]
            index = _flat([f"t{d}" for d in inner], [self.loops[d].trip for d in inner])
            code.line(f"const int tile = {index};  // the pending output tile of this firing")
        self.init_results(code)
        self.point_loops(code, pipelined, timing.pipeline_ii, used)
        self.write_results(code)
        for _ in opened:
            code.close()
        self.writes.drain(code)
        self.write_replays(code)
        code.close()
        return code.text()

    def write_replays(self, code: _Code) -> None:
        """Replay ports: every pending tile (the whole result, in completion order) drained once more."""
        for port, r in enumerate(self.node.replay_results, start=len(self.op.results)):
            code.line(f"// replay of result {r}: the accumulators hold all of it")
            code.loop("tile", self.pending)
            code.line(f"{self.result_token(r)} t;")
            self.copy(code, math.prod(self.result_shape(r)), f"t.data[k] = {self.acc(r)}[k];")
            code.line(f"{stream_var(self.node.outputs[port])}.write(t);")
            code.close()

    def read_input(self, code: _Code, j: int, used: set[str]) -> None:
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

    def declare_accumulator(self, code: _Code, r: int, dtype: str) -> None:
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
            impl = self.storage.get(f"{self.node.name}.acc{r}")
            if impl is not None:
                code.pragma(f"bind_storage variable=acc{r} type=ram_2p impl={impl}")

    def condition(self, last: bool) -> str | None:
        """First (or last) firing of the current output tile: every reduction loop at 0 (or its last trip)."""
        terms = [f"t{d} == {self.loops[d].trip - 1 if last else 0}" for d in self.reductions]
        return " && ".join(terms) or None

    def result_token(self, r: int) -> str:
        return token_struct(self.graph.streams[self.node.outputs[r]].type)

    def init_results(self, code: _Code) -> None:
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
    def copy(code: _Code, size: int, statement: str) -> None:
        code.loop("k", size, pragma="pipeline II=1")
        code.line(statement)
        code.close()

    def write_results(self, code: _Code) -> None:
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

    def point_loops(self, code: _Code, pipelined: list[int], pipeline_ii: int, used: set[str]) -> None:
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

    def body(self, code: _Code, used: set[str]) -> None:
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
        x = [names[o] for o in op.operands]
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
            if function in _SCALAR_HELPERS:
                self.helpers.add(function)
            return f"{function}({', '.join(x)})"
        if name in _CASTS:
            return f"static_cast<{ctype}>({x[0]})"
        if name in _UNSIGNED_CASTS:
            source = types[op.operands[0]]
            unsigned = x[0] if source == "i1" else f"static_cast<u{c_type(source)}>({x[0]})"
            return f"static_cast<{ctype}>({unsigned})"
        if name in ("arith.cmpf", "arith.cmpi"):
            return self.compare(str(op.attr("predicate")), x, types[op.operands[0]])
        if name == "arith.select":
            return f"{x[0]} ? {x[1]} : {x[2]}"
        if name == "arith.constant":
            return _literal(op.attr("value"), op.dtype)  # type: ignore[arg-type]
        if name == "linalg.index":
            d = int(op.attr("dim"))  # type: ignore[call-overload]
            t = self.tile_counter(d)
            tile = self.loops[d].tile
            parts = ([f"{tile} * {t}" if tile > 1 else t] if t is not None else []) + \
                    ([self.point(d)] if tile > 1 else [])
            return " + ".join(parts) or "0"
        raise UnsupportedOpError(name, name.split(".")[0], f"no C++ translation (kernel {self.node.name})",
                                 self.op.location)

    @staticmethod
    def compare(predicate: str, x: list[str], dtype: str) -> str:
        if predicate == "one":
            return f"({x[0]} < {x[1]} || {x[0]} > {x[1]})"
        if predicate == "ueq":
            return f"!({x[0]} < {x[1]} || {x[0]} > {x[1]})"
        if predicate == "une":
            return f"!({x[0]} == {x[1]})"
        if predicate not in _COMPARE:
            raise UnsupportedOpError("arith.cmp", "arith", f"predicate {predicate} has no C++ translation")
        a, b = x
        if predicate.startswith("u") and dtype != "i1":
            a, b = (f"static_cast<u{c_type(dtype)}>({v})" for v in x)
        return f"{a} {_COMPARE[predicate]} {b}"


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


# --- data movement ----------------------------------------------------------------------------------------------


def _signature(graph: DataflowGraph, node: Node, extra: Sequence[str] = ()) -> str:
    ports = [f"hls::stream<{token_struct(graph.streams[s].type)}>& {stream_var(s)}" for s in node.inputs + node.outputs]
    return f"static void {c_identifier(node.name)}({', '.join([*extra, *ports])})"


def _fork(graph: DataflowGraph, node: ForkNode) -> str:
    t = graph.streams[node.inputs[0]].type
    code = _Code()
    code.line(f"// {node.name}: itensor_fork, every token to {len(node.outputs)} consumers")
    code.open(_signature(graph, node))
    writes = _Writes(graph, node)
    writes.declare(code)
    _token_loop(code, t.num_tokens)
    writes.firing(code)
    code.line(f"const {token_struct(t)} t = {stream_var(node.inputs[0])}.read();")
    for s in node.outputs:
        code.line(writes.write(stream_var(s), "t"))
    _close_loops(code, ["k"] if t.num_tokens > 1 else [])
    writes.drain(code)
    code.close()
    return code.text()


def _token_loop(code: _Code, tokens: int) -> None:
    """One pipelined step per token (none for a single token)."""
    if tokens > 1:
        code.loop("k", tokens, pragma="pipeline II=1")


def _reassociate(graph: DataflowGraph, node: ReassociateNode) -> str:
    src, res = graph.streams[node.inputs[0]].type, graph.streams[node.outputs[0]].type
    code = _Code()
    code.line(f"// {node.name}: itensor_reassociate, tile {'x'.join(map(str, src.element_shape)) or 'scalar'} -> "
              f"{'x'.join(map(str, res.element_shape)) or 'scalar'} (same row-major data)")
    code.open(_signature(graph, node))
    writes = _Writes(graph, node)
    writes.declare(code)
    _token_loop(code, src.num_tokens)
    writes.firing(code)
    code.line(writes.write(stream_var(node.outputs[0]), f"{stream_var(node.inputs[0])}.read()"))
    _close_loops(code, ["k"] if src.num_tokens > 1 else [])
    writes.drain(code)
    code.close()
    return code.text()


def _region_test(offsets: list[str], lo: Sequence[int], hi: Sequence[int], full: Sequence[int]) -> str:
    """Is the tile starting at ``offsets`` inside [lo, hi)? Only dims the region cuts are tested."""
    terms = []
    for j, (o, a, b) in enumerate(zip(offsets, lo, hi, strict=True)):
        if a > 0:
            terms.append(f"{o} >= {a}")
        if b < full[j]:
            terms.append(f"{o} < {b}")
    return " && ".join(terms) or "true"


def _chunk(graph: DataflowGraph, node: ChunkNode) -> str:
    src = graph.streams[node.inputs[0]].type
    code = _Code()
    hi = [o + s for o, s in zip(node.offsets, node.sizes, strict=True)]
    code.line(f"// {node.name}: itensor_chunk, forwards the tiles inside offsets {list(node.offsets)} sizes "
              f"{list(node.sizes)}")
    code.open(_signature(graph, node))
    writes = _Writes(graph, node)
    writes.declare(code)
    names = _counter_loops(code, src, "n")
    writes.firing(code)
    code.line(f"const {token_struct(src)} t = {stream_var(node.inputs[0])}.read();")
    test = _region_test(_offsets(src, names), node.offsets, hi, src.tensor_shape)
    code.line(f"if ({test}) {writes.write(stream_var(node.outputs[0]), 't')}")
    _close_loops(code, names)
    writes.drain(code)
    code.close()
    return code.text()


def _concat(graph: DataflowGraph, node: ConcatNode) -> str:
    res = graph.streams[node.outputs[0]].type
    ins = [graph.streams[s].type for s in node.inputs]
    regions = concat_regions([t.tensor_shape for t in ins], node.dim)
    code = _Code()
    code.line(f"// {node.name}: itensor_concat along dim {node.dim}; each token from the input whose region "
              "holds it")
    code.open(_signature(graph, node))
    writes = _Writes(graph, node)
    writes.declare(code)
    names = _counter_loops(code, res, "n")
    writes.firing(code)
    offset = _offsets(res, names)[node.dim]
    out = stream_var(node.outputs[0])
    last = len(node.inputs) - 1
    for i, (s, (lo, size)) in enumerate(zip(node.inputs, regions, strict=True)):
        read = writes.write(out, f"{stream_var(s)}.read()")
        test = f"if ({offset} < {lo[node.dim] + size[node.dim]}) "
        code.line(read if last == 0 else ("" if i == 0 else "else ") + (test if i < last else "") + read)
    _close_loops(code, names)
    writes.drain(code)
    code.close()
    return code.text()


def _converter(graph: DataflowGraph, node: ConverterNode, storage: dict[str, str]) -> str:
    src, res = graph.streams[node.inputs[0]].type, graph.streams[node.outputs[0]].type
    buf = node.buffer
    m = buf.shared_loops
    shape = list(buf.shape) or [1]  # a rank-0 tensor is a one-element buffer
    s = math.prod(src.trip_counts[:m])
    a, b = src.num_tokens // s, res.num_tokens // s
    code = _Code()
    code.line(f"// {node.name}: itensor_converter ({node.reason or 'layouts differ'}); ping-pong buffer "
              f"{buf.banks} x {'x'.join(map(str, buf.shape)) or 'scalar'}, {m} shared loop(s), {s} window(s)")
    code.line(f"//   source {src}")
    code.line(f"//   result {res}")
    code.open(_signature(graph, node))
    writes = _Writes(graph, node)
    writes.declare(code)
    code.line(f"{c_type(buf.dtype)} buf[{buf.banks}]{''.join(f'[{n}]' for n in shape)};")
    code.pragma("array_partition variable=buf type=complete dim=1")
    for j, n in enumerate(shape):
        # One whole tile per step on both sides: lcm of the two element sizes banks along each dim.
        lanes = math.lcm(src.element_shape[j], res.element_shape[j]) if src.rank else 1
        if lanes > 1:
            kind = f"type=cyclic factor={lanes}" if lanes < n else "type=complete"
            code.pragma(f"array_partition variable=buf {kind} dim={j + 2}")
    impl = storage.get(f"{node.name}.pingpong")
    if impl is not None:
        code.pragma(f"bind_storage variable=buf type=ram_2p impl={impl}")
    code.line(f"// Phase p fills window p % {buf.banks} with shared iteration p (p < {s}) while it drains window "
              f"(p - 1) % {buf.banks}:")
    code.line("// one source token in and one result token out per step.")
    code.loop("p", s + 1)
    longest = max(a, b)
    length = str(a)
    if a != b:
        length = "length"
        middle = f" : p == {s} ? {b}" if s > 1 else ""
        code.line(f"const int length = p == 0 ? {a}{middle} : {b if s == 1 else longest};")
    code.loop("k", length, pragma="pipeline II=1")
    writes.firing(code)
    # Dims a shared loop walks exactly are one element wide in the window: their relative offset is 0.
    exact = {j for loop in range(m) for j in range(src.rank) if src.iter_map.result_dim(j) == loop}
    for fill, t, count in ((True, src, a), (False, res, b)):
        cond = [f"p < {s}" if fill else "p > 0", *([f"k < {count}"] if count < longest else [])]
        code.open(f"if ({' && '.join(cond)})")
        names = [f"q{loop}" for loop in range(m)] + [f"c{loop}" for loop in range(m, t.num_loops)]
        offsets = _offsets(t, [n if trip > 1 else None for n, trip in zip(names, t.trip_counts, strict=True)])
        relative = ["0" if j in exact else offsets[j] for j in range(t.rank)] or ["0"]
        needed = {n for n in names if any(re.search(rf"\b{n}\b", r) for r in relative)}
        _decode(code, "p" if fill else "(p - 1)", t.trip_counts[:m], names[:m], needed)
        _decode(code, "k", t.trip_counts[m:], names[m:], needed)
        element = list(t.element_shape) or [1]
        half = f"buf[p % {buf.banks}]" if fill else f"buf[(p - 1) % {buf.banks}]"
        if fill:
            code.line(f"const {token_struct(t)} t = {stream_var(node.inputs[0])}.read();")
        else:
            code.line(f"{token_struct(t)} t;")
        e = [f"e{j}" if n > 1 else "0" for j, n in enumerate(element)]
        for j, n in enumerate(element):
            if n > 1:
                code.loop(f"e{j}", n, pragma="unroll")
        at = "".join(f"[{_plus(r, ej)}]" for r, ej in zip(relative, e, strict=True))
        token = f"t.data[{_flat(e, element)}]"
        code.line(f"{half}{at} = {token};" if fill else f"{token} = {half}{at};")
        for n in element:
            if n > 1:
                code.close()
        if not fill:
            code.line(writes.write(stream_var(node.outputs[0]), "t"))
        code.close()
    code.close()
    code.close()
    writes.drain(code)
    code.close()
    return code.text()


def _plus(a: str, b: str) -> str:
    if a == "0":
        return b
    return a if b == "0" else f"{a} + {b}"


def _dma(graph: DataflowGraph, node: DmaNode, plan: HbmPlan) -> str:
    (argument,) = [a for a in plan.arguments if a.dma == node.name]
    layout = argument.layout
    read = node.direction == "read"
    stream = node.outputs[0] if read else node.inputs[0]
    t = graph.streams[stream].type
    code = _Code()
    code.line(f"// {node.name}: {node.kind} of %{node.tensor.name} ({node.role}) {'->' if read else '<-'} {stream}; "
              f"packed layout: {layout.num_tiles} tile(s) of {layout.words_per_tile} word(s), word strides "
              f"{list(layout.word_strides)}")
    pointer = f"{'const ' if read else ''}streamtensor::word512* {argument.arg}"
    code.open(_signature(graph, node, [pointer]))
    names = _counter_loops(code, t, "n", layout.words_per_tile)
    address = " + ".join(f"{n}" if w == 1 else f"{w} * {n}" for n, w in zip(names, layout.word_strides, strict=True)
                         if n is not None and w) or "0"
    at = argument.arg if address == "0" else f"&{argument.arg}[{address}]"
    if read:
        code.line(f"{token_struct(t)} t;")
        code.line(f"load_tile({at}, t.data);")
        code.line(f"{stream_var(stream)}.write(t);")
    else:
        code.line(f"store_tile({stream_var(stream)}.read().data, {at});")
    _close_loops(code, names)
    code.close()
    return code.text()


# --- the accelerator --------------------------------------------------------------------------------------------


def _storage_kinds(graph: DataflowGraph) -> dict[str, str]:
    """Memory allocation (LUTRAM / BRAM / URAM) of every on-chip buffer, by buffer name."""
    return {b.name: allocate(b).kind for b in onchip_buffers(graph)}


def _fifo_impl(graph: DataflowGraph, stream: str, storage: dict[str, str]) -> str:
    s = graph.streams[stream]
    depth = s.depth if s.depth is not None else FIFO_DEFAULT_DEPTH
    if s.type.token_bits * depth <= SRL_FIFO_MAX_BITS:
        return "srl"  # a shift register, as the timing model assumes for FIFOs of at most 1024 bits
    return storage[f"{stream}.fifo"]


def _process_names(graph: DataflowGraph, reserved: set[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    for n in graph.nodes:
        ident = c_identifier(n)
        if ident in reserved or ident in names.values() or ident.startswith(("s_", "tok_")):
            raise HlsCodegenError(f"node {n} maps to the C identifier {ident}, which is already taken")
        names[n] = ident
    return names


def generate_hls(graph: DataflowGraph, kernel_name: str, plan: HbmPlan) -> dict[str, str]:
    """The HLS C++ of ``graph`` as one accelerator named ``kernel_name`` (module docstring): file name under
    ``src/`` -> text, as ``write_project`` takes its ``sources``."""
    if len(graph.groups) > 1:
        raise HlsCodegenError(f"dataflow graph @{graph.name} has {len(graph.groups)} fusion groups; the Vitis "
                              "backend builds one accelerator per design (one group)")
    for node in graph.nodes.values():
        if isinstance(node, KernelNode) and node.local_operands:
            raise HlsCodegenError(f"kernel {node.name} holds operands {sorted(node.local_operands)} in the kernel; "
                                  "the code generator streams every operand")
    reserved = {kernel_name, "load_tile", "store_tile", "element_bits", "tile_words",
                *_SCALAR_HELPERS, *(a.arg for a in plan.arguments)}
    process = _process_names(graph, reserved)
    storage = _storage_kinds(graph)
    order = graph.topological_order()
    helpers: set[str] = set()
    functions: list[str] = []
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, KernelNode):
            writer = _KernelWriter(graph, node, storage)
            functions.append(writer.write())
            helpers |= writer.helpers
        elif isinstance(node, ConverterNode):
            functions.append(_converter(graph, node, storage))
        elif isinstance(node, ForkNode):
            functions.append(_fork(graph, node))
        elif isinstance(node, ReassociateNode):
            functions.append(_reassociate(graph, node))
        elif isinstance(node, ChunkNode):
            functions.append(_chunk(graph, node))
        elif isinstance(node, ConcatNode):
            functions.append(_concat(graph, node))
        elif isinstance(node, DmaNode):
            functions.append(_dma(graph, node, plan))
        else:
            raise HlsCodegenError(f"no C++ for {node.kind} {name}")
    tokens_header = f"{kernel_name}_tokens.h"
    source = _Code()
    source.line(f"// Generated by {GENERATOR}: HLS C++ of kernel {kernel_name} (dataflow graph @{graph.name}, "
                f"{len(graph.nodes)} processes, {len(graph.streams)} streams).")
    source.line(f'#include "{kernel_name}.h"')
    source.line(f'#include "{tokens_header}"')
    source.line()
    for f in functions:
        source.lines.extend(f.rstrip("\n").split("\n"))
        source.line()
    _top(source, graph, kernel_name, plan, process, storage, order)
    in_flight = "HLS_SIM_IN_FLIGHT(" in source.text()
    return {f"{kernel_name}.cpp": source.text(),
            tokens_header: _tokens_header(graph, kernel_name, helpers, in_flight)}


def _top(code: _Code, graph: DataflowGraph, kernel_name: str, plan: HbmPlan, process: dict[str, str],
         storage: dict[str, str], order: list[str]) -> None:
    params = ", ".join(f"streamtensor::word512* {a.arg}" for a in plan.arguments)
    code.line("// The accelerator: one m_axi bundle per external-memory argument, FIFOs with their sized depths,")
    code.line("// one dataflow process per node in topological order.")
    code.open(f'extern "C" void {kernel_name}({params})')
    for i, a in enumerate(plan.arguments):
        code.pragma(f"interface m_axi port={a.arg} bundle=gmem{i} offset=slave "
                  f"depth={a.layout.total_words}")
    code.pragma("interface s_axilite port=return bundle=control")
    code.pragma("dataflow")
    for s in graph.streams.values():
        depth = s.depth if s.depth is not None else FIFO_DEFAULT_DEPTH
        var = stream_var(s.name)
        code.line(f'hls::stream<{token_struct(s.type)}, {depth}> {var}("{s.name}");')
        code.pragma(f"bind_storage variable={var} type=fifo impl={_fifo_impl(graph, s.name, storage)}")
    code.line()
    code.line(f"HLS_SIM_REGION({kernel_name});")
    for s in graph.streams.values():
        code.line(f"HLS_SIM_CONNECT({stream_var(s.name)}, {process[s.source]}, {process[s.target]});")
    by_dma = {a.dma: a.arg for a in plan.arguments}
    for name in order:
        node = graph.nodes[name]
        args = ([by_dma[name]] if isinstance(node, DmaNode) else []) + [stream_var(s) for s in node.inputs
                                                                         + node.outputs]
        code.line(f"HLS_SIM_PROCESS({process[name]}, {process[name]}({', '.join(args)}));")
    code.line("HLS_SIM_END_REGION();")
    code.close()


def _tokens_header(graph: DataflowGraph, kernel_name: str, helpers: set[str], in_flight: bool) -> str:
    guard = f"STREAMTENSOR_{kernel_name.upper()}_TOKENS_H"
    structs: dict[str, ITensorType] = {}
    for s in graph.streams.values():
        structs.setdefault(token_struct(s.type), s.type)
    code = _Code()
    code.line(f"// Generated by {GENERATOR}: stream tokens and helpers of kernel {kernel_name}.")
    code.line(f"#ifndef {guard}")
    code.line(f"#define {guard}")
    code.line()
    for header in ("algorithm", "cmath", "cstdint", "cstring", "limits", "type_traits"):
        code.line(f"#include <{header}>")
    if in_flight:
        code.line("#ifndef __SYNTHESIS__")
        for header in ("deque", "functional", "vector"):
            code.line(f"#include <{header}>")
        code.line("#endif")
    code.line()
    code.line(f'#include "{kernel_name}.h"')
    code.line()
    code.line("// One token of a stream: a tile of the tensor, row-major (reassociations keep the flat order).")
    for name, t in sorted(structs.items()):
        code.line(f"struct {name} {{")
        code.line(f"  {c_type(t.dtype)} data[{t.token_elements}];")
        code.line("};")
    code.line()
    code.lines.extend(_PRAGMA_MACRO.rstrip("\n").split("\n"))
    code.line()
    if in_flight:
        code.lines.extend(_IN_FLIGHT.rstrip("\n").split("\n"))
        code.line()
    code.lines.extend(_TILE_HELPERS.rstrip("\n").split("\n"))
    for name in sorted(helpers):
        code.line()
        code.lines.extend(_SCALAR_HELPERS[name].rstrip("\n").split("\n"))
    code.line()
    code.line(f"#endif  // {guard}")
    return code.text()
