"""Timing model: latency L, initial delay D and token interval II of every dataflow node.

This module is the single source of timing for tiling (intensity-aware unrolling), the FIFO-sizing LP, the
token-level simulator and the report: :func:`build_process_network` turns a dataflow graph into the
:class:`~.process_network.ProcessNetwork` that the LP and the simulator consume, and :func:`node_timings`
reads L, D and II off the same processes. Cycles are kernel-clock cycles of the target (250 MHz on the U55C);
every device figure (operator latencies, the m_axi word, the HBM channels) is the target's.

Every node becomes one pipelined loop (a *process*, see :mod:`.process_network`): ``num_firings`` firings
issued every ``ii`` cycles at best; a firing reads its input tokens at issue and writes its output tokens
``depth`` cycles later. Hence, with no stalls (``Process.latency`` / ``Process.initial_delay``):

    L = (firings - 1) * ii + depth                   (issue of firing 0 to the writes of the last firing)
    D = first_writing_firing * ii + depth            (to the first output token; a sink's D is its L)

Per node kind (formulas are repeated next to their code):

- **kernel** (one firing = one tile iteration of the tile loop nest, in ``tile_order``): the point loops of a
  tile run as one pipelined loop nest issuing ``lanes = prod(unroll)`` points at a time, so a tile takes
  ``iterations = prod(tile) / lanes`` issues, ``pipeline_ii`` cycles apart: ``ceil(recurrence / distance)``
  when a reduction loop is pipelined (``recurrence_distance``: the issues between two updates of one
  accumulator element, which the generated loop states to Vitis; ``accumulator_recurrence``: the combiner's
  latency, as the generated body sums the unrolled reduction lanes by a tree first, or times the lanes when
  the body's combiner cannot be regrouped and the lanes fold in one after the other), raised
  to ``KernelNode.min_pipeline_ii`` so the kernel reads no external-memory input faster than its DMA delivers
  it, to the beats its wide tokens move in one step (``stream_beats``: the tile loops and the pipelined point
  loops are one flattened pipeline that moves a wide token beat by beat, in the steps before its first use or
  after its last set), and with every point loop unrolled (the tile loop is the pipeline) to the beats of its
  widest token.
  ``ii = max(iterations * pipeline_ii, beats)`` (at least ``ceil(recurrence / pending tiles)`` when partial
  sums are carried from tile to tile); ``depth = (iterations - 1) * pipeline_ii + pipeline depth`` (the last
  point's issue plus its trip through the datapath); pipeline depth = stream read + critical path of the
  scalar body (op latencies by element type) + the reduction tree over the unrolled reduction lanes (or their
  chain) + stream write. Tokens move at the firings of ``KernelNode.port_firings``: inputs once per iteration of the
  loops they use, inits at the first and results at the last firing of every output tile's reduction; ``lag - 1``
  idle firings drain the pipeline before a read that would hold a finished output tile (``drained_inputs``).
- **itensor_converter** (a buffer over the ``S`` iterations of its shared loops; per iteration ``a`` source
  tokens fill a window, then ``b`` result tokens drain it; ``ii = beats``). Two banks (ping-pong): one token in
  and one out per step, fill of iteration i in lock step with the drain of iteration i-1, so phase ``p`` (0..S)
  lasts ``max(a if p < S, b if p > 0)`` firings, its reads spread over it when it is longer than ``a``. One bank
  (``analysis.converter_banks``): phase ``p`` drains iteration p-1 (``b`` firings, p > 0) and then fills
  iteration p (``a`` firings, p < S). ``depth = 3`` (buffer write-to-read turnaround plus a registered
  BRAM/URAM read).
- **fork, reassociate, chunk, concat**: one token per firing, ``depth = 2`` (stream read + stream write). A
  chunk reads every input token and writes the kept ones; a concat writes every output token and reads it from
  the input whose region holds it.
- **stream beats**: a token wider than the target's ``stream_max_bits`` (Vitis: an aggregated struct on a
  stream is at most 4,096 bits) crosses its stream as ``ITensorType.beats`` beats, one per cycle, so a
  converter or forwarding node moves a token every ``ii = beats`` cycles (``node_beats``; 1 when it fits).
- **DMA** (HBM <-> stream): a token is ``words = ceil(token_bits / 512)`` bus words (``bytes = 64 * words``,
  each tile padded to whole words: ``streamtensor.packing``), spread over the DMA's ``stripes`` m_axi ports
  read in lock step, each port moving ``ceil(words / stripes)`` words at ``rate = min(64, 57.5) / share``
  bytes per cycle (:func:`.hbm.dma_token_cycles`; ``share``: the ports on the busiest pseudo-channel of its
  stripes as ``analysis.hbm`` places the group's external tensors, the placement ``link.cfg`` realises; a
  one-token block's DMAs at the contention share ``analysis.contention`` settled, ``DmaNode.share``);
  ``ii = 1`` cycle per firing with the tokens spread at that exact average rate, ``depth`` = the HBM latency
  (64 cycles). A KV-cache DMA
  (``CacheRows``) moves bytes only for the tiles of rows ``0..position`` (read; the zero tiles past it cost one
  cycle each) or the words of row ``position`` (write; every other token one cycle), modelled at the worst
  case, ``position`` = the last row (:func:`modelled_position`). A scalar read (``role = scalar``) is a
  register: one token, ``depth`` 1, no HBM.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from streamtensor.ir.converter_buffer import window_phases
from streamtensor.ir.dataflow import (
    ChunkNode,
    ConcatNode,
    ConverterNode,
    DataflowGraph,
    DmaNode,
    ForkNode,
    KernelNode,
    LoopTiling,
    Node,
    ReassociateNode,
    input_loops,
    pending_tiles,
    port_operands,
)
from streamtensor.ir.dataflow import Stream as DataflowStream
from streamtensor.ir.itensor import ITensorType
from streamtensor.ir.layout import chunk_mask, concat_sources, same_packing
from streamtensor.ir.linalg import GenericOp, ScalarBody, ScalarOp
from streamtensor.packing import WORD_BYTES, PackedLayout
from streamtensor.target import HbmSpec, OperatorLibrary, Target

from .fifo_lp import keep_evaluated_depths
from .hbm import (
    HbmPlacement,
    choose_stripes,
    dma_token_bytes,
    dma_token_cycles,
    place_tensors,
    streamed_tensors,
    stripe_words,
)
from .memory import absorbed_converters, node_groups
from .process_network import Process, ProcessNetwork, Stream
from .stream_beats import (
    inputs_ahead,
    kernel_beats,
    pipelined_loops,
    read_in_pipeline,
    results_behind,
    token_geometry,
)

# --- constants -----------------------------------------------------------------------------------------------

# A converter writes a result token read from the half the previous phase filled: one cycle for the buffer write
# to land, then a registered BRAM/URAM read (LUTRAM is faster; we take the slower memories).


def converter_depth(ops: OperatorLibrary) -> int:
    return 1 + ops.memory_read_cycles


def forward_depth(ops: OperatorLibrary) -> int:
    """Fork / reassociate / chunk / concat: a stream read and a stream write."""
    return ops.stream_read_cycles + ops.stream_write_cycles


# --- scalar op latencies -------------------------------------------------------------------------------------


# Bits of math.fpowi's exponent operand: a variable exponent is squared over all of them.
FPOWI_EXPONENT_BITS = 64


def fpowi_steps(exponent: int | None) -> int:
    """Squaring steps of ``math.fpowi`` as generated (templates/fpowi.h, a constant-trip unrolled loop): the bit
    length of a constant exponent, every bit of a variable one."""
    return FPOWI_EXPONENT_BITS if exponent is None else max(1, abs(int(exponent)).bit_length())


def op_latency(name: str, dtype: str, ops: OperatorLibrary, exponent: int | None = None) -> int:
    """Cycles of one scalar op producing ``dtype`` (the target's operator library; f16/bf16 use the f32 table;
    constants and indices cost nothing)."""
    if name in ("arith.constant", "linalg.index"):
        return 0
    if name == "math.fpowi":  # x^n by repeated squaring: one multiply per exponent bit on the critical path
        return fpowi_steps(exponent) * op_latency("arith.mulf", dtype, ops)
    if dtype == "f64" and name in ops.double_latency:
        return ops.double_latency[name]
    if name in ops.float_latency:
        return ops.float_latency[name]
    if name == "arith.select":
        return 1
    return ops.int_latency.get(name, ops.default_int_latency)


def body_critical_path(body: ScalarBody, ops: OperatorLibrary) -> int:
    """Longest chain of op latencies from the block arguments to any yielded value."""
    ready: dict[str, int] = {name: 0 for name, _ in body.args}
    constants = {op.result: op.attr("value") for op in body.ops if op.name == "arith.constant"}
    for op in body.ops:
        start = max((ready[o] for o in op.operands), default=0)
        exponent = int(constants[op.operands[1]]) if op.name == "math.fpowi" and op.operands[1] in constants else None
        ready[op.result] = start + op_latency(op.name, op.dtype, ops, exponent)
    return max((ready[y] for y in body.yields), default=0)


def combiner_latency(body: ScalarBody, ops: OperatorLibrary) -> int:
    """Latency of the op that folds into the accumulator (the last op of a reduction body)."""
    return op_latency(body.ops[-1].name, body.ops[-1].dtype, ops) if body.ops else 0


# --- kernels -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelTiming:
    """Timing of a kernel node (module docstring). One firing = one tile."""

    latency: int  # L: issue of the first firing to the last write
    delay: int  # D: issue of the first firing to the first write
    ii: int  # cycles per firing (tile)
    depth: int  # issue of a firing to its writes
    firings: int  # tiles
    pipeline_ii: int  # II of the pipelined point loop nest
    first_write: int  # index of the first firing that writes (completes an output tile)
    drained: tuple[int, ...]  # the tiles that drain the pipeline first, lag - 1 idle firings each (drained_firings)
    write_behind: tuple[int, ...]  # the wide results that leave in the next firing's first steps (stream_beats)
    read_ahead: tuple[int, ...]  # the wide inputs read in the previous firing's first steps (stream_beats)

    @property
    def idle_firings(self) -> int:
        return (-(-self.depth // self.ii) - 1) * len(self.drained)


def recurrence_distance(loops: list[LoopTiling], point_order: list[int]) -> int | None:
    """Pipelined steps between two updates of the same accumulator element inside one firing: the iterations
    of the pipelined point loops (those not fully unrolled, in point order) inside the innermost pipelined
    reduction loop. None when no reduction loop is pipelined (no element is updated twice in one pipeline)."""
    pipelined = pipelined_loops(loops, point_order)
    reductions = [i for i, d in enumerate(pipelined) if loops[d].reduction]
    if not reductions:
        return None
    return math.prod(loops[d].tile // loops[d].unroll for d in pipelined[reductions[-1] + 1:])


# Combiners a reduction may regroup: the lanes' values are summed by a tree before they meet the accumulator.
TREE_COMBINERS = frozenset({"arith.addf", "arith.mulf", "arith.addi", "arith.muli", "arith.maximumf",
                            "arith.minimumf", "arith.maxnumf", "arith.minnumf", "arith.maxsi", "arith.minsi",
                            "arith.andi", "arith.ori", "arith.xori"})


def tree_combiners(body: ScalarBody, n_inputs: int) -> list[ScalarOp] | None:
    """The op of each yield when every yield folds one value into its result's own block argument (used by
    nothing else) with a ``TREE_COMBINERS`` op: the generated kernel then sums its unrolled reduction lanes by
    a balanced tree and folds the tree's value into the accumulator once per step. None otherwise (the lanes
    fold into the accumulator one after the other)."""
    producers = {op.result: op for op in body.ops}
    combiners: list[ScalarOp] = []
    for r, y in enumerate(body.yields):
        acc = body.args[n_inputs + r][0]
        op = producers.get(y)
        if op is None or op.name not in TREE_COMBINERS or len(op.operands) != 2 or op.operands.count(acc) != 1:
            return None
        if any(acc in other.operands for other in body.ops if other is not op) or acc in body.yields:
            return None
        combiners.append(op)
    return combiners


def accumulator_recurrence(op: GenericOp, loops: list[LoopTiling], ops: OperatorLibrary) -> int:
    """Cycles from one update of an accumulator element to the next one that may start, as the generated body
    does it (``codegen.vitis.hls.kernel``): one combiner when the unrolled reduction lanes are summed by a tree
    first (``tree_combiners``), else one combiner per lane, chained."""
    lanes = math.prod(lp.unroll for lp in loops if lp.reduction)
    comb = combiner_latency(op.body, ops)
    return comb if tree_combiners(op.body, len(op.inputs)) is not None else comb * lanes


def kernel_timing(op: GenericOp, loops: list[LoopTiling], tile_order: list[int], point_order: list[int],
                  ops: OperatorLibrary, max_bits: int, min_pipeline_ii: int = 1,
                  read_operands: list[int] | None = None) -> KernelTiming:
    """L, D and II of ``op`` tiled by ``loops`` (indexed by loop dim); see the module docstring.
    ``max_bits``: the target's stream element limit (wider tokens move as beats, ``stream_beats``);
    ``min_pipeline_ii``: an II floor of the pipelined loop nest (``KernelNode.min_pipeline_ii``);
    ``read_operands``: the operands read through input ports (``KernelNode.input_operands``; by default every
    input and every init the body reads)."""
    lanes = math.prod(lp.unroll for lp in loops)
    iterations = math.prod(lp.tile for lp in loops) // lanes
    comb = combiner_latency(op.body, ops)
    recurrence = accumulator_recurrence(op, loops, ops)
    # An accumulator element is updated again `distance` issues later (recurrence_distance); the update must
    # see the previous one: distance * II >= recurrence, so II = ceil(recurrence / distance) (= the recurrence
    # when the reduction loop is innermost). No pipelined reduction: II = 1. The generated loop states this
    # distance to the scheduler and asks for this II.
    distance = recurrence_distance(loops, point_order)
    pipeline_ii = max(1, -(-recurrence // distance) if distance else 1, min_pipeline_ii)
    # With every point loop unrolled the tile loop is the pipeline, and it moves a firing's tokens in it; else
    # the pipelined point loops move a wide token's beats in the steps that can hold them (stream_beats).
    if read_operands is None:
        read_operands = port_operands(op, ())
    beats = max(token_geometry(op, loops, j, max_bits)[0] for j in [*read_operands, *range(len(op.inputs),
                                                                                          len(op.operands))])
    # Unrolled reduction lanes are summed by a balanced tree of combiners (ceil(log2 lanes_r) levels) before the
    # body's own combiner, or fold in one after the other (lanes_r - 1 more combiners; tree_combiners).
    reduction_lanes = math.prod(lp.unroll for lp in loops if lp.reduction)
    if tree_combiners(op.body, len(op.inputs)) is not None:
        lanes_path = math.ceil(math.log2(reduction_lanes)) * comb if reduction_lanes > 1 else 0
    else:
        lanes_path = (reduction_lanes - 1) * comb
    pipe_depth = ops.stream_read_cycles + body_critical_path(op.body, ops) + lanes_path + ops.stream_write_cycles
    firings = math.prod(lp.trip for lp in loops)
    # Firings are enumerated over tile_order (outermost first). The first write is by the first firing with every
    # reduction counter at its last trip and every parallel counter at 0: index sum over reductions of
    # (trip - 1) * stride, stride = product of the trips of the loops inside.
    first_write, stride = 0, 1
    for d in reversed(tile_order):
        if loops[d].reduction:
            first_write += (loops[d].trip - 1) * stride
        stride *= loops[d].trip

    def timing(pipeline_ii: int, behind_steps: int, behind: tuple[int, ...], ahead: tuple[int, ...]
               ) -> KernelTiming:
        # A firing issues its `iterations` points pipeline_ii apart; its writes follow the last issue by
        # pipe_depth, or the steps of the next firing that write its wide results behind (stream_beats).
        ii = max(iterations * pipeline_ii, beats)
        depth = (iterations - 1 + behind_steps) * pipeline_ii + pipe_depth
        if any(lp.reduction and lp.trip > 1 for lp in loops):
            # Partial sums carried from tile to tile: the `pending` output tiles under reduction take turns, so a
            # point is updated again `pending` firings later: pending * ii >= recurrence.
            ii = max(ii, -(-recurrence // pending_tiles(loops, tile_order)))
        bubbles = -(-depth // ii) - 1
        drained = drained_firings(op, loops, tile_order, bubbles)
        before = bubbles * int(np.searchsorted(drained, first_write, side="right"))
        return KernelTiming(latency=(firings + bubbles * len(drained) - 1) * ii + depth,
                            delay=(first_write + before) * ii + depth, ii=ii, depth=depth, firings=firings,
                            pipeline_ii=pipeline_ii, first_write=first_write, drained=tuple(drained.tolist()),
                            write_behind=behind, read_ahead=ahead)

    if not pipelined_loops(loops, point_order):
        return timing(max(pipeline_ii, beats), 0, (), ())
    read_operands = read_in_pipeline(op, loops, tile_order, read_operands)
    # The tokens that would raise the II move in the neighbouring firings where those can hold them; what must
    # still move inside the firing (an init, a token too wide for the steps) may raise the II, and at that II
    # fewer tokens need to move out: repeat until the II holds.
    target_ii = pipeline_ii
    while True:
        behind = results_behind(op, loops, point_order, max_bits, target_ii)
        ahead = inputs_ahead(op, loops, point_order, read_operands, max_bits, target_ii)
        moves = kernel_beats(op, loops, point_order, read_operands, max_bits, behind, ahead)
        if moves.pipeline_ii <= target_ii:
            break
        target_ii = moves.pipeline_ii
    found = timing(target_ii, moves.behind_steps, behind, ahead)
    if (behind or ahead) and found.drained:
        # Only the loops inside a drained read are one pipeline: a firing before it does not reach past it.
        moves = kernel_beats(op, loops, point_order, read_operands, max_bits)
        found = timing(max(pipeline_ii, moves.pipeline_ii), moves.behind_steps, (), ())
    return found


def drained_inputs(op: GenericOp, loops: list[LoopTiling], tile_order: list[int], bubbles: int) -> list[int]:
    """Input operands before whose reads the pipeline drains, ``bubbles`` (lag - 1) idle firings.

    An input token held across tile loops (read at the top of an outer tile loop, ``input_loops``) starts a
    *period* of firings that ends with writes: one output tile whose results leave at its last firing (the loops
    inside of more than one trip all reduce), or, with no reduction loop outside, output tiles that each firing
    writes. In a stall pipeline the next period's read issues before the last writes and keeps them in flight
    until its token comes; a row statistic (LayerNorm's mean, read by its variance; mean and variance, read by
    the normalisation) comes only once the next row tile is whole, so those results wait at least a period. The
    pipeline drains before such reads when all the drains together cost fewer firings than one period (the
    generated code reads the token between two tile loops, at an ``HLS_SIM_DRAINED_FIRING``)."""
    if not bubbles:
        return []
    firings = math.prod(lp.trip for lp in loops)
    drained = []
    for j in range(len(op.inputs)):
        level = len(input_loops(op, tile_order, j))
        moving = [d for d in tile_order[level:] if loops[d].trip > 1]
        outer_reduces = any(loops[d].reduction and loops[d].trip > 1 for d in tile_order[:level])
        writes_last = all(loops[d].reduction for d in moving) or not outer_reduces
        period = math.prod(loops[d].trip for d in moving)
        if moving and writes_last and (firings // period - 1) * bubbles < period:
            drained.append(j)
    return drained


def drained_firings(op: GenericOp, loops: list[LoopTiling], tile_order: list[int], bubbles: int) -> np.ndarray:
    """The tiles (tile loop nest order) after the first that read a ``drained_inputs`` token, sorted."""
    firings = math.prod(lp.trip for lp in loops)
    reads = []
    for j in drained_inputs(op, loops, tile_order, bubbles):
        period = math.prod(loops[d].trip for d in tile_order[len(input_loops(op, tile_order, j)):])
        reads.append(np.arange(period, firings, period, dtype=np.int64))
    return np.unique(np.concatenate(reads)) if reads else np.zeros(0, dtype=np.int64)


def node_beats(graph: DataflowGraph, node: Node, max_bits: int) -> int:
    """Stream beats of the widest token ``node`` moves (``ITensorType.beats`` under the target's stream limit
    ``max_bits``): the cycles one firing spends on that stream."""
    return max((graph.streams[s].type.beats(max_bits) for s in node.inputs + node.outputs), default=1)


def kernel_node_timing(graph: DataflowGraph, node: KernelNode, target: Target) -> KernelTiming:
    return kernel_timing(node.op, node.loops, node.tile_order, node.point_order, target.ops, target.stream_max_bits,
                         node.min_pipeline_ii, node.input_operands)


def _kernel_process(graph: DataflowGraph, node: KernelNode, target: Target) -> Process:
    t = kernel_node_timing(graph, node, target)
    # Which firing reads / writes each token is the kernel's port semantics (``KernelNode.port_firings``):
    # inputs once per iteration of the loops they use, inits at the start and results at the completion of
    # every output tile's reduction, replays one token per firing after the last.
    reads, writes = node.port_firings()
    # Before a read that could hold a finished output tile in flight the pipeline drains (``drained_inputs``):
    # ``lag - 1`` idle firings before each such tile let the writes still in flight leave first.
    if t.drained:
        bubbles, drained = t.idle_firings // len(t.drained), np.array(t.drained, dtype=np.int64)

        def shift(firings: np.ndarray) -> np.ndarray:
            return firings + bubbles * np.searchsorted(drained, firings, side="right")
        reads, writes = [shift(r) for r in reads], [shift(w) for w in writes]
    # An input read ahead moves its next token in the firing before the one that takes it (``stream_beats``).
    for operand in t.read_ahead:
        port = node.input_operands.index(operand)
        reads[port] = np.maximum(reads[port] - 1, 0)
    return Process(node.name, t.ii, t.depth, t.firings + t.idle_firings + node.replay_firings,
                   dict(zip(node.inputs, reads, strict=True)),
                   dict(zip(node.outputs, writes, strict=True)))


# --- data movement -------------------------------------------------------------------------------------------


def _forward_process(name: str, firings: int, reads: dict[str, np.ndarray], writes: dict[str, np.ndarray],
                     ops: OperatorLibrary, beats: int) -> Process:
    return Process(name, beats, forward_depth(ops), firings, reads, writes)


def _converter_process(node: ConverterNode, source: ITensorType, result: ITensorType, ops: OperatorLibrary,
                       beats: int) -> Process:
    """The schedule of the module docstring: one window drained and then filled, or a lock-step ping-pong pair."""
    s, a, b = window_phases(source, result, node.buffer)  # shared iterations; tokens in / out per iteration
    fills = np.array([a if p < s else 0 for p in range(s + 1)], dtype=np.int64)
    drains = np.array([b if p > 0 else 0 for p in range(s + 1)], dtype=np.int64)
    if node.buffer.banks == 1:  # phase p drains iteration p - 1 (p > 0), then fills iteration p (p < S)
        lengths = drains + fills
        start = np.concatenate([[0], np.cumsum(lengths)])
        steps = drains[:s, None] + np.arange(a, dtype=np.int64)[None, :]
    else:  # phase p fills iteration p (p < S) while draining iteration p - 1 (p > 0): the longer of the two
        lengths = np.maximum(fills, drains)
        start = np.concatenate([[0], np.cumsum(lengths)])
        # A phase longer than its fill spreads the reads over it (read j at step ceil(j * length / a)): a drain
        # token then waits only for the same fraction of the next iteration's source tokens, not for the first
        # ``a`` of them, which a slow producer delivers a whole iteration later.
        steps = -(-np.arange(a, dtype=np.int64)[None, :] * lengths[:s, None] // a)
    reads = (start[:s, None] + steps).ravel()
    writes = (start[1 : s + 1, None] + np.arange(b, dtype=np.int64)[None, :]).ravel()  # a phase drains first
    return Process(node.name, beats, converter_depth(ops), int(start[-1]), {node.inputs[0]: reads},
                   {node.outputs[0]: writes})


def dma_token_costs(t: ITensorType, share: int | Fraction, stripes: int, target: Target, memory_bytes: np.ndarray | None
                 ) -> tuple[np.ndarray, int]:
    """Cycles of every token's transfer as integer numerators over one denominator: a token of ``w`` words takes
    ``ceil(w / stripes) * 64 / rate`` cycles (its stripes' ports in lock step, :func:`.hbm.dma_token_cycles`;
    ``memory_bytes``: bytes per token, else every token a whole tile), a token that moves no bytes (a zero tile
    read, a tile a row write skips) one cycle of the loop; every token at least its stream beats (one a cycle)."""
    beats = t.beats(target.stream_max_bits)
    if memory_bytes is None:
        per_token = max(dma_token_cycles(dma_token_bytes(t, target) // WORD_BYTES, stripes, share, target),
                        Fraction(beats))
        return np.full(t.num_tokens, per_token.numerator, dtype=np.int64), per_token.denominator
    # A few distinct byte counts (whole tiles, none, a row's words): each costed once (a paper-size decode block's
    # KV-cache DMAs have thousands of tokens, and its network is built again as the HBM shares rise).
    sizes, index = np.unique(memory_bytes, return_inverse=True)
    costs = [max(dma_token_cycles(-(-b // WORD_BYTES), stripes, share, target) if b else Fraction(1),
                 Fraction(beats)) for b in sizes.tolist()]
    denominator = math.lcm(*(c.denominator for c in costs))
    numerators = np.array([c.numerator * (denominator // c.denominator) for c in costs], dtype=np.int64)
    return numerators[index.reshape(-1)], denominator


def _dma_read_process(name: str, stream: str, t: ITensorType, share: int | Fraction, target: Target,
                      memory_bytes: np.ndarray | None = None, stripes: int = 1) -> Process:
    # Token k's last byte arrives in cycle ceil(sum of the costs up to k) - 1 of the transfer and is pushed into
    # the stream the HBM latency later; the loop has one firing per cycle of the transfer.
    costs, q = dma_token_costs(t, share, stripes, target, memory_bytes)
    done = -((-np.cumsum(costs)) // q) - 1
    return Process(name, 1, target.hbm.latency_cycles, int(done[-1]) + 1, {}, {stream: done})


def _dma_write_process(name: str, stream: str, t: ITensorType, share: int | Fraction, target: Target,
                       memory_bytes: np.ndarray | None = None) -> Process:
    # Token k is taken from the stream when its transfer starts, in cycle floor(costs before k); the last
    # burst's write response comes the HBM latency after the transfer's last cycle.
    costs, q = dma_token_costs(t, share, 1, target, memory_bytes)
    total = np.cumsum(costs)
    start = np.concatenate(([0], total[:-1])) // q
    return Process(name, 1, target.hbm.latency_cycles, int(-((-total[-1]) // q)), {stream: start}, {})


def _scalar_process(name: str, stream: str) -> Process:
    # A scalar register (s_axilite) is on chip: one token, written the cycle after the start.
    return Process(name, 1, 1, 1, {}, {stream: np.zeros(1, dtype=np.int64)})


def modelled_position(node: DmaNode, t: ITensorType) -> int:
    """The row a KV-cache DMA is modelled at: the worst case, the last row of the cache (every row valid)."""
    assert node.rows is not None
    return t.tensor_shape[node.rows.dim] - 1


def cache_dma_bytes(node: DmaNode, t: ITensorType, position: int) -> np.ndarray:
    """Bytes a KV-cache DMA moves per token at ``position``: a read the tiles of rows ``0..position`` (whole
    tiles), a write the words of row ``position`` (``PackedLayout.row_write``) of the tiles holding it."""
    assert node.rows is not None
    layout = PackedLayout.of(t)
    if node.direction == "read":
        return np.where(node.rows.read_tokens(t, position), layout.words_per_tile * WORD_BYTES, 0).astype(np.int64)
    starts = t.offsets()[:, node.rows.dim]
    held = node.rows.row_tokens(t, position)
    return np.array([layout.row_write(node.rows.dim, position - int(s))[1] * WORD_BYTES if h else 0
                     for s, h in zip(starts, held, strict=True)], dtype=np.int64)


def cache_report(graph: DataflowGraph) -> list[dict[str, object]]:
    """Per KV-cache DMA: the row it is modelled at and the bytes it moves there, next to a whole-cache copy's."""
    out: list[dict[str, object]] = []
    for node in graph.nodes.values():
        if isinstance(node, DmaNode) and node.rows is not None:
            t = graph.streams[node.outputs[0] if node.direction == "read" else node.inputs[0]].type
            position = modelled_position(node, t)
            out.append({"dma": node.name, "cache": node.rows.into or node.tensor.name, "direction": node.direction,
                        "modelled_position": position, "rows": t.tensor_shape[node.rows.dim],
                        "bytes": int(cache_dma_bytes(node, t, position).sum()),
                        "whole_cache_bytes": PackedLayout.of(t).streamed_bytes})
    return out


