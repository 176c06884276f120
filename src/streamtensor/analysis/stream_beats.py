"""The steps at which a kernel's pipelined point loops move the beats of its wide tokens.

A token wider than the target's stream element crosses its stream as beats (``ITensorType.beats``), one stream
access each. A kernel's tile loops and pipelined point loops form one flattened pipeline, ``steps`` issues a firing
(the iterations of the pipelined point loops); the stream has one port, so the loop body moves ``per_step`` beats of
a token a step through ``per_step`` accesses, and the loop's II is at least ``per_step``. A firing moves an input
token's beat ``b`` at step ``b // per_step``, no later than the first step that uses an element of it, and an output
token's beat ``b`` at step ``steps - ceil(beats / per_step) + b // per_step``, no earlier than the last step that sets
one (:class:`BeatSchedule`). ``KernelBeats.pipeline_ii`` is the least II at which every token of a kernel fits so: the
timing model raises the pipeline's II to it and the generated loop asks for that II. A result that would raise the II
(its elements set up to the firing's last step) may instead be written *behind*: copied at its last step, its beats
leave in the next firing's first steps (or after the loops, for the last firing), which delays its writes by those
steps (the timing model's depth). Likewise an input used from the first steps may be read *ahead*: its beats move
in the first steps of the firing before the one that takes it (the first token before the loops), into a copy that
firing takes at its first step (the timing model reads it a firing earlier).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streamtensor.ir.dataflow import LoopTiling, input_loops
from streamtensor.ir.itensor import beat_elements, dtype_bits
from streamtensor.ir.linalg import GenericOp


@dataclass(frozen=True)
class BeatSchedule:
    """Where a firing moves the beats of one token: beat ``b`` at step ``first + b // per_step``, in access slot
    ``b % per_step`` of that step."""

    beats: int
    per_step: int
    first: int  # the step of beat 0
    behind: bool = False  # a result's beats move in the next firing's steps, from a copy made at its last step
    ahead: bool = False  # an input's beats move in the previous firing's steps, into a copy taken at its first

    @property
    def steps(self) -> int:
        """Steps of the firing that move a beat."""
        return -(-self.beats // self.per_step)


def pipelined_loops(loops: list[LoopTiling], point_order: list[int]) -> list[int]:
    """The point loops not fully unrolled, in point order: the pipeline's steps are their iterations."""
    return [d for d in point_order if loops[d].tile // loops[d].unroll > 1]


def token_geometry(op: GenericOp, loops: list[LoopTiling], operand: int, max_bits: int) -> tuple[int, int]:
    """(beats, elements per beat) of the token of ``operand`` (inputs then inits, as ``indexing_maps``): its
    tile's elements in the order of the operand's map results."""
    amap = op.indexing_maps[operand]
    elements = math.prod(loops[d].tile for j in range(amap.num_results) if (d := amap.result_dim(j)) is not None)
    per_beat = beat_elements(elements, dtype_bits(op.operands[operand].type.dtype), max_bits)
    return elements // per_beat, per_beat


def _element_steps(op: GenericOp, loops: list[LoopTiling], pipelined: list[int], operand: int, last: bool
                   ) -> np.ndarray:
    """The step of a firing at which each element of ``operand``'s token (token order) is first used (``last``:
    last set): the pipelined loops the operand does not index at their first (last) step."""
    amap = op.indexing_maps[operand]
    dims = [amap.result_dim(j) for j in range(amap.num_results)]
    shape = [loops[d].tile if d is not None else 1 for d in dims]
    index = np.indices(shape).reshape(len(shape), -1)
    step = np.zeros(index.shape[1], dtype=np.int64)
    for d in pipelined:
        lt = loops[d]
        n = lt.tile // lt.unroll
        digit = index[dims.index(d)] // lt.unroll if d in dims else (n - 1 if last else 0)
        step = step * n + digit
    return step


def _schedule(bound: np.ndarray, steps: int, per_step: int, reading: bool) -> BeatSchedule | None:
    """The schedule of a token whose beat ``b`` must move no later (``reading``) / no earlier than step
    ``bound[b]``, ``per_step`` beats a step; None when the firing's steps cannot hold it so."""
    beats = len(bound)
    moves = np.arange(beats) // per_step
    if reading:
        return BeatSchedule(beats, per_step, 0) if bool(np.all(moves <= bound)) else None
    first = steps - -(-beats // per_step)
    return BeatSchedule(beats, per_step, first) if first >= 0 and bool(np.all(first + moves >= bound)) else None


@dataclass(frozen=True)
class KernelBeats:
    """The beat schedules of a kernel's wide tokens: ``reads`` by operand (inputs, then inits read as the first
    value of their output tile), ``writes`` by result."""

    reads: dict[int, BeatSchedule]
    writes: dict[int, BeatSchedule]

    @property
    def pipeline_ii(self) -> int:
        """The least II of the pipeline that moves them (1 with none)."""
        return max((s.per_step for s in [*self.reads.values(), *self.writes.values()]), default=1)

    @property
    def behind_steps(self) -> int:
        """Steps of the next firing until the last result written behind has left (0 with none)."""
        return max((s.first + s.steps for s in self.writes.values() if s.behind), default=0)


def _least_schedule(bound: np.ndarray, steps: int, reading: bool) -> BeatSchedule:
    # per_step = beats moves the whole token in one step (the first for a read, the last for a write): always fits.
    for per_step in range(1, len(bound) + 1):
        if (found := _schedule(bound, steps, per_step, reading)) is not None:
            return found
    raise AssertionError("a whole token in one step always fits")


def _steps(loops: list[LoopTiling], pipelined: list[int]) -> int:
    return math.prod(loops[d].tile // loops[d].unroll for d in pipelined)


def _bounds(op: GenericOp, loops: list[LoopTiling], pipelined: list[int], operand: int, max_bits: int,
            writing: bool) -> np.ndarray:
    """Per beat of ``operand``'s token: the first step that uses (``writing``: the last that sets) an element."""
    beats, per_beat = token_geometry(op, loops, operand, max_bits)
    element = _element_steps(op, loops, pipelined, operand, last=writing).reshape(beats, per_beat)
    return element.max(axis=1) if writing else element.min(axis=1)


def _moved_out(op: GenericOp, loops: list[LoopTiling], point_order: list[int], operands: list[int], max_bits: int,
               pipeline_ii: int, writing: bool) -> list[int]:
    """The wide tokens among ``operands`` whose beats the firing's steps cannot move within ``pipeline_ii``
    accesses a step (read from the first steps; ``writing``: set up to the last) but the neighbouring firing's
    steps can."""
    pipelined = pipelined_loops(loops, point_order)
    if not pipelined:
        return []
    steps = _steps(loops, pipelined)
    found = []
    for operand in operands:
        beats = token_geometry(op, loops, operand, max_bits)[0]
        if beats == 1 or -(-beats // steps) > pipeline_ii:
            continue
        bound = _bounds(op, loops, pipelined, operand, max_bits, writing)
        if _least_schedule(bound, steps, not writing).per_step > pipeline_ii:
            found.append(operand)
    return found


def results_behind(op: GenericOp, loops: list[LoopTiling], point_order: list[int], max_bits: int,
                   pipeline_ii: int) -> tuple[int, ...]:
    """The wide results (by result index) best written behind (``_moved_out``)."""
    n_in = len(op.inputs)
    results = range(n_in, n_in + len(op.inits))
    return tuple(j - n_in for j in _moved_out(op, loops, point_order, list(results), max_bits, pipeline_ii, True))


def read_in_pipeline(op: GenericOp, loops: list[LoopTiling], tile_order: list[int], operands: list[int]
                     ) -> list[int]:
    """The operands among ``operands`` read inside the pipeline: those the tile loops move (an input no tile loop
    of more than one trip moves is read once, before the loops; an init at every output tile)."""
    return [j for j in operands if j >= len(op.inputs)
            or any(loops[d].trip > 1 for d in input_loops(op, tile_order, j))]


def inputs_ahead(op: GenericOp, loops: list[LoopTiling], point_order: list[int], read_operands: list[int],
                 max_bits: int, pipeline_ii: int) -> tuple[int, ...]:
    """The wide inputs (operands in ``read_operands`` below the inits) best read ahead (``_moved_out``)."""
    inputs = [j for j in read_operands if j < len(op.inputs)]
    return tuple(_moved_out(op, loops, point_order, inputs, max_bits, pipeline_ii, False))


def kernel_beats(op: GenericOp, loops: list[LoopTiling], point_order: list[int], read_operands: list[int],
                 max_bits: int, behind: tuple[int, ...] = (), ahead: tuple[int, ...] = ()) -> KernelBeats:
    """The least-``per_step`` schedule of every token wider than one beat that the kernel reads (the operands in
    ``read_operands``: its input ports read inside the pipeline, ``read_in_pipeline``; those in ``ahead`` read
    ahead, in the previous firing's first steps) or writes (its results; those in ``behind`` written behind, in
    the next firing's first steps), when it has pipelined point loops (with none, the tile loop is the pipeline
    and moves whole tokens); see the module docstring."""
    pipelined = pipelined_loops(loops, point_order)
    if not pipelined:
        return KernelBeats({}, {})
    steps, n_in = _steps(loops, pipelined), len(op.inputs)
    reads: dict[int, BeatSchedule] = {}
    writes: dict[int, BeatSchedule] = {}
    for operand in read_operands:
        beats = token_geometry(op, loops, operand, max_bits)[0]
        if operand in ahead:
            reads[operand] = BeatSchedule(beats, -(-beats // steps), 0, ahead=True)
        elif beats > 1:
            reads[operand] = _least_schedule(_bounds(op, loops, pipelined, operand, max_bits, False), steps, True)
    for r in range(len(op.inits)):
        beats = token_geometry(op, loops, n_in + r, max_bits)[0]
        if r in behind:
            writes[r] = BeatSchedule(beats, -(-beats // steps), 0, behind=True)
        elif beats > 1:
            writes[r] = _least_schedule(_bounds(op, loops, pipelined, n_in + r, max_bits, True), steps, False)
    return KernelBeats(reads, writes)
