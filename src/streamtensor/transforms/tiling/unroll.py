"""Unroll factors of every kernel: intensity-aware or uniform, within the lane budget and the device, and
paced to the DMAs that feed it.

**Unrolling.** Unroll factors are powers of two dividing the tile. ``overall_unroll_size`` is the budget of
*parallel lanes of the whole design*, counted in lanes as costly as an f32 multiply-accumulate
(``budget_units``): ``sum over kernels of prod over loops of unroll`` (body instances that issue per cycle; a
kernel without unrolling has one lane), except that an integer MAC lane (an int8 x int8/int4 product, two per
DSP48E2, and an int32 adder: its replicated ops all integer) counts its DSP/LUT cost relative to an f32 MAC lane
(about a sixth on the UltraScale+ boards), so a W4A8 contraction gets several times the lanes of an f32 one.
f32 designs count plain lanes. Every kernel always has at least one lane, so a budget below the number of
kernels leaves every kernel at one lane.

**Datapath cost** is that of the generated code (``analysis.resources.datapath_cost``): a body value is built
once per lane of the lane loops its indices depend on, not once per lane (the normalised, quantized activation
that a GEMV's output lanes share is built once), so fusing float prologues into integer contractions does not
multiply their cost by the MAC lanes.

- Serial stages (a block of one token, decode): its kernels run largely one after another, so every kernel's
  latency adds to the makespan; the lanes go by the second round's rule below (cycles saved per share of the
  device) from the start, not to the slowest kernel first (which starved the LayerNorm reductions on a
  paper-size GPT-2 decode block). Its DMAs are rate-matched as if each had the HBM to itself
  (``external_streams``: its tiles' words in stripes, share 1), as ``transforms.stripes`` then stripes them.
- Intensity-aware (spec §4.1): a max-heap of kernel latencies (``kernel_timing``); in a block of many tokens
  keyed first by the cycles the kernel adds to the makespan (``_Lanes.keys``): where a consumer waits for its
  producer's whole result (``edge_waits``: the LayerNorm statistics before projections that walk their feature
  tiles outermost) their latencies add, so the key is the longest chain of such latencies through the kernel.
  Pop the slowest kernel and double the unroll of one of its loops: candidates are the loops whose doubled
  unroll still divides the tile, in preference order innermost parallel point loop first, then outer parallel
  ones, then reduction loops innermost first; the candidate giving the lowest latency wins (ties: the cheaper
  datapath, then preference order). Push it back and repeat while the doubling fits the budget and the device:
  the datapaths within ``DATAPATH_SHARE`` of the target's DSPs and LUTs, and each kernel's within that share of
  one SLR. A kernel
  that these bounds or the budget stop leaves the heap and cheaper kernels may still grow: a decode block runs
  its kernels largely one after another, so every kernel's latency adds to the makespan, and a LayerNorm
  reduction left at one lane costs thousands of cycles. A kernel no doubling makes faster (its tiles fully
  unrolled: with ``max_token_rank=1`` a score kernel over 128 positions in 1-element tiles) leaves the heap
  too. Stop when the heap is empty.
- Held back (intensity-aware, many tokens): a kernel whose result streams, through whole-result feeds that are
  no barriers (``fed_downstream``), into a kernel no faster than it that has left the heap for good runs at that
  kernel's pace through the FIFOs between them: it adds only the wait for its first results (the fraction of
  its run its consumers wait for, ``edge_waits``, times its latency), its key. When the budget or the device
  stops the popped kernel, held-back kernels whose key is smaller even at half their lanes give those back
  (least key first, each then leaving the heap) while that makes its doubling fit. (A paper-size W4A8 GPT-2
  prefill block's MLP up projection took 732 DSPs to halve a latency that its down projection, at the device's
  bound, kept; its QKV projection and LayerNorm statistics now take them: 291,607 -> 248,548 modelled cycles.)
- Bandwidth-aware (both strategies): a kernel that reads an input streamed from external memory (a weight, a
  block input) takes at least that input's DMA transfer (``analysis.hbm``: its stripes and their share of the
  HBM pseudo-channels its tensor is placed on; ``paced_latency``). Where its lanes would read faster than the
  DMA delivers, the kernel's pipeline II is raised to the greatest at which it still keeps pace
  (``min_pipeline_ii``, emitted as the HLS pipeline II): it stalls on the DMA's FIFO at the DMA's rate instead
  of idling the DMA at an II rounded up past it, and it is not doubled again: the doubling that made it
  DMA-paced was its last (a further one would only raise its II, at twice the DSPs and LUTs). The DMA runs
  ahead of such a kernel only while it waits for its other inputs, a head start the FIFO sizing caps at one
  HBM latency's tokens (``analysis.allocation``). A kernel paced by its DMA leaves the heap and
  the others keep growing: a decode block runs its kernels one after the other, so they all add to its
  latency.
- Fed kernels (intensity-aware): a kernel that streams in the whole result of another kernel (through
  reshapes or a concat, not a slice: ``whole_result_feeds``) cannot finish before that one does, so while it is
  no slower than one feeding it, it takes no lanes; it returns to the heap when that kernel gets faster. (A
  paper-size GPT-2 decode block gave its two attention contractions behind the KV-cache dequantization 1,024
  DSPs each for a latency sixteen times shorter than their feed's.)
- Second round (intensity-aware): what the heap left of the budget and of the device goes, one growth at a
  time, to the kernel whose growth removes the most cycles from its firings per share of the DSPs, LUTs or
  budget it adds (fed kernels as above excluded, and held-back ones: behind a slower kernel, or one as slow that
  cannot grow). A DMA-paced kernel does not grow: no lanes take it below its DMA's transfer.
- Uniform: the same lane count ``f`` (a power of two) for every kernel, each reaching it by doubling loops in
  preference order (capped where its tile is fully unrolled), with the largest ``f`` whose total fits the
  budget.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, replace
from fractions import Fraction

from streamtensor.analysis.hbm import (
    ExternalTensor,
    choose_stripes,
    dma_token_bytes,
    dma_token_cycles,
    place_tensors,
)
from streamtensor.analysis.resources import datapath_cost, lane_cost, value_copies
from streamtensor.analysis.timing_model import KernelTiming, kernel_timing
from streamtensor.ir.dataflow import kernel_operand_type, pending_tiles
from streamtensor.ir.itensor import ITensorType
from streamtensor.ir.linalg import GenericOp, Graph, ScalarBody
from streamtensor.packing import PackedLayout
from streamtensor.target import Target
from streamtensor.transforms.tiling.edges import (
    KernelEdge,
    external_operands,
    forks_external_read,
    trace_movement,
)
from streamtensor.transforms.tiling.plan import OpTiling
from streamtensor.transforms.tiling.tile_order import TileOrderSearch


def unroll_candidates(t: OpTiling) -> list[int]:
    """Loops whose unroll can double, in preference order (module docstring)."""
    inner_first = list(reversed(t.point_order))
    ordered = ([d for d in inner_first if not t.loops[d].reduction]
               + [d for d in inner_first if t.loops[d].reduction])
    return [d for d in ordered if t.loops[d].tile % (2 * t.loops[d].unroll) == 0]


def _unrolled(t: OpTiling, d: int, unroll: int) -> OpTiling:
    loops = list(t.loops)
    loops[d] = replace(loops[d], unroll=unroll)
    return replace(t, loops=loops, min_pipeline_ii=1)


def _doubled(t: OpTiling, d: int) -> OpTiling:
    return _unrolled(t, d, t.loops[d].unroll * 2)


def tiled_timing(op: GenericOp, t: OpTiling, target: Target) -> KernelTiming:
    return kernel_timing(op, t.loops, t.tile_order, t.point_order, target.ops, target.stream_max_bits,
                         t.min_pipeline_ii, t.read_operands)


def external_streams(graph: Graph, ops: list[GenericOp], tilings: list[OpTiling], target: Target,
                     serial: bool = False) -> list[dict[int, tuple[int, int]]]:
    """Per kernel, its inputs streamed from external memory (operand index -> (channel share, stripes) of its DMA).
    ``serial``: the block's stages run one after another (a one-token block): every DMA as if alone on the HBM.

    The shares and stripes are ``analysis.hbm``'s choice and placement of the tensors the dataflow graph will
    stream: every streamed use of an external tensor (through reshapes and slices) is a DMA of that tensor (the uses
    of a small value in one stream type share one, forked: ``forks_external_read``), with
    the packed layout of the kernel operand's stream (its tiles and repeat loops are fixed before unrolling), and
    every block output one written once (its bytes); the inputs other than KV caches may be striped.
    ``transforms.stripes`` and ``link.cfg`` stripe and place the dataflow graph's buffers by the same rule."""
    producers = graph.producers()
    types = {v.name: v.type for v in graph.inputs} | {r.name: r.type for op in graph.ops for r in op.results}
    roots = [{j: trace_movement(op.inputs[j].name, producers)[0] for j in external_operands(op, producers)}
             for op in ops]
    dmas: dict[str, list[tuple[str, PackedLayout | None]]] = {}
    # A small external value read in one layout by several kernels is one DMA, forked (``build_dataflow``'s
    # rule): its uses share that DMA's stream and its channel, so they must not count as ports of their own.
    shared: dict[tuple[str, ITensorType], str] = {}
    reads: dict[str, str] = {}  # "kernel.operand" -> the DMA it reads
    outputs = {v.name for v in graph.outputs}
    stripable = {v.name for v in graph.inputs if graph.cache_update_of(v.name) is None and v.name not in outputs}
    for op, t, per_op in zip(ops, tilings, roots, strict=True):
        for j, root in per_op.items():
            use = f"{op.name}.{j}"
            itype = kernel_operand_type(op, t.loops, t.tile_order, j)
            key = (op.inputs[j].name, itype)
            forked = forks_external_read(itype, op.inputs[j].name in graph.scalar_names)
            if forked and key in shared:
                reads[use] = shared[key]
                continue
            if forked:
                shared[key] = use
            reads[use] = use
            # A read-only tensor's DMAs each stream a buffer of their own (``DmaNode.placement_name``): each is
            # placed and striped on its own.
            if root in stripable:
                stripable.add(use)
            dmas.setdefault(use if root in stripable else root, []).append((use, PackedLayout.of(itype)))
    for v in graph.outputs:
        dmas.setdefault(v.name, []).append((f"{v.name}.store", None))
    tensors = []
    for name, uses in dmas.items():
        layouts = [lay for _, lay in uses if lay is not None]
        written = types[name].bytes * (len(uses) - len(layouts)) if name in types else 0  # block outputs
        stored = sum(lay.total_bytes for lay in layouts) + written
        demand = sum(lay.streamed_bytes for lay in layouts) + written
        words = min((lay.words_per_tile for lay in layouts), default=1) if name in stripable else 1
        tensors.append(ExternalTensor(name, tuple(d for d, _ in uses), stored, demand, max_stripes=words))
    if serial:
        # Its stages run one after another (``transforms.stripes``): a DMA may get the channels to itself, as
        # many as its tiles' words, and the stripe pass then keeps those its consumer absorbs.
        by_name = {t.name: t for t in tensors}
        return [{j: (1, min(by_name[reads[f"{op.name}.{j}"]].max_stripes if reads[f"{op.name}.{j}"] in by_name
                            else 1, target.hbm.channels)) for j in per_op}
                for op, per_op in zip(ops, roots, strict=True)]
    stripes = choose_stripes(tensors, target.hbm)
    placement = place_tensors([replace(t, stripes=stripes[t.name]) for t in tensors], target.hbm)
    return [{j: (placement.shares[reads[f"{op.name}.{j}"]], placement.stripes(reads[f"{op.name}.{j}"]))
             for j in per_op} for op, per_op in zip(ops, roots, strict=True)]