# --- graphs --------------------------------------------------------------------------------------------------


def group_tensors(graph: DataflowGraph, members: set[str], crossing_in: list[DataflowStream],
                  crossing_out: list[DataflowStream], absorbed: set[str], units: Mapping[str, str]
                  ) -> tuple[list[tuple[str, str, PackedLayout]], dict[str, int], set[str]]:
    """The external tensors of one fusion group as ``(tensor, DMA, layout)`` triples (its DMA nodes, and every
    stream crossing into or out of the group: a buffer of its own in external memory, streamed by the implicit
    DMA or the absorbed converter that reads it), the stripes of its DMA nodes' tensors, and the tensors that may
    be striped: those only DMA nodes read, none of them a KV-cache row read (``DmaNode.stripes``). ``units``: where
    each DMA node's buffer is placed (:func:`placement_units`)."""
    dmas: list[tuple[str, str, PackedLayout]] = []
    stripes: dict[str, int] = {}
    readers: dict[str, bool] = {}
    for name in (n for n in graph.topological_order() if n in members):
        node = graph.nodes[name]
        if isinstance(node, DmaNode) and node.role != "scalar":  # a scalar is a register, not in memory
            (stream,) = node.outputs if node.direction == "read" else node.inputs
            unit = units[name]
            dmas.append((unit, name, PackedLayout.of(graph.streams[stream].type)))
            stripes[unit] = node.stripes
            plain = node.direction == "read" and node.rows is None
            readers[unit] = readers.get(unit, True) and plain
        elif name in absorbed:
            dmas.append((node.inputs[0], name, PackedLayout.of(graph.streams[node.outputs[0]].type)))
            readers[node.inputs[0]] = False
    for s in crossing_in:
        if s.target not in absorbed:
            dmas.append((s.name, crossing_dma_name(s.name, "read"), PackedLayout.of(s.type)))
            readers[s.name] = False
    for s in crossing_out:
        dmas.append((s.name, crossing_dma_name(s.name, "write"), PackedLayout.of(s.type)))
        readers[s.name] = False
    return dmas, stripes, {t for t, ok in readers.items() if ok}


