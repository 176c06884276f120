"""FIFO sizing by linear programming (streamtensor.md §4.3), exact per edge for the chosen start times.

Profiles. Each process follows a fixed firing-time *profile*, taken from one unbounded-FIFO run of the timing
simulator (:mod:`.timing_sim`), which the LP may shift in time by ``x_v`` (an LP variable):

* strategy ``normal``: every process issues at its own II, as soon as its input tokens are there. Sources run
  free and fill FIFOs in front of slower kernels (paper Eq. 1); a faster consumer keeps pace with a slower
  source once started (paper Eq. 2: it holds only what arrived before its start). A consumer modelled as
  free-running instead would have to start late enough never to starve, which oversizes the FIFO in front of
  every fast sink (a DMA writer behind a reduction) by about ``T * (1 - II_target / II_source)`` tokens.
* strategy ``conservative``: the same with every firing f also released no earlier than
  ``ceil(f * II_v * L_slowest / L_v)``, i.e. ``II'_v = II_v * L_slowest / L_v`` (paper): every process is
  spread over the slowest one's total latency, so sources no longer run ahead (smaller FIFOs, maybe more
  latency). In the trace model a slowed pipeline is one that stalls, so writes slip with the reads.

Schedule ``free`` (default) takes the profiles above as they are. Free-running profiles are rigid: the LP can
only shift them, so a producer that runs ahead of a slower consumer keeps its FIFO full of tokens even where
stalling it would cost no cycle (a weight DMA in front of a matmul, a converter draining a buffer into a
reduction); the simulated minimum stalls such producers and can be several times smaller. Schedule ``demand``
builds profiles in which they stall:

1. ``normal`` starts from the as-late-as-possible schedule at the unbounded makespan
   (:func:`latest_firing_times`): every process paced by its consumers' demand, sources fetching just in
   time; or, where its LP needs fewer bits, from the unbounded-FIFO schedule whose sources are released at
   those just-in-time times and whose other processes run as early as their inputs allow (a kernel then
   works on what its sources delivered instead of waiting for its slowest consumer's demand: the GPT-2
   decode block buffers a few score rows instead of a third of the key cache). ``conservative`` starts from
   its own profile above.
2. refine: simulate with the depths just solved, forward (every process as early as those FIFOs and the
   strategy's release times let it: producers back-pressured where they ran ahead) and, for ``normal``,
   backward (:func:`latest_firing_times` with those depths: every process as late as they let it, so a
   producer stalled by back-pressure does not catch up in a burst); solve again on each schedule and keep the
   fewest bits. Repeat while a round saves at least ``_REFINE_MIN_GAIN`` of the bits (at most
   ``_REFINE_ROUNDS`` rounds and ``_REFINE_FIRINGS`` simulated firings; a round that does not lower them, or
   would raise the predicted latency, is dropped).
   A refined profile is a legal schedule whose FIFO occupancies are at most the previous depths, so its zero
   shift is a candidate of the next LP. ``normal`` also solves each schedule with its forwarders (forks,
   reassociates, DMA writers: :func:`forwarders_eager`) moved as early as their inputs allow: in the
   schedules above a fork is paced by its slowest consumer, so its tokens wait in front of it for every
   branch, and the squeeze below only lowers depths; eager forwarders hold them on the slow branch alone.
   Every solve and trial must end within the latency of the starting schedule (``normal``: the unbounded-FIFO
   makespan C; or the first solve's, if later), not that of the last accepted one: a round that happens to
   lower the latency does not forbid the next from trading it back. Shift-register FIFOs read in 1 cycle where
   unbounded ones take 2, so solves often end a few cycles before C; spending those cycles on smaller FIFOs
   is what the simulated minimum, which keeps C, does too. A caller's ``latency_slack`` raises that limit to
   ``C * (1 + slack)``: FIFOs traded for makespan where the designer allows it (step 4 then drops a wide FIFO
   whose tokens would save only a few cycles).
3. squeeze: what stays is mostly FIFOs one or two tokens deeper than needed where a producer restarts after
   a stall (the frozen pipeline releases its held writes back to back) and the consumer could have absorbed
   a slower pace. Group testing over the FIFOs deeper than 1, widest first: lower a whole group by one token
   and simulate forward; if that deadlocks or ends after the predicted latency, split the group in halves and
   try each; keep every lowering that passes. The last passing simulation is a legal schedule with those
   occupancies: solve on it, refine again (step 2), squeeze again while the bits fall, within
   ``_SQUEEZE_FIRINGS`` simulated firings (hundreds of simulations of a tiny block, none of a paper-size
   one); the LP still sizes every FIFO, on the schedules found.

4. trim: a paper-size block affords no squeeze, and a profile can still keep a wide FIFO deep where the
   producer could simply have stalled (the value cache in front of attention in the GPT-2 decode block: 28
   tokens of 8192 bits where 1 keeps the makespan). The FIFOs holding at least ``_TRIM_SHARE`` of the bits
   are lowered to ``_TRIM_DEPTH`` together and simulated. A deadlock names the FIFOs it waits on full: those
   of the group go back (they must stay deeper) and the rest is tried again; a run that ends too late splits
   the group in halves. What went back is then bisected one FIFO at a time, widest first, to within
   ``1 / _TRIM_PRECISION`` of the depth found; the last passing schedule is solved again. The budget is
   ``_TRIM_FIRINGS`` simulated firings but at least ``_TRIM_SIMULATIONS`` simulations: a paper-size Gemma
   prefill block in 2-row token tiles simulates 33 M firings at once (15 to 50 s), and one FIFO at a time its
   first 12 simulations lowered three FIFOs; together, with the culprits of each deadlock named, 16 lower 10
   of the 13 above 2% and hold 23% fewer bits (2.68 M against 3.46 M).

All these profiles are legal simulator schedules, and shifting a process by a constant keeps its own trace legal.
On a stream e = (u -> v), token k is written at ``W_k + x_u`` and read at ``R_k + x_v`` (``W``, ``R``: profile
times of the writing / reading event). With the start time ``S_v = first event of v + x_v``:

* edge constraint (compact form of the paper's path constraints, difference constraints on ``S``):
  ``S_v - S_u >= bound_e``, from ``x_v - x_u >= max_k (W_k + raw_e - R_k)`` (every token readable in time);
  ``bound_e = D_u + raw_e + skew_e`` where ``D_u`` is u's initial delay in the profile (first write after its
  start: the paper's ``delay >= D_u``), ``raw_e`` the FIFO read latency and ``skew_e`` the rest (negative when
  v reads this stream late, positive when u starts writing it late). Longest paths give ``delay02 >= D0 + D1``.
  raw_e depends on the depth being solved for: it starts at 1 wherever ``width_e <= 1024`` and is raised to 2
  (then the LP re-solved) for each FIFO whose solved depth turns out wider than 1024 bits; latencies only
  rise, so this ends after at most one re-solve per stream, with every assumed latency >= the simulator's.
* exact depth at delay ``d = x_v - x_u``, in the simulator's convention (a token occupies the FIFO from its
  write cycle through its read cycle): ``depth_e(d) = max_k (k + 1 - #{j : R_j + d < W_k})``. For uniform
  streams this is :func:`paper_max_tokens` (Eq. 1 / Eq. 2 with our off-by-one); for bursty kernels (a reduction
  writing at the end of a row, a converter writing after a buffer fills) it is exact where those undersize.

Why these depths are safe: the shifted profiles satisfy every simulator constraint (trace gaps, token ready,
FIFO space), so the simulator's least schedule is no later anywhere: no deadlock, and simulated makespan <=
``predicted_latency``.

LP: minimize ``sum_e width_e * c_e`` with ``c_e >= a_i * (x_v - x_u) + b_i`` for the segments of the lower convex
hull of ``depth_e`` sampled over the feasible delay range (exact where the curve is convex, a tight
under-estimate elsewhere; better than one slope per edge because ``depth_e`` saturates at T), subject to the
edge constraints, no event before cycle 0 and every process done by ``T_min``, the longest-path latency of the
shifted profiles (schedule ``demand``: by the latency of its starting schedule where that is later): FIFO bits
are minimized at minimal latency. Depths are then recomputed exactly at the
solved (integer) delays.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import highspy
import numpy as np

from .process_network import Process, ProcessNetwork, Stream
from .timing_sim import FiringTimes, SimResult, peak_occupancy, process_trace, raw_latency, simulate

Strategy = Literal["normal", "conservative"]
Schedule = Literal["free", "demand"]

_HULL_SAMPLES = 33  # delays at which each edge's exact depth curve is evaluated for the LP's convex fit
# Schedule "demand": at most this many refinement rounds (one or two usually suffice), and the firings the
# refinements / the squeezes of one strategy may simulate in all (deterministic budgets that scale with the
# network: a tiny block affords hundreds of simulations, a paper-size prefill block the two of one round).
_REFINE_ROUNDS = 4
_REFINE_MIN_GAIN = 0.01  # a round that saves less than this fraction of the bits is the last one
_REFINE_FIRINGS = 8_000_000
_SQUEEZE_FIRINGS = 1_000_000
_TRIM_SHARE = 0.02  # step 4 tries the FIFOs holding at least this share of the bits
_TRIM_DEPTH = 2  # ... at this depth
_TRIM_FIRINGS = 8_000_000
_TRIM_SIMULATIONS = 16  # ... but at least this many simulations, whatever the block's size
_TRIM_PRECISION = 8  # the bisection of one FIFO's depth stops within 1/8 of the depth found


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
    """Result of :func:`size_fifos_lp`. ``start_times`` are the first events of the shifted profiles;
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
    edge_constraints: list[DelayConstraint]
    _model: _Model | None = field(default=None, repr=False, compare=False)

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


