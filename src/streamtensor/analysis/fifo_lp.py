"""FIFO sizing by linear programming (streamtensor.md §4.3), exact per edge for the chosen start times.

Model. Every process ``v`` runs free at a fixed *profile* offset by its start time ``S_v`` (an LP variable):
firing ``f`` issues (reads) at ``S_v + o_v(f)`` with

* strategy ``normal``:        ``o_v(f) = f * II_v`` (its own II), writes at ``S_v + o_v(f) + depth_v``;
* strategy ``conservative``:  ``o_v(f) = ceil(f * II_v * L_slowest / L_v)``, i.e. ``II'_v = II_v * L_slowest / L_v``
  (paper), so every process spreads over the slowest one's total latency. In the simulator's trace model
  such a slowed pipeline is one that stalls: the slip ``o_v(f) - f * II_v`` of a read carries to every later
  trace event, so a write happens at its static time plus the slip of the last read before it in the trace.
  Rounding up keeps the slip non-decreasing, so the profile is a legal simulator schedule.

On a stream e = (u -> v), token k is written at ``S_u + W_k`` and read at ``S_v + R_k`` (``W``, ``R``: the
profile times of the writing / reading firing). With ``delay_e = S_v - S_u``:

* no-starvation (edge) constraint, the compact form of the paper's path constraints:
  ``S_v - S_u >= Delta_e = max_k (W_k + raw_e - R_k)`` with ``raw_e`` the FIFO read latency (1 cycle up to 1024
  bits, else 2). For token 0 this is the paper's ``delay >= D_u`` (plus raw_e and the target's own read
  offset); the other tokens add the *skew* needed when the source is slower than the target or bursty.
  Longest paths of these difference constraints give the paper's ``delay02 >= D0 + D1``.
  raw_e depends on the depth being solved for: it starts at 1 wherever ``width_e <= 1024`` and is raised to 2
  (then the LP re-solved) for each FIFO whose solved depth turns out wider than 1024 bits; latencies only
  rise, so this ends after at most one re-solve per stream, with every assumed latency >= the simulator's.
* exact depth for that delay, in the simulator's convention (a token occupies the FIFO from its write cycle
  through its read cycle): ``depth_e(delay) = max_k (k + 1 - #{j : R_j + delay < W_k})``. For uniform streams
  this is :func:`paper_max_tokens` (Eq. 1 / Eq. 2 with our off-by-one); for bursty kernels it is exact where
  the closed forms undersize.

Why these depths are safe: with them the profile schedule satisfies every simulator constraint (II, token
ready, FIFO space), so the simulator's least (as-soon-as-possible) schedule is no later anywhere: no deadlock,
and simulated makespan <= the LP's predicted latency.

LP: minimize ``sum_e width_e * c_e`` with ``c_e >= a_i * (S_v - S_u) + b_i`` for the segments of the lower convex
hull of ``depth_e`` sampled over the feasible delay range (exact where the curve is convex, a tight
under-estimate elsewhere; a better fit than one slope per edge because ``depth_e`` saturates at T), subject
to the edge constraints and ``0 <= S_v <= T_min - L_v`` where ``T_min`` is the longest-path latency of the
profile model: FIFO bits are minimized at minimal latency. Depths are then recomputed exactly at the solved
(integer) delays.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import highspy
import numpy as np

from .process_network import Process, ProcessNetwork, Stream
from .timing_sim import peak_occupancy, process_trace, raw_latency

Strategy = Literal["normal", "conservative"]

_HULL_SAMPLES = 33  # delays at which each edge's exact depth curve is evaluated for the LP's convex fit


def paper_max_tokens(
    tokens: int, delay: int, initial_delay: int, last_write: int, ii_source: int, ii_target: int
) -> int:
    """Paper Eq. 1 / Eq. 2 in this project's conventions, for a uniform stream (one token per firing from
    the source's first writing firing and from the target's firing 0) at a delay without starvation.

    * source faster (``ii_source < ii_target``), Eq. 1: the peak is at the last write, when
      ``ceil((last_write - delay) / ii_target)`` tokens have been read strictly before it:
      ``min(T, T - ceil((W_last - delay) / II_target))`` (the paper floors: it lets a same-cycle read free a slot).
    * source slower or equal, Eq. 2: the peak is at the last write issued no later than the target's first
      read: ``min(T, floor((delay - D) / II_source) + 1)`` (the paper's ceil misses the token written in the
      same cycle as that read).
    """
    if ii_source < ii_target:
        return min(tokens, tokens - -((delay - last_write) // ii_target))
    return min(tokens, (delay - initial_delay) // ii_source + 1)


@dataclass(frozen=True)
class DelayConstraint:
    """``S[target] - S[source] >= bound``: directly from one stream (``path`` of 2) or implied by a path."""

    source: str
    target: str
    path: tuple[str, ...]  # processes along the (longest) path, source first
    bound: int
    terms: tuple[tuple[str, int], ...]  # named summands of ``bound``

    def describe(self) -> str:
        terms = " + ".join(f"{name} {value}" for name, value in self.terms)
        return f"S[{self.target}] - S[{self.source}] >= {self.bound}  (= {terms})  via {'->'.join(self.path)}"


@dataclass
class FifoSizing:
    """Result of :func:`size_fifos_lp`. ``predicted_latency`` is max over processes of ``S_v + L_v`` in the
    strategy's profile model (an upper bound of the simulated makespan with ``depths``)."""

    strategy: Strategy
    depths: dict[str, int]
    total_bits: int
    predicted_latency: int
    start_times: dict[str, int]
    delays: dict[str, int]
    solve_seconds: float
    status: str
    edge_constraints: list[DelayConstraint]
    implied_constraints: list[DelayConstraint]  # longest paths of >= 2 edges stronger than any direct edge
    fell_back_to_normal: bool = False  # conservative only: Normal's sizing was smaller and is returned

    def describe_constraints(self) -> str:
        lines = ["edge constraints (one per stream):"]
        lines += [f"  {c.describe()}" for c in self.edge_constraints]
        lines.append("implied path constraints (longest paths):")
        lines += [f"  {c.describe()}" for c in self.implied_constraints]
        return "\n".join(lines)


