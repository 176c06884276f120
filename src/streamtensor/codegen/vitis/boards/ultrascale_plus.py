"""Facts shared by the Virtex UltraScale+ HBM boards: memory blocks and the Vitis HLS operator library.

Operator latencies are pipeline depths of the Vitis HLS floating-point / integer cores at 250 MHz (full-DSP
variants, typical values of the operator library); costs are (DSP48E2, LUT) per lane from typical Vitis HLS
reports. Double-precision cores are deeper and larger (wider mantissa datapaths); ops a double table lacks take
the single-precision figures. These are estimates for design-space decisions, not sign-off.
"""

from __future__ import annotations

from streamtensor.target import HostLink, MemoryPrimitives, OperatorLibrary

MEMORY = MemoryPrimitives(
    bram36_bits=36 * 1024,
    bram36_aspects=((1, 32768), (2, 16384), (4, 8192), (9, 4096), (18, 2048), (36, 1024), (72, 512)),
    uram_width=72,
    uram_depth=4096,
    srl_max_bits=1024,  # Vitis HLS auto_srl_max_bits default
    lutram_max_depth=32,  # SRLC32E: 32 one-bit words per LUT
)

OPERATORS = OperatorLibrary(
    float_latency={
        "arith.addf": 4, "arith.subf": 4, "arith.mulf": 3, "arith.divf": 12, "arith.negf": 0, "arith.maximumf": 2,
        "arith.minimumf": 2, "arith.maxnumf": 2, "arith.minnumf": 2, "arith.remf": 16, "arith.cmpf": 2,
        "math.exp": 10, "math.log": 12, "math.log1p": 12, "math.sqrt": 12, "math.rsqrt": 10, "math.tanh": 20,
        "math.sin": 20, "math.cos": 20, "math.erf": 20, "math.absf": 0, "math.powf": 30, "arith.sitofp": 4,
        "arith.uitofp": 4, "arith.fptosi": 4, "arith.extf": 1, "arith.truncf": 1, "math.expm1": 10, "math.exp2": 10,
        "math.log2": 12, "math.log10": 12, "math.tan": 24, "math.floor": 1, "math.ceil": 1, "math.trunc": 1,
        "math.round": 1, "math.roundeven": 1,
    },
    double_latency={
        "arith.addf": 5, "arith.subf": 5, "arith.mulf": 6, "arith.divf": 30, "arith.remf": 32, "math.exp": 18,
        "math.log": 20, "math.log1p": 20, "math.sqrt": 30, "math.rsqrt": 30, "math.tanh": 36, "math.sin": 36,
        "math.cos": 36, "math.erf": 36, "math.powf": 50, "arith.sitofp": 6, "arith.uitofp": 6, "arith.fptosi": 6,
        "math.expm1": 18, "math.exp2": 18, "math.log2": 20, "math.log10": 20, "math.tan": 42,
    },
    int_latency={"arith.muli": 2, "arith.divsi": 20, "arith.remsi": 20},
    default_int_latency=1,
    float_cost={
        "arith.addf": (2, 230), "arith.subf": (2, 230), "arith.mulf": (3, 80), "arith.divf": (0, 800),
        "math.sqrt": (0, 500), "math.rsqrt": (4, 400), "math.exp": (7, 800), "math.log": (12, 900),
        "math.log1p": (12, 900), "math.sin": (8, 1500), "math.cos": (8, 1500), "arith.maximumf": (0, 70),
        "arith.minimumf": (0, 70), "arith.maxnumf": (0, 70), "arith.minnumf": (0, 70), "arith.cmpf": (0, 70),
        "arith.remf": (0, 1000), "arith.negf": (0, 0), "math.absf": (0, 0), "arith.sitofp": (0, 200),
        "arith.uitofp": (0, 200), "arith.fptosi": (0, 200), "arith.extf": (0, 50), "arith.truncf": (0, 50),
        "math.expm1": (7, 800), "math.exp2": (7, 800), "math.log2": (12, 900), "math.log10": (12, 900),
        "math.floor": (0, 100), "math.ceil": (0, 100), "math.trunc": (0, 100), "math.round": (0, 100),
        "math.roundeven": (0, 100),
    },
    double_cost={
        "arith.addf": (3, 700), "arith.subf": (3, 700), "arith.mulf": (10, 200), "arith.divf": (0, 3200),
        "math.sqrt": (0, 1800), "math.rsqrt": (10, 2000), "math.exp": (26, 2000), "math.log": (27, 2500),
        "math.log1p": (27, 2500), "arith.maximumf": (0, 150), "arith.minimumf": (0, 150), "arith.maxnumf": (0, 150),
        "arith.minnumf": (0, 150), "arith.cmpf": (0, 150), "arith.extf": (0, 100), "arith.truncf": (0, 100),
        "math.expm1": (26, 2000), "math.exp2": (26, 2000), "math.log2": (27, 2500), "math.log10": (27, 2500),
    },
    # Integer multiply lanes by effective operand width (the width before extsi). <= 8 bits: two int8 products
    # share one DSP48E2 when they share an operand (AMD WP486 "Deep Learning with INT8 Optimization on Xilinx
    # Devices": the 27x18 multiplier computes (a << 18 + b) * c, two 8x8 products with one operand in common;
    # a GEMV's output lanes share the activation), 0.5 DSP per lane; int4 weights are sign-extended to int8
    # and charged the same. <= 18 bits: one 27x18 multiplier (UG579 DSP48E2); <= 32: Vitis mul_32s_32s_32
    # (3 DSPs); 64-bit: 10. Plus ~20 LUTs of glue (operand packing, product split). The int32 accumulator adder
    # is fabric (one LUT per bit, resources.py), so an int8 MAC lane is (0.5 DSP, 52 LUT) against an f32 MAC
    # lane's (5 DSP, 310 LUT): the lane budget (tiling.unroll.budget_units) charges it that fraction.
    int_mul_dsp=((8, 0.5), (18, 1.0), (32, 3.0), (64, 10.0)),
    int_mul_lut=20,
    stream_read_cycles=1,  # hls::stream read (FIFO output register)
    stream_write_cycles=1,
    memory_read_cycles=2,  # registered BRAM/URAM read
    base_lut={"kernel": 500, "itensor_converter": 400, "itensor_reassociate": 100, "itensor_chunk": 150,
              "itensor_concat": 150, "dma_read": 2000, "dma_write": 2000},
    fork_lut_per_output=40,
    dma_engine_lut=2000,  # 512-bit AXI master adapter + address generator
    fifo_control_lut=30,  # pointers, full/empty flags
)

