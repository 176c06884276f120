"""Linalg tiling (spec §4.1): tile sizes, loop orders and intensity-aware unroll factors of every kernel.

**Which generics become kernels.** Every ``linalg.generic`` whose result must be streamed, except constant
fills whose only uses are accumulator inits: such an init is folded into the consuming kernel as a constant
(``KernelNode.init_constants``). Liveness starts at the block outputs (looking through the reshapes between an
output and the value that produces it, since a write DMA addresses external memory in any order).

**Tile sizes.** Loop of range ``n``: the largest divisor of ``n`` that is ``<= default_tile_size`` (tiles must
cover a loop exactly: kernels, itensor types and converters all assume uniform tiles, so a prime range larger
than the default gets tile 1; the tile is the range itself when it fits). Two refinements, both of which only
shrink tiles to divisors (``fit_tiles``):

- ``agree_tiles``: along every kernel-to-kernel edge (a result read by an operand, through reshapes, slices
  and at most one concat) producer and consumer tiles are shrunk to their common divisor, seen through the
  data movement: a slice needs tiles that divide its bounds; a reshape maps a tile to the largest tile of the
  other shape whose elements form, in every reassociation group, a row-major run inside it (a 16-column tile of
  a 1024 hidden dim is 1 head x 16 of a 16 x 64 view). Different tiles of one tensor always need a converter
  (element sizes must match for a converter to share a loop), so agreeing removes converters whose only cause
  is the tiling.
- ``max_token_rank``: every token a kernel exchanges on chip (an input from another kernel, an init, a result)
  holds at most ``default_tile_size ** max_token_rank`` elements, i.e. the tile of a rank-``max_token_rank``
  tensor at the default size (0: no cap). FIFOs, input tiles and accumulators hold whole tokens, so a 16x16x16
  f32 tile would cost 16 KiB per FIFO slot. Operands read from external memory (weights, block inputs, KV
  caches) are exempt: their tokens wait only in a DMA's FIFO and the kernel's input tile, and a weight tile cut
  to the cap would cut the reduction tile of every matmul with it (``max_token_rank=1`` would leave a decode
  matmul one 16-element weight column per firing). A kernel over the cap shrinks one of the offending
  operand's loops to its next smaller divisor until it fits: loops that every operand read from external memory
  indexes first (cutting another loop would stream that operand again; among those, the loops whose cut streams
  the fewest bytes again), then a dim held whole in one tile (a small dim clipped to its size, such as heads),
  then the smallest tile, then the operand's outermost dim.
  Kernels are capped in program order with the agreement re-run after each one, so later kernels inherit the
  tiles earlier ones chose.
- ``token_tile_size`` (0: off): the loops over the token dim of the block's activations (dim -2 of the first
  input) in every kernel that reads them get a tile dividing it, before agreement carries it
  downstream. A prefill block otherwise holds ``default_tile_size`` rows wherever a kernel needs a whole row
  first (two-pass norms, matmuls re-reading their input per column tile, the residual across the MLP):
  64 KiB per hold at GPT-2 paper size. Smaller token tiles re-stream the weights once per row tile instead.

**Loop orders.** Default tile order: one-trip loops first (they move nothing; outermost they never keep an
operand from being held across the loops inside its last used loop, see ``KernelNode``), then the parallel
loops in the order of the (first) output's dims, then any other parallel loop, then the reduction loops in dim
order (output-stationary: one output tile pending at a time). With ``layout_aware_order`` the tile orders are
chosen to minimize the bytes that depend on them: converter buffers on kernel-to-kernel edges (the producer's
result type carried through reshapes / slices, compared with the consumer's operand type, or with its chunk
at the region of a concat; ``infer_converter_buffer``) plus accumulators (``pending_tiles`` output tiles per
result). Candidates per kernel are the permutations of its loops of more than one trip (<= 5 in LLM blocks).
The search is a coordinate descent, each kernel in turn taking its cheapest order given the others', consumers
first then producers first until nothing changes; a kernel's move takes its all-parallel neighbours along
(such a kernel can walk its tiles in any order, so it re-picks, among the orders cheapest on its edges to the
moved kernel, its cheapest one: the layout is propagated into producers such as a KV-cache update and into
consumers). Where the descent stops, a leap re-orders one kernel and lets every kernel that no longer fits
its re-ordered neighbours re-pick its order, breadth first (a head-major attention turned row-major takes its
projections, norms and softmax along); the first leap that lowers the total is kept and the descent resumes.
The descent runs from the default orders and from ``order_search_restarts`` random orders (seeded, so
deterministic); the cheapest local optimum wins, the default-started one on ties. Point loops
(inside a tile): with ``permute_reductions_outward`` the reduction loops go outward and the parallel ones
innermost (the pipelined loop then carries no accumulator dependence: lower II, see
``analysis.timing_model``); without it the point order is the tile order.

**Unrolling.** Unroll factors are powers of two dividing the tile. ``overall_unroll_size`` is the budget of
*parallel lanes of the whole design*: ``sum over kernels of prod over loops of unroll`` (body instances that
issue per cycle; a kernel without unrolling has one lane). Every kernel always has at least one lane, so a
budget below the number of kernels leaves every kernel at one lane.

- Intensity-aware (spec §4.1): a max-heap of kernel latencies (``kernel_timing``). Pop the slowest kernel and
  double the unroll of one of its loops: candidates are the loops whose doubled unroll still divides the tile,
  in preference order innermost parallel point loop first, then outer parallel ones, then reduction loops
  innermost first; the candidate giving the lowest latency wins (ties: preference order). Push it back and
  repeat while the doubling fits the budget (it adds the kernel's current lane count) and the device: the
  datapaths (lanes x the DSPs / LUTs of the body, ``analysis.resources``) within ``DATAPATH_SHARE`` of the
  U55C, and each kernel's within that share of one SLR (a kernel these bounds stop leaves the heap; cheaper
  kernels may still grow). A kernel no doubling makes faster (its tiles fully unrolled: with
  ``max_token_rank=1`` a score kernel over 128 positions in 1-element tiles) leaves the heap too and the others
  keep growing: its latency bounds the pipeline's throughput, but a decode block runs its kernels largely one
  after another, so theirs still add to the makespan. Stop when the slowest kernel's doubling would exceed the
  lane budget.
- Bandwidth-aware (both strategies): no kernel reads an input streamed from external memory (a weight, a
  block input) faster than that input's DMA delivers it (``analysis.timing_model``: one HBM pseudo-channel per
  tensor, split among its DMAs). Where its lanes would, the kernel's pipeline II is raised to the least that
  keeps pace (``min_pipeline_ii``, emitted as the HLS pipeline II), and it is not doubled again: the doubling
  that made it DMA-paced was its last (a further one would at most round the II closer to the DMA's rate, at
  twice the DSPs and LUTs). A faster kernel would only wait for the DMA, or, with the DMA free to run ahead
  while the kernel waits for its other inputs, turn the FIFO between them into a prefetch buffer of the whole
  weight: megabytes in a decode block, which the FIFO-sizing LP would have to keep to match the latency of
  unbounded FIFOs. A kernel paced by its DMA leaves the heap and
  the others keep growing: a decode block runs its kernels one after the other, so they all add to its
  latency.
- Uniform: the same lane count ``f`` (a power of two) for every kernel, each reaching it by doubling loops in
  preference order (capped where its tile is fully unrolled), with the largest ``f`` whose total fits the
  budget.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from streamtensor.analysis.resources import U55C, lane_cost
from streamtensor.analysis.timing_model import (
    HBM_CHANNELS,
    KernelTiming,
    dma_bytes_per_cycle,
    dma_token_bytes,
    kernel_timing,
)
from streamtensor.errors import OptionError
from streamtensor.ir.converter_buffer import infer_converter_buffer
from streamtensor.ir.dataflow import LoopTiling, kernel_operand_type, pending_tiles, reads_init
from streamtensor.ir.dtypes import DTYPE_BITS
from streamtensor.ir.itensor import ITensorType
from streamtensor.ir.layout import chunk_type, concat_regions, reassociate_type, reassociation_error
from streamtensor.ir.linalg import ConcatOp, EmptyOp, GenericOp, Graph, Op, ReshapeOp, SliceOp
from streamtensor.ir.scalar_eval import eval_body


@dataclass(frozen=True)
class TilingOptions:
    """The Linalg tiling design space (module docstring)."""

    default_tile_size: int = 16
    overall_unroll_size: int = 1024
    permute_reductions_outward: bool = True
    intensity_aware_unroll: bool = True
    max_token_rank: int = 2
    token_tile_size: int = 0
    agree_tiles: bool = True
    layout_aware_order: bool = True
    order_search_restarts: int = 8

    def __post_init__(self) -> None:
        for name, least in (("default_tile_size", 1), ("overall_unroll_size", 1), ("max_token_rank", 0),
                            ("token_tile_size", 0), ("order_search_restarts", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise OptionError(f"bad {name.replace('_', '-')} {value!r}: must be an integer of at least {least}")
        for name in ("permute_reductions_outward", "intensity_aware_unroll", "agree_tiles", "layout_aware_order"):
            if not isinstance(getattr(self, name), bool):
                raise OptionError(f"bad {name.replace('_', '-')} {getattr(self, name)!r}: "
                                  "must be true or false")


@dataclass
class OpTiling:
    """Tiling of one kernel: ``loops`` indexed by loop dim, orders outermost first."""

    loops: list[LoopTiling]
    tile_order: list[int]
    point_order: list[int]
    min_pipeline_ii: int = 1  # bandwidth-aware unrolling (module docstring)

    @property
    def lanes(self) -> int:
        return math.prod(lt.unroll for lt in self.loops)


@dataclass
class Tiling:
    """The tiling of a graph: one ``OpTiling`` per kernel (by op label) and each kernel's timing."""

    options: TilingOptions
    ops: dict[str, OpTiling]
    timings: dict[str, KernelTiming] = field(default_factory=dict)

    @property
    def total_lanes(self) -> int:
        return sum(t.lanes for t in self.ops.values())

    @property
    def max_latency(self) -> int:
        return max((t.latency for t in self.timings.values()), default=0)


