"""Small hand-built process networks shared by the timing-simulator and FIFO-sizing LP tests."""

from __future__ import annotations

import numpy as np

from streamtensor.analysis.process_network import Process, ProcessNetwork, Stream, even_firings
from streamtensor.codegen.vitis.boards import U55C


def seq(n: int, first: int = 0) -> np.ndarray:
    """One token per firing, from firing ``first``."""
    return np.arange(n, dtype=np.int64) + first


def paper_network(m: int = 8, rows: int = 4) -> ProcessNetwork:
    """Paper example: K0 -> K1 (row reduction: one token per m reads, written after the row's last read),
    K1 -> K2, K0 -> K2; K2 needs a row's reduced token before that row's K0 tokens."""
    t = m * rows
    return ProcessNetwork(
        [
            Process("K0", 1, 2, t, writes={"K0->K1": seq(t), "K0->K2": seq(t)}),
            Process("K1", 1, 3, t, reads={"K0->K1": seq(t)}, writes={"K1->K2": np.arange(m - 1, t, m)}),
            Process("K2", 1, 1, t, reads={"K0->K2": seq(t), "K1->K2": np.arange(rows) * m}),
        ],
        [
            Stream("K0->K1", "K0", "K1", 32, t),
            Stream("K1->K2", "K1", "K2", 32, rows),
            Stream("K0->K2", "K0", "K2", 32, t),
        ], U55C.memory.srl_max_bits,
    )


def bursty_fork(t: int = 64, burst: int = 8) -> ProcessNetwork:
    """A producer (ii 2) writing ``burst`` tokens at the end of every ``burst``-firing block feeds a fork (pipeline
    depth 4 > ii, so a read that waits freezes the firings in flight); one branch goes through a reassociate
    to a slow (ii 3) sink, the other straight to a fast one."""
    blocks = np.repeat(np.arange(burst - 1, t, burst), burst)
    return ProcessNetwork(
        [
            Process("prod", 2, 3, t, {}, {"a": blocks}),
            Process("fork", 1, 4, t, {"a": seq(t)}, {"f_fast": seq(t), "f_slow": seq(t)}),
            Process("re", 1, 2, t, {"f_slow": seq(t)}, {"r": seq(t)}),
            Process("fast", 1, 2, t, {"f_fast": seq(t)}, {}),
            Process("slow", 3, 5, t, {"r": seq(t)}, {}),
        ],
        [Stream("a", "prod", "fork", 8, t), Stream("f_fast", "fork", "fast", 8, t),
         Stream("f_slow", "fork", "re", 8, t), Stream("r", "re", "slow", 8, t)], U55C.memory.srl_max_bits,
    )


def late_reader(t: int = 64, wait: int = 40) -> ProcessNetwork:
    """A wide source forked to a slow (ii 2) write-back sink and to a reader that first waits ``wait`` firings
    for a token of another chain: the value-cache pattern of a decode block. Keeping the write-back's makespan
    makes the reader's FIFO hold what arrives while it waits; starting the source later saves that FIFO."""
    return ProcessNetwork(
        [
            Process("v", 1, 2, t, {}, {"v": seq(t)}),
            Process("fork", 1, 1, t, {"v": seq(t)}, {"f_w": seq(t), "f_b": seq(t)}),
            Process("w", 2, 2, t, {"f_w": seq(t)}, {}),
            Process("a", 1, 2, wait, {}, {"s": np.array([wait - 1])}),
            Process("b", 1, 2, t, {"s": np.array([0]), "f_b": seq(t)}, {}),
        ],
        [Stream("v", "v", "fork", 1024, t), Stream("f_w", "fork", "w", 8, t),
         Stream("f_b", "fork", "b", 1024, t), Stream("s", "a", "b", 8, 1)], U55C.memory.srl_max_bits,
    )


def shared_channel_reads(t: int = 64, hidden_delay: int = 100) -> ProcessNetwork:
    """Two matmuls of a decode block, each streaming a weight from its own read DMA (one token per 2 and per 3
    cycles: slower than the matmuls' ii 1) and waiting first for the hidden state, which arrives late
    (``hidden_delay``: its read shares the output's pseudo-channel); ``sum`` takes both results side by side."""
    return ProcessNetwork(
        [
            Process("hid", 1, hidden_delay, 1, {}, {"h1": [0], "h2": [0]}),
            Process("w1", 1, 3, 2 * t, {}, {"w1": even_firings(t, 0, 2 * t - 1)}),
            Process("w2", 1, 3, 3 * t, {}, {"w2": even_firings(t, 0, 3 * t - 1)}),
            Process("mm1", 1, 4, t, {"w1": seq(t), "h1": [0]}, {"o1": seq(t)}),
            Process("mm2", 1, 4, t, {"w2": seq(t), "h2": [0]}, {"o2": seq(t)}),
            Process("sum", 1, 2, t, {"o1": seq(t), "o2": seq(t)}, {}),
        ],
        [Stream("h1", "hid", "mm1", 64, 1), Stream("h2", "hid", "mm2", 64, 1), Stream("w1", "w1", "mm1", 512, t),
         Stream("w2", "w2", "mm2", 512, t), Stream("o1", "mm1", "sum", 64, t), Stream("o2", "mm2", "sum", 64, t)],
        U55C.memory.srl_max_bits,
    )