def _releases(net: ProcessNetwork, strategy: Strategy) -> dict[str, np.ndarray]:
    """Per process, the earliest issue of every firing the strategy allows (none for ``normal``)."""
    release: dict[str, np.ndarray] = {}
    if strategy == "conservative":
        slowest = max(p.latency for p in net.processes)
        for p in net.processes:
            if p.num_firings * p.ii * slowest >= 2**62:
                raise OverflowError(f"process {p.name!r}: latencies too large for exact conservative scaling")
            f = np.arange(p.num_firings, dtype=np.int64)
            release[p.name] = (f * (p.ii * slowest) + p.latency - 1) // p.latency  # ceil(f*II*L_slowest/L_p)
    return release


def _profiles(net: ProcessNetwork, strategy: Strategy, schedule: Schedule) -> dict[str, FiringTimes]:
    """Firing times of every process in one unbounded-FIFO simulation (see module docstring), or the latest
    schedule for ``normal`` under the ``demand`` schedule."""
    if strategy == "normal" and schedule == "demand":
        return latest_firing_times(net)
    result = simulate(net, {}, _releases(net, strategy))
    assert not result.deadlock  # acyclic (checked by the caller) with unbounded FIFOs
    return result.firing_times


def _sources_released_at(net: ProcessNetwork, late: dict[str, FiringTimes]) -> dict[str, FiringTimes]:
    """Unbounded-FIFO schedule with every source (no input) released at its times in ``late``."""
    result = simulate(net, {}, {p.name: late[p.name].issue for p in net.processes if not p.reads})
    assert not result.deadlock  # acyclic with unbounded FIFOs
    return result.firing_times


