"""Performance model of a whole generation run on the board: TTFT, decode tokens/s, latency, with every term.

All kernel figures are *modelled*: cycles from each compiled block's timing simulation (FIFOs as sized) at the
target's clock. The host program (``llm.generate``; the C++ host does the same) runs one kernel invocation per token
and layer. A run whose whole input is the previous run's output buffer, on its banks, of the same kernel, is queued
behind it (``queued_handoffs``: the kernels are ``ap_ctrl_hs``, so one compute unit runs its queue in order) and
costs its dispatch gap (``Target.host_link.queued_run_s``); every other run is waited for, one launch round trip
(``kernel_launch_s``); the report repeats both figures and their source. Activations stay on the device: a layer's
output buffer IS the next layer's input buffer, and the head reads the last layer's (``chain_handoffs``: per input
buffer, as a kernel input read by DMAs of different packings has one buffer per packing, where that buffer's packing
equals the producer's output's slot for slot; for the other buffers the host reads the output back once and writes
them, and the model charges those syncs and bytes). Where every buffer agrees, a decode step syncs the embedded
hidden row to the device once and the logits back once; the position is a register written with each launch. A
prefill writes the embedded prompt once; each layer's prefill kernel writes its keys and values straight into that
layer's resident decode-cache buffers (its output a sub-buffer at offset 0 of the cache buffer, on the cache's
banks: ``cache_handoffs``) where its output's packing is the cache's over the prompt rows slot for slot
(``cache_prefix``). Where they are packed otherwise (e.g. a cache in tiles of other shapes or order than the
prefill's output, or tiled per head: each head's rows lie ``max_len`` rows apart in the cache, ``prompt_len`` in
the prefill's output) the host reads them back once all layers are done and writes them into the cache buffers
(``kv_read_back`` and the ``cache_fill`` term), each kernel's buffers of one argument over all its layers slices
of one buffer, so one sync moves them all.
Written in place, the cache rows past the prompt hold the padded prompt's rows and, past the prefill length, the
previous generation's: the decode kernel reads them only in tiles holding rows up to its position, and the mask
gives them weight exactly 0 (finite values: exact). The head reads the last prompt row of the last layer's output
in place (a sub-buffer at that row's offset) where that row is contiguous and word-aligned in the output's packing.
Each buffer sync costs the link's fixed latency plus its bytes over PCIe. Weights are resident in HBM (written once
at load). The KV cache is resident too: one cache buffer pair per layer on the device, updated in place by the
decode kernel (it reads rows ``0..position`` and writes row ``position``). No cache byte crosses PCIe during decode.
Every byte figure follows the element types of the kernels' layouts: an int8 KV cache moves and holds one byte per
element. Embedding lookup and sampling are host work, *measured* here.

Prefill: a prompt of n <= prefill length runs one prefill invocation per layer (padded to the compiled length);
longer prompts prefill the first part and feed the rest through decode steps. TTFT = prefill layers + cache fill
+ head + host. Every later token is one decode step: layers + head + host. latency = TTFT + (new_tokens - 1) *
step. When no prompt token goes through the decode kernels, nothing reads the caches before the second token:
the host samples the first token, then reads the keys and values back and fills the caches (``fill_deferred``),
so that copy counts in the latency (once, before the second token's step) and not in the TTFT.

Decode and the position: the decode block as built runs its attention over all ``max_len`` cache rows (the rows
past the position are zero tiles the cache DMA streams without reading HBM, and the mask drops them); the timing
model charges the cache DMAs at the worst case, ``position = max_len - 1``, so every step is modelled at those
cycles (an upper bound: a zero tile costs one cycle, a loaded one its HBM transfer). The HBM bytes of the cache
DMAs are exact per position (``analysis.timing_model.cache_dma_bytes``) and the report gives them per position.
What a design whose attention ran only up to the position would cost is modelled separately (blocks compiled at
smaller capacities, cycles interpolated linearly in the capacity) and reported, not used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from itertools import pairwise
from typing import Any

import numpy as np

from streamtensor.analysis.timing_model import cache_dma_bytes
from streamtensor.codegen.vitis.llm_host import chain_key, slot_map
from streamtensor.errors import StreamTensorError
from streamtensor.ir.dataflow import DataflowGraph, DmaNode, KernelNode
from streamtensor.kernel_interface import MemoryArgument
from streamtensor.target import Target


@dataclass
class Transfers:
    """What the host program moves between host and device: buffers synced and their bytes, scalar registers
    written with a launch, kernel runs. The emulation host counts them as it runs; the run model predicts them."""

    to_device_bytes: int = 0
    from_device_bytes: int = 0
    buffer_syncs: int = 0
    scalar_registers: int = 0
    launches: int = 0
    queued_launches: int = 0  # runs started behind a run of the same compute unit, without waiting for it

    def add(self, other: Transfers) -> Transfers:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def times(self, count: int) -> Transfers:
        return Transfers(*(count * getattr(self, n) for n in self.__dataclass_fields__))


def output_argument(arguments: Sequence[MemoryArgument], graph: DataflowGraph) -> MemoryArgument:
    """The argument returning the kernel's first output: a block's hidden state, the head's logits."""
    return next(a for a in arguments if a.dma == graph.outputs[0])


