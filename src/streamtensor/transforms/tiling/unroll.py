"""Unroll factors of every kernel: intensity-aware or uniform, within the lane budget and the device, and
paced to the DMAs that feed it.

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
import math
from dataclasses import replace

from streamtensor.analysis.resources import U55C, lane_cost
from streamtensor.analysis.timing_model import (
    HBM_CHANNELS,
    KernelTiming,
    dma_bytes_per_cycle,
    dma_token_bytes,
    kernel_timing,
)
from streamtensor.ir.dataflow import kernel_operand_type
from streamtensor.ir.linalg import GenericOp, Graph
from streamtensor.transforms.tiling.edges import external_operands, trace_movement
from streamtensor.transforms.tiling.plan import OpTiling


def unroll_candidates(t: OpTiling) -> list[int]:
    """Loops whose unroll can double, in preference order (module docstring)."""
    inner_first = list(reversed(t.point_order))
    ordered = ([d for d in inner_first if not t.loops[d].reduction]
               + [d for d in inner_first if t.loops[d].reduction])
    return [d for d in ordered if t.loops[d].tile % (2 * t.loops[d].unroll) == 0]


def _doubled(t: OpTiling, d: int) -> OpTiling:
    loops = list(t.loops)
    loops[d] = replace(loops[d], unroll=loops[d].unroll * 2)
    return OpTiling(loops, t.tile_order, t.point_order)


def tiled_timing(op: GenericOp, t: OpTiling) -> KernelTiming:
    return kernel_timing(op, t.loops, t.tile_order, t.point_order, t.min_pipeline_ii)


def external_streams(graph: Graph, ops: list[GenericOp]) -> list[dict[int, int]]:
    """Per kernel, its inputs streamed from external memory (operand index -> channel share of its DMA).

    Mirrors ``analysis.timing_model``'s DMA shares: every streamed use of an external tensor has its own DMA on
    the tensor's pseudo-channel, so ``uses`` DMAs split it; with more tensors than channels ``crowding`` tensors
    share every channel."""
    producers = graph.producers()
    roots = [{j: trace_movement(op.inputs[j].name, producers)[0] for j in external_operands(op, producers)}
             for op in ops]
    uses: dict[str, int] = {}
    for per_op in roots:
        for root in per_op.values():
            uses[root] = uses.get(root, 0) + 1
    crowding = max(1, math.ceil(len(uses) / HBM_CHANNELS))
    return [{j: uses[root] * crowding for j, root in per_op.items()} for per_op in roots]


def rate_matched(op: GenericOp, t: OpTiling, streams: dict[int, int]) -> OpTiling:
    """``t`` with the least pipeline II at which ``op`` reads no external input faster than its DMA delivers
    it: its firings take at least the cycles the DMA needs for the tokens they read."""
    loose = replace(t, min_pipeline_ii=1)
    timing = tiled_timing(op, loose)
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


def intensity_aware_unroll(ops: list[GenericOp], tilings: list[OpTiling], budget: int,
                     streams: list[dict[int, int]]) -> None:
    total = len(ops)
    costs = [lane_cost(op.body) for op in ops]
    tilings[:] = [rate_matched(op, t, s) for op, t, s in zip(ops, tilings, streams, strict=True)]
    heap = [(-tiled_timing(op, t).latency, i) for i, (op, t) in enumerate(zip(ops, tilings, strict=True))]
    heapq.heapify(heap)
    while heap:
        neg_latency, i = heapq.heappop(heap)
        if tilings[i].min_pipeline_ii > 1:
            continue  # paced by its DMA: more lanes would mostly idle; the other kernels may still grow
        lanes = tilings[i].lanes
        if total + lanes > budget:
            break
        best: tuple[int, OpTiling] | None = None
        for d in unroll_candidates(tilings[i]):
            trial = rate_matched(ops[i], _doubled(tilings[i], d), streams[i])
            latency = tiled_timing(ops[i], trial).latency
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