def mirrored(net: ProcessNetwork) -> ProcessNetwork:
    """The time-reversed network: every stream reversed, every trace run backwards.

    Process p of F firings becomes one whose firing ``F-1-f`` reads what firing f wrote and writes what it
    read (token ``T-1-k`` of each stream for token k), with the same ii and depth. Under the map
    ``t -> C - t`` the trace order (older firing first, read before write on ties) and every dependency
    (token ready after its write plus the read latency) map onto those of the mirror, so the earliest
    schedule of the mirror is the latest schedule of ``net`` that ends by C."""
    processes = [
        Process(p.name, p.ii, p.depth, p.num_firings,
                {s: p.num_firings - 1 - w[::-1] for s, w in p.writes.items()},
                {s: p.num_firings - 1 - r[::-1] for s, r in p.reads.items()})
        for p in net.processes
    ]
    streams = [Stream(s.name, s.target, s.source, s.width_bits, s.tokens) for s in net.streams]
    return ProcessNetwork(processes, streams)


def latest_firing_times(net: ProcessNetwork, depths: dict[str, int] | None = None) -> dict[str, FiringTimes]:
    """As-late-as-possible schedule of an acyclic ``net`` with FIFO ``depths`` (default: unbounded), ending at
    its critical-path length C (the makespan of the earliest schedule with the same depths): the earliest
    schedule of :func:`mirrored` read backwards from C. A bounded FIFO mirrors onto itself (the write of token
    k waits for the read of token k - D either way), so every event is then as late as it can be without
    delaying the last event past C."""
    result = simulate(mirrored(net), depths or {})
    if result.makespan_cycles is None:
        raise ValueError(f"no latest schedule: {result.describe()}")
    end = result.makespan_cycles
    return {
        p.name: FiringTimes(issue=end - result.firing_times[p.name].complete[::-1],
                            complete=end - result.firing_times[p.name].issue[::-1])
        for p in net.processes
    }


