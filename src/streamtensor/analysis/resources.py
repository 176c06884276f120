"""Memory allocation (LUTRAM / BRAM / URAM) of every on-chip buffer and a DSP/BRAM/URAM/LUT estimate of a block.

**Buffers** come from :func:`streamtensor.analysis.memory.onchip_buffers` (converter ping-pong pairs, kernel
accumulators, input tiles and local operands, FIFOs, DMA buffers). Each bank (``width x depth`` bits) is placed
by size (spec §4.3, "each buffer to LUTRAM, BRAM or URAM by size"):

- **small -> LUTRAM** when ``width x depth <= 1024`` bits (Vitis HLS's ``auto_srl_max_bits`` default) or
  ``depth <= 32``: a shallow memory fits one LUT per bit column (SRLC32E: 32 one-bit words per LUT), while a
  BRAM would waste its depth. ``LUTs = width x ceil(depth / 32)``.
- **large -> URAM** when ``width x depth >= 288 Kib`` (one URAM block) and ``depth >= 2048`` (at least half
  of a URAM's 4K words used: a wide but shallow memory would waste most of every URAM it takes).
  A URAM block is 72 bits x 4K: ``URAMs = ceil(width / 72) x ceil(depth / 4096)``.
- **medium -> BRAM36** otherwise. A 36 Kb block is configured as 1x32K, 2x16K, 4x8K, 9x4K, 18x2K, 36x1K or
  (simple dual port, enough for FIFOs and ping-pong halves) 72x512; the count is the best of
  ``ceil(width / w) x ceil(depth / d)`` over those aspect ratios. Halves (BRAM18) are not used.

Every bank is placed alone (ping-pong halves and FIFOs are separate memories in Vitis dataflow).

**DSP** per kernel = ``ceil(lanes x sum of the per-op DSPs of its scalar body)`` with ``lanes = prod(unroll)``
(every unrolled lane has its own operators; the reduction tree over unrolled reduction lanes is the lanes'
combiners). Per-op table (DSP48E2, LUT) from typical Vitis HLS single-precision floating-point cores at
250 MHz (full-DSP variants; f16/bf16 are charged the f32 figures, an upper bound):

========================  ====  =====  ======================================================
op                         DSP   LUT    note
========================  ====  =====  ======================================================
addf, subf                   2    230   fadd full_dsp
mulf                         3     80   fmul max_dsp
divf                         0    800   fdiv is built from fabric
sqrt                         0    500   fsqrt fabric
rsqrt                        4    400   reciprocal square root core
exp                          7    800   fexp full_dsp
log                         12    900   flog full_dsp
sin, cos                     8   1500   range reduction + polynomial
max/min (all forms), cmpf    0     70   comparator + 32-bit mux
remf                         0   1000   fmod: divider-like fabric
negf, absf                   0      0   sign-bit wiring
sitofp, uitofp, fptosi       0    200
extf, truncf                 0     50
tanh                        14   2140   1 - 2 / (exp(2x) + 1): exp + mulf + 2 addf + divf
erf                         43   3620   Abramowitz-Stegun 7.1.26: 8 mulf + 6 addf + exp + divf
powf                        22   1780   exp(y log x): exp + log + mulf
fpowi x^n                    3k  80k    k = bit length of n mulf by repeated squaring (as the timing model)
========================  ====  =====  ======================================================

Integer ``muli`` is charged by its effective operand width ``w`` (the width before ``extsi``/``extui``, since a
widened int8 product is still an 8x8 multiply): ``w <= 8``: 0.5 DSP (two int8 MACs per DSP48E2 with operand
packing, target spec §1), ``<= 18``: 1 (one 27x18 multiplier), ``<= 32``: 3 (Vitis ``mul_32s_32s_32``),
``<= 64``: 10; plus 20 LUTs of glue. Integer division/remainder: 0 DSP, ``w^2`` LUTs (array divider). Other
integer ops (add, sub, compare, select, logic, min/max): ``w`` LUTs. Casts, constants and ``linalg.index``: free.
f64 floating point has its own table (``OperatorLibrary.double_cost``: add/sub 3 DSP 700 LUT, mul 10 DSP 200
LUT, div 3200 LUT, sqrt 1800 LUT, exp 26 DSP, log 27 DSP); ops it does not list are charged the f32 figures.

Every figure here is the target's (``Target.ops``, ``Target.memory``); the numbers quoted are those of the
UltraScale+ HBM boards (``codegen/vitis/boards/ultrascale_plus.py``).

**LUT** per node = base cost of its kind (control: loop counters, FSM, stream handshakes, address generation)
+ ``lanes x`` the per-op LUTs (kernels) + the LUTRAM of the buffers it owns + 30 LUTs of control per FIFO it
reads (pointers, full/empty flags). Base costs: kernel 500, converter 400 (two address generators), fork 40 per
output, reassociate 100, chunk / concat 150, DMA 2000 (512-bit AXI master adapter + address generator); a
stream that crosses fusion groups adds a 2000-LUT DMA engine at each end. These are rough figures from typical
Vitis HLS reports: the estimate is for design-space decisions (does it fit, where does it overflow), not sign-off.

**Fit.** Each fusion group is its own accelerator (one bitstream, spec §1), so a design fits when every group
fits the device budget; ``overflow`` names, in the order dsp, bram36, uram, lut, each resource some group
exceeds. The top-level figures are block totals.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from streamtensor.errors import UnsupportedOpError
from streamtensor.ir.dataflow import DataflowGraph, KernelNode, LoopTiling, Node
from streamtensor.ir.dtypes import DTYPE_BITS
from streamtensor.ir.linalg import GenericOp, ScalarBody, ScalarOp
from streamtensor.target import RESOURCES, MemoryPrimitives, OperatorLibrary, SlrBudget, Target

from .memory import Buffer, crossing_streams, node_groups, onchip_buffers
from .timing_model import fpowi_steps

# Composite functions as counts of primitive cores (a property of the function, not of the device).
_COMPOSITES: dict[str, dict[str, int]] = {
    "math.tanh": {"math.exp": 1, "arith.mulf": 1, "arith.addf": 2, "arith.divf": 1},
    "math.erf": {"arith.mulf": 8, "arith.addf": 6, "math.exp": 1, "arith.divf": 1},
    "math.powf": {"math.exp": 1, "math.log": 1, "arith.mulf": 1},
    "math.tan": {"math.sin": 1, "math.cos": 1, "arith.divf": 1},
}
_FREE_OPS = {"arith.constant", "linalg.index", "arith.extsi", "arith.extui", "arith.trunci",
             "arith.index_cast"}


@dataclass(frozen=True)
class Allocation:
    """Where one buffer lives and what it takes (all banks together)."""

    buffer: Buffer
    kind: str  # lutram | bram | uram
    bram36: int
    uram: int
    lut: int


@dataclass
class NodeResources:
    name: str
    kind: str
    group: int
    dsp: int = 0
    bram36: int = 0
    uram: int = 0
    lut: int = 0


@dataclass
class ResourceReport:
    dsp: int
    bram36: int
    uram: int
    lut: int
    budget: SlrBudget  # the whole device's
    die: SlrBudget  # the smallest die's
    fits: bool
    overflow: list[str]  # resources some fusion group exceeds, in RESOURCES order
    nodes: dict[str, NodeResources]
    allocations: list[Allocation]
    groups: list[dict[str, int]] = field(default_factory=list)  # per fusion group: resource -> use

    def utilization(self) -> dict[str, float]:
        """Block totals as fractions of the device budget."""
        return {r: getattr(self, r) / getattr(self.budget, r) for r in RESOURCES}


def bram36_blocks(width: int, depth: int, memory: MemoryPrimitives) -> int:
    """BRAM36 blocks for one ``width x depth`` memory: best aspect ratio (see the module docstring)."""
    return min(math.ceil(width / w) * math.ceil(depth / d) for w, d in memory.bram36_aspects)


def uram_blocks(width: int, depth: int, memory: MemoryPrimitives) -> int:
    return math.ceil(width / memory.uram_width) * math.ceil(depth / memory.uram_depth)


def lutram_luts(width: int, depth: int, memory: MemoryPrimitives) -> int:
    return width * math.ceil(depth / memory.lutram_max_depth)


def memory_kind(width: int, depth: int, memory: MemoryPrimitives) -> str:
    """LUTRAM, BRAM or URAM for one bank, by the size thresholds of the module docstring."""
    bits = width * depth
    if bits <= memory.srl_max_bits or depth <= memory.lutram_max_depth:
        return "lutram"
    if bits >= memory.uram_bits and depth >= memory.uram_depth // 2:  # one block, half its words used
        return "uram"
    return "bram"


def allocate(buffer: Buffer, memory: MemoryPrimitives) -> Allocation:
    kind = memory_kind(buffer.width_bits, buffer.depth, memory)
    w, d, n = buffer.width_bits, buffer.depth, buffer.banks
    if kind == "lutram":
        return Allocation(buffer, kind, 0, 0, n * lutram_luts(w, d, memory))
    if kind == "uram":
        return Allocation(buffer, kind, 0, n * uram_blocks(w, d, memory), 0)
    return Allocation(buffer, kind, n * bram36_blocks(w, d, memory), 0, 0)


def value_bits(body: ScalarBody) -> dict[str, int]:
    """Effective width of every body value: an ``extsi``/``extui`` result keeps its operand's width."""
    bits = {name: DTYPE_BITS[dtype] for name, dtype in body.args}
    for op in body.ops:
        widened = op.name in ("arith.extsi", "arith.extui") and op.operands[0] in bits
        bits[op.result] = bits[op.operands[0]] if widened else DTYPE_BITS[op.dtype]
    return bits


