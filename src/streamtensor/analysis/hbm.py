"""The one model of external memory: where every external tensor lives on the target's HBM pseudo-channels, and
the bandwidth each of its DMAs gets there.

Tiling (rate matching a kernel to its DMA), the timing model (the DMA processes) and the Vitis backend
(``link.cfg``'s ``sp=`` lines) all ask :func:`place_tensors`, so a DMA streams at the rate of the channels it is
connected to.

**Stripes.** An external tensor may be striped over ``J`` pseudo-channels: every DMA of it then has ``J`` m_axi
ports, and stripe ``j`` of its buffer holds the words ``w`` with ``w % J == j`` of every packed tile (in tile
order, each tile's share padded to ``ceil(words_per_tile / J)`` words). The DMA reads the ``J`` stripes in lock
step, one word per port per cycle, so a tile takes ``ceil(words_per_tile / J)`` port cycles. Only a tensor that
DMA nodes read and nothing writes (weights, block inputs; not a KV cache updated in place) is striped, at most
over its narrowest DMA's words per tile (``max_stripes``) and the channel count. :func:`choose_stripes` picks
the counts of one group (the external tensors of one accelerator, whose DMAs all stream concurrently) greedily:
every tensor starts with one stripe; its *time* is its bytes per DMA times its share over the words per port
fraction ``ceil(words / J) / words`` (:func:`dma_token_cycles`, up to the channel rate); repeatedly the slowest
tensor that can take more gets the next count that puts fewer words on each port, kept while the times, sorted
slowest first, get lexicographically smaller under the placement below (a stripe that would share a channel
with a busier port makes things worse and ends the search).

**Placement.** An external tensor is streamed by one or more DMAs, each with its own buffer (its view of the
tensor in the packed layout of its stream). The unit placed is an ``ExternalTensor``: the callers make every
read-only DMA one of its own (its buffer is its own packed copy, so a DMA that re-streams a block input per
output tile need not split a channel with the tensor's other, short-lived reads: ``DmaNode.placement_name``)
and keep a KV cache's read and row write together (one buffer). Stripe ``j`` of every DMA of a unit goes on
that unit's ``j``-th channel range. Tensors are taken by bandwidth demand (bytes their DMAs stream per run, repeat loops
included; then bytes; then name) and each stripe goes on a range of ``ceil(stripe bytes / channel_bytes)``
consecutive pseudo-channels (never wrapping past the last), none holding another stripe of the same tensor,
each with room for the tensor's DMAs within the target's interfaces per channel (a DMA on a range counts on each
of its channels) and, together, for the stripe's bytes. Among those, the range whose slowest port would be
fastest once the stripe is added wins (under the fair split below, a channel's largest port finishes when the
channel has moved every port's bytes: the range whose busiest channel then holds the fewest bytes), ties in
round-robin order from where the last stripe ended. When nothing fits, placement fails with
:class:`HbmPlanError`.

**Contention.** That split assumes every port streams from the start, as a many-token block's do. A one-token
block's stages run one after another: its DMAs carry the share the timing simulation shows instead
(``DmaNode.share``, :func:`contention_shares`, settled by ``analysis.contention``), at most the static count.

**Shares.** The ports connected to one pseudo-channel stream concurrently and split its bandwidth evenly among
those still streaming: a port of ``b`` bytes finishes when the channel has moved ``sum(min(b_q, b))`` over its
ports ``q`` (itself included), so its *share* of that channel is ``sum(min(1, b_q / b))`` (:func:`fair_share`):
the number of ports where they stream equal bytes, near 1 for a weight stripe beside a few small reads, which
wait for the weight only as long as they stream themselves. (Charging every port the count of ports on its
channel, as if each streamed for the whole run, put a paper-size W4A8 GPT-2 prefill block's LayerNorm reads of
the hidden state, 128 KiB each, with ten other small ports at an eleventh of a channel.) A DMA's share is the
largest of its stripes' (the lock step waits for the slowest port); ``HbmPlacement.ports`` keeps the count. A
port moves ``min(64, 57.5 / share)`` B/cycle (:func:`dma_bytes_per_cycle`) and a striped DMA ``J`` times that.
A one-token block's placement (``serial``) starts from the count, which its contention fixed point lowers.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

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
    stripes: int = 1  # pseudo-channels (m_axi ports per DMA) it is striped over
    max_stripes: int = 1  # words per tile of its narrowest DMA, or 1 where it is not striped (choose_stripes)


@dataclass(frozen=True)
class HbmPlacement:
    """Every tensor's stripe channel ranges and every DMA's channel share (module docstring)."""

    ranges: Mapping[str, tuple[tuple[int, int], ...]]  # tensor name -> (first, last) pseudo-channel per stripe
    dma_ranges: Mapping[str, tuple[tuple[int, int], ...]]  # DMA name -> its tensor's stripe ranges
    shares: Mapping[str, int | Fraction]  # DMA name -> its share of the busiest channel of its ranges (fair_share)
    ports: Mapping[str, int]  # DMA name -> ports on the busiest channel of its stripes' ranges

    def channel_ports(self, channels: int) -> list[list[str]]:
        """Per pseudo-channel, the DMA of each port on it (a DMA has one port per stripe)."""
        ports: list[list[str]] = [[] for _ in range(channels)]
        for dma, stripes in self.dma_ranges.items():
            for first, last in stripes:
                for c in range(first, last + 1):
                    ports[c].append(dma)
        return ports

    def stripes(self, dma: str) -> int:
        return len(self.dma_ranges[dma])


def streamed_tensors(dmas: Iterable[tuple[str, str, PackedLayout]], stripes: Mapping[str, int] | None = None,
                     stripable: Collection[str] = ()) -> list[ExternalTensor]:
    """External tensors of ``(tensor name, DMA name, buffer layout)`` triples, one DMA each (first-seen order),
    with their stripe counts (``stripes``, by tensor; 1 if absent); a ``stripable`` tensor may get up to its
    narrowest DMA's words per tile from :func:`choose_stripes`, any other one stripe."""
    grouped: dict[str, list[tuple[str, PackedLayout]]] = {}
    for tensor, dma, layout in dmas:
        grouped.setdefault(tensor, []).append((dma, layout))
    stripes = stripes or {}
    return [ExternalTensor(name, tuple(d for d, _ in buffers), sum(b.total_bytes for _, b in buffers),
                           sum(b.streamed_bytes for _, b in buffers), stripes.get(name, 1),
                           min(b.words_per_tile for _, b in buffers) if name in stripable else 1)
            for name, buffers in grouped.items()]