def input_owners(arguments: Sequence[MemoryArgument]) -> list[MemoryArgument]:
    """The buffers of the kernel's activation input: one per DMA packing of it (DMAs holding the same bytes share
    one, ``MemoryArgument.shares``), one per stripe of a striped one."""
    return [a for a in arguments if a.role == "input" and a.shares is None]


def _written_slots(out_slots: np.ndarray, slots: int) -> np.ndarray:
    """Per slot of a buffer of ``slots``, the flat tensor index + 1 a kernel writes there (0: none), from
    ``out_slots`` (``slot_map`` of its output: per element, its slot + 1)."""
    held = np.zeros(slots, dtype=np.int64)
    where = out_slots.astype(np.int64) - 1
    held[where] = np.arange(1, len(where) + 1)
    return held


def same_buffer(out: MemoryArgument, buffer: MemoryArgument) -> bool:
    """Whether the input buffer ``buffer`` of a kernel can be ``out``'s buffer as another kernel wrote it: every
    slot holding the same tensor element in both packings, no padding, no stripe."""
    if buffer.stripes != 1 or out.tensor_shape != buffer.tensor_shape:
        return False
    if out.layout.total_bytes != buffer.layout.total_bytes:
        return False
    wanted = slot_map(buffer)
    return bool(wanted.all()) and np.array_equal(_written_slots(slot_map(out), len(wanted)), wanted)


def row_offsets(out: MemoryArgument, buffer: MemoryArgument, word_bytes: int) -> list[int | None]:
    """Per row ``r`` of ``out``'s [1, rows, hidden] tensor: the byte offset at which its buffer holds row ``r``
    exactly as the [1, 1, hidden] input buffer ``buffer`` packs it, so the consumer can read a sub-buffer there;
    None where it does not (the row scattered over tiles, or not on a ``word_bytes`` boundary of the m_axi port)."""
    rows, hidden = out.tensor_shape[-2], out.tensor_shape[-1]
    wanted = slot_map(buffer).astype(np.int64) if buffer.stripes == 1 else np.zeros(0, dtype=np.int64)
    if len(wanted) != hidden or not wanted.all() or buffer.tensor_shape[-1] != hidden:
        return [None] * rows
    slot_bytes = buffer.layout.total_bytes // len(wanted)
    where = slot_map(out).astype(np.int64) - 1  # per element of out's tensor: its slot
    found: list[int | None] = []
    for r in range(rows):
        slots = where[r * hidden + wanted - 1]  # the slot of the element each input slot wants
        first = int(slots[0])
        ok = np.array_equal(slots, np.arange(first, first + hidden)) and first * slot_bytes % word_bytes == 0
        found.append(first * slot_bytes if ok else None)
    return found


def cache_prefix(out: MemoryArgument, cache: MemoryArgument) -> bool:
    """Whether a kernel writing ``out`` (a prefill's keys or values, [..., rows, dim]) into the first bytes of the
    cache buffer ``cache`` ([..., max_len, dim], as the decode kernel packs it) leaves there, slot for slot, what
    the cache holds over rows ``0..rows-1``: every slot ``out``'s packing spans holds the same element of both
    (or padding in both), no stripe, one element type."""
    if out.stripes != 1 or cache.stripes != 1 or out.itype.dtype != cache.itype.dtype:
        return False
    shape, full = out.tensor_shape, cache.tensor_shape
    if len(shape) != len(full) or shape[:-2] != full[:-2] or shape[-1] != full[-1] or shape[-2] > full[-2]:
        return False
    wanted = slot_map(cache).astype(np.int64)  # per cache slot: the flat cache index + 1 it holds (0: padding)
    out_slots = slot_map(out)
    # An output larger than the cache, or packed over more slots than it has, is no prefix of it.
    if out.layout.total_bytes > cache.layout.total_bytes or int(out_slots.max(initial=0)) > len(wanted):
        return False
    held = _written_slots(out_slots, len(wanted))  # per slot: the flat index + 1 of out's tensor written there
    span = out.layout.total_bytes * len(wanted) // cache.layout.total_bytes  # within the cache: its bytes are more
    # out's element (..., r, d) is the cache's element (..., r, d): its flat index in the cache's shape.
    where = held[:span] - 1
    expected = np.where(held[:span] > 0, np.ravel_multi_index(np.unravel_index(np.maximum(where, 0), shape), full)
                        + 1, 0)
    return bool(np.array_equal(expected, wanted[:span]))