def dma_cycles(op: GenericOp, t: OpTiling, streams: dict[int, tuple[int, int]], target: Target) -> Fraction:
    """Cycles the slowest DMA feeding ``op`` under ``t`` needs for all the tokens it streams."""
    need = Fraction(0)
    for j, (share, stripes) in streams.items():
        itype = kernel_operand_type(op, t.loops, t.tile_order, j)
        words = dma_token_bytes(itype, target) // target.axi_bytes_per_cycle
        need = max(need, itype.num_tokens * dma_token_cycles(words, stripes, share, target))
    return need


def rate_matched(op: GenericOp, t: OpTiling, streams: dict[int, tuple[int, int]], target: Target,
                 serial: bool = False) -> OpTiling:
    """``t`` with the greatest pipeline II at which ``op`` still reads every external input at least as fast as
    its DMA delivers it: the kernel stalls on its DMA's FIFO at the DMA's rate (``paced_latency`` charges that
    rate), rather than idling the DMA at an II rounded up past it (up to half the DMA's rate: a prefill block's
    LayerNorm rows were read at 8 of the 14.4 bytes a cycle their DMA delivers). ``serial`` (a one-token block,
    whose read DMAs' FIFOs hold no prefetch: ``analysis.contention``): II 1."""
    loose = replace(t, min_pipeline_ii=1)
    if serial:
        return loose
    timing = tiled_timing(op, loose, target)
    need = dma_cycles(op, t, streams, target)
    if timing.firings * timing.ii >= need:
        return loose
    iterations = math.prod(lt.tile for lt in t.loops) // t.lanes
    ii = math.floor(need / (timing.firings * iterations))
    return replace(t, min_pipeline_ii=ii) if ii > 1 else loose