# --- kernels, fills, liveness ------------------------------------------------------------------------------


def _fill_scalar(op: GenericOp) -> float | int | bool | None:
    """The constant a pure fill writes: no inputs, a body of constants (and casts of them) only."""
    if op.inputs or any(s.name == "linalg.index" for s in op.body.ops):
        return None
    args = {name for name, _ in op.body.args}
    if any(a in s.operands for s in op.body.ops for a in args) or any(y in args for y in op.body.yields):
        return None
    (value,) = eval_body(op.body, [np.zeros(()) for _ in op.body.args], [])
    return np.asarray(value).item()


def fill_value(graph: Graph, name: str, producers: dict[str, Op] | None = None) -> float | int | bool | None:
    """The scalar every element of ``name`` holds when it is (a reshape/slice of) a constant fill or a
    ``tensor.empty`` (zeros, as the reference interpreter reads it), else None."""
    producers = producers if producers is not None else graph.producers()
    op = producers.get(name)
    while isinstance(op, ReshapeOp | SliceOp):
        op = producers.get(op.source.name)
    if isinstance(op, EmptyOp):
        return 0
    return _fill_scalar(op) if isinstance(op, GenericOp) else None


def output_root(name: str, producers: dict[str, Op]) -> tuple[str, list[ReshapeOp]]:
    """The value a block output is a reshape chain of, and that chain in program order."""
    chain: list[ReshapeOp] = []
    op = producers.get(name)
    while isinstance(op, ReshapeOp):
        chain.insert(0, op)
        name = op.source.name
        op = producers.get(name)
    return name, chain


