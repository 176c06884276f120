"""FIFO sizing by linear programming (streamtensor.md §4.3), exact per edge for the chosen start times.

The profiles (``fifo_schedules``) are legal simulator schedules, and shifting a process by a constant keeps its
own trace legal. On a stream e = (u -> v), token k is written at ``W_k + x_u`` and read at ``R_k + x_v`` (``W``,
``R``: profile times of the writing / reading event). With the start time ``S_v = first event of v + x_v``:

* edge constraint (compact form of the paper's path constraints, difference constraints on ``S``):
  ``S_v - S_u >= bound_e``, from ``x_v - x_u >= max_k (W_k + raw_e - R_k)`` (every token readable in time);
  ``bound_e = D_u + raw_e + skew_e`` where ``D_u`` is u's initial delay in the profile (first write after its
  start: the paper's ``delay >= D_u``), ``raw_e`` the FIFO read latency and ``skew_e`` the rest (negative when
  v reads this stream late, positive when u starts writing it late). Longest paths give ``delay02 >= D0 + D1``.
  raw_e depends on the depth being solved for: it starts at 1 wherever ``width_e`` is at most the SRL limit
  (``ProcessNetwork.srl_max_bits``) and is raised to 2 (then the LP re-solved) for each FIFO whose solved depth
  turns out wider than that; latencies only
  rise, so this ends after at most one re-solve per stream, with every assumed latency >= the simulator's.
* exact depth at delay ``d = x_v - x_u``, in the simulator's convention (a token occupies the FIFO from its
  write cycle through its read cycle): ``depth_e(d) = max_k (k + 1 - #{j : R_j + d < W_k})``. For uniform
  streams this is :func:`paper_max_tokens` (Eq. 1 / Eq. 2 with our off-by-one); for bursty kernels (a reduction
  writing at the end of a row, a converter writing after a buffer fills) it is exact where those undersize.
* depth cap (``depth_caps``: a one-token block's read DMA prefetches at most one HBM latency,
  ``analysis.contention``): ``x_v - x_u <= max_shift_e``, the largest delay with ``depth_e(d) <= cap``, i.e. the
  simulator's full-FIFO rule ``R_{k-cap} + d < W_k`` for every token k. The profiles are schedules run with the
  cap (``fifo_search``), so the zero shift keeps it; the LP plans the schedule the capped design runs instead of a
  faster one that needs a deeper prefetch (which the cap would then cut, leaving the other FIFOs sized for a
  schedule that never runs and the predicted latency below the simulated one).

Why these depths are safe: the shifted profiles satisfy every simulator constraint (trace gaps, token ready,
FIFO space), so the simulator's least schedule is no later anywhere: no deadlock, and simulated makespan <=
``predicted_latency``.

LP: minimize ``sum_e width_e * c_e`` with ``c_e >= a_i * (x_v - x_u) + b_i`` for the segments of the lower convex
hull of ``depth_e`` sampled over the feasible delay range (exact where the curve is convex, a tight
under-estimate elsewhere; better than one slope per edge because ``depth_e`` saturates at T), subject to the
edge constraints, no event before cycle 0 and every process done by ``T_min``, the longest-path latency of the
shifted profiles (schedule ``demand``: by the latency of its starting schedule where that is later): FIFO bits
are minimized at minimal latency. Depths are then recomputed exactly at the solved delays, rounded and settled
onto the integer constraints (both kinds are differences of start times).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import highspy
import numba
import numpy as np

from .process_network import ProcessNetwork, Stream
from .sim_kernel import peak_candidates, peak_occupancies
from .timing_sim import FiringTimes, raw_latency

Strategy = Literal["normal", "conservative"]

_HULL_SAMPLES = 33  # delays at which each edge's exact depth curve is evaluated for the LP's convex fit


def paper_max_tokens(
    tokens: int, delay: int, initial_delay: int, last_write: int, ii_source: int, ii_target: int
) -> int:
    """Paper Eq. 1 / Eq. 2 in this project's conventions, for a uniform stream: the source writes one token per
    firing from its first writing firing (token 0 at ``initial_delay``, the last at ``last_write`` =
    ``D + (T-1) * II_source``), the target reads one token per firing from its start at ``delay`` and then keeps
    up (it stalls on an empty FIFO), with ``delay >= initial_delay + raw``.

    * source faster (``ii_source < ii_target``), Eq. 1: the peak is at the last write, when
      ``ceil((last_write - delay) / ii_target)`` tokens have been read strictly before it:
      ``min(T, T - ceil((W_last - delay) / II_target))`` (the paper floors: it lets a same-cycle read free a slot).
    * source slower or equal, Eq. 2: the peak is at the last write no later than the target's first read:
      ``min(T, floor((delay - D) / II_source) + 1)`` (the paper's ceil misses the token written in the cycle of
      that read).
    """
    if ii_source < ii_target:
        return min(tokens, tokens + (delay - last_write) // ii_target)  # T - ceil((W_last - delay) / II_t)
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
    """Result of ``fifo_search.size_fifos_lp``. ``start_times`` are the first events of the shifted profiles;
    ``predicted_latency`` is their last event over all processes (an upper bound of the simulated makespan
    with ``depths``)."""

    strategy: Strategy
    depths: dict[str, int]
    total_bits: int
    predicted_latency: int
    start_times: dict[str, int]
    delays: dict[str, int]  # per stream: S[target] - S[source]
    solve_seconds: float
    status: str
    _model: _Model | None = field(default=None, repr=False, compare=False)
    # The latency every solve and trial of the sizing search kept (``fifo_search``; 0: no such bound), which a
    # trim after the search keeps too.
    latency_limit: int = 0

    @cached_property
    def edge_constraints(self) -> list[DelayConstraint]:
        """One per stream. Computed on first use, like the implied ones: the sizing search solves dozens of LPs
        whose results it discards."""
        return self._model.edge_constraints() if self._model is not None else []

    @cached_property
    def implied_constraints(self) -> list[DelayConstraint]:
        """Longest paths of >= 2 edges stronger than any direct edge. Computed on first use: O(V * (V + E)), for
        display, and the demand schedule solves many LPs whose results it discards."""
        return self._model.implied_constraints() if self._model is not None else []

    def describe_constraints(self) -> str:
        lines = ["edge constraints (one per stream):"]
        lines += [f"  {c.describe()}" for c in self.edge_constraints]
        lines.append("implied path constraints (longest paths):")
        lines += [f"  {c.describe()}" for c in self.implied_constraints]
        return "\n".join(lines)


@dataclass
class _Edge:
    stream: Stream
    u: int
    v: int
    curve: _Curve | None  # W_k (profile of u), R_k (profile of v) and the depths known (None: ``_Model.detach``)
    raw: int  # assumed FIFO read latency raw_e
    min_shift: int  # x_v - x_u >= min_shift
    bound: int  # the same in start-time form: S_v - S_u >= bound
    source_delay: int  # D_u in the profile: first write of u (any stream) after its start
    max_shift: int | None  # x_v - x_u <= max_shift: the FIFO's depth cap (None: no cap, or one never reached)

    def depth(self, shift: int) -> int:
        return int(self.depths(np.array([shift], dtype=np.int64))[0])

    def depths(self, shifts: np.ndarray) -> np.ndarray:
        """``depth`` at every shift of ``shifts``, in one compiled pass per shift not known yet (the depths known
        are shared by the edges of the same profiles)."""
        curve = self.curve
        assert curve is not None, "the depth curves of a sizing's model are detached"
        todo = [x for x in shifts.tolist() if x not in curve.known]
        if todo:
            found = peak_occupancies(curve.write_times, curve.read_times, np.array(todo, dtype=np.int64),
                                     curve.candidates)
            curve.known.update(zip(todo, found.tolist(), strict=True))
        return np.array([curve.known[x] for x in shifts.tolist()], dtype=np.int64)

    def terms(self) -> tuple[tuple[str, int], ...]:
        skew = self.bound - self.source_delay - self.raw
        return ((f"D[{self.stream.source}]", self.source_delay), ("raw", self.raw), ("skew", skew))


def _max_shift(write_times: np.ndarray, read_times: np.ndarray, cap: int) -> int | None:
    """The largest delay ``d`` with ``depth_e(d) <= cap``, or None where the stream has at most ``cap`` tokens (no
    delay fills it): the simulator's full-FIFO rule, token k written only after token ``k - cap`` was read
    (``R_{k-cap} + d < W_k`` for every k >= cap)."""
    if write_times.shape[0] <= cap:
        return None
    return int(np.min(write_times[cap:] - read_times[: write_times.shape[0] - cap])) - 1


@numba.njit(cache=True, nogil=True)
def _lower_hull(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slopes and intercepts of the segments of the lower convex hull of points sorted by x (Andrew's monotone
    chain), compiled: the LPs of one paper-size sizing fit thousands of curves (issue 21)."""
    n = xs.shape[0]
    hx = np.empty(n, dtype=np.int64)
    hy = np.empty(n, dtype=np.float64)
    m = 0
    for i in range(n):
        x, y = xs[i], ys[i]
        while m >= 2:
            x1, y1, x2, y2 = hx[m - 2], hy[m - 2], hx[m - 1], hy[m - 1]
            if (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1) <= 0:  # hull[-1] not below the chord: drop it
                m -= 1
            else:
                break
        hx[m], hy[m] = x, y
        m += 1
    slopes = np.empty(max(m - 1, 0), dtype=np.float64)
    icpts = np.empty(max(m - 1, 0), dtype=np.float64)
    for i in range(m - 1):
        slope = (hy[i + 1] - hy[i]) / (hx[i + 1] - hx[i])
        slopes[i] = slope
        icpts[i] = hy[i] - slope * hx[i]
    return slopes, icpts