def dma_placement(graph: DataflowGraph, members: set[str], crossing_in: list[DataflowStream],
                  crossing_out: list[DataflowStream], absorbed: set[str], target: Target) -> HbmPlacement:
    """Where the external tensors of one fusion group live (``analysis.hbm``; :func:`group_tensors`), each
    striped as its DMA nodes say."""
    units = placement_units(graph, target.hbm)
    dmas, stripes, _ = group_tensors(graph, members, crossing_in, crossing_out, absorbed, units)
    return place_tensors(streamed_tensors(dmas, stripes), target.hbm, serial_dmas(graph))


def serial_dmas(graph: DataflowGraph) -> bool:
    """Whether the graph's DMAs run in stages one after another (a one-token block, ``transforms.stripes``): their
    shares are the contention the simulation settles (``DmaNode.share``) and they are placed in stage order."""
    return any(isinstance(n, DmaNode) and n.share is not None for n in graph.nodes.values())


def placement_units(graph: DataflowGraph, hbm: HbmSpec) -> dict[str, str]:
    """Per DMA node, the unit ``analysis.hbm`` places its buffer as (``DmaNode.placement_name``), but an unstriped
    read of the activation input packed as the block's output goes with that output: the next layer reads this
    layer's output buffer as that input in place, and XRT gives an argument whose banks do not hold the buffer it
    is given a copy of it when the run is set up (a device copy per run and argument, and one a queued run would
    take before the previous run has written it). A prefill block's reads then share the output's pseudo-channel
    for the whole run (the paper-size W4A8 GPT-2 prefill block at lane budget 2048: 158,532 -> 159,628 cycles, its
    four reads of the hidden state on the output's channel, no copy), so they go there only where no DMA then
    streams longer than the slowest one does apart (:func:`slowest_dma_time`): a design whose reads of the hidden
    state bound it would run at the shared channel's rate (fp32 GPT-2 prefill at ``--max-token-rank 1``: 10.8 M ->
    21.1 M cycles; the host then copies that input into its own bank, as for any other buffer)."""
    units = {name: n.placement_name for name, n in graph.nodes.items() if isinstance(n, DmaNode)}
    chain = graph.chained_activation()
    if chain is None or chain[0].stripes != 1:
        return units
    out, reads = chain
    written = graph.streams[out.inputs[0]].type
    together = dict(units)
    for n in reads:
        if n.stripes == 1 and same_packing(graph.streams[n.outputs[0]].type, written):
            together[n.name] = out.placement_name
    if together == units or serial_dmas(graph):
        return together
    return together if slowest_dma_time(graph, together, hbm) <= slowest_dma_time(graph, units, hbm) else units