def streamed_uses(op: Op, graph: Graph, producers: dict[str, Op]) -> list[str]:
    """Operand values ``op`` needs as data (not folded inits, not unread inits)."""
    if not isinstance(op, GenericOp):
        return [v.name for v in op.operands]
    out = [v.name for v in op.inputs]
    for r, v in enumerate(op.inits):
        if reads_init(op, r) and fill_value(graph, v.name, producers) is None:
            out.append(v.name)
    return out


def live_values(graph: Graph) -> set[str]:
    """Values whose data must exist on chip or be read from memory (module docstring)."""
    producers = graph.producers()
    live = {output_root(v.name, producers)[0] for v in graph.outputs}
    for op in reversed(graph.ops):
        if any(r.name in live for r in op.results):
            live.update(streamed_uses(op, graph, producers))
    return live


def kernel_ops(graph: Graph) -> list[GenericOp]:
    """The generics that become kernels, in program order."""
    live = live_values(graph)
    return [op for op in graph.ops if isinstance(op, GenericOp) and any(r.name in live for r in op.results)]


# --- tile sizes and orders ---------------------------------------------------------------------------------


def tile_size(size: int, default: int) -> int:
    """Largest divisor of ``size`` that is at most ``default``."""
    return max(t for t in range(1, min(size, default) + 1) if size % t == 0)


def default_orders(op: GenericOp, loops: list[LoopTiling], options: TilingOptions) -> tuple[list[int], list[int]]:
    """Tile and point orders before the layout-aware choice (module docstring)."""
    reduction = set(op.reduction_dims)
    out_map = op.indexing_maps[len(op.inputs)]
    parallel = [d for d in (out_map.result_dim(i) for i in range(out_map.num_results))
                if d is not None and d not in reduction]
    parallel += [d for d in range(len(loops)) if d not in reduction and d not in parallel]
    reductions = sorted(reduction)
    once = [d for d in range(len(loops)) if loops[d].trip == 1]
    tile_order = once + [d for d in parallel + reductions if d not in once]
    point_order = reductions + parallel if options.permute_reductions_outward else list(tile_order)
    return tile_order, point_order


def initial_tiling(op: GenericOp, options: TilingOptions) -> OpTiling:
    """Tiles and orders of one op, every unroll factor 1."""
    reduction = set(op.reduction_dims)
    loops = [LoopTiling(n, tile_size(n, options.default_tile_size), 1, d in reduction)
             for d, n in enumerate(op.domain)]
    return OpTiling(loops, *default_orders(op, loops, options))


def _candidates(t: OpTiling) -> list[int]:
    """Loops whose unroll can double, in preference order (module docstring)."""
    inner_first = list(reversed(t.point_order))
    ordered = ([d for d in inner_first if not t.loops[d].reduction]
               + [d for d in inner_first if t.loops[d].reduction])
    return [d for d in ordered if t.loops[d].tile % (2 * t.loops[d].unroll) == 0]


def _doubled(t: OpTiling, d: int) -> OpTiling:
    loops = list(t.loops)
    loops[d] = replace(loops[d], unroll=loops[d].unroll * 2)
    return OpTiling(loops, t.tile_order, t.point_order)


def _timing(op: GenericOp, t: OpTiling) -> KernelTiming:
    return kernel_timing(op, t.loops, t.tile_order, t.point_order, t.min_pipeline_ii)


def external_streams(graph: Graph, ops: list[GenericOp]) -> list[dict[int, int]]:
    """Per kernel, its inputs streamed from external memory (operand index -> channel share of its DMA).

    Mirrors ``analysis.timing_model``'s DMA shares: every streamed use of an external tensor has its own DMA on
    the tensor's pseudo-channel, so ``uses`` DMAs split it; with more tensors than channels ``crowding`` tensors
    share every channel."""
    producers = graph.producers()
    roots = [{j: _trace(op.inputs[j].name, producers)[0] for j in external_operands(op, producers)} for op in ops]
    uses: dict[str, int] = {}
    for per_op in roots:
        for root in per_op.values():
            uses[root] = uses.get(root, 0) + 1
    crowding = max(1, math.ceil(len(uses) / HBM_CHANNELS))
    return [{j: uses[root] * crowding for j, root in per_op.items()} for per_op in roots]


def _rate_matched(op: GenericOp, t: OpTiling, streams: dict[int, int]) -> OpTiling:
    """``t`` with the least pipeline II at which ``op`` reads no external input faster than its DMA delivers
    it: its firings take at least the cycles the DMA needs for the tokens they read."""
    loose = replace(t, min_pipeline_ii=1)
    timing = _timing(op, loose)
    need = 0
    for j, share in streams.items():
        itype = kernel_operand_type(op, t.loops, t.tile_order, j)
        need = max(need, itype.num_tokens * dma_token_bytes(itype) / dma_bytes_per_cycle(share))
    if timing.firings * timing.ii >= need:
        return loose
    iterations = math.prod(lt.tile for lt in t.loops) // t.lanes
    return replace(t, min_pipeline_ii=math.ceil(need / (timing.firings * iterations)))


