"""What the compiler needs to know about a device and its toolchain: the :class:`Target` type.

Only the type lives here (a leaf module: every stage may import it). The numbers of real boards belong to the
backend that builds for them (``codegen/vitis/boards``); the pipeline resolves ``--target NAME`` there and passes
the object explicitly into tiling, fusion, the timing model, resources, SLR placement and code generation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction

RESOURCES = ("dsp", "bram36", "uram", "lut")


@dataclass(frozen=True)
class SlrBudget:
    """Resources of one die (super logic region)."""

    dsp: int
    bram36: int
    uram: int
    lut: int

    def scaled(self, factor: Fraction) -> SlrBudget:
        return SlrBudget(*(math.floor(getattr(self, r) * factor) for r in RESOURCES))


@dataclass(frozen=True)
class HbmSpec:
    """External memory as the kernel sees it: pseudo-channels, each behind its own m_axi adapters."""

    channels: int
    channel_bytes: int  # capacity of one pseudo-channel
    channel_bytes_per_second: int  # peak bandwidth of one pseudo-channel
    latency_cycles: int  # first-word latency of an m_axi read, as HLS schedules it
    max_interfaces_per_channel: int  # kernel interfaces v++ connects to one bank
    slr: int  # the die the memory attaches to


@dataclass(frozen=True)
class MemoryPrimitives:
    """On-chip memory blocks and where the tools place a memory by its size."""

    bram36_bits: int
    bram36_aspects: tuple[tuple[int, int], ...]  # (width, depth) configurations of one BRAM36
    uram_width: int
    uram_depth: int
    srl_max_bits: int  # FIFOs and memories up to this many bits become shift registers / LUTRAM
    lutram_max_depth: int  # words per LUT per bit column (SRLC32E)

    @property
    def uram_bits(self) -> int:
        return self.uram_width * self.uram_depth


@dataclass(frozen=True)
class OperatorLibrary:
    """Latency (cycles) and cost (DSP, LUT) per lane of the HLS operator cores, per element class.

    Element classes: ``float`` (f32, and f16/bf16 charged as f32), ``double`` (f64; ops it lacks take the
    ``float`` figures) and ``int``."""

    float_latency: Mapping[str, int]
    double_latency: Mapping[str, int]
    int_latency: Mapping[str, int]
    default_int_latency: int  # add/sub/compare/select/logic between integers
    float_cost: Mapping[str, tuple[float, int]]
    double_cost: Mapping[str, tuple[float, int]]
    int_mul_dsp: tuple[tuple[int, float], ...]  # (max operand bits, DSPs) of an integer multiply
    int_mul_lut: int
    stream_read_cycles: int
    stream_write_cycles: int
    memory_read_cycles: int  # registered BRAM/URAM read
    base_lut: Mapping[str, int]  # control logic per node kind
    fork_lut_per_output: int
    dma_engine_lut: int  # an AXI master adapter and address generator
    fifo_control_lut: int


@dataclass(frozen=True)
class HostLink:
    """The host-to-card path a host program pays for per kernel launch and per buffer transfer. No card is
    attached here: the board files state these figures and their sources (``source``)."""

    pcie_bytes_per_second: int  # effective host<->card DMA bandwidth (one direction)
    transfer_latency_s: float  # fixed cost of one buffer sync (``xrt::bo::sync``), whatever its size
    kernel_launch_s: float  # one ``xrt::run`` start-to-done round trip beyond the kernel's own cycles
    # A run started while an earlier run of the same compute unit is still queued or running: the scheduler starts
    # it when that one is done, so only its dispatch gap adds to the kernels' cycles.
    queued_run_s: float
    source: str


@dataclass(frozen=True)
class Target:
    """One board and toolchain: every device number the compiler uses."""

    name: str
    board: str
    part: str
    platform: str
    clock_hz: int  # the kernel clock the designs are modelled and built at
    max_clock_mhz: int
    slrs: tuple[SlrBudget, ...]
    hbm: HbmSpec
    axi_word_bits: int  # width of one m_axi port
    stream_max_bits: int  # widest stream token (aggregated struct) the HLS tool accepts
    memory: MemoryPrimitives
    ops: OperatorLibrary
    board_power_w: float  # the card's maximum power: an upper bound for energy figures
    host_link: HostLink
    notes: tuple[str, ...] = field(default=())

    @property
    def totals(self) -> SlrBudget:
        return SlrBudget(*(sum(getattr(s, r) for s in self.slrs) for r in RESOURCES))

    @property
    def clock_mhz(self) -> int:
        return self.clock_hz // 1_000_000

    @property
    def onchip_bytes(self) -> int:
        """BRAM and URAM of the whole device, in bytes."""
        t = self.totals
        return (t.bram36 * self.memory.bram36_bits + t.uram * self.memory.uram_bits) // 8

    @property
    def axi_bytes_per_cycle(self) -> int:
        return self.axi_word_bits // 8

    @property
    def channel_bytes_per_cycle(self) -> Fraction:
        """One pseudo-channel's bandwidth in bytes per kernel cycle, exact."""
        return Fraction(self.hbm.channel_bytes_per_second, self.clock_hz)

    def scaled(self, factor: Fraction | int | float, name: str | None = None) -> Target:
        """This target with ``factor`` of every die's resources and of the memory channels (a smaller part of
        the same family: tests use it to show that decisions follow the target)."""
        f = Fraction(factor).limit_denominator(1000)
        if not 0 < f:
            raise ValueError(f"scale factor must be positive, got {factor}")
        hbm = replace(self.hbm, channels=max(1, math.floor(self.hbm.channels * f)))
        return replace(self, name=name or f"{self.name}x{f}", slrs=tuple(s.scaled(f) for s in self.slrs), hbm=hbm)

    def summary(self) -> dict[str, object]:
        """The figures a report names the target by."""
        t = self.totals
        return {"name": self.name, "board": self.board, "part": self.part, "platform": self.platform,
                "clock_mhz": self.clock_mhz, "slrs": len(self.slrs), "dsp": t.dsp, "bram36": t.bram36,
                "uram": t.uram, "lut": t.lut, "hbm_channels": self.hbm.channels,
                "hbm_bytes_per_s": self.hbm.channels * self.hbm.channel_bytes_per_second}