# Both boards' platforms are gen3x16 XDMA shells. Assumed figures (no card here to measure them): PCIe Gen3 x16
# moves 15.75 GB/s raw (8 GT/s x 16 lanes, 128b/130b); XDMA reaches about 12 GB/s of it in either direction (the
# DMA test of `xbutil validate` on gen3x16 platforms, AMD PG195). A kernel start-to-done round trip through XRT
# costs tens of microseconds on these shells (command queue and interrupt); 20 us is taken, and 10 us per buffer
# sync (a DMA descriptor round trip). Runs queued on one compute unit (ap_ctrl_hs: one run at a time, in order) are
# dispatched by the card's scheduler as each finishes: XRT's own measurement of that path is 206,313 runs/s of a
# no-op kernel with 32 queued (Xilinx/XRT pull request 4071, U50 gen3x16 XDMA, KDS + ERT 3.0), 4.85 us per run,
# taken as the gap a queued run adds. A board run replaces all four with measurements.
GEN3X16_XDMA = HostLink(
    pcie_bytes_per_second=12_000_000_000,
    transfer_latency_s=10e-6,
    kernel_launch_s=20e-6,
    queued_run_s=1 / 206_313,
    source="assumed, not measured: PCIe Gen3 x16 XDMA ~12 GB/s effective (xbutil validate DMA test, AMD PG195); "
           "20 us per kernel launch and 10 us per buffer sync (typical XRT round trips on gen3x16 shells); 4.85 us per "
           "run queued behind another on its compute unit (206,313 runs/s, Xilinx/XRT pull request 4071)",
)