@dataclass
class _Edge:
    stream: Stream
    u: int
    v: int
    write_times: np.ndarray  # W_k (profile of u)
    read_times: np.ndarray  # R_k (profile of v)
    raw: int  # assumed FIFO read latency raw_e
    min_shift: int  # x_v - x_u >= min_shift
    bound: int  # the same in start-time form: S_v - S_u >= bound
    source_delay: int  # D_u in the profile: first write of u (any stream) after its start

    def depth(self, shift: int) -> int:
        return peak_occupancy(self.write_times, self.read_times + shift)

    def terms(self) -> tuple[tuple[str, int], ...]:
        skew = self.bound - self.source_delay - self.raw
        return ((f"D[{self.stream.source}]", self.source_delay), ("raw", self.raw), ("skew", skew))


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
    """Profiles, edges and longest-path bounds of one strategy, in shift variables x_v."""

    def __init__(self, net: ProcessNetwork, profiles: dict[str, FiringTimes], raws: list[int],
                 latency_cap: int | None) -> None:
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
            w = profiles[src.name].complete[src.writes[s.name]]
            r = profiles[dst.name].issue[dst.reads[s.name]]
            shift = int(np.max(w + raw - r))
            first_write = src.first_write_firing
            assert first_write is not None  # it writes s
            d_u = int(profiles[src.name].complete[first_write]) - self.first[u]
            self.edges.append(_Edge(s, u, v, w, r, raw, shift, shift + self.first[v] - self.first[u], d_u))
        self.out_edges: list[list[_Edge]] = [[] for _ in procs]
        for e in self.edges:
            self.out_edges[e.u].append(e)
        self.lowest = [-f for f in self.first]  # no event before cycle 0
        self.earliest = self.settle(self.lowest)
        self.min_latency = max(x + last for x, last in zip(self.earliest, self.last, strict=True))
        # Every process must end by the latency bound: T_min, or the given cap where that is later.
        self.latency_bound = max(self.min_latency, latency_cap or 0)
        self.latest = [self.latency_bound - last for last in self.last]
        for u in reversed(self.order):
            for e in self.out_edges[u]:
                self.latest[u] = min(self.latest[u], self.latest[e.v] - e.min_shift)

    def settle(self, shifts: list[int]) -> list[int]:
        """Smallest shifts >= ``shifts`` that satisfy every edge constraint (one pass in topological order)."""
        out = list(shifts)
        for u in self.order:
            for e in self.out_edges[u]:
                out[e.v] = max(out[e.v], out[u] + e.min_shift)
        return out

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
        if hi <= e.min_shift:
            continue  # the delay is forced: constant cost
        xs = np.unique(np.linspace(e.min_shift, hi, _HULL_SAMPLES).round().astype(np.int64))
        ys = np.array([e.depth(int(x)) for x in xs], dtype=np.float64)
        col = n + len(costs)
        costs.append(float(e.stream.width_bits))
        for slope, icpt in _lower_hull(xs, ys):
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
        edge_constraints=[
            DelayConstraint(
                source=e.stream.source,
                target=e.stream.target,
                path=(e.stream.source, e.stream.target),
                bound=e.bound,
                terms=e.terms(),
            )
            for e in model.edges
        ],
        _model=model,
    )


