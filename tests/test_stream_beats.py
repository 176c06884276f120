"""Where a kernel's flattened pipeline moves the beats of its wide tokens (analysis.stream_beats), and what the
timing model charges for them: a token of 2 beats (4 x 4 f32 tiles under a 256-bit stream element) in a matmul."""

from __future__ import annotations

from linalg_builders import matmul_graph

from streamtensor.analysis.stream_beats import BeatSchedule, inputs_ahead, kernel_beats, results_behind
from streamtensor.analysis.timing_model import kernel_timing
from streamtensor.codegen.vitis.boards import U55C
from streamtensor.ir.dataflow import LoopTiling
from streamtensor.ir.linalg import GenericOp

BITS = 256  # a 4 x 4 f32 tile (512 bits) crosses its stream in 2 beats


def _matmul() -> GenericOp:
    _, (_, _, mm) = matmul_graph()
    assert isinstance(mm, GenericOp)
    return mm


def test_beats_spread_over_the_steps_before_their_first_use_and_after_their_last_set() -> None:
    mm = _matmul()  # C[m, n] += A[m, k] * B[k, n]: loops m, n, k (reduction)
    tiles = [LoopTiling(8, 4, 1, False), LoopTiling(8, 4, 1, False), LoopTiling(8, 4, 1, True)]
    # Point order k, m, n: a step is (k * 4 + m) * 4 + n. A's beat 1 (rows 2, 3) is first used at step 8, B's
    # (rows k = 2, 3) at step 32: each beat one step, from step 0. C's beat 0 (rows 0, 1) is last set at step 55,
    # its beat 1 at 63, the last step: they leave at steps 62 and 63.
    moves = kernel_beats(mm, tiles, [2, 0, 1], [0, 1], BITS)
    assert moves.reads == {0: BeatSchedule(2, 1, 0), 1: BeatSchedule(2, 1, 0)}
    assert moves.writes == {0: BeatSchedule(2, 1, 62)}
    assert (moves.pipeline_ii, moves.behind_steps) == (1, 0)
    t = kernel_timing(mm, tiles, [0, 1, 2], [2, 0, 1], U55C.ops, BITS)
    assert (t.pipeline_ii, t.ii, t.write_behind, t.read_ahead) == (1, 64, (), ())


def test_tokens_needed_whole_at_the_first_step_are_read_ahead_and_written_behind() -> None:
    mm = _matmul()
    # m unrolled (4 lanes), point order k, n: 16 steps, every step uses all of A's rows and sets all of C's, so
    # inside the firing both would need their 2 beats in one step (II 2).
    tiles = [LoopTiling(8, 4, 4, False), LoopTiling(8, 4, 1, False), LoopTiling(8, 4, 1, True)]
    assert kernel_beats(mm, tiles, [2, 1, 0], [0, 1], BITS).pipeline_ii == 2
    assert inputs_ahead(mm, tiles, [2, 1, 0], [0, 1], BITS, 1) == (0,)
    assert results_behind(mm, tiles, [2, 1, 0], BITS, 1) == (0,)
    # At II 2 they fit inside the firing: nothing moves to the neighbouring firings.
    assert inputs_ahead(mm, tiles, [2, 1, 0], [0, 1], BITS, 2) == ()
    assert results_behind(mm, tiles, [2, 1, 0], BITS, 2) == ()
    moves = kernel_beats(mm, tiles, [2, 1, 0], [0, 1], BITS, behind=(0,), ahead=(0,))
    assert moves.reads[0] == BeatSchedule(2, 1, 0, ahead=True)
    assert moves.writes[0] == BeatSchedule(2, 1, 0, behind=True)
    assert (moves.pipeline_ii, moves.behind_steps) == (1, 2)
    # The model keeps II 1 and delays the writes by the 2 steps of the next firing that move C's beats:
    # depth = (16 - 1 + 2) x 1 + pipeline depth (read 1 + mulf 3 + addf 4 + write 1) (C's init a constant).
    t = kernel_timing(mm, tiles, [0, 1, 2], [2, 1, 0], U55C.ops, BITS, read_operands=[0, 1])
    assert (t.pipeline_ii, t.ii, t.depth, t.write_behind, t.read_ahead) == (1, 16, 17 + 9, (0,), (0,))
    # An init read from a stream is never read ahead (it starts an output tile): needed whole at the first step,
    # it takes its 2 beats there, and the pipeline runs at II 2.
    t = kernel_timing(mm, tiles, [0, 1, 2], [2, 1, 0], U55C.ops, BITS)
    assert (t.pipeline_ii, t.read_ahead) == (2, ())
    # Under the target's 4096-bit streams the tiles are one beat: nothing to move.
    t = kernel_timing(mm, tiles, [0, 1, 2], [2, 1, 0], U55C.ops, U55C.stream_max_bits, read_operands=[0, 1])
    assert (t.pipeline_ii, t.depth, t.write_behind, t.read_ahead) == (1, 15 + 9, (), ())
