"""FIFO sizing of real decoder blocks: the LP against the simulated minimum and the naive sizing.

Run: ``.venv/bin/python benchmarks/fifo_sizing.py [--quick | --sizes paper] [--families gpt2] [--modes decode]
[--min-budget 900]``.
For every model family and mode (prefill with 32 prompt tokens, decode with a 128-token KV cache) at the tiny
and paper sizes (``--quick``: tiny only), one row with

- total FIFO bits of the LP (strategy normal, and conservative), of the simulated minimum
  (``minimal_depths`` of ``tests/fifo_depth_oracle.py``: per-FIFO binary search keeping the unbounded makespan, or
  for a decode block whose prefetch-capped reads cannot reach it the LP's own makespan; a
  ``*`` marks a search cut short by ``--min-budget``, whose remaining FIFOs kept their start depths) and of the
  naive sizing (every FIFO holds its whole stream: depth = tokens per run, so no producer ever waits);
- LP / simulated-minimum bit ratio, makespan with the LP depths vs unbounded FIFOs, deadlocks found;
- seconds: the LP (``allocation.size_fifos``, both strategies) and the simulated minimum.

The search starts from the unbounded-FIFO peaks (``--min-from peaks``, column ``from``) or from the LP's
depths (``lp``: every FIFO then searched below its LP depth, so the ratio measures the LP's per-FIFO slack). A
paper-size block costs seconds per simulation and hundreds of simulations from the peaks (an hour for a
prefill block on a 2-core machine), so ``--min-from auto`` (default) takes the peaks at tiny size and the LP at
paper size.

The acceptance bounds are LP bits <= 1.25 x the simulated minimum, makespan within 1% of the unbounded
baseline, zero deadlocks. Both strategies are reported as solved (Conservative may need more bits than
Normal). Not a unit test: timings are noisy.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from streamtensor.analysis.allocation import size_fifos
from streamtensor.analysis.timing_sim import simulate
from streamtensor.codegen.vitis.boards import U55C
from streamtensor.driver import compile_llm_block

# The simulated-minimum oracle is a test helper (tests/fifo_depth_oracle.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fifo_depth_oracle import minimal_depths  # noqa: E402

FAMILIES = ("gpt2", "llama", "qwen2", "gemma")
MODES = ("prefill", "decode")


@dataclass
class Row:
    family: str
    mode: str
    size: str
    lp_bits: int
    conservative_bits: int
    min_bits: int
    min_complete: bool
    min_from: str
    naive_bits: int
    makespan: int | None
    unbounded: int
    deadlocks: int
    lp_seconds: float
    min_seconds: float

    @property
    def ratio(self) -> float:
        return self.lp_bits / self.min_bits

    def cells(self) -> list[str]:
        delta = "-" if self.makespan is None else f"{100 * (self.makespan / self.unbounded - 1):+.2f}%"
        return [self.family, self.mode, self.size, f"{self.lp_bits:,}", f"{self.conservative_bits:,}",
                f"{self.min_bits:,}{'' if self.min_complete else '*'}", self.min_from, f"{self.naive_bits:,}",
                f"{self.ratio:.3f}",
                f"{self.makespan if self.makespan is not None else 'DEADLOCK'}", f"{self.unbounded}", delta,
                str(self.deadlocks), f"{self.lp_seconds:.1f}", f"{self.min_seconds:.1f}"]


HEADER = ["family", "mode", "size", "LP bits", "cons. bits", "sim-min bits", "from", "naive bits", "LP/min",
          "makespan LP", "unbounded", "delta", "deadlocks", "LP s", "min s"]


def measure(family: str, mode: str, size: str, min_budget_s: float, min_from: str) -> Row:
    design, _ = compile_llm_block(family, mode=mode, size=size, seq_len=32, max_len=128)
    graph = design.dataflow
    assert graph is not None
    start = time.perf_counter()
    normal = size_fifos(graph, U55C, "normal")
    conservative = size_fifos(graph, U55C, "conservative")
    lp_seconds = time.perf_counter() - start
    makespan: int | None = 0
    unbounded = deadlocks = min_bits = naive_bits = 0
    complete = True
    start = time.perf_counter()
    min_seconds = 0.0
    for group in normal.groups:
        net = group.network
        sim = simulate(net, group.sizing.depths)
        deadlocks += int(sim.deadlock)
        makespan = None if makespan is None or sim.makespan_cycles is None else makespan + sim.makespan_cycles
        base = simulate(net, {}).makespan_cycles
        assert base is not None
        unbounded += base
        naive_bits += sum(s.width_bits * s.tokens for s in net.streams)
        t0 = time.perf_counter()
        # A one-token block's LP holds the makespan its prefetch-capped read DMAs allow (analysis.contention), above
        # the unbounded one: its minimum keeps that makespan, from the LP's depths.
        capped = min_from == "lp" and sim.makespan_cycles is not None and sim.makespan_cycles > base
        md = minimal_depths(net, min_budget_s, start=group.sizing.depths if min_from == "lp" else None,
                            target=sim.makespan_cycles if capped else None)
        min_seconds += time.perf_counter() - t0
        min_bits += md.total_bits
        complete = complete and md.complete
    return Row(family, mode, size, normal.fifo_total_bits, conservative.fifo_total_bits, min_bits, complete, min_from,
               naive_bits, makespan, unbounded, deadlocks, lp_seconds, min_seconds)


def print_table(rows: list[Row]) -> None:
    table = [HEADER] + [r.cells() for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    for k, line in enumerate(table):
        print("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)), flush=True)
        if k == 0:
            print("  ".join("-" * w for w in widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes only (same as --sizes tiny)")
    parser.add_argument("--sizes", default="tiny,paper", help="comma-separated model sizes")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated model families")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated block modes (prefill, decode)")
    parser.add_argument("--min-budget", type=float, default=900.0,
                        help="seconds for each simulated-minimum search (default 900)")
    parser.add_argument("--min-from", choices=("auto", "peaks", "lp"), default="auto",
                        help="start depths of the simulated-minimum search (default: peaks at tiny, LP at paper size)")
    args = parser.parse_args()
    sizes = ("tiny",) if args.quick else tuple(args.sizes.split(","))
    modes = args.modes.split(",")
    if unknown := [m for m in modes if m not in MODES]:
        parser.error(f"unknown mode(s) {', '.join(unknown)}: expected {', '.join(MODES)}")
    rows = []
    for size in sizes:
        for family in args.families.split(","):
            for mode in modes:
                min_from = args.min_from if args.min_from != "auto" else ("peaks" if size == "tiny" else "lp")
                rows.append(measure(family, mode, size, args.min_budget, min_from))
                print(f"[{family} {mode} {size}] LP/min {rows[-1].ratio:.3f}", flush=True)
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