def _size_profiles(net: ProcessNetwork, profiles: dict[str, FiringTimes], strategy: Strategy,
                   time_limit_s: float, latency_cap: int | None = None) -> FifoSizing:
    """Solve, raising raw_e to 2 for FIFOs that came out wider than 1024 bits, until the latencies hold."""
    raws = [raw_latency(s.width_bits, 1) for s in net.streams]  # 1 where a depth-1 FIFO is a shift register
    while True:
        result = _solve(_Model(net, profiles, raws, latency_cap), strategy, time_limit_s)
        wrong = [i for i, s in enumerate(net.streams) if raws[i] < raw_latency(s.width_bits, result.depths[s.name])]
        if not wrong:
            return result
        for i in wrong:
            raws[i] = 2


@dataclass
class _SimBudget:
    firings: int  # firings left to simulate

    def spend(self, net: ProcessNetwork) -> bool:
        """Take one simulation of ``net`` from the budget; False when it does not fit any more."""
        if self.firings < net.total_firings:
            return False
        self.firings -= net.total_firings
        return True


def is_forwarder(p: Process) -> bool:
    """A process that only passes tokens on: a sink (DMA writer), or one input whose token k is written to
    every output by the firing that reads it (fork, reassociate)."""
    if not p.writes:
        return bool(p.reads)
    if len(p.reads) != 1:
        return False
    (reads,) = p.reads.values()
    return all(np.array_equal(w, reads) for w in p.writes.values())