# Share of the device's DSPs and LUTs the kernels' datapaths may take in all, and one kernel within one SLR (the
# rest: memories in LUTRAM, stream and DMA control, routing headroom; a kernel must not straddle dies).
DATAPATH_SHARE = 0.5


def _fits_datapath(costs: list[tuple[float, int]], lanes: list[int], k: int) -> bool:
    """Whether datapaths of ``lanes`` lanes (per kernel, ``costs`` per lane) stay within ``DATAPATH_SHARE`` of
    the U55C in total and kernel ``k`` within that share of one SLR."""
    for r, total in ((0, U55C.dsp), (1, U55C.lut)):
        if sum(c[r] * n for c, n in zip(costs, lanes, strict=True)) > DATAPATH_SHARE * total:
            return False
        if costs[k][r] * lanes[k] > DATAPATH_SHARE * total / U55C.slrs:
            return False
    return True


def _intensity_aware(ops: list[GenericOp], tilings: list[OpTiling], budget: int,
                     streams: list[dict[int, int]]) -> None:
    total = len(ops)
    costs = [lane_cost(op.body) for op in ops]
    tilings[:] = [_rate_matched(op, t, s) for op, t, s in zip(ops, tilings, streams, strict=True)]
    heap = [(-_timing(op, t).latency, i) for i, (op, t) in enumerate(zip(ops, tilings, strict=True))]
    heapq.heapify(heap)
    while heap:
        neg_latency, i = heapq.heappop(heap)
        if tilings[i].min_pipeline_ii > 1:
            continue  # paced by its DMA: more lanes would mostly idle; the other kernels may still grow
        lanes = tilings[i].lanes
        if total + lanes > budget:
            break
        best: tuple[int, OpTiling] | None = None
        for d in _candidates(tilings[i]):
            trial = _rate_matched(ops[i], _doubled(tilings[i], d), streams[i])
            latency = _timing(ops[i], trial).latency
            if best is None or latency < best[0]:
                best = (latency, trial)
        if best is None or best[0] >= -neg_latency:
            continue  # its tiles bound it; the others' latencies still add up along the block's critical path
        if not _fits_datapath(costs, [2 * t.lanes if k == i else t.lanes for k, t in enumerate(tilings)], i):
            continue  # the device's DSPs / LUTs bound this kernel; cheaper ones may still grow
        tilings[i] = best[1]
        total += lanes
        heapq.heappush(heap, (-best[0], i))


def _grown_to(t: OpTiling, lanes: int) -> OpTiling:
    while t.lanes < lanes and (cands := _candidates(t)):
        t = _doubled(t, cands[0])
    return t


def _uniform(tilings: list[OpTiling], budget: int) -> None:
    best = list(tilings)
    lanes = 2
    while True:
        trial = [_grown_to(t, lanes) for t in tilings]
        if sum(t.lanes for t in trial) > budget or [t.lanes for t in trial] == [t.lanes for t in best]:
            break
        best = trial
        lanes *= 2
    tilings[:] = best