def slowest_dma_time(graph: DataflowGraph, units: Mapping[str, str], hbm: HbmSpec) -> Fraction:
    """The longest any DMA of ``graph`` streams its bytes with its buffer placed as ``units`` says (in the time of
    one bus word at a whole channel: every DMA's cycles are that times the same factor, ``dma_token_cycles``), over
    its fusion groups: a lower bound of a run whose DMAs all stream from the start (not a one-token block)."""
    worst = Fraction(0)
    for dmas, placement in _group_placements(graph, units, hbm, serial=False):
        for _, dma, layout in dmas:
            words = layout.words_per_tile
            tokens = Fraction(layout.streamed_bytes, words * WORD_BYTES)
            worst = max(worst, tokens * stripe_words(words, placement.stripes(dma)) * placement.shares[dma])
    return worst


def _group_placements(graph: DataflowGraph, units: Mapping[str, str], hbm: HbmSpec, serial: bool
                      ) -> Iterator[tuple[list[tuple[str, str, PackedLayout]], HbmPlacement]]:
    """Per fusion group, its external tensors (:func:`group_tensors`, placed as ``units`` says) and their
    placement (``serial``: in stage order, ``analysis.hbm.place_tensors``)."""
    for group in range(max(node_groups(graph).values(), default=-1) + 1):
        members, crossing_in, crossing_out, absorbed = _group_members(graph, group)
        dmas, stripes, _ = group_tensors(graph, members, crossing_in, crossing_out, absorbed, units)
        yield dmas, place_tensors(streamed_tensors(dmas, stripes), hbm, serial)


