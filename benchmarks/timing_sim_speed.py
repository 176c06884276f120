"""Speed of the token-level timing simulator on a synthetic 20-process network with ~2e5 firings.

Run: ``.venv/bin/python benchmarks/timing_sim_speed.py``. Prints seconds per simulation for unbounded FIFOs,
for LP-sized FIFOs and for tight (depth-2) FIFOs, plus the LP solve time. Not a unit test: timings are noisy.
"""

from __future__ import annotations

import time

import numpy as np

from streamtensor.analysis.fifo_lp import size_fifos_lp
from streamtensor.analysis.process_network import Process, ProcessNetwork, Stream, even_firings
from streamtensor.analysis.timing_sim import simulate

TOKENS = 10_000  # tokens per stream; every process fires about this many times


def build_network() -> ProcessNetwork:
    """Four stages of [fork -> (elementwise | row reduction + broadcast) -> join] behind a DMA reader.

    Each stage is a softmax/layer-norm-like pattern: the reduction writes one token per row of 64 after
    reading the whole row, and the join needs that token before it can consume the row's elementwise tokens,
    so the elementwise branch's FIFO must hold a row (the paper's K0 -> K2 situation).
    """
    row = 64
    rows = TOKENS // row
    procs: list[Process] = []
    streams: list[Stream] = []

    def add_stream(name: str, src: str, dst: str, tokens: int, width: int = 64) -> str:
        streams.append(Stream(name, src, dst, width, tokens))
        return name

    src = "dma_in"
    pending_writes: dict[str, dict[str, np.ndarray]] = {src: {}}
    pending_reads: dict[str, dict[str, np.ndarray]] = {}
    first_fire = np.arange(rows, dtype=np.int64) * row  # firing that starts each row
    last_fire = first_fire + row - 1
    for stage in range(4):
        fork, ew, red, join, cast = (f"s{stage}_{k}" for k in ("fork", "ew", "red", "join", "cast"))
        pending_writes[src][add_stream(f"{src}->{fork}", src, fork, TOKENS)] = np.arange(TOKENS)
        pending_reads[fork] = {f"{src}->{fork}": np.arange(TOKENS)}
        pending_writes[fork] = {
            add_stream(f"{fork}->{ew}", fork, ew, TOKENS): np.arange(TOKENS),
            add_stream(f"{fork}->{red}", fork, red, TOKENS): np.arange(TOKENS),
        }
        pending_reads[ew] = {f"{fork}->{ew}": np.arange(TOKENS)}
        pending_writes[ew] = {add_stream(f"{ew}->{join}", ew, join, TOKENS): np.arange(TOKENS)}
        pending_reads[red] = {f"{fork}->{red}": np.arange(TOKENS)}
        pending_writes[red] = {add_stream(f"{red}->{join}", red, join, rows, 32): last_fire}
        pending_reads[join] = {f"{ew}->{join}": np.arange(TOKENS), f"{red}->{join}": first_fire}
        pending_writes[join] = {add_stream(f"{join}->{cast}", join, cast, TOKENS): np.arange(TOKENS)}
        pending_reads[cast] = {f"{join}->{cast}": np.arange(TOKENS)}
        pending_writes[cast] = {}
        src = cast
    pending_writes[src][add_stream(f"{src}->dma_out", src, "dma_out", TOKENS // 4, 256)] = even_firings(
        TOKENS // 4, 0, TOKENS - 1
    )
    pending_reads["dma_out"] = {f"{src}->dma_out": np.arange(TOKENS // 4)}
    pending_writes["dma_out"] = {}
    pending_reads["dma_in"] = {}
    iis = {"ew": 1, "red": 1, "join": 2, "cast": 1, "fork": 1}
    for name in pending_writes:
        kind = name.split("_")[-1]
        nf = TOKENS // 4 if name == "dma_out" else TOKENS
        procs.append(Process(name, iis.get(kind, 1), 4 + len(name) % 5, nf, pending_reads[name], pending_writes[name]))
    return ProcessNetwork(procs, streams)


def timed(label: str, net: ProcessNetwork, depths: dict[str, int | None]) -> None:
    t0 = time.perf_counter()
    res = simulate(net, depths)
    dt = time.perf_counter() - t0
    print(f"{label:<28} {dt:7.3f} s  ({dt / net.total_firings * 1e5:.3f} s per 1e5 firings)  {res.describe()}")


def main() -> None:
    net = build_network()
    print(f"{len(net.processes)} processes, {len(net.streams)} streams, {net.total_firings} firings")
    timed("unbounded FIFOs", net, {})
    t0 = time.perf_counter()
    sizing = size_fifos_lp(net)
    print(f"{'LP sizing (normal)':<28} {time.perf_counter() - t0:7.3f} s  status {sizing.status}")
    timed("LP-sized FIFOs", net, dict(sizing.depths))
    timed("depth-2 FIFOs (deadlocks)", net, {s.name: 2 for s in net.streams})
    tight = {s.name: max(2, d) for s, d in zip(net.streams, sizing.depths.values(), strict=True)}
    tight.update({s.name: 2 for s in net.streams if "->s" in s.name and "_red" not in s.name})
    timed("LP, chain FIFOs at depth 2", net, tight)


if __name__ == "__main__":
    main()