# --- kernel-to-kernel edges, tile agreement, token cap -------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    """One Linalg data-movement op between two kernels: a reshape, or a slice (``offsets``/``sizes`` over
    ``source``; the result may drop unit dims)."""

    source: tuple[int, ...]
    result: tuple[int, ...]
    offsets: tuple[int, ...] | None = None  # None for a reshape
    sizes: tuple[int, ...] | None = None


@dataclass(frozen=True)
class _Edge:
    """A kernel result read by a kernel operand through reshapes / slices (``chain``, program order), possibly
    into input ``region`` (offsets, sizes) of a concat whose result reaches the operand through reshapes
    ``after``."""

    producer: int  # index into the kernel list
    result: int
    chain: tuple[_Step, ...]
    consumer: int
    operand: int
    region: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    after: tuple[_Step, ...] = ()


def _trace(name: str, producers: dict[str, Op]) -> tuple[str, Op | None, tuple[_Step, ...]]:
    """Walk back from value ``name`` over reshapes and slices: the value reached, its producer, the steps."""
    chain: list[_Step] = []
    source = producers.get(name)
    while isinstance(source, ReshapeOp | SliceOp):
        src, res = source.source.type.shape, source.results[0].type.shape
        chain.insert(0, _Step(src, res) if isinstance(source, ReshapeOp)
                     else _Step(src, res, tuple(source.offsets), tuple(source.sizes)))
        name, source = source.source.name, producers.get(source.source.name)
    return name, source, tuple(chain)


def _kernel_edges(graph: Graph, ops: list[GenericOp]) -> list[_Edge]:
    """Every streamed operand of a kernel whose data comes from another kernel through reshapes, slices and at
    most one concat (values from external memory arrive through DMAs, which stream any order)."""
    producers = graph.producers()
    index = {op.name: i for i, op in enumerate(ops)}
    edges = []

    def add(name: str, c: int, j: int, region: tuple | None = None, after: tuple[_Step, ...] = ()) -> None:
        name, source, chain = _trace(name, producers)
        if isinstance(source, GenericOp) and source.name in index:
            result = next(r for r, value in enumerate(source.results) if value.name == name)
            edges.append(_Edge(index[source.name], result, chain, c, j, region, after))
        elif isinstance(source, ConcatOp) and region is None and all(step.offsets is None for step in chain):
            shapes = [v.type.shape for v in source.inputs]
            for value, place in zip(source.inputs, concat_regions(shapes, source.dim), strict=True):
                add(value.name, c, j, place, chain)

    for c, op in enumerate(ops):
        n_in = len(op.inputs)
        for j, v in enumerate(op.operands):
            if j >= n_in and (not reads_init(op, j - n_in) or fill_value(graph, v.name, producers) is not None):
                continue  # an unread or folded init has no stream
            add(v.name, c, j)
    return edges


def _groups(a: tuple[int, ...], b: tuple[int, ...]) -> list[tuple[list[int], list[int]]]:
    """The finest pairs (dims of ``a``, dims of ``b``) of consecutive dims with equal size products, in order:
    the reassociation groups of a reshape between the two shapes (a side may be empty for unit dims)."""
    out: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(a) or j < len(b):
        ga: list[int] = []
        gb: list[int] = []
        pa = pb = 1
        while not (ga and gb and pa == pb):
            if i < len(a) and (pa < pb or (pa == pb and not ga)):
                ga.append(i)
                pa *= a[i]
                i += 1
            elif j < len(b) and (pb < pa or not gb):
                gb.append(j)
                pb *= b[j]
                j += 1
            else:
                break
        out.append((ga, gb))
    return out


def _run(tile: list[int], sizes: list[int]) -> int:
    """Length of the longest row-major contiguous run inside a tile box of a group of dims: the inner dims the
    tile covers whole, times the tile of the next dim out."""
    run = 1
    for t, n in zip(reversed(tile), reversed(sizes), strict=True):
        run *= t
        if t != n:
            break
    return run


def _box(run: int, sizes: list[int]) -> list[int]:
    """The largest tile box of a group of dims whose row-major run divides ``run``."""
    tile = [1] * len(sizes)
    for k in range(len(sizes) - 1, -1, -1):
        tile[k] = math.gcd(run, sizes[k])
        if tile[k] != sizes[k]:
            break
        run //= sizes[k]
    return tile


def _reshape_tile(tile: tuple[int, ...], a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """The largest tile of shape ``b`` whose elements are a contiguous sub-pattern of ``tile`` (a tile of ``a``)
    in every reassociation group."""
    out = [1] * len(b)
    for ga, gb in _groups(a, b):
        run = _run([tile[k] for k in ga], [a[k] for k in ga])
        for k, t in zip(gb, _box(run, [b[k] for k in gb]), strict=True):
            out[k] = t
    return tuple(out)


def _slice_tile(tile: tuple[int, ...], offsets: tuple[int, ...], sizes: tuple[int, ...]) -> tuple[int, ...]:
    """Tile of the source dims that starts and ends tiles on the slice bounds (what a chunk needs)."""
    return tuple(math.gcd(t, o, n) for t, o, n in zip(tile, offsets, sizes, strict=True))


def _operand_tile(op: GenericOp, loops: list[LoopTiling], operand: int) -> tuple[int, ...]:
    amap = op.indexing_maps[operand]
    dims = [amap.result_dim(i) for i in range(amap.num_results)]
    return tuple(1 if d is None else loops[d].tile for d in dims)


def _impose(op: GenericOp, loops: list[LoopTiling], operand: int, tile: tuple[int, ...]) -> bool:
    """Shrink the loops of ``operand``'s dims to divide ``tile``; whether anything changed."""
    amap = op.indexing_maps[operand]
    changed = False
    for i, t in enumerate(tile):
        d = amap.result_dim(i)
        if d is not None and math.gcd(loops[d].tile, t) != loops[d].tile:
            loops[d] = replace(loops[d], tile=math.gcd(loops[d].tile, t))
            changed = True
    return changed


def _cap_tokens(op: GenericOp, loops: list[LoopTiling], cap: int, external: set[int]) -> bool:
    """Shrink ``op``'s tiles until every token it exchanges on chip (inputs from kernels, inits, results) holds
    at most ``cap`` elements (module docstring); ``external`` are the operands read from external memory, which
    are exempt. Whether anything changed."""
    changed = False
    for operand in (j for j in range(len(op.operands)) if j not in external):
        amap = op.indexing_maps[operand]
        dims = [d for d in (amap.result_dim(i) for i in range(amap.num_results)) if d is not None]

        def rank(d: int) -> tuple[int, bool, int]:
            # Cutting a loop that some external operand does not index makes that operand's tiles reused by
            # fewer firings, i.e. streamed again from external memory: loops give way in the order of the bytes
            # they would stream again (a weight before a block input read alongside it). Then a dim held whole
            # in one tile (a small dim clipped to its size, e.g. heads) goes first, then the smallest tile,
            # then the outermost dim of the operand (min keeps the first).
            rereads = sum(op.inputs[j].type.bytes for j in external if d not in op.indexing_maps[j].used_dims())
            return rereads, loops[d].trip > 1, loops[d].tile

        while math.prod(loops[d].tile for d in dims) > cap:
            d = min((d for d in dims if loops[d].tile > 1), key=rank)
            tile = loops[d].tile
            loops[d] = replace(loops[d], tile=max(t for t in range(1, tile) if tile % t == 0))
            changed = True
    return changed


def external_operands(op: GenericOp, producers: dict[str, Op]) -> set[int]:
    """Input operands of ``op`` streamed from external memory (block inputs, weights, constants, and reshapes
    or slices of them)."""
    return {j for j, v in enumerate(op.inputs)
            if not isinstance(_trace(v.name, producers)[1], GenericOp | ConcatOp)}