def scalar_op_cost(op: ScalarOp, bits: dict[str, int], constants: dict[str, object],
                   ops: OperatorLibrary) -> tuple[float, int]:
    """(DSP, LUT) of one lane of ``op``; ``bits`` from ``value_bits``, ``constants`` the body's constants."""
    name = op.name
    if name in _FREE_OPS:
        return 0.0, 0
    table = {**ops.float_cost, **ops.double_cost} if op.dtype == "f64" else ops.float_cost
    if name in table:
        return table[name]
    if name in _COMPOSITES:
        parts = [(table[p], k) for p, k in _COMPOSITES[name].items()]
        return sum(c[0] * k for c, k in parts), sum(c[1] * k for c, k in parts)
    if name == "math.fpowi":
        exponent = constants.get(op.operands[1])
        squarings = fpowi_steps(None if exponent is None else int(exponent))
        dsp, lut = table["arith.mulf"]
        return squarings * dsp, squarings * lut
    if name.startswith("math."):
        raise UnsupportedOpError(name, name.split(".")[0], "the resource model has no figures for it")
    width = max((bits[o] for o in op.operands if o in bits), default=DTYPE_BITS[op.dtype])
    if name == "arith.muli":
        return next(dsp for limit, dsp in ops.int_mul_dsp if width <= limit), ops.int_mul_lut
    if name in ("arith.divsi", "arith.divui", "arith.remsi", "arith.remui"):
        return 0.0, width * width
    return 0.0, width


