"""The one model of external memory: where every external tensor lives on the target's HBM pseudo-channels, and
the bandwidth each of its DMAs gets there.

Tiling (rate matching a kernel to its DMA), the timing model (the DMA processes) and the Vitis backend
(``link.cfg``'s ``sp=`` lines) all ask :func:`place_tensors`, so a DMA streams at the rate of the channel it is
connected to.

**Placement.** An external tensor is streamed by one or more DMAs, each with its own buffer (its view of the
tensor in the packed layout of its stream). All DMAs of one tensor go on that tensor's channel range. Tensors
are taken by bandwidth demand (bytes their DMAs stream per run, repeat loops included; then bytes; then name)
and each is placed round-robin at the next channel range with room: ``ceil(bytes / channel_bytes)`` consecutive
pseudo-channels (never wrapping past the last), each with room for the tensor's DMAs within the target's
interfaces per channel (a DMA on a range counts on each of its channels) and, together, for its bytes. When
nothing fits, placement fails with :class:`HbmPlanError`.

**Shares.** The DMAs connected to one pseudo-channel stream concurrently and split its bandwidth evenly: a DMA's
*share* is the number of DMAs on the busiest channel of its range (:func:`dma_bytes_per_cycle`). With at most
``channels`` tensors of one channel each, every tensor has a channel of its own and the share of each of its
DMAs is the tensor's number of DMAs. With more tensors, round-robin stacks them: on 2 channels, tensors A, B,
C of one DMA each give A and C share 2 (channel 0) and B share 1 (channel 1), not a uniform ``ceil(3 / 2)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from streamtensor.errors import StreamTensorError
from streamtensor.ir.itensor import ITensorType
from streamtensor.packing import PackedLayout
from streamtensor.target import HbmSpec, Target


class HbmPlanError(StreamTensorError):
    """The external tensors do not fit the HBM (capacity or interfaces per channel)."""


@dataclass(frozen=True)
class ExternalTensor:
    """A tensor in external memory and the DMAs that stream it (each with a buffer of its own)."""

    name: str
    dmas: tuple[str, ...]  # names of its DMAs, unique among all tensors placed together
    bytes: int  # the buffers of all its DMAs
    demand: int  # bytes its DMAs stream per run


@dataclass(frozen=True)
class HbmPlacement:
    """Every tensor's channel range and every DMA's channel share (module docstring)."""

    ranges: Mapping[str, tuple[int, int]]  # tensor name -> (first, last) pseudo-channel
    dma_ranges: Mapping[str, tuple[int, int]]  # DMA name -> its tensor's range
    shares: Mapping[str, int]  # DMA name -> DMAs on the busiest channel of its range


def streamed_tensors(dmas: Iterable[tuple[str, str, PackedLayout]]) -> list[ExternalTensor]:
    """External tensors of ``(tensor name, DMA name, buffer layout)`` triples, one DMA each (first-seen order)."""
    grouped: dict[str, list[tuple[str, PackedLayout]]] = {}
    for tensor, dma, layout in dmas:
        grouped.setdefault(tensor, []).append((dma, layout))
    return [ExternalTensor(name, tuple(d for d, _ in buffers), sum(b.total_bytes for _, b in buffers),
                           sum(b.streamed_bytes for _, b in buffers))
            for name, buffers in grouped.items()]


def place_tensors(tensors: Sequence[ExternalTensor], hbm: HbmSpec) -> HbmPlacement:
    """Place every tensor's DMAs on HBM pseudo-channels (see the module docstring)."""
    dma_names = [d for t in tensors for d in t.dmas]
    if len(set(dma_names)) != len(dma_names) or len({t.name for t in tensors}) != len(tensors):
        raise HbmPlanError(f"duplicate tensor or DMA names among {dma_names}")
    interfaces = [0] * hbm.channels
    free = [hbm.channel_bytes] * hbm.channels
    ranges: dict[str, tuple[int, int]] = {}
    cursor = 0
    for t in sorted(tensors, key=lambda t: (-t.demand, -t.bytes, t.name)):
        span = max(1, math.ceil(t.bytes / hbm.channel_bytes))
        if span > hbm.channels:
            raise HbmPlanError(f"tensor {t.name} needs {t.bytes} bytes, more than the whole HBM")
        if len(t.dmas) > hbm.max_interfaces_per_channel:
            raise HbmPlanError(f"tensor {t.name} has {len(t.dmas)} DMAs, more than the "
                               f"{hbm.max_interfaces_per_channel} interfaces one pseudo-channel takes")
        for first in ((cursor + i) % hbm.channels for i in range(hbm.channels)):
            channels = range(first, first + span)
            if (
                first + span <= hbm.channels
                and all(interfaces[c] + len(t.dmas) <= hbm.max_interfaces_per_channel for c in channels)
                and sum(free[c] for c in channels) >= t.bytes
            ):
                break
        else:
            raise HbmPlanError(
                f"cannot place tensor {t.name} ({len(t.dmas)} DMA(s), {t.bytes} bytes on {span} pseudo-channel(s)): "
                f"every candidate range lacks room for {len(t.dmas)} more interface(s) (at most "
                f"{hbm.max_interfaces_per_channel} per channel) or has too little free memory ({len(tensors)} "
                f"tensors, {len(dma_names)} DMAs in all)"
            )
        remaining = t.bytes
        for c in channels:
            interfaces[c] += len(t.dmas)
            taken = min(free[c], remaining)
            free[c] -= taken
            remaining -= taken
        ranges[t.name] = (first, first + span - 1)
        cursor = (first + span) % hbm.channels
    dma_ranges = {d: ranges[t.name] for t in tensors for d in t.dmas}
    shares = {d: max(interfaces[c] for c in range(first, last + 1)) for d, (first, last) in dma_ranges.items()}
    return HbmPlacement(ranges, dma_ranges, shares)


def dma_bytes_per_cycle(share: int, target: Target) -> Fraction:
    """Bytes per cycle of one DMA: ``min(bus, pseudo-channel) / share``.

    On the U55C a 512-bit m_axi port moves 64 B/cycle but its HBM pseudo-channel only 14.375 GB/s = 57.5
    B/cycle at 250 MHz, so the channel bounds it; ``share`` DMAs on one channel split it evenly."""
    return min(Fraction(target.axi_bytes_per_cycle), target.channel_bytes_per_cycle) / share


def dma_token_bytes(t: ITensorType, target: Target) -> int:
    """Bus bytes per token: the tile padded to whole m_axi words (``streamtensor.packing``)."""
    return math.ceil(t.token_bits / target.axi_word_bits) * target.axi_bytes_per_cycle