def _tile_forward(tile: tuple[int, ...], step: _Step) -> tuple[int, ...]:
    if step.offsets is not None and step.sizes is not None:
        return _reshape_tile(_slice_tile(tile, step.offsets, step.sizes), step.sizes, step.result)
    return _reshape_tile(tile, step.source, step.result)


def _tile_backward(tile: tuple[int, ...], step: _Step) -> tuple[int, ...]:
    if step.offsets is not None and step.sizes is not None:
        return _slice_tile(_reshape_tile(tile, step.result, step.sizes), step.offsets, step.sizes)
    return _reshape_tile(tile, step.result, step.source)


def _agree(e: _Edge, ops: list[GenericOp], tilings: list[OpTiling]) -> bool:
    """Shrink both ends of edge ``e`` to the common divisor of their tiles (seen through the data movement
    between them); whether anything changed."""
    producer, consumer = ops[e.producer], ops[e.consumer]
    p_loops, c_loops = tilings[e.producer].loops, tilings[e.consumer].loops
    result = len(producer.inputs) + e.result
    made = _operand_tile(producer, p_loops, result)
    for step in e.chain:
        made = _tile_forward(made, step)
    wanted = _operand_tile(consumer, c_loops, e.operand)
    for step in reversed(e.after):
        wanted = _tile_backward(wanted, step)
    if e.region is not None:
        wanted = _slice_tile(wanted, *e.region)
    tile = tuple(map(math.gcd, made, wanted))
    pushed = tile
    for step in e.after:
        pushed = _tile_forward(pushed, step)
    changed = _impose(consumer, c_loops, e.operand, pushed)
    for step in reversed(e.chain):
        tile = _tile_backward(tile, step)
    return _impose(producer, p_loops, result, tile) or changed


def impose_token_tile(graph: Graph, ops: list[GenericOp], tilings: list[OpTiling], token_tile: int) -> None:
    """Shrink the loops that walk the token dim of the block's activations (dim -2 of the first input: the
    ``[..., tokens, features]`` of a transformer block), in every kernel that reads them (through reshapes and
    slices), to divide ``token_tile``; tile agreement carries the tile on to the kernels downstream."""
    if not graph.inputs or len(graph.inputs[0].type.shape) < 2:
        return
    activations = graph.inputs[0]
    shape = activations.type.shape
    token_dim = len(shape) - 2
    tile = tuple(math.gcd(token_tile, n) if k == token_dim else n for k, n in enumerate(shape))
    producers = graph.producers()
    for op, t in zip(ops, tilings, strict=True):
        for j, v in enumerate(op.inputs):
            root, _, chain = _trace(v.name, producers)
            if root == activations.name:
                operand_tile = tile
                for step in chain:
                    operand_tile = _tile_forward(operand_tile, step)
                _impose(op, t.loops, j, operand_tile)


def fit_tiles(graph: Graph, ops: list[GenericOp], tilings: list[OpTiling], cap: int | None, agree: bool) -> None:
    """With ``agree``, make producer and consumer tiles agree along every kernel-to-kernel edge; then cap the
    tokens of each kernel in program order at ``cap`` elements (None: no cap), agreeing again after every
    kernel that shrank, so that later kernels see the tiles earlier ones chose (module docstring). In place;
    tiles only shrink, to divisors, so a capped kernel stays within the cap."""
    edges = _kernel_edges(graph, ops) if agree else []

    def settle() -> None:
        while any([_agree(e, ops, tilings) for e in edges]):
            pass

    settle()
    if cap is not None:
        producers = graph.producers()
        for op, t in zip(ops, tilings, strict=True):
            if _cap_tokens(op, t.loops, cap, external_operands(op, producers)):
                settle()


# --- layout-aware tile orders --------------------------------------------------------------------------------