def paced_latency(op: GenericOp, t: OpTiling, streams: dict[int, tuple[int, int]], target: Target) -> int:
    """``op``'s latency under ``t``, at least its DMAs' transfer and its pipeline depth (the kernel stalls on
    them: ``rate_matched``)."""
    timing = tiled_timing(op, t, target)
    if not streams:
        return timing.latency
    return max(timing.latency, math.ceil(dma_cycles(op, t, streams, target)) + timing.depth)


# Share of the device's DSPs and of its LUTs the kernels' datapaths may take in all, and one kernel within one
# SLR (the rest: memories in LUTRAM, stream and DMA control, routing headroom; a kernel must not straddle dies).
# LUTs also build the memories in LUTRAM (partitioned input tiles and accumulators grow with the lanes): 0.4 (at
# 0.5 a paper-size W4A8 GPT-2 prefill block, whose datapath is charged as generated, overran the U55C's LUTs).
DATAPATH_SHARE = {"dsp": 0.5, "lut": 0.4}


def tiling_cost(op: GenericOp, t: OpTiling, target: Target) -> tuple[float, int]:
    """(DSP, LUT) of ``op``'s datapath under ``t``, as generated: lane-invariant ops built once
    (``analysis.resources.datapath_cost``)."""
    return datapath_cost(op, t.loops, t.point_order, target.ops)