_EVALUATED = "fifo_lp.evaluated_depths"  # ProcessNetwork.derived key of the depths kept (keep_evaluated_depths)


def keep_evaluated_depths(net: ProcessNetwork, source: ProcessNetwork | None = None) -> None:
    """Let the LPs on ``net`` keep the FIFO depths they evaluate, by a digest of the stream's token write and read
    times and by delay (the depth is a function of those alone), together with those kept on ``source`` (if
    given); before any LP on ``net``. A decode block's network rebuilt with other DMA shares
    (``timing_model.GroupNetworks``) keeps most processes' times, and its sizing evaluated the same curves again
    (issue 21: two thirds of a paper-size Gemma decode block's evaluations); a network built once is not worth
    the digests."""
    shared = None if source is None else _kept_depths(source)
    net.derived(_EVALUATED, lambda: {} if shared is None else shared)


def _kept_depths(net: ProcessNetwork) -> dict[bytes, dict[int, int]] | None:
    """The depths ``keep_evaluated_depths`` lets the LPs on ``net`` keep (None: none kept)."""
    kept: dict[bytes, dict[int, int]] | None = net.derived(_EVALUATED, lambda: None)
    return kept


@dataclass
class _Curve:
    """One stream's FIFO between a writer's and a reader's profile: its token times and the depths known."""

    writer: FiringTimes  # held: the key is its identity
    reader: FiringTimes
    write_times: np.ndarray  # W_k
    read_times: np.ndarray  # R_k
    spread: int  # max_k (W_k - R_k)
    known: dict[int, int]  # depth by delay (the entry kept for these times: keep_evaluated_depths)

    @cached_property
    def candidates(self) -> np.ndarray:
        """The writes the depth can peak at, at any delay (``sim_kernel.peak_candidates``): found once, for the
        dozens of delays the LPs evaluate."""
        return peak_candidates(self.write_times, self.read_times)