def lane_cost(body: ScalarBody, ops: OperatorLibrary) -> tuple[float, int]:
    """(DSP, LUT) of one lane of a kernel's datapath: the per-op costs of its scalar body."""
    bits = value_bits(body)
    constants = {op.result: op.attr("value") for op in body.ops if op.name == "arith.constant"}
    costs = [scalar_op_cost(op, bits, constants, ops) for op in body.ops]
    return sum(c[0] for c in costs), sum(c[1] for c in costs)


def _operand_dims(op: GenericOp, j: int) -> set[int]:
    amap = op.indexing_maps[j]
    return {d for k in range(amap.num_results) if (d := amap.result_dim(k)) is not None}


def _costly(sop: ScalarOp) -> bool:
    """A division or a math-library call: an op the generated kernel must not repeat per lane of a loop its
    value does not depend on (``verify.hls_lint``'s lane-invariant rule)."""
    return sop.name == "arith.divf" or sop.name.startswith("math.")


def lane_dims(op: GenericOp, loops: list[LoopTiling], point_order: list[int]) -> list[int]:
    """The unrolled point loops in the order the generated kernel nests its lane loops, outermost first.

    A body value is built once per lane of the lane loops around the innermost one it depends on, so a value
    that only some lane loops index (the normalised, quantized activation of a GEMV, read by every output lane)
    is cheapest when those loops are outside the others. Among the orders that keep reduction lanes in their
    relative order (a chained reduction folds its lanes in that order), the one with the fewest instances of
    divisions and math calls wins, then the fewest instances of the other ops (ties: point order)."""
    unrolled = [d for d in point_order if loops[d].unroll > 1]
    if len(unrolled) < 2:
        return unrolled
    dims: dict[str, set[int]] = {}
    for j, (arg, _) in enumerate(op.body.args):
        dims[arg] = _operand_dims(op, j) if j < len(op.inputs) else set()
    for sop in op.body.ops:
        own = {int(sop.attr("dim"))} if sop.name == "linalg.index" else set()  # type: ignore[call-overload]
        dims[sop.result] = own.union(*(dims[o] for o in sop.operands))
    used = used_values(op.body)
    counted = [sop for sop in op.body.ops if sop.result in used and sop.name not in _FREE_OPS]
    after_acc = _after_accumulators(op)
    reductions = [d for d in unrolled if loops[d].reduction]

    def instances(order: tuple[int, ...]) -> tuple[int, int]:
        costly = other = 0
        for sop in counted:
            inner = len(order) if sop.result in after_acc else max(
                (k + 1 for k, d in enumerate(order) if d in dims[sop.result]), default=0)
            n = math.prod(loops[d].unroll for d in order[:inner])
            if _costly(sop):
                costly += n
            else:
                other += n
        return costly, other

    orders = [o for o in itertools.permutations(unrolled) if [d for d in o if loops[d].reduction] == reductions]
    return list(min(orders, key=instances))  # min keeps the first of equals: point order first