def _profile(p: Process, slowest_latency: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(read time, write time) of every firing of ``p`` relative to its start (see module docstring)."""
    f = np.arange(p.num_firings, dtype=np.int64)
    if slowest_latency is None:
        return f * p.ii, f * p.ii + p.depth
    if p.num_firings * p.ii * slowest_latency >= 2**62:
        raise OverflowError(f"process {p.name!r}: latencies too large for exact conservative scaling")
    issue = (f * (p.ii * slowest_latency) + p.latency - 1) // p.latency  # ceil(f * II * L_slowest / L_p)
    trace = process_trace(p)
    slip = np.maximum.accumulate(np.where(trace.is_write, 0, (issue - f * p.ii)[trace.firing]))
    times = trace.static + slip
    return times[trace.read_pos], times[trace.write_pos]


@dataclass
class _Edge:
    stream: Stream
    u: int
    v: int
    write_times: np.ndarray  # W_k, relative to S_u
    read_times: np.ndarray  # R_k, relative to S_v
    raw: int  # assumed FIFO read latency raw_e
    min_delay: int  # Delta_e
    source_delay: int  # D_u in the profile: first write of u (any stream) relative to S_u

    def depth(self, delay: int) -> int:
        return peak_occupancy(self.write_times, self.read_times + delay)

    def terms(self) -> tuple[tuple[str, int], ...]:
        skew = self.min_delay - self.source_delay - self.raw
        return (("D[" + self.stream.source + "]", self.source_delay), ("raw", self.raw), ("skew", skew))


def _lower_hull(xs: np.ndarray, ys: np.ndarray) -> list[tuple[float, float]]:
    """Segments (slope, intercept) of the lower convex hull of points sorted by x (Andrew's monotone chain)."""
    hull: list[tuple[float, float]] = []
    for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1) <= 0:  # hull[-1] not below the chord: drop it
                hull.pop()
            else:
                break
        hull.append((x, y))
    segments = []
    for (x1, y1), (x2, y2) in zip(hull, hull[1:], strict=False):
        slope = (y2 - y1) / (x2 - x1)
        segments.append((slope, y1 - slope * x1))
    return segments


class _Model:
    """Profiles, edges and the longest-path bounds of one strategy."""

    def __init__(self, net: ProcessNetwork, strategy: Strategy, raws: list[int]) -> None:
        self.net = net
        self.order = [net.process(n) for n in net.topological_order()]
        self.pid = {p.name: i for i, p in enumerate(net.processes)}
        slowest = max(p.latency for p in net.processes) if strategy == "conservative" else None
        profiles = [_profile(p, slowest) for p in net.processes]
        self.latency = [int(write[-1]) for _, write in profiles]  # L_v: write time of the last firing
        self.edges: list[_Edge] = []
        for s, raw in zip(net.streams, raws, strict=True):
            u, v = self.pid[s.source], self.pid[s.target]
            src, dst = net.processes[u], net.processes[v]
            w = profiles[u][1][src.writes[s.name]]
            r = profiles[v][0][dst.reads[s.name]]
            first = src.first_write_firing
            assert first is not None  # it writes s
            self.edges.append(_Edge(s, u, v, w, r, raw, int(np.max(w + raw - r)), int(profiles[u][1][first])))
        self.out_edges: list[list[_Edge]] = [[] for _ in net.processes]
        for e in self.edges:
            self.out_edges[e.u].append(e)
        # Earliest starts (longest paths from time 0), minimal latency, latest starts within it.
        self.earliest = [0] * len(net.processes)
        for p in self.order:
            for e in self.out_edges[self.pid[p.name]]:
                self.earliest[e.v] = max(self.earliest[e.v], self.earliest[e.u] + e.min_delay)
        self.min_latency = max(s + lat for s, lat in zip(self.earliest, self.latency, strict=True))
        self.latest = [self.min_latency - lat for lat in self.latency]
        for p in reversed(self.order):
            u = self.pid[p.name]
            for e in self.out_edges[u]:
                self.latest[u] = min(self.latest[u], self.latest[e.v] - e.min_delay)

    def settle(self, starts: list[int]) -> list[int]:
        """Smallest start times >= ``starts`` that satisfy every edge constraint (one forward pass)."""
        out = list(starts)
        for p in self.order:
            for e in self.out_edges[self.pid[p.name]]:
                out[e.v] = max(out[e.v], out[e.u] + e.min_delay)
        return out

    def implied_constraints(self) -> list[DelayConstraint]:
        direct: dict[tuple[int, int], int] = {}
        for e in self.edges:
            direct[(e.u, e.v)] = max(direct.get((e.u, e.v), e.min_delay), e.min_delay)
        names = [p.name for p in self.net.processes]
        found: list[DelayConstraint] = []
        for src in self.order:
            s0 = self.pid[src.name]
            dist: dict[int, int] = {s0: 0}
            via: dict[int, _Edge] = {}
            for p in self.order:
                a = self.pid[p.name]
                if a not in dist:
                    continue
                for e in self.out_edges[a]:
                    if dist[a] + e.min_delay > dist.get(e.v, -1):
                        dist[e.v], via[e.v] = dist[a] + e.min_delay, e
            for tgt in self.order:
                t0 = self.pid[tgt.name]
                if t0 == s0 or t0 not in dist or dist[t0] <= direct.get((s0, t0), -1):
                    continue
                chain: list[_Edge] = []
                node = t0
                while node != s0:
                    chain.append(via[node])
                    node = via[node].u
                chain.reverse()
                found.append(
                    DelayConstraint(
                        source=src.name,
                        target=tgt.name,
                        path=tuple([names[s0]] + [names[e.v] for e in chain]),
                        bound=dist[t0],
                        terms=tuple(t for e in chain for t in e.terms()),
                    )
                )
        return found


def _solve(model: _Model, strategy: Strategy, time_limit_s: float) -> FifoSizing:
    net = model.net
    n = len(net.processes)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit_s))
    # Columns 0..n-1: S_v in [0, T_min - L_v]; then one epigraph column c_e per edge with a non-flat curve.
    h.addVars(n, np.zeros(n), np.array([model.min_latency - lat for lat in model.latency], dtype=np.float64))
    lower: list[float] = []
    starts: list[int] = []
    idx: list[int] = []
    val: list[float] = []
    costs: list[float] = []

    def row(bound: float, entries: list[tuple[int, float]]) -> None:
        starts.append(len(idx))
        lower.append(bound)
        idx.extend(col for col, _ in entries)
        val.extend(coef for _, coef in entries)

    for e in model.edges:
        row(e.min_delay, [(e.v, 1.0), (e.u, -1.0)])  # S_v - S_u >= Delta_e
        hi = model.latest[e.v] - model.earliest[e.u]  # largest delay the latency cap allows
        if hi <= e.min_delay:
            continue  # delay is forced: constant cost
        xs = np.unique(np.linspace(e.min_delay, hi, _HULL_SAMPLES).round().astype(np.int64))
        ys = np.array([e.depth(int(x)) for x in xs], dtype=np.float64)
        col = n + len(costs)
        costs.append(float(e.stream.width_bits))
        for slope, icpt in _lower_hull(xs, ys):
            row(icpt, [(col, 1.0), (e.v, -slope), (e.u, slope)])  # c_e - a (S_v - S_u) >= b
    if costs:
        h.addVars(len(costs), np.zeros(len(costs)), np.full(len(costs), highspy.kHighsInf))
        h.changeColsCost(len(costs), np.arange(n, n + len(costs), dtype=np.int32), np.array(costs))
    if lower:
        h.addRows(
            len(lower),
            np.array(lower),
            np.full(len(lower), highspy.kHighsInf),
            len(idx),
            np.array(starts, dtype=np.int32),
            np.array(idx, dtype=np.int32),
            np.array(val),
        )
    t0 = time.perf_counter()
    h.run()
    solve_seconds = time.perf_counter() - t0
    status = h.modelStatusToString(h.getModelStatus())
    solution = h.getSolution()
    if solution.value_valid:
        # HiGHS returns reals within tolerances: round, then re-settle the (integer) edge constraints.
        guess = [round(x) for x in list(solution.col_value)[:n]]
    else:
        # No solution in the time limit: the earliest-start schedule is always feasible.
        guess = list(model.earliest)
        status += " (no solution: earliest starts used)"
    starts_v = model.settle([max(0, g) for g in guess])
    depths = {e.stream.name: e.depth(starts_v[e.v] - starts_v[e.u]) for e in model.edges}
    names = [p.name for p in net.processes]
    return FifoSizing(
        strategy=strategy,
        depths=depths,
        total_bits=sum(e.stream.width_bits * depths[e.stream.name] for e in model.edges),
        predicted_latency=max(s + lat for s, lat in zip(starts_v, model.latency, strict=True)),
        start_times=dict(zip(names, starts_v, strict=True)),
        delays={e.stream.name: starts_v[e.v] - starts_v[e.u] for e in model.edges},
        solve_seconds=solve_seconds,
        status=status,
        edge_constraints=[
            DelayConstraint(
                source=e.stream.source,
                target=e.stream.target,
                path=(e.stream.source, e.stream.target),
                bound=e.min_delay,
                terms=e.terms(),
            )
            for e in model.edges
        ],
        implied_constraints=model.implied_constraints(),
    )