def cache_handoffs(ports: dict[str, tuple[MemoryArgument, Sequence[MemoryArgument]]], prefill: Sequence[str],
                   decode: Sequence[str], kv_caches: Sequence[tuple[str, str]]
                   ) -> dict[str, dict[tuple[str, str], str | None]]:
    """Per ``prefill->decode`` pair of kernels of one layer, per ``(prefill output, decode cache)`` of
    ``kv_caches``: None where the prefill kernel can write its output straight into the decode kernel's resident
    cache buffer (a sub-buffer at its offset 0, ``cache_prefix``; the cache one buffer), else why not."""
    found: dict[str, dict[tuple[str, str], str | None]] = {}
    for p, d in dict.fromkeys(zip(prefill, decode, strict=True)):
        outs = {a.name: a for a in ports[p][1] if a.writes and a.role != "kv_cache"}
        pairs: dict[tuple[str, str], str | None] = {}
        for output, cache in kv_caches:
            owners = [a for a in ports[d][1] if a.name == cache and a.role == "kv_cache" and a.reads
                      and a.shares is None]
            pairs[output, cache] = (f"{len(owners)} cache buffers" if len(owners) != 1 else
                                    None if cache_prefix(outs[output], owners[0]) else
                                    f"packed otherwise: {outs[output].itype} against {owners[0].itype}")
        found[chain_key(p, d)] = pairs
    return found


def chain_handoffs(ports: dict[str, tuple[MemoryArgument, Sequence[MemoryArgument]]], prefill: Sequence[str],
                   decode: Sequence[str], head: str, word_bytes: int
                   ) -> tuple[dict[str, list[str]], dict[str, list[int | None]]]:
    """Which kernel reads which kernel's output buffer in place. ``ports``: per kernel, its output argument and
    its arguments. Returns, per ``producer->consumer`` (consecutive prefill layers, consecutive decode layers, the
    last decode layer and the head), the consumer's input buffers that are the producer's output buffer as it is
    (``same_buffer``; the others the host writes); and per input buffer of the head, per prefill row, where it
    finds that row in the last prefill layer's output buffer (``row_offsets``)."""
    pairs = [*pairwise(prefill), *pairwise(decode), (decode[-1], head)]
    chained = {chain_key(p, c): [b.arg for b in input_owners(ports[c][1]) if same_buffer(ports[p][0], b)]
               for p, c in dict.fromkeys(pairs)}
    rows = {b.arg: row_offsets(ports[prefill[-1]][0], b, word_bytes) for b in input_owners(ports[head][1])}
    return chained, rows


def queued_handoffs(chained: dict[str, list[str]], other_banks: dict[str, list[str]],
                    inputs: dict[str, list[str]]) -> list[str]:
    """The handoffs (``chain_handoffs`` keys) whose consumer run the host may queue behind the producer's: one
    kernel to itself (one compute unit runs its queue in order, ``ap_ctrl_hs``), every input buffer of the consumer
    read in place (``inputs``: per kernel, its input buffers), none on other banks than the producer's output (XRT
    would copy the buffer into them when the run is set up, before the producer has written it)."""
    queued = []
    for key, buffers in chained.items():
        producer, consumer = key.split("->")
        if producer == consumer and set(buffers) >= set(inputs[consumer]) and not other_banks.get(key):
            queued.append(key)
    return queued