def _after_accumulators(op: GenericOp) -> set[str]:
    """Body values that depend on an accumulator (the block arguments after the inputs): computed innermost."""
    found = {arg for j, (arg, _) in enumerate(op.body.args) if j >= len(op.inputs)}
    for sop in op.body.ops:
        if found.intersection(sop.operands):
            found.add(sop.result)
    return found


def used_values(body: ScalarBody, roots: list[str] | None = None) -> set[str]:
    """Body values the yields (or ``roots``) depend on: only these are emitted."""
    producers = {op.result: op for op in body.ops}
    used: set[str] = set()
    todo = list(body.yields if roots is None else roots)
    while todo:
        v = todo.pop()
        if v in used:
            continue
        used.add(v)
        if v in producers:
            todo.extend(producers[v].operands)
    return used


def value_lane_levels(op: GenericOp, loops: list[LoopTiling], point_order: list[int]) -> dict[str, int]:
    """The lane loop (1-based position in ``lane_dims``; 0: before the lanes) every body value is computed in:
    the innermost lane loop whose counter its indices depend on (lane-invariant math once per step, not once
    per lane). A result's accumulator read and everything after it are innermost (lanes of an unrolled
    reduction update it one after the other). The kernel generator emits each value at this level."""
    lanes = lane_dims(op, loops, point_order)
    position = {d: k + 1 for k, d in enumerate(lanes)}
    n_in = len(op.inputs)
    level: dict[str, int] = {}
    for j, (arg, _) in enumerate(op.body.args):
        dims = _operand_dims(op, j)
        level[arg] = len(lanes) if j >= n_in else max((position.get(d, 0) for d in dims), default=0)
    for sop in op.body.ops:
        own = position.get(int(sop.attr("dim")), 0) if sop.name == "linalg.index" else 0  # type: ignore[call-overload]
        level[sop.result] = max([own, *(level[o] for o in sop.operands)])
    return level