def dma_placement_of_group(graph: DataflowGraph, group: int | None, target: Target) -> HbmPlacement:
    """:func:`dma_placement` of fusion group ``group`` (omitted: the one group)."""
    return dma_placement(graph, *_group_members(graph, group), target)


def dma_shares(graph: DataflowGraph, placement: HbmPlacement) -> dict[str, int | Fraction]:
    """The share every DMA of ``placement`` streams at: its node's contention share (``DmaNode.share``) where
    set, else the placement's static count."""
    shares: dict[str, int | Fraction] = dict(placement.shares)
    for name in shares:
        node = graph.nodes.get(name)
        if isinstance(node, DmaNode) and node.share is not None:
            shares[name] = node.share
    return shares


def group_stripes(graph: DataflowGraph, group: int, target: Target) -> dict[str, int]:
    """Stripes per external tensor of fusion group ``group`` by ``analysis.hbm.choose_stripes``."""
    members, crossing_in, crossing_out, absorbed = _group_members(graph, group)
    units = placement_units(graph, target.hbm)
    dmas, _, stripable = group_tensors(graph, members, crossing_in, crossing_out, absorbed, units)
    return choose_stripes(streamed_tensors(dmas, stripable=stripable), target.hbm)


def node_process(graph: DataflowGraph, node: Node, target: Target, dma_share: int | Fraction = 1) -> Process:
    """The process of one node (module docstring); ``dma_share`` (of its slowest stripe) applies to DMA nodes."""
    ins = [graph.streams[s].type for s in node.inputs]
    outs = [graph.streams[s].type for s in node.outputs]
    beats = node_beats(graph, node, target.stream_max_bits)
    if isinstance(node, KernelNode):
        return _kernel_process(graph, node, target)
    if isinstance(node, ConverterNode):
        return _converter_process(node, ins[0], outs[0], target.ops, beats)
    if isinstance(node, ForkNode | ReassociateNode):
        every = np.arange(ins[0].num_tokens, dtype=np.int64)
        return _forward_process(node.name, ins[0].num_tokens, {node.inputs[0]: every},
                                dict.fromkeys(node.outputs, every), target.ops, beats)
    if isinstance(node, ChunkNode):
        kept = np.flatnonzero(chunk_mask(ins[0], node.offsets, node.sizes)).astype(np.int64)
        return _forward_process(node.name, ins[0].num_tokens,
                                {node.inputs[0]: np.arange(ins[0].num_tokens, dtype=np.int64)},
                                {node.outputs[0]: kept}, target.ops, beats)
    if isinstance(node, ConcatNode):
        source = concat_sources(ins, node.dim, outs[0])
        reads = {s: np.flatnonzero(source == i).astype(np.int64) for i, s in enumerate(node.inputs)}
        return _forward_process(node.name, outs[0].num_tokens, reads,
                                {node.outputs[0]: np.arange(outs[0].num_tokens, dtype=np.int64)}, target.ops,
                                beats)
    if isinstance(node, DmaNode):
        if node.role == "scalar":
            return _scalar_process(node.name, node.outputs[0])
        t = outs[0] if node.direction == "read" else ins[0]
        traffic = None if node.rows is None else cache_dma_bytes(node, t, modelled_position(node, t))
        if node.direction == "read":
            return _dma_read_process(node.name, node.outputs[0], t, dma_share, target, traffic, node.stripes)
        return _dma_write_process(node.name, node.inputs[0], t, dma_share, target, traffic)
    raise ValueError(f"no timing model for node {node.name} of kind {node.kind}")