def datapath_limits(target: Target) -> tuple[tuple[float, float], ...]:
    """Per resource (DSP, LUT): the most the kernels' datapaths may take in all and one kernel's may take
    (``DATAPATH_SHARE`` of the target's and of its smallest SLR's)."""
    totals = target.totals
    return tuple((DATAPATH_SHARE[name] * getattr(totals, name),
                  DATAPATH_SHARE[name] * min(getattr(s, name) for s in target.slrs)) for name in ("dsp", "lut"))


def _fits_datapath(costs: list[tuple[float, int]], k: int, limits: tuple[tuple[float, float], ...]) -> bool:
    """Whether datapaths costing ``costs`` (per kernel) stay within the ``datapath_limits`` in total and kernel
    ``k``'s within those of one SLR (the limits are the caller's: a growth round checks thousands of trials)."""
    for r, (total, one) in enumerate(limits):
        if sum(c[r] for c in costs) > total:
            return False
        if costs[k][r] > one:
            return False
    return True


def fp32_mac_cost(target: Target) -> tuple[float, int]:
    """(DSP, LUT) of one f32 multiply-accumulate lane (``arith.mulf`` + ``arith.addf``): the unit of the lane
    budget."""
    mul, add = target.ops.float_cost["arith.mulf"], target.ops.float_cost["arith.addf"]
    return mul[0] + add[0], mul[1] + add[1]


def _is_float(dtype: str) -> bool:
    return dtype in ("f16", "bf16", "f32", "f64")


