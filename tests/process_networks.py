"""Small hand-built process networks shared by the timing-simulator and FIFO-sizing LP tests."""

from __future__ import annotations

import numpy as np

from streamtensor.analysis.process_network import Process, ProcessNetwork, Stream


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
        ],
    )