@dataclass(frozen=True)
class Invocation:
    """One kernel run as the host program performs it."""

    cycles: int  # timing simulation makespan (a decode block: at the worst-case position)
    to_device_bytes: int  # activation buffers the host writes per run (weights and the KV cache stay resident)
    to_device_buffers: int
    registers: int  # scalar arguments written with the launch (the decode position)
    # every output the host may read back (the in-place cache update stays on the device): the first where the next
    # kernel cannot read it in place, a prefill's keys and values once per generation where it copies them
    from_device_bytes: int
    hbm_bytes: int  # bytes the kernel's DMAs move over HBM per run (repeat passes included), KV cache excluded
    work: int  # multiply-accumulate work items of its reductions (points of kernels with a reduction loop)
    cache_hbm_bytes: list[int] = field(default_factory=list)  # KV-cache DMA bytes per run at position 0, 1, ...
    cache_fill_bytes: int = 0  # the resident cache buffers, written once per generation after the prefill
    out_bytes: int = 0  # of from_device_bytes: the first output (hidden state, logits), which the next kernel reads
    input_bytes: dict[str, int] = field(default_factory=dict)  # per buffer of the activation input: its bytes
    output_bytes: dict[str, int] = field(default_factory=dict)  # per output tensor the host may read: its bytes
    cache_buffers: dict[str, list[int]] = field(default_factory=dict)  # per cache tensor: its buffers' bytes

    @classmethod
    def of(cls, cycles: int, arguments: Sequence[MemoryArgument], graph: DataflowGraph) -> Invocation:
        """The transfers and HBM bytes of a compiled kernel from its arguments and dataflow graph."""
        # A buffer the host writes is synced once, whichever DMAs read it (``MemoryArgument.shares``).
        ins = [a for a in arguments if a.reads and a.role == "input" and a.shares is None]
        outs = [a for a in arguments if a.writes and a.role != "kv_cache"]
        cache = [a for a in arguments if a.role == "kv_cache"]
        fixed = sum(a.layout.streamed_bytes for a in arguments if a.role not in ("kv_cache", "scalar"))
        per_position: list[int] = []
        rows = [graph.nodes[a.dma] for a in cache]
        dmas = [n for n in rows if isinstance(n, DmaNode) and n.rows is not None]
        if len(dmas) != len(cache):
            # A cache DMA without a row range would move the whole cache every run: counted as such.
            fixed += sum(a.layout.streamed_bytes for a, n in zip(cache, rows, strict=True)
                         if not (isinstance(n, DmaNode) and n.rows is not None))
        if dmas:
            types = [graph.streams[n.outputs[0] if n.direction == "read" else n.inputs[0]].type for n in dmas]
            length = types[0].tensor_shape[dmas[0].rows.dim]  # type: ignore[union-attr]
            per_position = [sum(int(cache_dma_bytes(n, t, p).sum()) for n, t in zip(dmas, types, strict=True))
                            for p in range(length)]
        owners = [a for a in cache if a.reads and a.shares is None]
        work = sum(math.prod(lt.size for lt in n.loops) for n in graph.nodes.values()
                   if isinstance(n, KernelNode) and any(lt.reduction for lt in n.loops))
        return cls(cycles, sum(a.layout.total_bytes for a in ins), len(ins),
                   sum(1 for a in arguments if a.scalar), sum(a.layout.total_bytes for a in outs), fixed,
                   work, per_position, sum(a.layout.total_bytes for a in owners),
                   output_argument(arguments, graph).layout.total_bytes,
                   {a.arg: a.layout.total_bytes for a in input_owners(arguments)},
                   {a.name: a.layout.total_bytes for a in outs},
                   {c: [a.layout.total_bytes for a in owners if a.name == c] for c in dict.fromkeys(
                       a.name for a in owners)})

    def hbm_at(self, position: int) -> int:
        """HBM bytes of one run at ``position`` (the cache DMAs' share grows with it)."""
        if not self.cache_hbm_bytes:
            return self.hbm_bytes
        return self.hbm_bytes + self.cache_hbm_bytes[min(position, len(self.cache_hbm_bytes) - 1)]