def budget_units(op: GenericOp, t: OpTiling, target: Target) -> int:
    """Lane-budget units ``op`` takes under ``t``: ``overall_unroll_size`` counts lanes as costly as an f32
    multiply-accumulate. A lane counts one unit, as before (f32 designs are budgeted as lane counts), unless it
    is an integer MAC lane: its replicated ops (those built once per lane) are all integer and include a
    multiply (an int8 product packed two per DSP48E2 and an int32 adder). Such a lane counts its cost relative
    to the f32 MAC lane, the larger of the DSP and LUT ratios: a W4A8 contraction gets several times the lanes
    of an f32 one for the same silicon."""
    lanes = t.lanes
    if lanes == 1:
        return 1
    body = op.body
    copies = value_copies(op, t.loops, t.point_order)
    replicated = [o for o in body.ops if copies.get(o.result, 0) == lanes and o.name != "arith.constant"]
    types = dict(body.args) | {o.result: o.dtype for o in body.ops}
    if (not any(o.name == "arith.muli" for o in replicated)
            or any(_is_float(t) for o in replicated for t in (o.dtype, *(types[x] for x in o.operands)))):
        return lanes
    ratio = [c / m for c, m in zip(lane_cost(ScalarBody(body.args, tuple(replicated), body.yields), target.ops),
                                   fp32_mac_cost(target), strict=True)]
    return max(1, math.ceil(lanes * min(1.0, max(ratio))))


def whole_result_feeds(edges: list[KernelEdge], tilings: list[OpTiling]) -> list[set[int]]:
    """Per kernel, the kernels whose whole result it streams in (through reshapes or a concat; a slice reads a
    part, which its producer may deliver early) as they make it: it cannot finish before they do. A producer
    whose reduction loops enclose more than a quarter of its output tiles (``pending_tiles``) completes them in
    bursts, the last one at its end, and the consumer's share of work for that burst follows it instead of
    hiding under it (a decode GEMV walking its reduction outermost, then its group scales: their latencies add),
    so it is no feed."""
    feeds: list[set[int]] = [set() for _ in tilings]
    for e in edges:
        loops, order = tilings[e.producer].loops, tilings[e.producer].tile_order
        tiles = math.prod(lt.trip for lt in loops if not lt.reduction)
        if all(step.offsets is None for step in (*e.chain, *e.after)) and 4 * pending_tiles(loops, order) <= tiles:
            feeds[e.consumer].add(e.producer)
    return feeds


def edge_waits(graph: Graph, ops: list[GenericOp], tilings: list[OpTiling]) -> list[list[tuple[int, float]]]:
    """Per kernel, its producers among the kernels before it, each with the fraction of the producer's run the
    kernel waits for before it can start: until the producer's first output (``first_output_fraction``) or the
    first window of the converter between their orders, whichever is later (the latency objective's estimate,
    ``tile_order.TileOrderSearch.makespan``). 1: the whole result first, and their latencies add up (a
    paper-size prefill block's projections walking their feature tiles outermost need every row's LayerNorm
    statistics first)."""
    return TileOrderSearch(graph, ops, tilings, "latency").waits()


def _chains(latencies: list[int], barriers: list[set[int]]) -> list[int]:
    """Per kernel, the longest chain of kernels through it whose latencies add (``barriers``: per kernel, the
    producers it waits for to the end)."""
    up = list(latencies)
    for c, producers in enumerate(barriers):  # producers come before their consumers
        up[c] += max((up[p] for p in producers), default=0)
    down = list(latencies)
    for c in reversed(range(len(barriers))):
        for p in barriers[c]:
            down[p] = max(down[p], latencies[p] + down[c])
    return [u + d - x for u, d, x in zip(up, down, latencies, strict=True)]


@dataclass
class _Lanes:
    """The state of the first round: every kernel's tiling and what it costs, and the heap's bookkeeping."""

    ops: list[GenericOp]
    tilings: list[OpTiling]
    streams: list[dict[int, tuple[int, int]]]
    costs: list[tuple[float, int]]
    units: list[int]
    latencies: list[int]
    barriers: list[set[int]]  # per kernel, the producers it waits for to the end
    downstream: list[set[int]]  # per kernel, the kernels its result streams into (``fed_downstream``)
    fills: list[float]  # per kernel, the fraction of its run those kernels wait for (``edge_waits``)
    stuck: set[int]  # left the heap for good

    def holder(self, i: int) -> int | None:
        """The slowest stuck kernel that kernel ``i``'s result streams into, if no faster than ``i``."""
        held = [k for k in self.downstream[i] & self.stuck if self.latencies[k] >= self.latencies[i]]
        return max(held, key=lambda k: self.latencies[k]) if held else None

    def keys(self) -> list[tuple[float, int]]:
        """Each kernel's heap key: the cycles it adds to the makespan, then its latency. A kernel whose consumers
        wait for its whole result adds the longest chain of such latencies through it (``_chains``); one held back
        by a stuck kernel its result streams into runs at that one's pace and adds only the wait for its first
        results (its fill fraction of its latency)."""
        chains = _chains(self.latencies, self.barriers)
        return [(self.fills[i] * self.latencies[i] if self.holder(i) is not None else float(chains[i]),
                 self.latencies[i]) for i in range(len(self.latencies))]