class TileOrderSearch:
    """Tile orders minimizing converter bytes between kernels plus accumulator bytes (module docstring)."""

    def __init__(self, graph: Graph, ops: list[GenericOp], tilings: list[OpTiling]) -> None:
        self.ops, self.loops = ops, [t.loops for t in tilings]
        self.orders = [tuple(t.tile_order) for t in tilings]
        self.edges = _kernel_edges(graph, ops)
        self.touching: list[list[int]] = [[] for _ in ops]  # edge indices
        for i, e in enumerate(self.edges):
            self.touching[e.producer].append(i)
            if e.consumer != e.producer:
                self.touching[e.consumer].append(i)
        self.candidates = [self._candidates(k) for k in range(len(ops))]
        # All-parallel kernels next to each kernel: they can walk their tiles in any order, so a move of the
        # kernel takes them along (each re-picks its best order for the kernel's new one).
        self.followers: list[list[int]] = [[] for _ in ops]
        for e in self.edges:
            for k, n in ((e.producer, e.consumer), (e.consumer, e.producer)):
                if n != k and not ops[n].reduction_dims and n not in self.followers[k]:
                    self.followers[k].append(n)
        self.group_edges = [sorted({i for m in [k, *self.followers[k]] for i in self.touching[m]})
                            for k in range(len(ops))]
        self.neighbors = [sorted({m for i in self.touching[k] for m in (self.edges[i].producer,
                                                                        self.edges[i].consumer)} - {k})
                          for k in range(len(ops))]
        self._bests: dict[tuple[int, tuple[tuple[int, ...], ...]], tuple[int, ...]] = {}
        self._types: dict[tuple[int, tuple[int, ...], int], ITensorType] = {}
        self._moved: dict[tuple[ITensorType | None, tuple[_Step, ...], bool], ITensorType | None] = {}
        self._edge_costs: dict[tuple[int, tuple[int, ...], tuple[int, ...]], int] = {}
        self._accumulators: dict[tuple[int, tuple[int, ...]], int] = {}

    def _candidates(self, k: int) -> list[tuple[int, ...]]:
        """Permutations of the loops of more than one trip in their slots of the initial order (one-trip loops
        move nothing and stay outermost, see ``default_orders``); the initial order first."""
        order, loops = self.orders[k], self.loops[k]
        slots = [i for i, d in enumerate(order) if loops[d].trip > 1]
        out = []
        for perm in itertools.permutations([order[i] for i in slots]):
            candidate = list(order)
            for i, d in zip(slots, perm, strict=True):
                candidate[i] = d
            out.append(tuple(candidate))
        return out

    def _type(self, k: int, order: tuple[int, ...], operand: int) -> ITensorType:
        key = (k, order, operand)
        if key not in self._types:
            self._types[key] = kernel_operand_type(self.ops[k], self.loops[k], list(order), operand)
        return self._types[key]

    def _move(self, t: ITensorType | None, chain: tuple[_Step, ...], backward: bool = False
              ) -> ITensorType | None:
        """A stream type carried along the reshapes / slices of ``chain`` (``backward``: from the end of the
        chain to its start, reshapes only), None when some step needs a converter to stream at all."""
        key = (t, chain, backward)
        if key not in self._moved:
            moved = t
            for step in reversed(chain) if backward else chain:
                if moved is None:
                    break
                if backward:
                    moved = reassociate_type(moved, step.source) if step.offsets is None else None
                elif step.offsets is not None and step.sizes is not None:
                    moved = chunk_type(moved, step.offsets, step.sizes)
                    if moved is not None and step.sizes != step.result:
                        moved = reassociate_type(moved, step.result)
                else:
                    moved = reassociate_type(moved, step.result)
            self._moved[key] = moved
        return self._moved[key]

    def _edge_cost(self, i: int) -> int:
        """Converter bytes on edge ``i`` under the current orders (0 for the same tokens); a stream that cannot
        be carried to the consumer costs the worst case, the whole tensor. Through a concat, the producer must
        stream the chunk of the consumer's layout at its region (what ``build_dataflow`` wires when it can).
        Every converter is priced as two windows: one with a single window has one bank, but its consumer then
        starts only after the producer has filled the whole window, and data forked around it waits in FIFOs
        for as long (orders priced by the bank count gave paper-size GPT-2 prefill a 131 KB converter and 35%
        more fused memory)."""
        e = self.edges[i]
        key = (i, self.orders[e.producer], self.orders[e.consumer])
        if key not in self._edge_costs:
            made = self._type(e.producer, key[1], len(self.ops[e.producer].inputs) + e.result)
            source = self._move(made, e.chain)
            result: ITensorType | None = self._type(e.consumer, key[2], e.operand)
            if e.region is not None:
                result = self._move(result, e.after, backward=True)
                result = chunk_type(result, *e.region) if result is not None else None
            if source is None or result is None:
                cost = 2 * -(-made.tensor_elements * DTYPE_BITS[made.dtype] // 8)
            elif source == result or reassociation_error(source, result) is None:
                cost = 0
            else:
                buffer = infer_converter_buffer(source, result, checked=False)
                cost = 2 * buffer.bytes // buffer.banks
            self._edge_costs[key] = cost
        return self._edge_costs[key]

    def _accumulator(self, k: int) -> int:
        key = (k, self.orders[k])
        if key not in self._accumulators:
            op, loops = self.ops[k], self.loops[k]
            bits = 0
            for r, value in enumerate(op.results):
                amap = op.indexing_maps[len(op.inputs) + r]
                dims = [amap.result_dim(i) for i in range(amap.num_results)]
                bits += math.prod(1 if d is None else loops[d].tile for d in dims) * DTYPE_BITS[value.type.dtype]
            pending = pending_tiles(loops, list(key[1])) if op.reduction_dims else 0
            self._accumulators[key] = pending * -(-bits // 8)
        return self._accumulators[key]

    def _cost(self, k: int) -> int:
        """Every byte that depends on kernel ``k``'s order: its accumulators and the converters on its edges."""
        return self._accumulator(k) + sum(self._edge_cost(i) for i in self.touching[k])

    def _group_cost(self, k: int) -> int:
        """Every byte that depends on the orders of kernel ``k`` and its followers."""
        return (self._accumulator(k) + sum(self._accumulator(n) for n in self.followers[k])
                + sum(self._edge_cost(i) for i in self.group_edges[k]))

    def total(self) -> int:
        return sum(self._accumulator(k) for k in range(len(self.ops))) + sum(map(self._edge_cost,
                                                                               range(len(self.edges))))

    def _fitting(self, n: int, shared: list[int]) -> list[tuple[int, ...]]:
        """Kernel ``n``'s orders cheapest on the edges ``shared``, in candidate order."""
        costs = []
        for order in self.candidates[n]:
            self.orders[n] = order
            costs.append(sum(self._edge_cost(i) for i in shared))
        least = min(costs)
        return [order for order, cost in zip(self.candidates[n], costs, strict=True) if cost == least]

    def _cheapest_of(self, n: int, orders: list[tuple[int, ...]]) -> tuple[int, ...]:
        """The first of ``orders`` with the fewest bytes depending on kernel ``n``'s order."""
        def cost(order: tuple[int, ...]) -> int:
            self.orders[n] = order
            return self._cost(n)
        return min(orders, key=cost)

    def _follow(self, n: int, k: int) -> tuple[int, ...]:
        """Follower ``n``'s order for kernel ``k``'s current one: among the orders cheapest on the edges between
        the two (the layout propagated into ``n``), the cheapest overall given its neighbors (first on ties)."""
        key = (n, tuple(self.orders[m] for m in self.neighbors[n]))
        if key not in self._bests:
            shared = [i for i in self.touching[n] if k in (self.edges[i].producer, self.edges[i].consumer)]
            self._bests[key] = self._cheapest_of(n, self._fitting(n, shared))
        return self._bests[key]

    def _move_kernel(self, k: int) -> bool:
        """Give kernel ``k`` its cheapest order, each follower re-picking its own best order for it; whether the
        total dropped (strictly)."""
        members = [k, *self.followers[k]]
        start = [self.orders[m] for m in members]
        best = (self._group_cost(k), start)
        for order in self.candidates[k]:
            self.orders[k] = order
            for n in self.followers[k]:
                self.orders[n] = self._follow(n, k)
            cost = self._group_cost(k)
            if cost < best[0]:
                best = (cost, [self.orders[m] for m in members])
        for m, order in zip(members, best[1], strict=True):
            self.orders[m] = order
        return best[1] != start

    def descend(self) -> None:
        """Coordinate descent: each kernel in turn takes its cheapest order (with its followers) given the
        others, consumers first (reverse program order) then producers first, until a sweep changes nothing. A
        change must lower the total strictly, so the descent ends."""
        forward = list(range(len(self.ops)))
        changed, sweep = True, 0
        while changed:
            changed = False
            for k in reversed(forward) if sweep % 2 == 0 else forward:
                changed |= self._move_kernel(k)
            sweep += 1

    def _propagate(self, k: int, order: tuple[int, ...]) -> None:
        """Kernel ``k`` takes ``order``; breadth first from it, each kernel next to a re-ordered one whose order
        no longer fits the re-ordered ones as well as another would re-picks, among the orders cheapest on its
        edges to them, its cheapest one given all others. A layout change travels as far as it must: through
        the projection, norm and attention kernels of a head-major stream together."""
        self.orders[k] = order
        placed, queue = {k}, deque([k])
        while queue:
            m = queue.popleft()
            for n in self.neighbors[m]:
                if n in placed:
                    continue
                shared = [i for i in self.touching[n]
                          if ({self.edges[i].producer, self.edges[i].consumer} - {n}) & placed]
                current = self.orders[n]
                fitting = self._fitting(n, shared)
                if current in fitting:
                    self.orders[n] = current
                    continue
                self.orders[n] = self._cheapest_of(n, fitting)
                placed.add(n)
                queue.append(n)

    def leap(self) -> bool:
        """From the current orders, the first propagated move (``_propagate``, kernels and their orders in
        program order) that lowers the total, followed by a descent; whether one did."""
        total = self.total()
        for k in range(len(self.ops)):
            for order in self.candidates[k]:
                if order == self.orders[k]:
                    continue
                start = list(self.orders)
                self._propagate(k, order)
                if self.total() < total:
                    self.descend()
                    return True
                self.orders = start
        return False

    def settle(self) -> None:
        """Descend, then leap and descend again while that lowers the total."""
        self.descend()
        while self.leap():
            pass

    def run(self, restarts: int) -> list[list[int]]:
        """The best local optimum of a descent from the default orders and of ``restarts`` descents from
        random orders (a fixed seed: the result is deterministic); ties keep the earliest."""
        self.settle()
        best = (self.total(), list(self.orders))
        rng = random.Random(0)
        for _ in range(restarts):
            self.orders = [rng.choice(c) for c in self.candidates]
            self.settle()
            if self.total() < best[0]:
                best = (self.total(), list(self.orders))
        return [list(o) for o in best[1]]


def tile_graph(graph: Graph, options: TilingOptions | None = None) -> Tiling:
    """Tile every kernel of ``graph`` (module docstring)."""
    options = options or TilingOptions()
    ops = kernel_ops(graph)
    tilings = [initial_tiling(op, options) for op in ops]
    if options.token_tile_size:
        impose_token_tile(graph, ops, tilings, options.token_tile_size)
    if options.agree_tiles or options.max_token_rank or options.token_tile_size:
        cap = options.default_tile_size ** options.max_token_rank if options.max_token_rank else None
        fit_tiles(graph, ops, tilings, cap, options.agree_tiles)
        # Trips changed: one-trip loops go outermost again.
        tilings = [OpTiling(t.loops, *default_orders(op, t.loops, options)) for op, t in zip(ops, tilings, strict=True)]
    if options.layout_aware_order:
        orders = TileOrderSearch(graph, ops, tilings).run(options.order_search_restarts)
        tilings = [replace(t, tile_order=o) for t, o in zip(tilings, orders, strict=True)]
        if not options.permute_reductions_outward:
            tilings = [replace(t, point_order=list(t.tile_order)) for t in tilings]
    streams = external_streams(graph, ops)
    if options.intensity_aware_unroll:
        _intensity_aware(ops, tilings, options.overall_unroll_size, streams)
    else:
        _uniform(tilings, options.overall_unroll_size)
        tilings = [_rate_matched(op, t, s) for op, t, s in zip(ops, tilings, streams, strict=True)]
    return Tiling(options, {op.name: t for op, t in zip(ops, tilings, strict=True)},
                  {op.name: _timing(op, t) for op, t in zip(ops, tilings, strict=True)})