def _every_firing(net: ProcessNetwork) -> dict[str, tuple[bool, bool]]:
    """Per stream of ``net``, whether its token k is written by firing k of its writer, every firing writing one,
    and read by firing k of its reader, every firing reading one: its token times are then the profiles' own (no
    gather; most reads of a decode block's streams, half its writes). Kept with the network."""
    def build() -> dict[str, tuple[bool, bool]]:
        def every(firings: np.ndarray, num_firings: int) -> bool:
            return firings.shape[0] == num_firings and bool(np.array_equal(firings, np.arange(num_firings)))

        out = {}
        for s in net.streams:
            src, dst = net.process(s.source), net.process(s.target)
            out[s.name] = (every(src.writes[s.name], src.num_firings), every(dst.reads[s.name], dst.num_firings))
        return out
    return net.derived("fifo_lp.every_firing", build)


class DepthCurves:
    """The depth curve of every stream's FIFO per pair of writer and reader profiles: the token times gathered
    once, and the depths evaluated so far (with those the network keeps: ``keep_evaluated_depths``). The sizing
    search solves the same profiles again (wider raw latencies) and schedules that share most processes' times
    (forwarders re-timed), and its LPs evaluated the same curves at the same delays (issue 21: four fifths of a
    paper-size Llama decode block's evaluations; gathering the same times again took a second of a Gemma decode
    block's). Keyed by the profiles' identity, each entry holds them, so an identity is not reused while it
    lives: keep one for schedules that live together anyway (a refinement round)."""

    def __init__(self) -> None:
        self._curves: dict[tuple[int, int, str], _Curve] = {}

    def curve(self, net: ProcessNetwork, writer: FiringTimes, reader: FiringTimes, stream: Stream) -> _Curve:
        """The curve of ``stream`` of ``net`` written in profile ``writer`` and read in profile ``reader``."""
        key = (id(writer), id(reader), stream.name)
        if key not in self._curves:
            writes, reads = _every_firing(net)[stream.name]
            w = np.ascontiguousarray(writer.complete) if writes else writer.complete[
                net.process(stream.source).writes[stream.name]]
            r = np.ascontiguousarray(reader.issue) if reads else reader.issue[
                net.process(stream.target).reads[stream.name]]
            kept = _kept_depths(net)
            known: dict[int, int] = {}
            if kept is not None:
                digest = hashlib.sha256(f"{w.dtype} {w.size}".encode())
                digest.update(memoryview(w))
                digest.update(memoryview(r))
                known = kept.setdefault(digest.digest(), known)
            self._curves[key] = _Curve(writer, reader, w, r, int(np.max(w - r)), known)
        return self._curves[key]

    def known(self, writer: FiringTimes, reader: FiringTimes, stream: str) -> dict[int, int]:
        """The depths of ``stream``'s FIFO (written by ``writer``, read by ``reader``) at the delays known (none
        where no LP used those profiles)."""
        curve = self._curves.get((id(writer), id(reader), stream))
        return curve.known if curve is not None else {}