def intensity_aware_unroll(ops: list[GenericOp], tilings: list[OpTiling], budget: int,
                           streams: list[dict[int, tuple[int, int]]], target: Target,
                           feeds: list[set[int]], serial: bool = False,
                           waits: list[list[tuple[int, float]]] | None = None) -> None:
    """Intensity-aware unrolling (module docstring); ``waits``: :func:`edge_waits`, for a block of many tokens."""
    tilings[:] = [rate_matched(op, t, s, target, serial) for op, t, s in zip(ops, tilings, streams, strict=True)]
    costs = [tiling_cost(op, t, target) for op, t in zip(ops, tilings, strict=True)]
    units = [budget_units(op, t, target) for op, t in zip(ops, tilings, strict=True)]
    latencies = [paced_latency(op, t, s, target) for op, t, s in zip(ops, tilings, streams, strict=True)]
    if serial or waits is None:
        # Serial stages (a one-token block): every kernel's latency adds to the makespan, so the lanes go by
        # cycles saved per share of the device from the start (the second round alone), not to the slowest
        # kernel first.
        none: list[set[int]] = [set() for _ in ops]
        _spend_leftover(ops, tilings, budget, streams, target, feeds, none, costs, units, latencies, serial)
        return
    barriers = [{p for p, w in inputs if w >= 1} for inputs in waits]
    fills = [0.0] * len(ops)
    for inputs in waits:
        for p, w in inputs:
            if w < 1:
                fills[p] = max(fills[p], w)
    # Streaming into: along whole-result feeds that are no barriers.
    downstream = fed_downstream([f - b for f, b in zip(feeds, barriers, strict=True)])
    state = _Lanes(ops, tilings, streams, costs, units, latencies, barriers, downstream, fills, set())
    _first_round(state, budget, feeds, target)
    _spend_leftover(ops, tilings, budget, streams, target, feeds, downstream, costs, units, latencies, serial)


def _first_round(state: _Lanes, budget: int, feeds: list[set[int]], target: Target) -> None:
    """The max-heap of the first round (module docstring), keyed by ``_Lanes.keys``."""
    ops, tilings, streams, latencies = state.ops, state.tilings, state.streams, state.latencies
    keys = state.keys()
    heap = [(-keys[i][0], -keys[i][1], i) for i in range(len(ops))]
    heapq.heapify(heap)
    parked: set[int] = set()  # no slower than a kernel feeding it: back on the heap when one of those speeds up
    while heap:
        neg_key, neg_latency, i = heapq.heappop(heap)
        if i in state.stuck:
            continue  # it gave lanes back to a kernel the device stopped (``_make_room``)
        keys = state.keys()
        if (-neg_key, -neg_latency) != keys[i]:
            heapq.heappush(heap, (-keys[i][0], -keys[i][1], i))  # a kernel of its chain, or its holder, changed
            continue
        if tilings[i].min_pipeline_ii > 1:
            state.stuck.add(i)
            continue  # paced by its DMA: more lanes would mostly idle; the other kernels may still grow
        if any(latencies[p] >= -neg_latency for p in feeds[i]):
            parked.add(i)  # it waits for that kernel's last result anyway: its lanes would idle
            continue
        # The fastest doubling; among equally fast ones the cheapest datapath (a lane loop that the kernel's
        # expensive lane-invariant math does not depend on), then preference order.
        best: tuple[int, float, OpTiling, tuple[float, int]] | None = None
        for d in unroll_candidates(tilings[i]):
            trial = rate_matched(ops[i], _doubled(tilings[i], d), streams[i], target)
            latency = paced_latency(ops[i], trial, streams[i], target)
            cost = tiling_cost(ops[i], trial, target)
            share = max(cost[0] / target.totals.dsp, cost[1] / target.totals.lut)
            if best is None or (latency, share) < best[:2]:
                best = (latency, share, trial, cost)
        if best is None or best[0] >= -neg_latency:
            state.stuck.add(i)
            continue  # its tiles bound it; the others' latencies still add up along the block's critical path
        if not _make_room(state, i, best[2], best[3], keys[i][0], budget, target):
            state.stuck.add(i)
            continue  # the budget or the device's DSPs / LUTs bound this kernel; cheaper ones may still grow
        tilings[i], state.costs[i], state.units[i], latencies[i] = (best[2], best[3],
                                                                     budget_units(ops[i], best[2], target), best[0])
        keys = state.keys()
        heapq.heappush(heap, (-keys[i][0], -keys[i][1], i))
        for k in [k for k in parked if i in feeds[k]]:
            parked.discard(k)
            heapq.heappush(heap, (-keys[k][0], -keys[k][1], k))