def crossing_dma_name(stream: str, direction: str) -> str:
    """Process name of the implicit DMA at one end of a stream that crosses fusion groups."""
    return f"{stream}.dma_{direction}"


def _group_members(graph: DataflowGraph, group: int | None
                   ) -> tuple[set[str], list[DataflowStream], list[DataflowStream], set[str]]:
    """The nodes of fusion group ``group`` (omitted: the one group), the streams crossing into and out of it,
    and its absorbed converters."""
    groups = node_groups(graph)
    count = max(groups.values(), default=-1) + 1
    if group is None:
        if count > 1:
            raise ValueError(f"dataflow graph @{graph.name} has {count} fusion groups: build one network per group")
        group = 0
    if not 0 <= group < max(count, 1):
        raise ValueError(f"dataflow graph @{graph.name} has no fusion group {group}")
    members = {n for n, g in groups.items() if g == group}
    absorbed = set(absorbed_converters(graph)) & members
    crossing_in = [s for s in graph.streams.values() if s.target in members and s.source not in members]
    crossing_out = [s for s in graph.streams.values() if s.source in members and s.target not in members]
    return members, crossing_in, crossing_out, absorbed


def hbm_report(graph: DataflowGraph, target: Target) -> list[dict[str, object]]:
    """Per fusion group, every external-memory DMA (DMA nodes, absorbed converters, implicit DMAs of crossing
    streams) with its tensor, stripes, pseudo-channels and share, and the bytes per cycle it streams at (its words
    per token over the modelled cycles per token), and their total against the target's peak."""
    out: list[dict[str, object]] = []
    peak = target.hbm.channels * target.channel_bytes_per_cycle
    placed = _group_placements(graph, placement_units(graph, target.hbm), target.hbm, serial_dmas(graph))
    for group, (dmas, placement) in enumerate(placed):
        shares = dma_shares(graph, placement)
        rows = []
        for tensor, dma, layout in dmas:
            j = placement.stripes(dma)
            rate = layout.words_per_tile * WORD_BYTES / dma_token_cycles(layout.words_per_tile, j, shares[dma], target)
            node = graph.nodes.get(dma)
            rows.append({"dma": dma, "tensor": node.tensor.name if isinstance(node, DmaNode) else tensor, "stripes": j,
                         "channels": [list(r) for r in placement.dma_ranges[dma]], "share": float(shares[dma]),
                         "ports_on_busiest_channel": placement.ports[dma],
                         "bytes": layout.total_bytes, "streamed_bytes": layout.streamed_bytes,
                         "bytes_per_cycle": round(float(rate), 3)})
        total = sum(r["bytes_per_cycle"] for r in rows)
        out.append({"group": group, "dmas": rows, "ports": sum(r["stripes"] for r in rows),
                    "bytes_per_cycle": round(total, 3), "peak_bytes_per_cycle": float(peak)})
    return out


