"""Timing model: latency L, initial delay D and token interval II of every dataflow node.

This module is the single source of timing for tiling (intensity-aware unrolling), the FIFO-sizing LP, the
token-level simulator and the report. Cycles are kernel-clock cycles of the target (250 MHz on the U55C).

Kernel model (one firing = one tile iteration of the kernel's tile loop nest):
- Inside a tile the point loops run as one pipelined loop nest. ``lanes = prod(unroll)`` points issue per
  iteration, so a tile takes ``iterations = prod(tile) / lanes`` issues.
- ``ii`` (cycles between pipelined issues) is 1, unless the innermost non-fully-unrolled point loop is a
  reduction loop: then consecutive issues update the same accumulator and must wait for the combiner
  (``ii = latency(combiner)``). This is why the permutation heuristic moves reduction loops outward.
- ``depth`` = FIFO read (1) + critical path of the scalar body + reduction tree over unrolled reduction lanes
  (``ceil(log2(lanes_r)) * latency(combiner)``) + FIFO write (1).
- ``firing_cycles = iterations * ii``; ``L = firings * firing_cycles + depth``; the first output token is
  written by the first firing that completes a reduction, so ``D = first_write_firing_index_plus_one *
  firing_cycles + depth``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from streamtensor.ir.dataflow import LoopTiling
from streamtensor.ir.linalg import GenericOp, ScalarBody

# Pipeline latency in cycles of Vitis HLS floating-point / integer operators at 250 MHz (full-DSP cores,
# typical values of the Vitis HLS operator library); float16/bfloat16 use the same table, integers the right
# column. Ops missing here (constants, index) cost nothing.
_FLOAT_LATENCY = {
    "arith.addf": 4, "arith.subf": 4, "arith.mulf": 3, "arith.divf": 12, "arith.negf": 0, "arith.maximumf": 2,
    "arith.minimumf": 2, "arith.maxnumf": 2, "arith.minnumf": 2, "arith.remf": 16, "arith.cmpf": 2,
    "math.exp": 10, "math.log": 12, "math.sqrt": 12, "math.rsqrt": 10, "math.tanh": 20, "math.sin": 20,
    "math.cos": 20, "math.erf": 20, "math.absf": 0, "math.powf": 30, "arith.sitofp": 4, "arith.uitofp": 4,
    "arith.fptosi": 4, "arith.extf": 1, "arith.truncf": 1,
}
_INT_LATENCY = {"arith.muli": 2, "arith.divsi": 20, "arith.remsi": 20}
_DEFAULT_INT_LATENCY = 1  # add/sub/compare/select/logic/casts between integers: one LUT level


def op_latency(name: str, dtype: str, exponent: int | None = None) -> int:
    """Cycles of one scalar op producing ``dtype``."""
    if name in ("arith.constant", "linalg.index"):
        return 0
    if name == "math.fpowi":  # x^n by repeated squaring: ceil(log2 n) multiplies
        return max(1, math.ceil(math.log2(max(2, exponent or 2)))) * _FLOAT_LATENCY["arith.mulf"]
    if name in _FLOAT_LATENCY:
        return _FLOAT_LATENCY[name]
    if name == "arith.select":
        return 1
    return _INT_LATENCY.get(name, _DEFAULT_INT_LATENCY)


def body_critical_path(body: ScalarBody) -> int:
    """Longest chain of op latencies from the block arguments to any yielded value."""
    ready: dict[str, int] = {name: 0 for name, _ in body.args}
    constants = {op.result: op.attr("value") for op in body.ops if op.name == "arith.constant"}
    for op in body.ops:
        start = max((ready[o] for o in op.operands), default=0)
        exponent = int(constants[op.operands[1]]) if op.name == "math.fpowi" and op.operands[1] in constants else None
        ready[op.result] = start + op_latency(op.name, op.dtype, exponent)
    return max((ready[y] for y in body.yields), default=0)


def combiner_latency(body: ScalarBody) -> int:
    """Latency of the op that folds into the accumulator (the last op of a reduction body)."""
    return op_latency(body.ops[-1].name, body.ops[-1].dtype) if body.ops else 0


@dataclass(frozen=True)
class KernelTiming:
    """Timing of a kernel node. ``ii`` is the cycles between firings (one tile each)."""

    latency: int  # L: first read to last write
    delay: int  # D: first read to first write
    ii: int  # cycles per firing (tile)
    depth: int  # pipeline depth (issue of a firing to its writes)
    firings: int
    pipeline_ii: int  # II of the pipelined point loop


def kernel_timing(op: GenericOp, loops: list[LoopTiling], tile_order: list[int], point_order: list[int]
                  ) -> KernelTiming:
    """L, D and II of ``op`` tiled by ``loops`` (indexed by loop dim); see the module docstring."""
    lanes = math.prod(lp.unroll for lp in loops)
    iterations = math.prod(lp.tile for lp in loops) // lanes
    pipelined = [d for d in point_order if loops[d].tile // loops[d].unroll > 1]
    innermost_is_reduction = bool(pipelined) and loops[pipelined[-1]].reduction
    reduces = any(lp.reduction for lp in loops)
    pipeline_ii = max(1, combiner_latency(op.body)) if innermost_is_reduction else 1
    reduction_lanes = math.prod(lp.unroll for lp in loops if lp.reduction)
    tree = math.ceil(math.log2(reduction_lanes)) * combiner_latency(op.body) if reduces and reduction_lanes > 1 else 0
    depth = 1 + body_critical_path(op.body) + tree + 1
    firing_cycles = max(1, iterations * pipeline_ii)
    firings = math.prod(lp.trip for lp in loops)
    # Firings are enumerated over tile_order (outermost first). The first write is by the first firing with
    # every reduction loop at its last trip and every parallel loop at 0: index sum((trip-1) * stride).
    first_write = 1
    stride = 1
    for d in reversed(tile_order):
        if loops[d].reduction:
            first_write += (loops[d].trip - 1) * stride
        stride *= loops[d].trip
    return KernelTiming(latency=firings * firing_cycles + depth, delay=first_write * firing_cycles + depth,
                        ii=firing_cycles, depth=depth, firings=firings, pipeline_ii=pipeline_ii)