def _fits(state: _Lanes, i: int, cost: tuple[float, int], grown: int, budget: int, target: Target) -> bool:
    return (sum(state.units) - state.units[i] + grown <= budget
            and _fits_datapath([cost if k == i else c for k, c in enumerate(state.costs)], i, datapath_limits(target)))


def _make_room(state: _Lanes, i: int, trial: OpTiling, cost: tuple[float, int], key: float, budget: int,
               target: Target) -> bool:
    """Whether kernel ``i``'s growth to ``trial`` fits the budget and the device, once kernels held back by a stuck
    kernel (``_Lanes.holder``) give back doublings that now add fewer cycles than ``i``'s ``key`` (they took them
    before that kernel stopped), least first; such a kernel leaves the heap. Nothing changes when it does not
    fit even then."""
    grown = budget_units(state.ops[i], trial, target)
    if _fits(state, i, cost, grown, budget, target):
        return True
    saved = (list(state.tilings), list(state.costs), list(state.units), list(state.latencies), set(state.stuck))
    while True:
        halvings = []
        for h in range(len(state.ops)):
            holder = state.holder(h) if h != i else None
            if holder is None:
                continue
            op, t = state.ops[h], state.tilings[h]
            for d, lt in enumerate(t.loops):
                if lt.unroll == 1:
                    continue
                half = rate_matched(op, _unrolled(t, d, lt.unroll // 2), state.streams[h], target)
                latency = paced_latency(op, half, state.streams[h], target)
                if latency <= state.latencies[holder] and state.fills[h] * latency < key:
                    halvings.append((state.fills[h] * latency, latency, h, half))
        if not halvings:
            state.tilings[:], state.costs[:], state.units[:], state.latencies[:] = saved[:4]
            state.stuck.clear()
            state.stuck.update(saved[4])
            return False
        _, latency, h, half = min(halvings, key=lambda x: x[:3])
        op = state.ops[h]
        state.tilings[h], state.costs[h], state.units[h] = half, tiling_cost(op, half, target), budget_units(op, half,
                                                                                                            target)
        state.latencies[h] = latency
        state.stuck.add(h)
        if _fits(state, i, cost, grown, budget, target):
            return True


def _spend_leftover(ops: list[GenericOp], tilings: list[OpTiling], budget: int,
                    streams: list[dict[int, tuple[int, int]]], target: Target, feeds: list[set[int]],
                    downstream: list[set[int]], costs: list[tuple[float, int]], units: list[int],
                    latencies: list[int], serial: bool) -> None:
    """Second round (module docstring): what the first left of the budget and the device goes, one growth at a
    time, to the kernel whose growth saves the most cycles per share of the device or of the budget it adds, a
    DMA-paced kernel possibly doubled past its II's plateau; a kernel no slower than one feeding it does not
    grow, nor one behind a streaming consumer (``downstream``) that is slower, or as slow and cannot grow."""
    # A kernel's growths depend on its own tiling only: kept until it grows. Whether one fits the budget and the
    # device is checked each round (the others' growth only removes growths that fit).
    growths: dict[int, list[tuple[float, OpTiling, tuple[float, int], int, int]]] = {}
    limits = datapath_limits(target)
    while True:
        total = sum(units)
        fitting: dict[int, tuple[float, OpTiling, tuple[float, int], int, int]] = {}
        for i, (op, t) in enumerate(zip(ops, tilings, strict=True)):
            if i not in growths:
                growths[i] = _growths(op, t, streams[i], target, serial, costs[i], units[i], latencies[i], budget)
            for growth in growths[i]:
                score, _, cost, grown, _ = growth
                if (total - units[i] + grown > budget
                        or not _fits_datapath([cost if k == i else c for k, c in enumerate(costs)], i, limits)):
                    continue
                if i not in fitting or score > fitting[i][0]:
                    fitting[i] = growth
        best: tuple[float, int, OpTiling, tuple[float, int], int, int] | None = None
        for i, (score, trial, cost, grown, latency) in fitting.items():
            if any(latencies[p] >= latencies[i] for p in feeds[i]):
                continue
            if any(latencies[k] > latencies[i] or (latencies[k] == latencies[i] and k not in fitting)
                   for k in downstream[i]):
                continue
            if best is None or score > best[0]:
                best = (score, i, trial, cost, grown, latency)
        if best is None:
            return
        _, i, tilings[i], costs[i], units[i], latencies[i] = best
        del growths[i]


def fed_downstream(feeds: list[set[int]]) -> list[set[int]]:
    """Per kernel, the kernels that stream in its whole result as it makes it, directly or through others that do
    (``feeds`` followed forwards): the FIFOs between them hold a few tiles, so none runs ahead of the slowest."""
    direct: list[set[int]] = [set() for _ in feeds]
    for consumer, producers in enumerate(feeds):
        for p in producers:
            direct[p].add(consumer)
    closure: list[set[int]] = []
    for i in range(len(feeds)):
        seen: set[int] = set()
        todo = list(direct[i])
        while todo:
            k = todo.pop()
            if k not in seen:
                seen.add(k)
                todo.extend(direct[k])
        closure.append(seen)
    return closure


def _growths(op: GenericOp, t: OpTiling, streams: dict[int, tuple[int, int]], target: Target, serial: bool,
             cost: tuple[float, int], units: int, latency: int, budget: int
             ) -> list[tuple[float, OpTiling, tuple[float, int], int, int]]:
    """Every growth of ``op`` from ``t`` that saves cycles per run, in candidate order: (cycles saved per share of
    the device or the budget it adds, tiling, datapath cost, budget units, latency)."""
    out = []
    interval = _interval(op, t, streams, target)
    for d in unroll_candidates(t):
        trial = rate_matched(op, _doubled(t, d), streams, target, serial)
        if _interval(op, trial, streams, target) >= interval:
            continue  # no fewer cycles per run: at most a shorter pipeline depth
        grown_latency = paced_latency(op, trial, streams, target)
        grown_cost = tiling_cost(op, trial, target)
        grown = budget_units(op, trial, target)
        added = max((grown_cost[0] - cost[0]) / target.totals.dsp, (grown_cost[1] - cost[1]) / target.totals.lut,
                    (grown - units) / budget)
        out.append(((latency - grown_latency) / max(added, 1e-9), trial, grown_cost, grown, grown_latency))
    return out


def _interval(op: GenericOp, t: OpTiling, streams: dict[int, tuple[int, int]], target: Target) -> int:
    """Cycles ``op``'s firings take under ``t`` (its latency less the pipeline depth of the last), at least its
    DMAs' transfer (the kernel stalls on them)."""
    timing = tiled_timing(op, t, target)
    interval = timing.firings * timing.ii
    return max(interval, math.ceil(dma_cycles(op, t, streams, target))) if streams else interval


def _grown_to(t: OpTiling, lanes: int) -> OpTiling:
    while t.lanes < lanes and (cands := unroll_candidates(t)):
        t = _doubled(t, cands[0])
    return t


def uniform_unroll(tilings: list[OpTiling], budget: int) -> None:
    best = list(tilings)
    lanes = 2
    while True:
        trial = [_grown_to(t, lanes) for t in tilings]
        if sum(t.lanes for t in trial) > budget or [t.lanes for t in trial] == [t.lanes for t in best]:
            break
        best = trial
        lanes *= 2
    tilings[:] = best