def build_process_network(graph: DataflowGraph, target: Target, group: int | None = None) -> ProcessNetwork:
    """One process per node of fusion group ``group`` and one stream per dataflow stream inside it.

    ``group`` may be omitted when the graph is one accelerator (no groups, or one). A group is its own
    accelerator (one bitstream, run after the previous one), so a stream that crosses groups goes through
    external memory: inside the producer's group it feeds an implicit write DMA (``<stream>.dma_write``), inside
    the consumer's group an implicit read DMA (``<stream>.dma_read``) streams it back, or, for an absorbed
    converter (``memory.absorbed_converters``), the converter itself is that read DMA and streams its result
    layout. Stream widths are the itensor token bits; token counts the itensor token counts."""
    members, crossing_in, crossing_out, absorbed = _group_members(graph, group)
    shares = dma_shares(graph, dma_placement(graph, members, crossing_in, crossing_out, absorbed, target))
    order = [n for n in graph.topological_order() if n in members]
    processes: list[Process] = []
    for name in order:
        node = graph.nodes[name]
        if name in absorbed:
            out = node.outputs[0]
            processes.append(_dma_read_process(name, out, graph.streams[out].type, shares[name], target))
        else:
            processes.append(node_process(graph, node, target, shares.get(name, 1)))
    for s in crossing_in:
        if s.target not in absorbed:
            name = crossing_dma_name(s.name, "read")
            processes.append(_dma_read_process(name, s.name, s.type, shares[name], target))
    for s in crossing_out:
        name = crossing_dma_name(s.name, "write")
        processes.append(_dma_write_process(name, s.name, s.type, shares[name], target))
    streams = []
    for s in graph.streams.values():
        if s.source in members and s.target in members:
            streams.append(Stream(s.name, s.source, s.target, s.type.token_bits, s.type.num_tokens))
        elif s.source in members:
            streams.append(Stream(s.name, s.source, crossing_dma_name(s.name, "write"), s.type.token_bits,
                                  s.type.num_tokens))
        elif s.target in members and s.target not in absorbed:
            streams.append(Stream(s.name, crossing_dma_name(s.name, "read"), s.target, s.type.token_bits,
                                  s.type.num_tokens))
    return ProcessNetwork(processes, streams, target.memory.srl_max_bits)