def forwarders_eager(net: ProcessNetwork, profiles: dict[str, FiringTimes]) -> dict[str, FiringTimes]:
    """``profiles`` with every forwarder (:func:`is_forwarder`) re-timed, in topological order, as the simulator
    would run it alone: each read as soon as its tokens are readable (written + the SRL read latency), the
    trace of :mod:`.timing_sim` otherwise (a read that waits freezes the firings in flight). Other processes
    keep their times; the LP's shifts make the edges consistent again."""
    out = dict(profiles)
    for name in net.topological_order():
        p = net.process(name)
        if not is_forwarder(p):
            continue
        ready = np.full(p.num_firings, np.iinfo(np.int64).min // 4, dtype=np.int64)
        for s in net.inputs(name):
            src = net.process(s.source)
            readable = out[src.name].complete[src.writes[s.name]] + raw_latency(s.width_bits, 1)
            np.maximum.at(ready, p.reads[s.name], readable)
        trace = process_trace(p)
        dep = np.where(trace.is_write, ready.min(), ready[trace.firing])
        t = trace.static + np.maximum.accumulate(dep - trace.static)  # t_j = max(t_{j-1} + s_j - s_{j-1}, dep_j)
        out[name] = FiringTimes(issue=t[trace.read_pos], complete=t[trace.write_pos])
    return out


def _refine(net: ProcessNetwork, best: FifoSizing, strategy: Strategy, time_limit_s: float,
            release: dict[str, np.ndarray], budget: _SimBudget, latency_limit: int) -> FifoSizing:
    """Step 2 of the demand schedule (module docstring): forward / backward schedules with the solved depths,
    and (``normal``) the same with eager forwarders."""
    for _ in range(_REFINE_ROUNDS):
        if not budget.spend(net):
            break
        forward = simulate(net, best.depths, release)
        assert not forward.deadlock  # the depths are safe for the previous profiles, hence for the simulator
        schedules = [forward.firing_times]
        # A backward schedule ignores release times: conservative keeps its pacing.
        if strategy == "normal" and budget.spend(net):
            schedules.append(latest_firing_times(net, best.depths))
        if strategy == "normal":  # conservative's release times pace forwarders too
            schedules += [forwarders_eager(net, schedule) for schedule in schedules]
        trials = [_size_profiles(net, p, strategy, time_limit_s, latency_limit) for p in schedules]
        trial = min((t for t in trials if t.predicted_latency <= latency_limit),
                    key=lambda t: t.total_bits, default=best)
        if trial.total_bits >= best.total_bits:
            break
        gain = 1 - trial.total_bits / best.total_bits
        best = trial
        if gain < _REFINE_MIN_GAIN:
            break  # converged: another round costs two simulations for a fraction of a percent
    return best


def _in_time(result: SimResult, latency_limit: int) -> bool:
    """The simulation ended without deadlock by ``latency_limit``."""
    return result.makespan_cycles is not None and result.makespan_cycles <= latency_limit


def _schedule_within(net: ProcessNetwork, depths: dict[str, int], release: dict[str, np.ndarray],
                     latency_limit: int) -> dict[str, FiringTimes] | None:
    """The simulated schedule with ``depths`` if it ends by ``latency_limit`` without deadlock, else None."""
    result = simulate(net, depths, release)
    return result.firing_times if _in_time(result, latency_limit) else None


def _squeeze(net: ProcessNetwork, sizing: FifoSizing, release: dict[str, np.ndarray], budget: _SimBudget,
             latency_limit: int) -> dict[str, FiringTimes] | None:
    """Step 3 of the demand schedule: the forward schedule of the group-tested lowered depths, or None when no
    FIFO could be lowered within the budget."""
    width = {s.name: s.width_bits for s in net.streams}
    depths = dict(sizing.depths)
    pending = [sorted((s for s, d in depths.items() if d > 1), key=lambda s: -width[s])]
    found: dict[str, FiringTimes] | None = None
    while pending and pending[0] and budget.spend(net):
        group = pending.pop(0)
        trial = {**depths, **{s: depths[s] - 1 for s in group}}
        times = _schedule_within(net, trial, release, latency_limit)
        if times is not None:
            depths, found = trial, times
        elif len(group) > 1:
            pending += [group[: len(group) // 2], group[len(group) // 2 :]]
    return found


def trim_fifos(net: ProcessNetwork, sizing: FifoSizing, release: dict[str, np.ndarray], latency_limit: int,
          time_limit_s: float) -> FifoSizing:
    """Step 4 of the demand schedule (module docstring): the FIFOs holding at least ``_TRIM_SHARE`` of the bits
    are lowered to ``_TRIM_DEPTH`` together; a deadlock names the lowered FIFOs it waits on full, which go back
    and are tried again later, and a run that ends too late splits the group in halves. The FIFOs put back are
    then bisected one by one, widest first, between ``_TRIM_DEPTH`` and their depth. The last schedule that
    keeps the latency limit is solved again (a legal profile with those occupancies: the LP can only do
    better)."""
    budget = _SimBudget(max(_TRIM_FIRINGS, _TRIM_SIMULATIONS * net.total_firings))
    width = {s.name: s.width_bits for s in net.streams}
    depths = dict(sizing.depths)
    found: dict[str, FiringTimes] | None = None

    def attempt(trial: dict[str, int]) -> SimResult | None:
        """The simulation of ``trial`` (None when the budget is spent); ``depths`` and ``found`` take it when it
        ends in time."""
        nonlocal depths, found
        if not budget.spend(net):
            return None
        result = simulate(net, trial, release)
        if _in_time(result, latency_limit):
            depths, found = trial, result.firing_times
        return result

    wide = [n for n in sorted(depths, key=lambda n: -width[n] * depths[n])
            if depths[n] > _TRIM_DEPTH and width[n] * depths[n] >= _TRIM_SHARE * sizing.total_bits]
    pending, put_back = [wide], []
    while pending:
        group = pending.pop(0)
        result = attempt({**depths, **{n: _TRIM_DEPTH for n in group}})
        if result is None:
            break
        if _in_time(result, latency_limit):
            continue
        full = {w.stream for w in result.deadlock_cycle if w.kind == "full"} & set(group)
        if full:  # those FIFOs must stay deeper; the rest may not
            put_back += [n for n in group if n in full]
            rest = [n for n in group if n not in full]
            pending[:0] = [rest] if rest else []
        elif len(group) > 1:
            pending[:0] = [group[: len(group) // 2], group[len(group) // 2 :]]
        else:
            put_back += group
    for name in sorted(put_back, key=lambda n: -width[n] * depths[n]):
        # Bisect between the failing _TRIM_DEPTH and the passing depth.
        low, high = _TRIM_DEPTH, depths[name]
        while high - low > max(1, high // _TRIM_PRECISION):
            middle = (low + high + 1) // 2
            result = attempt({**depths, name: middle})
            if result is None:
                break
            if _in_time(result, latency_limit):
                high = middle
            else:
                low = middle
    if found is None:
        return sizing
    trimmed = _size_profiles(net, found, sizing.strategy, time_limit_s, latency_limit)
    ok = trimmed.total_bits < sizing.total_bits and trimmed.predicted_latency <= latency_limit
    return trimmed if ok else sizing


def _size(net: ProcessNetwork, strategy: Strategy, time_limit_s: float, schedule: Schedule,
          latency_slack: float) -> FifoSizing:
    """One strategy: solve on its profiles, then (schedule ``demand``) refine and squeeze them."""
    profiles = _profiles(net, strategy, schedule)
    if schedule == "free":
        return _size_profiles(net, profiles, strategy, time_limit_s)
    # The latency of the starting schedule (normal: the unbounded-FIFO makespan), raised by the slack the
    # caller grants, caps every solve.
    cap = math.floor(max(int(ft.complete[-1]) for ft in profiles.values()) * (1 + latency_slack))
    best = _size_profiles(net, profiles, strategy, time_limit_s, cap)
    if strategy == "normal":  # profiles: the latest schedule
        trial = _size_profiles(net, _sources_released_at(net, profiles), strategy, time_limit_s, cap)
        if trial.total_bits < best.total_bits and trial.predicted_latency <= best.predicted_latency:
            best = trial
    release = _releases(net, strategy)
    refining, squeezing = _SimBudget(_REFINE_FIRINGS), _SimBudget(_SQUEEZE_FIRINGS)
    limit = max(best.predicted_latency, cap)
    while True:
        best = _refine(net, best, strategy, time_limit_s, release, refining, limit)
        squeezed = _squeeze(net, best, release, squeezing, limit)
        if squeezed is None:
            break
        trial = _size_profiles(net, squeezed, strategy, time_limit_s, limit)
        if trial.total_bits >= best.total_bits or trial.predicted_latency > limit:
            break
        best = trial
    return trim_fifos(net, best, release, limit, time_limit_s)


def size_fifos_lp(net: ProcessNetwork, strategy: Strategy = "normal", time_limit_s: float = 10.0,
                  schedule: Schedule = "free", latency_slack: float = 0.0) -> FifoSizing:
    """Size every FIFO of an acyclic ``net`` by the LP of the module docstring.

    The result is the sizing of the strategy asked for (exact depths of two heuristic LP optima are not
    ordered by construction: on some networks Conservative needs more bits than Normal). ``time_limit_s``
    applies to each HiGHS solve.
    ``schedule`` picks the profiles: ``free`` (running as early as their inputs allow) or ``demand`` (paced by
    their consumers, then refined by back-pressure; see the module docstring). ``latency_slack`` (schedule
    ``demand`` only) lets every solve end up to that fraction after the starting schedule's latency: FIFO bits
    bought with makespan (0: none, the unbounded-FIFO makespan is kept).
    """
    if strategy not in ("normal", "conservative"):
        raise ValueError(f"unknown FIFO sizing strategy {strategy!r} (normal | conservative)")
    if schedule not in ("free", "demand"):
        raise ValueError(f"unknown FIFO sizing schedule {schedule!r} (free | demand)")
    if not 0.0 <= latency_slack <= 1.0:
        raise ValueError(f"latency slack {latency_slack!r} is not a fraction in [0, 1]")
    if latency_slack and schedule != "demand":
        raise ValueError("a latency slack needs schedule 'demand' (the free schedule keeps its minimal latency)")
    net.topological_order()  # ValueError on a feedback cycle: start-time constraints need a DAG
    return _size(net, strategy, time_limit_s, schedule, latency_slack)