class _Model:
    """Profiles, edges and longest-path bounds of one strategy, in shift variables x_v."""

    def __init__(self, net: ProcessNetwork, profiles: dict[str, FiringTimes], raws: list[int],
                 latency_cap: int | None, depth_caps: Mapping[str, int], curves: DepthCurves) -> None:
        self.net = net
        procs = net.processes
        pid = {p.name: i for i, p in enumerate(procs)}
        self.order = [pid[n] for n in net.topological_order()]
        self.first = [int(profiles[p.name].issue[0]) for p in procs]  # first trace event: issue of firing 0
        self.last = [int(profiles[p.name].complete[-1]) for p in procs]  # last trace event
        self.edges: list[_Edge] = []
        for s, raw in zip(net.streams, raws, strict=True):
            u, v = pid[s.source], pid[s.target]
            src, dst = procs[u], procs[v]
            curve = curves.curve(net, profiles[src.name], profiles[dst.name], s)
            w, r = curve.write_times, curve.read_times
            shift = curve.spread + raw
            first_write = src.first_write_firing
            assert first_write is not None  # it writes s
            d_u = int(profiles[src.name].complete[first_write]) - self.first[u]
            top = _max_shift(w, r, depth_caps[s.name]) if s.name in depth_caps else None
            if top is not None and top < shift:
                raise ValueError(f"stream {s.name!r}: these profiles cannot keep its FIFO within its depth cap "
                                 f"{depth_caps[s.name]} (delay {shift} needed, {top} allowed)")
            self.edges.append(_Edge(s, u, v, curve, raw, shift, shift + self.first[v] - self.first[u], d_u, top))
        self.out_edges: list[list[_Edge]] = [[] for _ in procs]
        for e in self.edges:
            self.out_edges[e.u].append(e)
        self.capped = [(e, e.max_shift) for e in self.edges if e.max_shift is not None]
        self.lowest = [-f for f in self.first]  # no event before cycle 0
        self.earliest = self.settle(self.lowest)
        self.min_latency = max(x + last for x, last in zip(self.earliest, self.last, strict=True))
        # Every process must end by the latency bound: T_min, or the given cap where that is later.
        self.latency_bound = max(self.min_latency, latency_cap or 0)
        self.latest = self._lowered([self.latency_bound - last for last in self.last])

    def detach(self) -> None:
        """Drop the depth curves once solved: a sizing keeps its model for its constraints alone, and the curves
        hold the profiles' times, a simulation's arrays, which a later simulation takes once nothing refers to them
        (``timing_sim``: fresh arrays of a paper-size block cost as much as a third of a simulation)."""
        for e in self.edges:
            e.curve = None

    def settle(self, shifts: list[int]) -> list[int]:
        """Smallest shifts >= ``shifts`` that satisfy every edge constraint: one pass in topological order, and
        where a capped FIFO's reader then starts too late for its writer, the writer raised and passes repeated
        (a difference-constraint system: at most one pass per process where it is feasible)."""
        out = list(shifts)
        for _ in range(len(out) + 1):
            for u in self.order:
                for e in self.out_edges[u]:
                    out[e.v] = max(out[e.v], out[u] + e.min_shift)
            late = [(e, top) for e, top in self.capped if out[e.v] - out[e.u] > top]
            if not late:
                return out
            for e, top in late:
                out[e.u] = max(out[e.u], out[e.v] - top)
        raise ValueError("the FIFO depth caps contradict the edge constraints: no start times keep both")

    def _lowered(self, shifts: list[int]) -> list[int]:
        """Largest shifts <= ``shifts`` that satisfy every edge constraint (``settle`` mirrored)."""
        out = list(shifts)
        for _ in range(len(out) + 1):
            for u in reversed(self.order):
                for e in self.out_edges[u]:
                    out[u] = min(out[u], out[e.v] - e.min_shift)
            late = [(e, top) for e, top in self.capped if out[e.v] - out[e.u] > top]
            if not late:
                return out
            for e, top in late:
                out[e.v] = min(out[e.v], out[e.u] + top)
        raise ValueError("the FIFO depth caps contradict the edge constraints: no start times keep both")

    def edge_constraints(self) -> list[DelayConstraint]:
        """The direct constraint of every stream."""
        return [DelayConstraint(source=e.stream.source, target=e.stream.target,
                                path=(e.stream.source, e.stream.target), bound=e.bound, terms=e.terms())
                for e in self.edges]

    def implied_constraints(self) -> list[DelayConstraint]:
        """The paper's path constraints that the edge constraints imply: for every pair, the longest path of
        >= 2 edges (bounds summed), where it is stronger than any direct edge. O(V * (V + E)), for display."""
        direct: dict[tuple[int, int], int] = {}
        for e in self.edges:
            direct[(e.u, e.v)] = max(e.bound, direct.get((e.u, e.v), e.bound))
        names = [p.name for p in self.net.processes]
        found: list[DelayConstraint] = []
        for s0 in self.order:
            dist: dict[int, int] = {s0: 0}
            via: dict[int, _Edge] = {}
            for a in self.order:
                if a in dist:
                    for e in self.out_edges[a]:
                        if e.v not in dist or dist[a] + e.bound > dist[e.v]:
                            dist[e.v], via[e.v] = dist[a] + e.bound, e
            for t0 in self.order:
                if t0 == s0 or t0 not in dist or via[t0].u == s0 or dist[t0] <= direct.get((s0, t0), dist[t0] - 1):
                    continue
                chain: list[_Edge] = []
                node = t0
                while node != s0:
                    chain.append(via[node])
                    node = via[node].u
                chain.reverse()
                found.append(
                    DelayConstraint(
                        source=names[s0],
                        target=names[t0],
                        path=(names[s0], *(names[e.v] for e in chain)),
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
    # Columns 0..n-1: x_v in [-first_v, bound - last_v]; then one epigraph column c_e per non-flat edge curve.
    upper = [model.latency_bound - last for last in model.last]
    h.addVars(n, np.array(model.lowest, dtype=np.float64), np.array(upper, dtype=np.float64))
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
        row(e.min_shift, [(e.v, 1.0), (e.u, -1.0)])  # x_v - x_u >= min_shift_e
        hi = model.latest[e.v] - model.earliest[e.u]  # largest delay the latency cap allows
        if e.max_shift is not None:
            row(-e.max_shift, [(e.u, 1.0), (e.v, -1.0)])  # x_v - x_u <= max_shift_e: the depth cap
            hi = min(hi, e.max_shift)
        if hi <= e.min_shift:
            continue  # the delay is forced: constant cost
        xs = np.unique(np.linspace(e.min_shift, hi, _HULL_SAMPLES).round().astype(np.int64))
        ys = e.depths(xs).astype(np.float64)
        col = n + len(costs)
        costs.append(float(e.stream.width_bits))
        for slope, icpt in zip(*(a.tolist() for a in _lower_hull(xs, ys)), strict=True):
            row(icpt, [(col, 1.0), (e.v, -slope), (e.u, slope)])  # c_e - a (x_v - x_u) >= b
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
    # Whatever HiGHS returns (optimal, or the incumbent at its time limit) is rounded and settled onto the
    # integer edge constraints; without primal values the earliest shifts (always feasible) are used.
    guess = [round(v) for v in list(solution.col_value)[:n]] if solution.value_valid else model.earliest
    x = model.settle([max(g, lo) for g, lo in zip(guess, model.lowest, strict=True)])
    depths = {e.stream.name: e.depth(x[e.v] - x[e.u]) for e in model.edges}
    start = [xv + first for xv, first in zip(x, model.first, strict=True)]
    names = [p.name for p in net.processes]
    return FifoSizing(
        strategy=strategy,
        depths=depths,
        total_bits=sum(e.stream.width_bits * depths[e.stream.name] for e in model.edges),
        predicted_latency=max(xv + last for xv, last in zip(x, model.last, strict=True)),
        start_times=dict(zip(names, start, strict=True)),
        delays={e.stream.name: start[e.v] - start[e.u] for e in model.edges},
        solve_seconds=solve_seconds,
        status=status,
        _model=model,
    )


def solve_profiles(net: ProcessNetwork, profiles: dict[str, FiringTimes], strategy: Strategy,
                   time_limit_s: float, latency_cap: int | None = None,
                   depth_caps: Mapping[str, int] | None = None, curves: DepthCurves | None = None) -> FifoSizing:
    """Solve, raising raw_e to 2 for FIFOs that came out wider than the SRL limit, until the latencies hold.
    ``depth_caps``: per stream, a depth its FIFO may not exceed (the profiles must keep it); ``curves``: the
    depths evaluated by earlier solves of schedules still alive (default: those of this call)."""
    # 1 where a depth-1 FIFO is a shift register
    raws = [raw_latency(s.width_bits, 1, net.srl_max_bits) for s in net.streams]
    curves = curves or DepthCurves()
    while True:
        result = _solve(_Model(net, profiles, raws, latency_cap, depth_caps or {}, curves), strategy, time_limit_s)
        wrong = [i for i, s in enumerate(net.streams)
                 if raws[i] < raw_latency(s.width_bits, result.depths[s.name], net.srl_max_bits)]
        if not wrong:
            if result._model is not None:
                result._model.detach()
            return result
        for i in wrong:
            raws[i] = 2