def stripes_for_rate(words: int, bytes_per_cycle: Fraction, target: Target) -> int:
    """The fewest stripes (up to ``words`` and the channel count) at which a DMA of ``words``-word tiles, its
    channels to itself, streams ``bytes_per_cycle``: a tensor whose consumer runs while no other DMA streams
    needs no more ports than that consumer absorbs."""
    most = min(words, target.hbm.channels)
    for j in range(1, most + 1):
        if words * target.axi_bytes_per_cycle / dma_token_cycles(words, j, 1, target) >= bytes_per_cycle:
            return j
    return most


def contention_shares(placement: HbmPlacement, busy: Mapping[str, np.ndarray], channels: int
                      ) -> dict[str, Fraction]:
    """Per DMA of ``busy`` (the cycles in which it transfers), the ports it shares a channel with on average
    while it transfers, on its busiest channel: the mean over its busy cycles of the ports on that channel whose
    DMAs transfer in the same cycle (itself included, so at least 1), rounded up to a quarter. A DMA not in
    ``busy`` (it moved nothing) gets 1."""
    ports = placement.channel_ports(channels)
    # The busy cycles of a DMA are a few of the block's millions of cycles: per channel, the ports busy with d in
    # a cycle summed over d's busy cycles is the overlap of d's cycles with each port's, counted from the sorted
    # cycle lists (issue 21: the dense per-cycle counts of every channel cost 0.2 s a measurement).
    active = {d: _distinct_sorted(b) for d, b in busy.items() if b.size}
    overlaps: dict[tuple[str, str], int] = {}

    def overlap(d: str, e: str) -> int:
        if d == e:
            return int(active[d].size)
        key = (d, e) if d < e else (e, d)
        if key not in overlaps:
            a, b = active[key[0]], active[key[1]]
            if a.size > b.size:
                a, b = b, a
            at = np.minimum(np.searchsorted(b, a), b.size - 1)
            overlaps[key] = int(np.count_nonzero(b[at] == a))
        return overlaps[key]

    shares: dict[str, Fraction] = {}
    for d in placement.dma_ranges:
        if d not in active:
            shares[d] = Fraction(1)
            continue
        cycles = int(active[d].size)
        worst = max(sum(overlap(d, e) for e in ports[c] if e in active) for first, last in placement.dma_ranges[d]
                    for c in range(first, last + 1))
        shares[d] = Fraction(math.ceil(4 * worst / cycles), 4)
    return shares


def _distinct_sorted(cycles: np.ndarray) -> np.ndarray:
    """The distinct values of ``cycles`` in increasing order (a simulation's issue cycles are sorted already: no
    sort then, and no hashing, which numpy's ``unique`` does and took 1.5 s for a paper-size decode block)."""
    if cycles.size > 1 and not bool(np.all(cycles[1:] >= cycles[:-1])):
        cycles = np.sort(cycles)
    return cycles[np.concatenate(([True], cycles[1:] != cycles[:-1]))] if cycles.size > 1 else cycles


