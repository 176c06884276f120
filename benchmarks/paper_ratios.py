"""Fused / unfused on-chip memory of the paper-size blocks at their memory-lean design points, against the paper.

Run: ``.venv/bin/python benchmarks/paper_ratios.py [--families gemma] [--modes prefill]``. For every model family
and mode (decode with a 128-token KV cache, prefill with 32 prompt tokens) one compile at the design point of
``DESIGN_POINTS`` (FIFOs sized by the LP, then trimmed) and one row with

- the fusion groups (the whole block must be one), unfused and fused intermediate bytes and their ratio, next to
  the paper's 0.148 (its best ratio, 0.148 to 0.168);
- what the fused bytes are: converter buffers, kernel-local buffers (accumulators, input tiles), FIFOs;
- converters, and how many change nothing but the spelling of a stream's type (must be 0);
- the simulated makespan, whether it deadlocked, and the compile's seconds.

A decode block takes about a minute, a prefill block 6 to 13 minutes and up to 17 GB of memory (the FIFO trim
simulates networks of tens of millions of firings): the whole table takes about 50 minutes on a 2-core machine.
Not a unit test (the slow tests in ``tests/test_tile_order.py`` check the same design points).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from paper_figures import PAPER_FUSED_TO_UNFUSED

from streamtensor.driver import compile_llm_block

FAMILIES = ("gpt2", "llama", "qwen2", "gemma")
MODES = ("decode", "prefill")

# Decode: on-chip tokens of one tile row. Prefill: the loops over the tokens tiled by 2 rows (Llama: 4; at 2 its
# FIFO sizing needs more than 23 GB); Gemma keeps its norms unfused (fused, it measures 0.286).
DESIGN_POINTS: dict[tuple[str, str], dict[str, Any]] = {
    **{(f, "decode"): {"max_token_rank": 1} for f in FAMILIES},
    ("gpt2", "prefill"): {"token_tile_size": 2},
    ("qwen2", "prefill"): {"token_tile_size": 2},
    ("llama", "prefill"): {"token_tile_size": 4},
    ("gemma", "prefill"): {"token_tile_size": 2, "fuse_into_contractions": False},
}


def row(family: str, mode: str) -> str:
    options = DESIGN_POINTS[family, mode]
    start = time.perf_counter()
    design, _ = compile_llm_block(family, mode=mode, seq_len=32, max_len=128, size="paper", **options)
    seconds = time.perf_counter() - start
    report = design.report
    memory, converters = report["memory"], report["converters"]
    respelled = sum(c["source_type"] == c["result_type"] for c in converters)
    shown = " ".join(f"{k}={v}" for k, v in options.items())
    return (f"{family:6} {mode:8} {shown:50} {len(report['fusion']['groups']):>6} "
            f"{memory['intermediate_unfused_bytes']:>10} {memory['intermediate_fused_bytes']:>9} "
            f"{memory['fused_to_unfused']:>6.3f} {PAPER_FUSED_TO_UNFUSED:>6.3f} {memory['converter_bytes']:>8} "
            f"{memory['kernel_local_bytes']:>8} {memory['fifo_bytes']:>8} {len(converters):>5} {respelled:>9} "
            f"{report['simulation']['makespan_cycles']:>10} {str(report['simulation']['deadlock']):>8} "
            f"{seconds:>6.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = parser.parse_args()
    print(f"{'model':6} {'mode':8} {'design point':50} {'groups':>6} {'unfused B':>10} {'fused B':>9} "
          f"{'ratio':>6} {'paper':>6} {'conv B':>8} {'local B':>8} {'FIFO B':>8} {'convs':>5} {'respelled':>9} "
          f"{'cycles':>10} {'deadlock':>8} {'s':>6}")
    for mode in args.modes:
        for family in args.families:
            print(row(family, mode), flush=True)


if __name__ == "__main__":
    main()