@dataclass
class RunModel:
    """What the model of a run needs, stored with a build (``llm.json``) so ``generate`` can model its own run."""

    target: str
    clock_hz: int
    kernel_launch_s: float
    queued_run_s: float
    transfer_latency_s: float
    pcie_bytes_per_second: int
    host_link_source: str
    board_power_w: float
    hbm_bytes_per_second: int
    mac_lanes: int  # fp32 multiply-accumulate lanes the device's DSPs could hold at once
    dsp_per_mac: int
    prefill_len: int
    max_len: int
    prefill: list[str]  # per layer: its prefill invocation
    decode: list[str]  # per layer: its decode invocation
    head: str
    invocations: dict[str, Invocation]
    host_token_s: float  # measured here: embedding lookup + sampling of one token
    host_head_s: float | None  # measured here: the output head in PyTorch eager on the host (None: not measured)
    kv_caches: list[list[str]]  # [prefill output, decode cache it fills]: keys, then values
    position_points: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # decode: (capacity, cycles)
    # ``producer->consumer`` -> the consumer's input buffers that are the producer's output buffer on the device
    # (``chain_handoffs``); the host writes the others
    chained: dict[str, list[str]] = field(default_factory=dict)
    # per input buffer of the head, per prefill row: its byte offset in the last prefill layer's output buffer,
    # where the head reads it; None: the host writes that buffer
    head_row_offsets: dict[str, list[int | None]] = field(default_factory=dict)
    # ``producer->consumer`` -> the consumer's arguments on a buffer read in place that are placed on other
    # pseudo-channels than the producer's output: XRT copies the buffer into their bank (not counted)
    other_banks: dict[str, list[str]] = field(default_factory=dict)
    # ``producer->consumer`` handoffs of one kernel to itself (consecutive layers on one compute unit) where the
    # consumer reads all of its input in place, on the producer's banks: the host queues its run behind the
    # producer's instead of waiting for it (``queued_handoffs``)
    queued: list[str] = field(default_factory=list)
    # ``prefill->decode`` (one layer's kernels) -> the ``[prefill output, decode cache]`` pairs the prefill kernel
    # writes straight into the decode kernel's resident cache buffer (``cache_handoffs``, on its banks): no read
    # back, no cache fill for them
    cache_in_place: dict[str, list[list[str]]] = field(default_factory=dict)
    # ``prefill->decode`` -> per decode cache the host writes from the prefill's output read back: why
    cache_copied: dict[str, dict[str, str]] = field(default_factory=dict)

    @staticmethod
    def device_figures(target: Target) -> dict[str, Any]:
        link = target.host_link
        dsp_per_mac = round(sum(target.ops.float_cost[op][0] for op in ("arith.mulf", "arith.addf")))
        return {"target": target.name, "clock_hz": target.clock_hz, "kernel_launch_s": link.kernel_launch_s,
                "queued_run_s": link.queued_run_s, "transfer_latency_s": link.transfer_latency_s,
                "pcie_bytes_per_second": link.pcie_bytes_per_second,
                "host_link_source": link.source, "board_power_w": target.board_power_w,
                "hbm_bytes_per_second": target.hbm.channels * target.hbm.channel_bytes_per_second,
                "mac_lanes": target.totals.dsp // dsp_per_mac, "dsp_per_mac": dsp_per_mac}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunModel:
        for kind, given in ((cls, [data]), (Invocation, list(data["invocations"].values()))):
            known = {f.name for f in dataclass_fields(kind)}
            needed = {f.name for f in dataclass_fields(kind) if f.default is MISSING and f.default_factory is MISSING}
            odd = sorted(set().union(*(set(g) ^ known for g in given)) - (known - needed))
            if odd:
                raise StreamTensorError(f"the build's run model does not match this streamtensor's {kind.__name__} "
                                        f"({', '.join(odd)}): rebuild it")
        fields = dict(data)
        fields["invocations"] = {k: Invocation(**v) for k, v in data["invocations"].items()}
        fields["position_points"] = {k: [tuple(p) for p in v] for k, v in data.get("position_points", {}).items()}
        return cls(**fields)

    # --- the terms ------------------------------------------------------------------------------------------------

    def kernel_s(self, name: str) -> float:
        return self.invocations[name].cycles / self.clock_hz

    def host_s(self, moved: Transfers) -> dict[str, float]:
        """Launch, sync and PCIe seconds of what the host program moved and ran (beyond the kernels' cycles)."""
        return {"launch": moved.launches * self.kernel_launch_s + moved.queued_launches * self.queued_run_s,
                "sync": moved.buffer_syncs * self.transfer_latency_s,
                "pcie": (moved.to_device_bytes + moved.from_device_bytes) / self.pcie_bytes_per_second}

    def _seconds(self, moved: Transfers) -> float:
        return sum(self.host_s(moved).values())

    # What the host program does (``llm.generate`` and the C++ host do exactly this; tests count it).
    def write_input(self, name: str, skip: Sequence[str] = ()) -> Transfers:
        """The host writes kernel ``name``'s activation input buffers but ``skip`` (read in place)."""
        written = [b for arg, b in self.invocations[name].input_bytes.items() if arg not in skip]
        return Transfers(to_device_bytes=sum(written), buffer_syncs=len(written))

    def run(self, name: str, queued: bool = False) -> Transfers:
        """One launch of ``name`` (``queued``: behind the previous run of its compute unit): its scalar registers.
        Its first output stays on the device for the next kernel (``handoff``); a prefill's keys and values are
        read back once all prefill layers are done (``kv_read_back``)."""
        return Transfers(scalar_registers=self.invocations[name].registers, launches=0 if queued else 1,
                         queued_launches=1 if queued else 0)

    def read_output(self, name: str) -> Transfers:
        """The host reads ``name``'s first output back (the logits; an activation the next kernel cannot read)."""
        return Transfers(from_device_bytes=self.invocations[name].out_bytes, buffer_syncs=1)

    def handoff(self, producer: str, consumer: str, in_place: Sequence[str] | None = None) -> Transfers:
        """``consumer`` gets ``producer``'s output: its input buffers ``in_place`` (default: those the build
        found equal, ``chained``) read on the device; for the others the host reads the output back once and
        writes them."""
        if in_place is None:
            in_place = self.chained.get(chain_key(producer, consumer), [])
        if set(in_place) >= set(self.invocations[consumer].input_bytes):
            return Transfers()
        return self.read_output(producer).add(self.write_input(consumer, in_place))

    def queued_at(self, names: Sequence[str], i: int) -> bool:
        """Whether the host queues the run of ``names[i]`` behind that of ``names[i - 1]`` (``queued``)."""
        return i > 0 and chain_key(names[i - 1], names[i]) in self.queued

    def kv_in_place(self, layer: int) -> list[list[str]]:
        """Layer ``layer``'s ``[prefill output, decode cache]`` pairs written in place (``cache_in_place``)."""
        return self.cache_in_place.get(chain_key(self.prefill[layer], self.decode[layer]), [])

    def kv_copied(self, names: Sequence[str], side: int) -> dict[str, list[str]]:
        """Per kernel of ``names`` (``prefill`` or ``decode``): the outputs (``side`` 0) or caches (1) of the
        ``kv_caches`` pairs the host copies for any of its layers (all but those written in place)."""
        found: dict[str, list[str]] = {}
        for layer, name in enumerate(names):
            placed = self.kv_in_place(layer)
            found.setdefault(name, [])
            found[name] += [pair[side] for pair in self.kv_caches
                            if pair not in placed and pair[side] not in found[name]]
        return found

    def kv_read_back(self) -> Transfers:
        """After the prefill, the keys and values the host copies into the caches read back: one buffer sync per
        output of each prefill kernel, its layers' buffers slices of one (``runtime.host.pool_buffers``)."""
        moved = Transfers()
        for name, outputs in self.kv_copied(self.prefill, 0).items():
            count = self.prefill.count(name)
            for output in outputs:
                moved.add(Transfers(from_device_bytes=count * self.invocations[name].output_bytes[output],
                                    buffer_syncs=1))
        return moved

    def layers(self, names: list[str]) -> Transfers:
        """The host runs ``names`` one after the other on one activation it writes once, each run queued behind
        the previous one where the handoff allows (``queued``), else started once the previous one is done."""
        moved = self.write_input(names[0])
        for i, name in enumerate(names):
            moved.add(self.run(name, self.queued_at(names, i)))
            if i + 1 < len(names):
                moved.add(self.handoff(name, names[i + 1]))
        return moved

    def head_from(self, producer: str, row: int | None = None) -> Transfers:
        """The head on ``producer``'s output (``row``: that row of the last prefill layer's), its logits read."""
        in_place = None if row is None else self.head_rows_in_place(row)
        return self.handoff(producer, self.head, in_place).add(self.run(self.head)).add(self.read_output(self.head))

    def head_rows_in_place(self, row: int) -> list[str]:
        """The head's input buffers it reads in place in the last prefill layer's output, at prompt row ``row``."""
        return [arg for arg, offsets in self.head_row_offsets.items()
                if row < len(offsets) and offsets[row] is not None]

    def cache_fill(self) -> Transfers:
        """Once per generation: the decode kernels' resident cache buffers written from the prefill's keys and
        values (``kv_read_back``), but those the prefill kernel wrote in place; one buffer sync per cache buffer
        of each decode kernel, its layers' buffers slices of one (``runtime.host.pool_buffers``)."""
        moved = Transfers()
        for name, caches in self.kv_copied(self.decode, 1).items():
            count = self.decode.count(name)
            for cache in caches:
                for size in self.invocations[name].cache_buffers[cache]:
                    moved.add(Transfers(to_device_bytes=count * size, buffer_syncs=1))
        return moved

    def step_transfers(self) -> Transfers:
        """One decode step: every decode layer on the embedded row, the head on the last layer's output."""
        return self.layers(self.decode).add(self.head_from(self.decode[-1]))

    def second_token_transfers(self, prompt_len: int) -> Transfers:
        """The step after the first token: the cache fill where it was deferred (``fill_deferred``), then a
        decode step."""
        moved = self.kv_copy() if self.fill_deferred(prompt_len) else Transfers()
        return moved.add(self.step_transfers())

    def fill_deferred(self, prompt_len: int) -> bool:
        """Whether the host copies the prefill's keys and values into the decode kernels' caches after the first
        token rather than before it: no prompt token runs through the decode kernels, so no kernel reads the
        caches before the second token's step."""
        return prompt_len <= self.prefill_len

    def kv_copy(self) -> Transfers:
        """The keys and values read back after the prefill and written into the resident caches."""
        return self.kv_read_back().add(self.cache_fill())

    def ttft_transfers(self, prompt_len: int, with_cache_fill: bool = True) -> Transfers:
        """From the prompt to the first token: the prefill layers, the cache fill (unless ``fill_deferred``), the
        prompt tokens past the prefill length through the decode layers, the head."""
        prefilled = min(prompt_len, self.prefill_len)
        moved = self.layers(self.prefill)
        if not self.fill_deferred(prompt_len):
            moved.add(self.kv_read_back())
            if with_cache_fill:
                moved.add(self.cache_fill())
        extra = prompt_len - prefilled
        moved.add(self.layers(self.decode).times(extra))
        return moved.add(self.head_from(self.decode[-1]) if extra else self.head_from(self.prefill[-1], prefilled - 1))

    def cache_fill_s(self) -> float:
        return self._seconds(self.cache_fill())

    def step_s(self) -> float:
        """One decode step: every layer's decode invocation, the head, the host's embedding and sampling."""
        kernels = sum(self.kernel_s(n) for n in [*self.decode, self.head])
        return kernels + self._seconds(self.step_transfers()) + self.host_token_s

    def head_s(self) -> float:
        """The head's share of a decode step: its kernel, launch, the logits read back (and its input, when it
        cannot read the last layer's output in place)."""
        return self.kernel_s(self.head) + self._seconds(self.head_from(self.decode[-1]))

    def hbm_bytes_at(self, position: int) -> int:
        """HBM bytes of one decode step (every layer and the head) feeding the token at ``position``."""
        return sum(self.invocations[n].hbm_at(position) for n in self.decode) + self.invocations[self.head].hbm_bytes

    def step_transfer_report(self) -> dict[str, int]:
        """Host <-> card traffic of one decode step (every layer and the head): what the host program moves."""
        moved = self.step_transfers()
        return {"to_device_bytes": moved.to_device_bytes, "from_device_bytes": moved.from_device_bytes,
                "buffer_syncs": moved.buffer_syncs, "scalar_registers": moved.scalar_registers,
                "kernel_launches": moved.launches, "queued_kernel_launches": moved.queued_launches,
                "kv_cache_bytes": 0}

    def model(self, prompt_len: int, new_tokens: int) -> dict[str, Any]:
        """``report["llm"]`` for a prompt of ``prompt_len`` tokens and ``new_tokens`` generated ones."""
        prefilled = min(prompt_len, self.prefill_len)
        extra_prompt_steps = prompt_len - prefilled
        step = self.step_s()
        ttft_host = self.host_s(self.ttft_transfers(prompt_len, with_cache_fill=False))
        deferred = self.fill_deferred(prompt_len)
        ttft_s = {"prefill_kernels": sum(self.kernel_s(n) for n in self.prefill),
                  "prompt_tokens_through_decode_kernels": extra_prompt_steps * sum(self.kernel_s(n)
                                                                                   for n in self.decode),
                  "head_kernel": self.kernel_s(self.head),
                  **{f"host_{k}": v for k, v in ttft_host.items()},
                  "kv_cache_fill": 0.0 if deferred else self.cache_fill_s(),
                  "host_embedding_and_sampling_measured_here": self.host_token_s}
        ttft = sum(ttft_s.values())
        # The keys and values copied after the first token, before the second one's step.
        after_first_s = self._seconds(self.kv_copy()) if deferred and new_tokens > 1 else 0.0
        latency = ttft + max(new_tokens - 1, 0) * step + after_first_s
        # Decode steps feed the tokens at these positions (the prompt's past the prefill, then the answer's).
        positions = [*range(prefilled, prompt_len), *range(prompt_len, prompt_len + max(new_tokens - 1, 0))]
        per_position = [self.hbm_bytes_at(p) for p in positions] or [self.hbm_bytes_at(prompt_len)]
        mean_hbm = sum(per_position) / len(per_position)
        worst_hbm = self.hbm_bytes_at(self.max_len - 1)
        decode_work = sum(self.invocations[n].work for n in self.decode) + self.invocations[self.head].work
        compute_roofline = self.mac_lanes * self.clock_hz / decode_work
        kernel_tokens_per_s = 1 / sum(self.kernel_s(n) for n in [*self.decode, self.head])
        layers = [{"layer": i, "prefill_design": p, "prefill_cycles": self.invocations[p].cycles,
                   "decode_design": d, "decode_cycles": self.invocations[d].cycles}
                  for i, (p, d) in enumerate(zip(self.prefill, self.decode, strict=True))]
        names = [*self.decode, self.head]
        row = prefilled - 1
        prompt_row = self.head_rows_in_place(row) if extra_prompt_steps == 0 else self.chained.get(
            chain_key(self.decode[-1], self.head), [])
        overheads = {
            "kernel_launch_s_each": self.kernel_launch_s, "queued_run_s_each": self.queued_run_s,
            "buffer_sync_s_each": self.transfer_latency_s,
            "pcie_bytes_per_s": self.pcie_bytes_per_second, "source": self.host_link_source,
            "per_decode_step_s": {
                "kernels": sum(self.kernel_s(n) for n in names),
                **self.host_s(self.step_transfers()),
                "host_embedding_and_sampling_measured_here": self.host_token_s,
            },
            "per_decode_step_transfers": self.step_transfer_report(),
            "ttft_s": ttft_s,
            "ttft_transfers": asdict(self.ttft_transfers(prompt_len)),
            "kv_cache_fill_after_first_token_s": after_first_s,
            "activations_on_device": {
                "read_in_place": {k: v for k, v in self.chained.items() if v},
                "written_by_the_host": {k: sorted(set(self.invocations[k.split("->")[1]].input_bytes) - set(v))
                                        for k, v in self.chained.items()
                                        if set(self.invocations[k.split("->")[1]].input_bytes) - set(v)},
                "head_reads_the_prompt_row_in_place": prompt_row,
                "on_other_pseudo_channels_than_the_producer": self.other_banks,
                "other_pseudo_channels": "an argument not connected to the bank of the buffer it is given gets a "
                                         "copy in its own bank from XRT when the run is set up (xrt::run::set_arg): "
                                         "a device copy per run not counted here; placing both on one "
                                         "pseudo-channel range removes it",
                "queued_handoffs": self.queued,
                "kv_cache_written_in_place_by_the_prefill": {k: [c for _, c in v]
                                                             for k, v in self.cache_in_place.items() if v},
                "kv_cache_written_by_the_host": {k: v for k, v in self.cache_copied.items() if v},
                "host_loop": "one run per layer and token; a layer whose input is all the previous layer's output "
                             "buffer, on its banks, on the same compute unit, is queued behind it (a queued run's "
                             "dispatch gap), every other run waited for (one launch round trip); a kernel reads the "
                             "previous kernel's output buffer as its input buffers wherever their packed layouts "
                             "agree, and the host reads it back once and writes the others"},
        }
        return {
            "figures": "modelled (timing simulation at the target clock + host-link figures); host work measured here",
            "target": self.target, "clock_mhz": self.clock_hz / 1e6,
            "prompt_len": prompt_len, "new_tokens": new_tokens, "prefill_len": self.prefill_len,
            "max_len": self.max_len, "prompt_tokens_through_decode": extra_prompt_steps,
            "ttft_ms": ttft * 1e3,
            "decode_tokens_per_s": 1 / step,
            "latency_ms": latency * 1e3,
            "decode_step_ms": step * 1e3,
            "layers": layers,
            "lm_head": self._head_placement(),
            "overheads": overheads,
            "hbm_bytes_per_token": mean_hbm,
            "hbm_bytes_per_token_detail": {
                "mean_over_this_run": mean_hbm, "first_step": per_position[0], "last_step": per_position[-1],
                "worst_case_position": worst_hbm,
                "kv_cache_share_at_worst_case": sum(self.invocations[n].hbm_at(self.max_len - 1)
                                                    - self.invocations[n].hbm_bytes for n in self.decode),
                "note": "weights, activations and the KV-cache DMAs (rows 0..position read, row position written)"},
            "work_per_token": decode_work,
            "rooflines": {
                "hbm_tokens_per_s": self.hbm_bytes_per_second / mean_hbm,
                "hbm_tokens_per_s_worst_case_position": self.hbm_bytes_per_second / worst_hbm,
                "compute_tokens_per_s": compute_roofline,
                "kernel_only_tokens_per_s": kernel_tokens_per_s,
                "hbm_bytes_per_s": self.hbm_bytes_per_second,
                "compute": f"{self.mac_lanes} fp32 MAC lanes ({self.dsp_per_mac} DSP each) at "
                           f"{self.clock_hz / 1e6:.0f} MHz",
                # The kernels' cycles are at the worst-case position, so they are held to its bytes.
                "within_rooflines": kernel_tokens_per_s <= min(self.hbm_bytes_per_second / worst_hbm,
                                                               compute_roofline) * (1 + 1e-9),
            },
            "energy": {"board_power_w": self.board_power_w,
                       "joules_per_token_upper_bound": self.board_power_w * step,
                       "tokens_per_joule_lower_bound": 1 / (self.board_power_w * step),
                       "note": "the card's maximum power times the modelled step: an upper bound on energy"},
            "decode_position_model": self._position_model(),
        }

    def _head_placement(self) -> dict[str, Any]:
        """Device (as built: a kernel run on the last layer's output in place, its launch, the logits over PCIe)
        against the host (the head's own time, measured here in PyTorch eager, after reading the last layer's hidden
        row back)."""
        device = self.head_s()
        out: dict[str, Any] = {"placement": "device (compiled GEMV with the final norm)", "design": self.head,
                               "cycles": self.invocations[self.head].cycles, "seconds_per_token": device,
                               "hbm_bytes": self.invocations[self.head].hbm_bytes}
        if self.host_head_s is None:
            out["host_alternative"] = "not measured"
            return out
        host = self.host_head_s + self._seconds(self.read_output(self.decode[-1]))
        faster = "device" if device <= host else "host"
        out.update({"host_alternative_seconds_per_token": host,
                    "host_head_seconds_measured_here": self.host_head_s, "model_prefers": faster,
                    "note": "figures use the device head as built" + (
                        "; the host would be faster at this size, but the C++ host computes no final norm, so "
                        "the head stays a kernel" if faster == "host" else "")})
        return out

    def _position_model(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "as_built": f"every decode step runs attention over all {self.max_len} KV-cache rows (zero tiles past "
                        "the position): per-step cycles are those at the worst-case position whatever the position "
                        "(used above); HBM bytes follow the position exactly"}
        for design, points in self.position_points.items():
            if len(points) < 2:
                continue
            (c0, y0), (c1, y1) = points[0], points[-1]
            slope = (y1 - y0) / (c1 - c0)
            out[design] = {"capacities_and_cycles": [list(p) for p in points],
                           "fit": f"cycles(position p) = {y0 - slope * c0:.1f} + {slope:.3f} * (p + 1)",
                           "meaning": "attention over rows 0..position only (a cache as long as the position): "
                                      "not the design as built, not used above"}
        return out
