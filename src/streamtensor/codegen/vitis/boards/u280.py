"""AMD Alveo U280: the board of the paper's Allo and DFX baselines.

Same die family as the U55C (XCU280, VU37P: three identical SLRs, the same DSP/BRAM/URAM/LUT), half the HBM
(8 GB: 32 pseudo-channels of 256 MB at the same 14.375 GB/s), its own platform, and a 225 W card."""

from __future__ import annotations

from streamtensor.target import HbmSpec, SlrBudget, Target

from .ultrascale_plus import GEN3X16_XDMA, MEMORY, OPERATORS

U280 = Target(
    name="u280",
    board="AMD Alveo U280",
    part="xcu280-fsvh2892-2L-e",
    platform="xilinx_u280_gen3x16_xdma_1_202211_1",
    clock_hz=250_000_000,  # Allo's W4A8 GPT-2 ran at 250 MHz on it
    max_clock_mhz=500,
    slrs=(SlrBudget(dsp=3_008, bram36=672, uram=320, lut=434_560),) * 3,
    hbm=HbmSpec(
        channels=32,
        channel_bytes=256 * 2**20,  # 8 GB HBM2
        channel_bytes_per_second=14_375_000_000,
        latency_cycles=64,
        max_interfaces_per_channel=15,
        slr=0,
    ),
    axi_word_bits=512,
    stream_max_bits=4096,
    memory=MEMORY,
    ops=OPERATORS,
    board_power_w=225.0,
    host_link=GEN3X16_XDMA,
)