def value_copies(op: GenericOp, loops: list[LoopTiling], point_order: list[int]) -> dict[str, int]:
    """Instances of every used body value in the generated datapath: the product of the unrolls of the lane
    loops around its level (``value_lane_levels``). A tree-summed reduction's combiner has one instance per
    lane too: each output lane sums its ``r`` reduction lanes by ``r - 1`` combiners and folds the sum in once."""
    lanes = lane_dims(op, loops, point_order)
    prefix = [1]
    for d in lanes:
        prefix.append(prefix[-1] * loops[d].unroll)
    levels = value_lane_levels(op, loops, point_order)
    return {v: prefix[levels[v]] for v in used_values(op.body)}


def datapath_cost(op: GenericOp, loops: list[LoopTiling], point_order: list[int], ops: OperatorLibrary
                  ) -> tuple[float, int]:
    """(DSP, LUT) of a kernel's datapath as generated: every op's cost times its instances (``value_copies``):
    an op that no unrolled loop indexes is built once, however many lanes read it."""
    body = op.body
    bits = value_bits(body)
    constants = {o.result: o.attr("value") for o in body.ops if o.name == "arith.constant"}
    copies = value_copies(op, loops, point_order)
    dsp, lut = 0.0, 0
    for sop in body.ops:
        n = copies.get(sop.result, 0)
        if n:
            c = scalar_op_cost(sop, bits, constants, ops)
            dsp += n * c[0]
            lut += n * c[1]
    return dsp, lut


def kernel_compute(node: KernelNode, ops: OperatorLibrary) -> tuple[int, int]:
    """(DSP, LUT) of a kernel's datapath (``datapath_cost``; no base, no memories)."""
    dsp, lut = datapath_cost(node.op, node.loops, node.point_order, ops)
    return math.ceil(dsp), lut


def _base_lut(node: Node, ops: OperatorLibrary) -> int:
    if node.kind == "itensor_fork":
        return ops.fork_lut_per_output * len(node.outputs)
    if node.kind not in ops.base_lut:
        raise ValueError(f"no resource model for node {node.name} of kind {node.kind}")
    return ops.base_lut[node.kind]


def estimate_resources(graph: DataflowGraph, target: Target) -> ResourceReport:
    """Allocate every buffer and estimate DSP / BRAM36 / URAM / LUT per node, per fusion group and in total."""
    ops, budget = target.ops, target.totals
    group = node_groups(graph)
    nodes: dict[str, NodeResources] = {}
    for name in graph.topological_order():
        node = graph.nodes[name]
        res = NodeResources(name, node.kind, group[name], lut=_base_lut(node, ops))
        if isinstance(node, KernelNode):
            dsp, lut = kernel_compute(node, ops)
            res.dsp += dsp
            res.lut += lut
        nodes[name] = res
    for s in crossing_streams(graph):
        nodes[graph.streams[s].source].lut += ops.dma_engine_lut
        nodes[graph.streams[s].target].lut += ops.dma_engine_lut
    allocations = [allocate(b, target.memory) for b in onchip_buffers(graph, target)]
    for a in allocations:
        res = nodes[a.buffer.owner]
        res.bram36 += a.bram36
        res.uram += a.uram
        res.lut += a.lut + (ops.fifo_control_lut if a.buffer.kind == "fifo" else 0)
    count = max(group.values(), default=-1) + 1
    groups = [{r: sum(getattr(n, r) for n in nodes.values() if n.group == g) for r in RESOURCES}
              for g in range(count)]
    overflow = [r for r in RESOURCES if any(g[r] > getattr(budget, r) for g in groups)]
    totals = {r: sum(getattr(n, r) for n in nodes.values()) for r in RESOURCES}
    die = SlrBudget(*(min(getattr(s, r) for s in target.slrs) for r in RESOURCES))
    return ResourceReport(**totals, budget=budget, die=die, fits=not overflow, overflow=overflow, nodes=nodes,
                          allocations=allocations, groups=groups)
