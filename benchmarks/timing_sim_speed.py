"""Speed of the token-level timing simulator on a synthetic 20-process network with ~2e5 firings.

Run: ``.venv/bin/python benchmarks/timing_sim_speed.py``. Prints seconds per simulation (unbounded FIFOs,
LP-sized FIFOs, LP sizes with every small FIFO at depth 1 (tight back-pressure: the worst case for batching),
all FIFOs at depth 2 (deadlocks)), the LP solve time and a budgeted minimal_depths run.
Not a unit test: timings are noisy.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from streamtensor.analysis.fifo_search import size_fifos_lp
from streamtensor.analysis.process_network import Process, ProcessNetwork, Stream
from streamtensor.analysis.timing_sim import simulate
from streamtensor.codegen.vitis.boards import U55C

# The simulated-minimum oracle is a test helper (tests/fifo_depth_oracle.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fifo_depth_oracle import minimal_depths  # noqa: E402

TOKENS = 10_240  # tokens per stream; every process fires about this many times
ROW = 64  # tokens per row (reduction length, converter buffer)


def build_network() -> ProcessNetwork:
    """dma_in -> 3 x [fork -> (elementwise | row reduction) -> join -> converter -> activation] -> dma_out.

    Each stage is a softmax/layer-norm-like pattern: the reduction writes one token per row after reading the
    whole row, and the join needs that token before the row's elementwise tokens (the paper's K0 -> K2
    situation); the converter is a ping-pong buffer whose writes lag its reads by one row.
    """
    rows = TOKENS // ROW
    every = np.arange(TOKENS, dtype=np.int64)
    procs: list[Process] = []
    streams: list[Stream] = []
    reads: dict[str, dict[str, np.ndarray]] = {"dma_in": {}}
    writes: dict[str, dict[str, np.ndarray]] = {}

    def connect(src: str, dst: str, w: np.ndarray, r: np.ndarray, width: int = 64) -> None:
        name = f"{src}->{dst}"
        streams.append(Stream(name, src, dst, width, len(w)))
        writes.setdefault(src, {})[name] = w
        reads.setdefault(dst, {})[name] = r

    src = "dma_in"
    for stage in range(3):
        fork, ew, red, join, conv, act = (f"s{stage}_{k}" for k in ("fork", "ew", "red", "join", "conv", "act"))
        connect(src, fork, every, every)
        connect(fork, ew, every, every)
        connect(fork, red, every, every)
        connect(ew, join, every, every)
        connect(red, join, np.arange(rows) * ROW + ROW - 1, np.arange(rows) * ROW, width=32)
        connect(join, conv, every, every)
        connect(conv, act, every + ROW, every)
        src = act
    connect(src, "dma_out", np.arange(3, TOKENS, 4), np.arange(TOKENS // 4), width=256)
    writes["dma_out"] = {}
    for name in reads:
        nf = TOKENS // 4 if name == "dma_out" else TOKENS + (ROW if name.endswith("conv") else 0)
        procs.append(Process(name, 1, 3 + len(name) % 5, nf, reads[name], writes[name]))
    return ProcessNetwork(procs, streams, U55C.memory.srl_max_bits)


def timed(label: str, net: ProcessNetwork, depths: dict[str, int | None]) -> None:
    t0 = time.perf_counter()
    res = simulate(net, depths)
    dt = time.perf_counter() - t0
    outcome = "DEADLOCK" if res.deadlock else f"{res.makespan_cycles} cycles"
    print(f"{label:<34} {dt:7.3f} s  ({dt / net.total_firings * 1e5:.3f} s per 1e5 firings)  {outcome}")


def main() -> None:
    net = build_network()
    print(f"{len(net.processes)} processes, {len(net.streams)} streams, {net.total_firings} firings")
    timed("unbounded FIFOs", net, {})
    t0 = time.perf_counter()
    sizing = size_fifos_lp(net)
    print(
        f"{'LP sizing (normal), incl. model':<34} {time.perf_counter() - t0:7.3f} s  HiGHS {sizing.solve_seconds:.3f} s"
    )
    lp_depths: dict[str, int | None] = dict(sizing.depths)
    timed("LP-sized FIFOs", net, lp_depths)
    timed("LP sizes, small FIFOs at depth 1", net, {s: 1 if d <= 4 else d for s, d in sizing.depths.items()})
    timed("all FIFOs depth 2", net, {s.name: 2 for s in net.streams})
    t0 = time.perf_counter()
    md = minimal_depths(net, time_budget_s=20.0)
    print(
        f"{'minimal_depths (20 s budget)':<34} {time.perf_counter() - t0:7.3f} s  {md.simulations} simulations, "
        f"{len(md.searched)}/{len(md.depths)} FIFOs searched, {md.total_bits} bits (LP: {sizing.total_bits})"
    )


if __name__ == "__main__":
    main()
