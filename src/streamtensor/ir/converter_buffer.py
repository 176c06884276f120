"""Minimal ping-pong buffer of an ``itensor_converter`` (spec §2.1, paper Algorithm 1 as reconstructed).

Loops are scanned outermost first; loop ``l`` is *shared* when both layouts walk the same data dims with it
(results exactly ``d_l``), with the same trip count, step and element sizes on those dims, and every outer
loop is shared too; a loop walking no dim exactly is shared only when it is a repeat loop on both sides
(any steps). The shared loops are materialized around the converter: per shared iteration the buffer
is a window holding one element size along each dim a shared loop walks and the full tensor elsewhere;
two windows ping-pong when there is more than one shared iteration, one suffices otherwise (and one window,
drained and then filled again, may serve several iterations: ``analysis.converter_banks``).
``interp.converter_exec.run_converter`` simulates a converter with this buffer to prove it suffices.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from streamtensor.ir.itensor import ITensorType, dtype_bits


@dataclass(frozen=True)
class ConverterBuffer:
    """Buffer of one converter. ``shape`` is one window (one half of the ping-pong pair).

    ``banks`` is 2 (ping-pong: the source fills one window while the result drains the previous one) when the
    shared loops have more than one iteration, and 1 when they have a single one: the window is then filled
    once and drained once per run, and a second bank would never be written. Over several iterations one bank
    is valid too (the result drains the window, then the source fills it again: ``analysis.converter_banks``).
    ``direct`` marks identical layouts: no converter is needed, the stream is wired straight through, and
    the buffer is empty (``shape`` all zeros, ``()`` for rank 0; ``elements == bytes == 0``)."""

    shape: tuple[int, ...]
    shared_loops: int
    dtype: str
    direct: bool = False
    banks: int = 2

    @property
    def window_elements(self) -> int:
        return 0 if self.direct else math.prod(self.shape)

    @property
    def elements(self) -> int:
        return self.banks * self.window_elements

    @property
    def bytes(self) -> int:
        return -(-self.elements * dtype_bits(self.dtype) // 8)  # ceil: i1 elements are bits


def needs_converter(source: ITensorType, result: ITensorType) -> bool:
    """Direct streaming is legal exactly when the two types are equal (spec §2)."""
    return source != result


def _exact_dims(t: ITensorType, loop: int) -> tuple[int, ...]:
    return tuple(j for j in range(t.rank) if t.iter_map.result_dim(j) == loop)


def shared_loop_dims(source: ITensorType, result: ITensorType, loop: int) -> tuple[int, ...] | None:
    """Data dims that ``loop`` walks in both layouts if the two can share it (``()`` for a repeat loop of
    both), else None. Outer loops are not looked at: sharing also needs every enclosing loop shared.

    Why the window suffices: in a valid layout an exactly walked dim's tile offsets are multiples of its
    element size, so distinct shared iterations own disjoint windows and the source streams all of its
    window within the iteration; the result reads only inside that window. That holds even if the loop also
    feeds a compound result (``d0 + d1``) elsewhere."""
    if loop >= min(source.num_loops, result.num_loops):
        return None
    dims = _exact_dims(source, loop)
    if dims != _exact_dims(result, loop) or source.trip_counts[loop] != result.trip_counts[loop]:
        return None
    if not dims:
        # Beyond the spec's pseudo-code: walking no dim exactly is shareable only for a true repeat loop
        # (a loop feeding only compound results moves tiles without moving the window), and a repeat
        # loop's step never reaches an offset, so steps may differ.
        used = source.iter_map.used_dims() | result.iter_map.used_dims()
        return () if loop not in used else None
    # The spec's step and element-size conditions; for verified layouts equal trips > 1 already imply both.
    if source.steps[loop] != result.steps[loop]:
        return None
    if any(source.element_shape[j] != result.element_shape[j] for j in dims):
        return None
    return dims


def check_convertible(source: ITensorType, result: ITensorType) -> None:
    """Both types valid and streaming the same tensor (shape and dtype), else a ValueError."""
    if source.tensor_shape != result.tensor_shape or source.dtype != result.dtype:
        raise ValueError(
            "a converter needs the same tensor shape and dtype on both sides: "
            f"source {source}, result {result}"
        )
    source.verify()
    result.verify()


# A loop's entry in ``loop_signature``: the dims it walks exactly with its trip, step and element sizes along
# them; a repeat loop's trip; None for a loop that is never shared.
LoopEntry = tuple[tuple[int, ...], int, int, tuple[int, ...]] | int | None


def loop_signature(t: ITensorType) -> tuple[LoopEntry, ...]:
    """Per loop of ``t``, all that sharing it with the same loop of another layout compares (``shared_loop_dims``):
    two layouts share a loop exactly when their entries are equal and not None. A loop walking dims exactly: those
    dims, its trip, step and element sizes along them; a loop walking no dim exactly: its trip if it is a repeat
    loop (whose steps never matter), else None (it feeds only compound results)."""
    used = t.iter_map.used_dims()
    out: list[LoopEntry] = []
    for loop in range(t.num_loops):
        dims = _exact_dims(t, loop)
        if dims:
            out.append((dims, t.trip_counts[loop], t.steps[loop], tuple(t.element_shape[j] for j in dims)))
        else:
            out.append(None if loop in used else t.trip_counts[loop])
    return tuple(out)


def shared_loop_count(source: tuple[LoopEntry, ...], result: tuple[LoopEntry, ...]) -> int:
    """Leading loops two layouts of one tensor share, from their ``loop_signature``s: the scan of Algorithm 1,
    outermost first, up to the first loop not shared (or the end of the shorter nest)."""
    shared = 0
    for a, b in zip(source, result, strict=False):
        if a is None or a != b:
            break
        shared += 1
    return shared


def shared_buffer(source: ITensorType, signature: tuple[LoopEntry, ...], shared: int) -> ConverterBuffer:
    """The buffer of a converter from ``source`` (its ``loop_signature``) sharing its ``shared`` outer loops:
    a window one element wide along each dim those loops walk, the whole tensor elsewhere."""
    shape = list(source.tensor_shape)
    for entry in signature[:shared]:
        if isinstance(entry, tuple):
            for j in entry[0]:
                shape[j] = source.element_shape[j]
    banks = 2 if math.prod(source.trip_counts[:shared]) > 1 else 1
    return ConverterBuffer(tuple(shape), shared, source.dtype, banks=banks)


def window_phases(source: ITensorType, result: ITensorType, buffer: ConverterBuffer) -> tuple[int, int, int]:
    """(shared iterations, source tokens that fill a window, result tokens that drain it) of a converter."""
    windows = math.prod(source.trip_counts[: buffer.shared_loops])
    return windows, source.num_tokens // windows, result.num_tokens // windows


# Memoized: a pure function of two immutable types that passes ask about again and again. A failed check raises
# and is not cached.
@functools.lru_cache(maxsize=1 << 16)
def infer_converter_buffer(source: ITensorType, result: ITensorType, checked: bool = True) -> ConverterBuffer:
    """Smallest converter buffer of the reconstructed Algorithm 1 (scan loops outermost first, stop at the
    first loop that is not shared: ``shared_loop_count``). Nothing shared gives the whole tensor. Equal types
    need no converter: the answer is then the empty ``direct`` buffer with every loop shared (see
    ``ConverterBuffer``). ``checked=False`` skips verifying the two types (a full walk of their tokens), for
    callers that build them valid and only need the size."""
    if checked:
        check_convertible(source, result)
    if not needs_converter(source, result):
        return ConverterBuffer((0,) * source.rank, source.num_loops, source.dtype, direct=True)
    signature = loop_signature(source)
    return shared_buffer(source, signature, shared_loop_count(signature, loop_signature(result)))


def layout_difference(source: ITensorType, result: ITensorType) -> str:
    """Why two layouts of one tensor need a converter, in words: the first loop the inference of the buffer
    cannot share (or different tiles), from the result's point of view."""
    if source.element_shape != result.element_shape:
        return f"tiles {list(source.element_shape)} vs {list(result.element_shape)}"
    loop = infer_converter_buffer(source, result, checked=False).shared_loops
    if loop >= result.num_loops:
        return f"the result stream ends after {loop} shared loops, the source goes on"
    trip = result.trip_counts[loop]
    walked = _exact_dims(result, loop)
    if not walked and loop not in result.iter_map.used_dims():
        return f"the result re-reads the inner stream {trip} times (repeat loop {loop})"
    walked_src = _exact_dims(source, loop) if loop < source.num_loops else ()
    return (f"loop {loop} walks dim(s) {list(walked)} x{trip} in the result but {list(walked_src)} in the source "
            "(tiles in another order)")