def _size(net: ProcessNetwork, strategy: Strategy, time_limit_s: float) -> FifoSizing:
    """Solve, raising raw_e to 2 for FIFOs that came out wider than 1024 bits, until the latencies hold."""
    raws = [raw_latency(s.width_bits, 1) for s in net.streams]  # 1 where a depth-1 FIFO is a shift register
    while True:
        result = _solve(_Model(net, strategy, raws), strategy, time_limit_s)
        wrong = [
            i
            for i, s in enumerate(net.streams)
            if raws[i] < raw_latency(s.width_bits, result.depths[s.name])
        ]
        if not wrong:
            return result
        for i in wrong:
            raws[i] = 2


def size_fifos_lp(net: ProcessNetwork, strategy: Strategy = "normal", time_limit_s: float = 10.0) -> FifoSizing:
    """Size every FIFO of an acyclic ``net`` by the LP of the module docstring.

    ``conservative`` also solves ``normal`` and returns whichever needs fewer bits (``fell_back_to_normal``
    says Normal's was kept): exact depths of two heuristic LP optima are not ordered by construction, and
    Conservative must never cost more FIFO bits than Normal. ``time_limit_s`` applies to each HiGHS solve.
    """
    if strategy not in ("normal", "conservative"):
        raise ValueError(f"unknown FIFO sizing strategy {strategy!r} (normal | conservative)")
    result = _size(net, strategy, time_limit_s)
    if strategy == "conservative":
        normal = _size(net, "normal", time_limit_s)
        if normal.total_bits < result.total_bits:
            normal.strategy = "conservative"
            normal.fell_back_to_normal = True
            return normal
    return result
