"""AMD Alveo U55C (the default target; ../shared/spec/target-and-verification.md §1)."""

from __future__ import annotations

from streamtensor.target import HbmSpec, SlrBudget, Target

from .ultrascale_plus import GEN3X16_XDMA, MEMORY, OPERATORS

U55C = Target(
    name="u55c",
    board="AMD Alveo U55C",
    part="xcu55c-fsvh2892-2L-e",
    platform="xilinx_u55c_gen3x16_xdma_3_202210_1",
    clock_hz=250_000_000,  # the paper's kernel clock
    max_clock_mhz=500,
    # XCU55C (VU47P die): three identical SLRs; totals 9,024 DSP, 2,016 BRAM36, 960 URAM, 1,303,680 LUT.
    slrs=(SlrBudget(dsp=3_008, bram36=672, uram=320, lut=434_560),) * 3,
    hbm=HbmSpec(
        channels=32,
        channel_bytes=512 * 2**20,  # 16 GB HBM2
        channel_bytes_per_second=14_375_000_000,  # 460 GB/s over 32 pseudo-channels (AMD UG1393)
        latency_cycles=64,  # Vitis HLS m_axi default latency, the figure its burst pipelining assumes
        max_interfaces_per_channel=15,
        slr=0,
    ),
    axi_word_bits=512,
    stream_max_bits=4096,  # Vitis HLS: an aggregated struct on a stream is at most 4,096 bits
    memory=MEMORY,
    ops=OPERATORS,
    board_power_w=150.0,  # card maximum power
    host_link=GEN3X16_XDMA,
)