def stripe_words(words: int, stripes: int) -> int:
    """Words of a tile of ``words`` words on each of ``stripes`` stripes (the last ones padded)."""
    return -(-words // stripes)


def choose_stripes(tensors: Sequence[ExternalTensor], hbm: HbmSpec) -> dict[str, int]:
    """Stripes per tensor, greedily (module docstring): deterministic."""
    stripes = {t.name: 1 for t in tensors}
    times = _stripe_times(tensors, stripes, hbm)
    caps = {t.name: min(t.max_stripes, hbm.channels) for t in tensors}
    words = {t.name: t.max_stripes for t in tensors}
    while True:
        growing = [n for n in times if _more_stripes(words[n], stripes[n]) <= caps[n]]
        if not growing:
            break
        slowest = max(growing, key=lambda n: (times[n], n))
        trial = {**stripes, slowest: _more_stripes(words[slowest], stripes[slowest])}
        try:
            trial_times = _stripe_times(tensors, trial, hbm)
        except HbmPlanError:
            break
        if sorted(trial_times.values(), reverse=True) >= sorted(times.values(), reverse=True):
            break
        stripes, times = trial, trial_times
    return stripes


def _more_stripes(words: int, stripes: int) -> int:
    """The next stripe count that puts fewer words of a ``words``-word tile on each port."""
    now = stripe_words(words, stripes)
    return words + 1 if now == 1 else -(-words // (now - 1))


def _stripe_times(tensors: Sequence[ExternalTensor], stripes: Mapping[str, int], hbm: HbmSpec
                  ) -> dict[str, Fraction]:
    """Each tensor's streaming time (in units of a whole channel's byte time) when striped as ``stripes``: a DMA's
    bytes at its stripes' words per port over its share (:func:`dma_token_cycles` up to the channel rate)."""
    placement = place_tensors([replace(t, stripes=stripes[t.name]) for t in tensors], hbm)
    return {t.name: Fraction(t.demand * placement.shares[t.dmas[0]] * stripe_words(t.max_stripes, stripes[t.name]),
                             len(t.dmas) * t.max_stripes) for t in tensors}


def place_tensors(tensors: Sequence[ExternalTensor], hbm: HbmSpec, serial: bool = False) -> HbmPlacement:
    """Place every tensor's DMAs (each stripe of them) on HBM pseudo-channels (see the module docstring).
    ``serial``: the tensors are given in the order their stages run, one after another (a one-token block):
    each stripe goes on the next range round-robin that fits, whatever streams there, so the DMAs of one stage
    land on distinct channels and later stages reuse the channels of earlier ones."""
    dma_names = [d for t in tensors for d in t.dmas]
    if len(set(dma_names)) != len(dma_names) or len({t.name for t in tensors}) != len(tensors):
        raise HbmPlanError(f"duplicate tensor or DMA names among {dma_names}")
    interfaces = [0] * hbm.channels
    free = [hbm.channel_bytes] * hbm.channels
    # Port bytes scaled by the least common multiple of every tensor's port count: the exact fractions compared
    # as integers (Fraction arithmetic was most of a paper-size prefill compile's stripe choice, issue 21).
    scale = math.lcm(*(max(1, len(t.dmas) * t.stripes) for t in tensors)) if tensors else 1
    load = [0] * hbm.channels  # bytes of every port on each channel, times ``scale``
    port_bytes: dict[str, int] = {}  # bytes each port of a DMA streams, times ``scale``
    ranges: dict[str, tuple[tuple[int, int], ...]] = {}
    cursor = 0
    for t in tensors if serial else sorted(tensors, key=lambda t: (-t.demand, -t.bytes, t.name)):
        if not 1 <= t.stripes <= hbm.channels:
            raise HbmPlanError(f"tensor {t.name} has {t.stripes} stripes; the HBM has {hbm.channels} pseudo-channels")
        if len(t.dmas) > hbm.max_interfaces_per_channel:
            raise HbmPlanError(f"tensor {t.name} has {len(t.dmas)} DMAs, more than the "
                               f"{hbm.max_interfaces_per_channel} interfaces one pseudo-channel takes")
        stripe_bytes = -(-t.bytes // t.stripes)
        span = max(1, math.ceil(stripe_bytes / hbm.channel_bytes))
        if span * t.stripes > hbm.channels:
            raise HbmPlanError(f"tensor {t.name} needs {t.bytes} bytes, more than the whole HBM")
        used: set[int] = set()
        placed: list[tuple[int, int]] = []
        per_port = t.demand * scale // (len(t.dmas) * t.stripes)  # bytes each of its ports streams, times scale
        added = per_port * len(t.dmas)
        room = hbm.max_interfaces_per_channel - len(t.dmas)  # interfaces a channel may hold before it
        for j in range(t.stripes):
            fits = []
            for i in range(hbm.channels):  # round-robin order from the cursor: the tie-break
                first = (cursor + i) % hbm.channels
                if span == 1:  # most tensors: one channel a stripe, tested without building its range
                    ok = first not in used and interfaces[first] <= room and free[first] >= stripe_bytes
                    top = load[first]
                else:
                    channels = range(first, first + span)
                    ok = (first + span <= hbm.channels and not used.intersection(channels)
                          and all(interfaces[c] <= room for c in channels)
                          and sum(free[c] for c in channels) >= stripe_bytes)
                    top = max(load[c] for c in channels) if ok else 0
                if ok:
                    # The slowest port of the range once it is added: fairly shared, a channel's largest port
                    # finishes when the channel has moved all its ports' bytes (serial: no port streams for the
                    # whole run, so the next range round-robin).
                    fits.append((0 if serial else top + added, i))
            if not fits:
                raise HbmPlanError(
                    f"cannot place tensor {t.name} (stripe {j} of {t.stripes}; {len(t.dmas)} DMA(s), {stripe_bytes} "
                    f"bytes on {span} pseudo-channel(s)): every candidate range holds another of its stripes, lacks "
                    f"room for {len(t.dmas)} more interface(s) (at most {hbm.max_interfaces_per_channel} per "
                    f"channel) or has too little free memory ({len(tensors)} tensors, {len(dma_names)} DMAs in all)"
                )
            first = (cursor + min(fits)[1]) % hbm.channels
            channels = range(first, first + span)
            remaining = stripe_bytes
            for c in channels:
                interfaces[c] += len(t.dmas)
                load[c] += per_port * len(t.dmas)
                taken = min(free[c], remaining)
                free[c] -= taken
                remaining -= taken
            used.update(channels)
            placed.append((first, first + span - 1))
            cursor = (first + span) % hbm.channels
        ranges[t.name] = tuple(placed)
        port_bytes.update(dict.fromkeys(t.dmas, per_port))
    dma_ranges = {d: ranges[t.name] for t in tensors for d in t.dmas}
    ports = {d: max(interfaces[c] for first, last in stripes for c in range(first, last + 1))
             for d, stripes in dma_ranges.items()}
    if serial:
        return HbmPlacement(ranges, dma_ranges, ports, ports)
    on_channel: list[list[int]] = [[] for _ in range(hbm.channels)]
    for d, stripes in dma_ranges.items():
        for first, last in stripes:
            for c in range(first, last + 1):
                on_channel[c].append(port_bytes[d])
    shares = {d: max(fair_share(port_bytes[d], on_channel[c]) for first, last in stripes
                     for c in range(first, last + 1))
              for d, stripes in dma_ranges.items()}
    return HbmPlacement(ranges, dma_ranges, shares, ports)


# Fair shares are rounded up to this fraction of a port: small denominators for the timing model's integer
# token costs (``timing_model.dma_token_costs``), at most 1/64 of a port's time given away.
SHARE_STEP = 64


def fair_share(own: int, ports: Sequence[int]) -> Fraction:
    """The share of a port streaming ``own`` bytes on a channel whose ports (itself included) stream ``ports``
    bytes, all from the start, the channel split evenly among the ports still streaming: it finishes when the
    channel has moved ``sum(min(b, own))``, i.e. at ``sum(min(1, b / own))`` times its time alone (rounded up to
    ``1 / SHARE_STEP``). Ports of equal bytes share as their count; a port of no bytes counts every port."""
    if own == 0:
        return Fraction(len(ports))
    moved = sum(min(b, own) for b in ports)
    return Fraction(-(-moved * SHARE_STEP // own), SHARE_STEP)


def dma_bytes_per_cycle(share: int | Fraction, target: Target) -> Fraction:
    """Bytes per cycle of one DMA port: ``min(bus, pseudo-channel) / share``.

    On the U55C a 512-bit m_axi port moves 64 B/cycle but its HBM pseudo-channel only 14.375 GB/s = 57.5
    B/cycle at 250 MHz, so the channel bounds it; ``share`` ports on one channel split it evenly."""
    return min(Fraction(target.axi_bytes_per_cycle), target.channel_bytes_per_cycle) / share


def dma_token_bytes(t: ITensorType, target: Target) -> int:
    """Bus bytes per token: the tile padded to whole m_axi words (``streamtensor.packing``)."""
    return math.ceil(t.token_bits / target.axi_word_bits) * target.axi_bytes_per_cycle


def dma_token_cycles(words: int, stripes: int, share: int | Fraction, target: Target) -> Fraction:
    """Cycles a DMA of ``stripes`` lock-step ports takes for a token of ``words`` bus words: every port moves
    ``ceil(words / stripes)`` words at its share of its channel (module docstring)."""
    return stripe_words(words, stripes) * target.axi_bytes_per_cycle / dma_bytes_per_cycle(share, target)