class GroupNetworks:
    """The process network of a group of ``graph`` (:func:`build_process_network`), kept while the DMA shares it
    was built with hold (``DmaNode.share``, which the contention settling raises): the settling's last round, the
    FIFO sizing after it and its checks simulate one network, whose tables (``timing_sim``) are built once
    (issue 21). A network built again for other shares takes the previous one's processes but for the DMAs whose
    shares changed (only those depend on them: a paper-size decode block's network was built five times)."""

    def __init__(self, graph: DataflowGraph, target: Target) -> None:
        self.graph, self.target = graph, target
        self._kept: dict[tuple[int, tuple[tuple[str, Fraction | int], ...]], ProcessNetwork] = {}
        # Per group, the network built last and the shares it was built with.
        self._latest: dict[int, tuple[dict[str, Fraction | int], ProcessNetwork]] = {}

    def __call__(self, group: int) -> ProcessNetwork:
        shares = tuple((n, node.share) for n, node in self.graph.nodes.items()
                       if isinstance(node, DmaNode) and node.share is not None)
        if (group, shares) not in self._kept:
            self._kept = {k: net for k, net in self._kept.items() if k[1] == shares}  # stale ones go
            latest = self._latest.get(group)
            net = (build_process_network(self.graph, self.target, group) if latest is None
                   else self._rebuilt(*latest, dict(shares)))
            if serial_dmas(self.graph):  # rebuilt as the shares rise: most processes run as they did before
                keep_evaluated_depths(net, None if latest is None else latest[1])
            self._kept[(group, shares)] = net
            self._latest[group] = (dict(shares), net)
        return self._kept[(group, shares)]

    def _rebuilt(self, built: dict[str, Fraction | int], net: ProcessNetwork, shares: dict[str, Fraction | int]
                 ) -> ProcessNetwork:
        """``net``, built with ``built``, with the processes of the DMA nodes whose share is not that any more
        built again (:func:`node_process`, as :func:`build_process_network` builds them)."""
        return net.with_processes({p.name: node_process(self.graph, self.graph.nodes[p.name], self.target,
                                                        shares[p.name])
                                   for p in net.processes if p.name in shares and shares[p.name] != built.get(p.name)})


# --- node timing for the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeTiming:
    """L, D and II of one node with no stalls (module docstring).

    ``ii`` is the average cycles between consecutive tokens of the node's main stream (its first output, or its
    input for a sink) while it streams: ``(firing of the last token - firing of the first) * ii_firing /
    (tokens - 1)``; the firing II for a one-token stream. For a kernel reading one token per tile it is the tile
    period; for a reduction's output it is the period of a whole reduction."""

    latency: int
    delay: int
    ii: float
    firings: int
    depth: int


def process_timing(p: Process) -> NodeTiming:
    firings = next(iter(p.writes.values()), None)
    if firings is None:
        firings = next(iter(p.reads.values()), np.zeros(1, dtype=np.int64))
    span = int(firings[-1] - firings[0]) if len(firings) > 1 else 0
    ii = span * p.ii / (len(firings) - 1) if len(firings) > 1 else float(p.ii)
    return NodeTiming(latency=p.latency, delay=p.initial_delay, ii=ii, firings=p.num_firings, depth=p.depth)


def node_timings(net: ProcessNetwork) -> dict[str, NodeTiming]:
    """Timing of every process of ``net`` (nodes and implicit DMAs), by name."""
    return {p.name: process_timing(p) for p in net.processes}
