"""Test oracle of FIFO sizing: the smallest depths that keep the unbounded-FIFO makespan, by simulation.

Used by the FIFO-sizing tests and benchmarks to measure the LP against; not part of the compiler.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from streamtensor.analysis.process_network import ProcessNetwork
from streamtensor.analysis.timing_sim import Simulator, simulate
from streamtensor.codegen.vitis.boards import U55C


@dataclass
class MinimalDepths:
    """Result of :func:`minimal_depths`."""

    depths: dict[str, int]
    baseline_makespan: int  # all FIFOs unbounded
    makespan: int  # final simulation with ``depths`` (never above the baseline)
    total_bits: int  # sum of width_bits * depth
    searched: list[str]  # streams whose search finished, in search order; the rest kept their peak (or start)
    simulations: int

    @property
    def complete(self) -> bool:
        return len(self.searched) == len(self.depths)


def minimal_depths(net: ProcessNetwork, time_budget_s: float = 60.0, start: Mapping[str, int] | None = None,
                   target: int | None = None) -> MinimalDepths:
    """Smallest FIFO depths that keep the unbounded-FIFO makespan (or ``target``, a makespan ``start`` reaches: a
    decode block whose read DMAs prefetch at most one HBM latency cannot reach the unbounded one), by one binary
    search per FIFO.

    ``start`` replaces the baseline peaks P_s below by given depths that keep the makespan (checked: a
    ValueError otherwise), e.g. the LP's: far fewer simulations on paper-size blocks, where each takes
    seconds, and the result is then the per-FIFO minimum *below those depths* (no single FIFO can be lowered
    further), not the search from the peaks.

    Definition (sequential, greedy in bits):
    1. Simulate with every FIFO unbounded: baseline makespan M and peak occupancy P_s of each stream. Depth
       P_s never back-pressures the baseline schedule, so every stream starts at depth P_s (makespan <= M).
    2. Visit streams by decreasing baseline bits ``width * P_s`` (ties: network order). During the search of
       stream s, streams already visited hold their found depth and streams not yet visited hold P_s. The
       search returns the smallest depth d with no deadlock and makespan <= M; s then keeps d.
    3. Monotonicity holds within a read-latency class (``analysis.timing_sim``), so the search first tests the
       largest shift-register depth ``1024 // width``: if it keeps M the answer is binary-searched among SRL
       depths, else among RAM depths up to P_s (P_s is the configuration already known to keep M).
    Each accepted depth was simulated with the final depths of all earlier streams and the current depths of
    the later ones, which only shrink afterwards under the same check; so the final set keeps M jointly (no
    fix-up is ever needed), and a last simulation verifies it. When ``time_budget_s`` runs out, unvisited
    streams keep P_s (safe; ``searched`` lists the visited ones).
    """
    t_start = time.perf_counter()
    sim = Simulator(net)
    names = sim.stream_names
    widths = sim.width_bits
    n = len(names)
    base_res = sim.run({})
    if base_res.makespan_cycles is None:
        raise ValueError(f"network deadlocks even with unbounded FIFOs: {base_res.describe()}")
    kind = "the makespan" if target is not None else "the unbounded makespan"
    if target is None:
        target = base_res.makespan_cycles
    depths: list[int] = [base_res.peak_occupancy[s] for s in names]
    sims = 1
    if start is not None:
        depths = [start[s] for s in names]
        sims += 1
        if not sim.finishes_by(dict(zip(names, depths, strict=True)), target):
            raise ValueError(f"start depths do not keep {kind} {target}: "
                             f"{simulate(net, start).describe()}")

    def keeps(s: int, d: int) -> bool:
        nonlocal sims
        sims += 1
        trial = dict(zip(names, depths, strict=True))
        trial[names[s]] = d
        return sim.finishes_by(trial, target)

    def search(s: int, lo: int, hi: int) -> int:
        """Smallest d in [lo, hi] with keeps(s, d), given keeps(s, hi) and monotonicity on [lo, hi]."""
        while lo < hi:
            mid = (lo + hi) // 2
            if keeps(s, mid):
                hi = mid
            else:
                lo = mid + 1
        return hi

    order = sorted(range(n), key=lambda s: (-widths[s] * depths[s], s))
    searched: list[str] = []
    for s in order:
        if time.perf_counter() - t_start > time_budget_s:
            break
        peak = depths[s]  # P_s, or the start depth
        srl_max = U55C.memory.srl_max_bits // widths[s]
        if peak <= srl_max:
            depths[s] = search(s, 1, peak)
        elif srl_max >= 1 and keeps(s, srl_max):
            depths[s] = search(s, 1, srl_max)
        else:
            depths[s] = search(s, srl_max + 1, peak)
        searched.append(names[s])

    final = dict(zip(names, depths, strict=True))
    final_res = sim.run(final)
    sims += 1
    if final_res.makespan_cycles is None or final_res.makespan_cycles > target:
        raise AssertionError(f"minimal depths do not keep the baseline makespan {target}: {final_res.describe()}")
    return MinimalDepths(
        depths=final,
        baseline_makespan=target,
        makespan=final_res.makespan_cycles,
        total_bits=sum(w * d for w, d in zip(widths, depths, strict=True)),
        searched=searched,
        simulations=sims,
    )
