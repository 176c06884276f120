"""Executable semantics of an ``itensor_converter``: re-order a token stream through a bounded buffer.

Used both to prove inferred buffers sufficient (tests) and as the stream-level executor's converter.
Functionally, each iteration of the shared loops owns one half of the ping-pong buffer: a window of the
buffer's shape placed at that iteration's offset. The source's tokens of the iteration are written into the
window, then the result's tokens of the same iteration are read from it. The half is reused (and counts as
empty again) two iterations later, so per iteration only data written in that iteration may be read.
"""

from __future__ import annotations

import math

import numpy as np

from streamtensor.errors import VerificationError
from streamtensor.ir.converter_buffer import (
    ConverterBuffer,
    check_convertible,
    infer_converter_buffer,
    shared_loop_dims,
)
from streamtensor.ir.itensor import ITensorType, gather_tiles, scatter_tiles, stack_tokens


class ConverterBufferError(VerificationError, RuntimeError):
    """The buffer cannot carry the conversion: a tile outside the window, or a read of unwritten data."""


def _window_origins(source: ITensorType, result: ITensorType, buffer: ConverterBuffer) -> np.ndarray:
    """Window offset ``(shared iterations, rank)`` of every shared iteration, in stream order."""
    if len(buffer.shape) != source.rank:
        raise ConverterBufferError(f"buffer shape {buffer.shape} does not match the rank of {source}")
    walked = [shared_loop_dims(source, result, loop) for loop in range(buffer.shared_loops)]
    if None in walked:
        raise ConverterBufferError(
            f"loop {walked.index(None)} is not shared by source {source} and result {result}"
        )
    trips = source.trip_counts[: buffer.shared_loops]
    counters = np.indices(trips, dtype=np.int64).reshape(len(trips), math.prod(trips))
    origins = np.zeros((counters.shape[1], source.rank), dtype=np.int64)
    for loop, dims in enumerate(walked):
        for j in dims or ():
            origins[:, j] = counters[loop] * source.steps[loop]
    return origins


def _check_inside(
    side: str,
    t: ITensorType,
    first_token: int,
    relative: np.ndarray,
    buffer: ConverterBuffer,
    origin: np.ndarray,
) -> None:
    outside = ((relative < 0) | (relative + np.array(t.element_shape) > np.array(buffer.shape))).any(axis=1)
    if outside.any():
        k = int(np.argmax(outside))
        offset = tuple(int(v) for v in relative[k] + origin)
        raise ConverterBufferError(
            f"{side} token {first_token + k} ({t.element_shape} tile at {offset}) falls outside the "
            f"{buffer.shape} buffer window at {tuple(int(v) for v in origin)}; {side} type {t}"
        )


def run_converter(
    source: ITensorType,
    result: ITensorType,
    tokens: list[np.ndarray] | np.ndarray,
    buffer: ConverterBuffer | None = None,
) -> list[np.ndarray]:
    """Convert a source token stream into the result stream through ``buffer`` (default: the inferred one).

    Raises ``ConverterBufferError`` when a source tile falls outside the current window or a result tile
    reads an element not written in the current window (the buffer is too small for these layouts)."""
    if buffer is None:
        buffer = infer_converter_buffer(source, result)  # validates both types too
    else:
        check_convertible(source, result)
    data = stack_tokens(source, tokens)
    if buffer.direct:
        if source != result:
            raise ConverterBufferError(f"direct buffer between different types {source} and {result}")
        return list(data.copy())
    origins = _window_origins(source, result, buffer)
    src_per, res_per = source.num_tokens // len(origins), result.num_tokens // len(origins)
    src_offsets, res_offsets = source.offsets(), result.offsets()
    window = np.empty(buffer.shape, dtype=data.dtype)
    written = np.zeros(buffer.shape, dtype=bool)
    out = np.empty((result.num_tokens, *result.element_shape), dtype=data.dtype)
    for i, origin in enumerate(origins):
        written[...] = False
        src = slice(i * src_per, (i + 1) * src_per)
        relative = src_offsets[src] - origin
        _check_inside("source", source, src.start, relative, buffer, origin)
        scatter_tiles(window, source.element_shape, relative, data[src])
        scatter_tiles(written, source.element_shape, relative, True)

        res = slice(i * res_per, (i + 1) * res_per)
        relative = res_offsets[res] - origin
        _check_inside("result", result, res.start, relative, buffer, origin)
        ready = gather_tiles(written, result.element_shape, relative).reshape(res_per, -1)
        if not ready.all():
            k = int(np.argmax(~ready.all(axis=1)))
            local = np.unravel_index(int(np.argmax(~ready[k])), result.element_shape)
            element = tuple(int(v) for v in relative[k] + origin + np.array(local, dtype=np.int64))
            raise ConverterBufferError(
                f"result token {res.start + k} reads element {element}, not written in shared iteration "
                f"{i} (buffer {buffer.shape} at {tuple(int(v) for v in origin)}); "
                f"source {source}, result {result}"
            )
        out[res] = gather_tiles(window, result.element_shape, relative)
    return list(out)
