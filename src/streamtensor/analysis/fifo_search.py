"""FIFO sizing: the LP of ``fifo_lp`` on the profiles of ``fifo_schedules``, refined by simulation.

Schedule ``free`` (default) takes the profiles of ``fifo_schedules`` as they are. Free-running profiles are rigid:
the LP can only shift them, so a producer that runs ahead of a slower consumer keeps its FIFO full of tokens even
where stalling it would cost no cycle (a weight DMA in front of a matmul, a converter draining a buffer into a
reduction); the simulated minimum stalls such producers and can be several times smaller. Schedule ``demand``
builds profiles in which they stall:

1. ``normal`` starts from the as-late-as-possible schedule at the unbounded makespan
   (:func:`latest_firing_times`): every process paced by its consumers' demand, sources fetching just in
   time; or, where its LP needs fewer bits, from the unbounded-FIFO schedule whose sources are released at
   those just-in-time times and whose other processes run as early as their inputs allow (a kernel then
   works on what its sources delivered instead of waiting for its slowest consumer's demand: the GPT-2
   decode block buffers a few score rows instead of a third of the key cache). ``conservative`` starts from
   its own profile.
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
   tokens of 8192 bits where 1 keeps the makespan; a weight DMA slower than its matmul's ii, whose profile
   has the matmul drain a prefetch at its own pace, where following the DMA's pace costs no cycle). The FIFOs
   holding at least ``_TRIM_SHARE`` of the bits are lowered to ``_TRIM_DEPTH`` (1, the floor: the simulation
   judges what the stream needs) together and simulated. A deadlock names the FIFOs it waits on full: those
   of the group go back (they must stay deeper) and the rest is tried again; a run that ends too late splits
   the group in halves. What went back is then probed one FIFO at a time just below its depth (``1 /
   _TRIM_PRECISION`` lower: one that fails there is as small as the precision asks, for one simulation) and the
   others bisected to within ``1 / _TRIM_PRECISION`` of the depth found, widest first, those a deadlock named
   before those that only made the run late (a buffer the LP sized on a rigid profile, such as the updated values
   waiting for their scores in the Llama decode block, 50 tokens of 8192 bits where 20 keep the makespan, against a
   critical weight prefetch whose LP depth tends to be close); the last passing schedule is solved again. The budget is
   ``_TRIM_FIRINGS`` simulated firings but at least ``_TRIM_SIMULATIONS`` simulations (a trial resumes the last
   run in time at the first event its lowered depths can move: at GPT-2 prefill's searched point the compile's
   12 simulations compute 54% of their events instead of 100%; the budget still counts whole ones): a paper-size Gemma
   prefill block in 2-row token tiles simulates 33 M firings at once (15 to 50 s), and one FIFO at a time its
   first 12 simulations lowered three FIFOs; together, with the culprits of each deadlock named, 16 lower 10
   of the 13 above 2% and hold 23% fewer bits (2.68 M against 3.46 M).

Depth caps (``depth_caps``, the read DMAs' prefetch of a one-token block): every schedule above is simulated
with the capped FIFOs at most at their caps (the starting schedules: at their caps, the rest unbounded), and
every LP keeps them within (``fifo_lp``): the latency every solve must keep is then that of the capped design,
not the unbounded one it cannot reach.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from .fifo_lp import DepthCurves, FifoSizing, Strategy, solve_profiles
from .fifo_schedules import (
    Schedule,
    forget_mirrored,
    forwarders_eager,
    latest_firing_times,
    release_times,
    source_release,
    sources_released_at,
    start_profiles,
)
from .process_network import ProcessNetwork
from .timing_sim import FiringTimes, SimResult, raw_latency, simulate

# Schedule "demand": at most this many refinement rounds (one or two usually suffice), and the firings the
# refinements / the squeezes of one strategy may simulate in all (deterministic budgets that scale with the
# network: a tiny block affords hundreds of simulations, a paper-size prefill block the two of one round).
_REFINE_ROUNDS = 4
_REFINE_MIN_GAIN = 0.01  # a round that saves less than this fraction of the bits is the last one
_REFINE_FIRINGS = 8_000_000
_SQUEEZE_FIRINGS = 1_000_000
_TRIM_SHARE = 0.02  # step 4 tries the FIFOs holding at least this share of the bits
_TRIM_DEPTH = 1  # ... at this depth
_TRIM_FIRINGS = 8_000_000
_TRIM_SIMULATIONS = 16  # ... but at least this many simulations, whatever the block's size
_TRIM_PRECISION = 8  # the bisection of one FIFO's depth stops within 1/8 of the depth found


@dataclass
class _SimBudget:
    firings: int  # firings left to simulate

    def spend(self, net: ProcessNetwork) -> bool:
        """Take one simulation of ``net`` from the budget; False when it does not fit any more."""
        if self.firings < net.total_firings:
            return False
        self.firings -= net.total_firings
        return True


def _refine(net: ProcessNetwork, best: FifoSizing, strategy: Strategy, time_limit_s: float,
            release: dict[str, np.ndarray], budget: _SimBudget, latency_limit: int,
            depth_caps: Mapping[str, int]) -> FifoSizing:
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
        curves = DepthCurves()  # the schedules share most processes' times
        trials = [solve_profiles(net, p, strategy, time_limit_s, latency_limit, depth_caps, curves)
                  for p in schedules]
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
               time_limit_s: float, depth_caps: Mapping[str, int] | None = None) -> FifoSizing:
    """Step 4 of the demand schedule (module docstring): the FIFOs holding at least ``_TRIM_SHARE`` of the bits
    are lowered to ``_TRIM_DEPTH`` together; a deadlock names the lowered FIFOs it waits on full, which go back
    and are tried again later, and a run that ends too late splits the group in halves. The FIFOs put back are
    then bisected one by one between ``_TRIM_DEPTH`` and their depth: those a deadlock named first, each kind
    widest first. The last schedule that
    keeps the latency limit is solved again (a legal profile with those occupancies: the LP can only do
    better). ``depth_caps``: those of the sizing (trials only lower its depths)."""
    budget = _SimBudget(max(_TRIM_FIRINGS, _TRIM_SIMULATIONS * net.total_firings))
    width = {s.name: s.width_bits for s in net.streams}
    depths = dict(sizing.depths)
    found: SimResult | None = None  # the last run that ended in time, with ``depths``
    last: SimResult | None = None  # the last run

    def attempt(trial: dict[str, int]) -> SimResult | None:
        """The simulation of ``trial`` (None when the budget is spent); ``depths`` and ``found`` take it when it
        ends in time. Where the last run in time never held more tokens in a lowered FIFO than ``trial`` leaves
        it, at the same read latency, no write of that run waits for it: ``trial`` runs the same schedule, and
        nothing is simulated (a bisection's upper half, a FIFO the LP sized above what the schedule holds). Such a
        trial still takes its simulation from the budget: the trim decides as if it had run it. A simulation
        resumes from the last run in time or the last run, whichever it can take more events of (the run after a
        deadlock puts back the FIFOs it named: the deadlocked run's events up to the first time one of them held
        more than the depth it had there)."""
        nonlocal depths, found, last
        if not budget.spend(net):
            return None
        if found is not None and all(
                found.peak_occupancy[n] <= d and raw_latency(width[n], d, net.srl_max_bits)
                == raw_latency(width[n], depths[n], net.srl_max_bits) for n, d in trial.items() if d != depths[n]):
            depths = trial
            return found
        # The last run is dropped after this one unless it is the last run in time: this one may go on in its arrays.
        dropped = None if last is found else last
        result = simulate(net, trial, release, resume_from=[r for r in (found, dropped) if r is not None],
                          dropping=dropped)
        last = result
        if _in_time(result, latency_limit):
            depths, found = trial, result
        return result

    wide = [n for n in sorted(depths, key=lambda n: -width[n] * depths[n])
            if depths[n] > _TRIM_DEPTH and width[n] * depths[n] >= _TRIM_SHARE * sizing.total_bits]
    pending, held, late = [wide], [], []
    while pending:
        group = pending.pop(0)
        result = attempt({**depths, **{n: _TRIM_DEPTH for n in group}})
        if result is None:
            break
        if _in_time(result, latency_limit):
            continue
        full = {w.stream for w in result.deadlock_cycle if w.kind == "full"} & set(group)
        if full:  # those FIFOs must stay deeper; the rest may not
            held += [n for n in group if n in full]
            rest = [n for n in group if n not in full]
            pending[:0] = [rest] if rest else []
        elif len(group) > 1:
            pending[:0] = [group[: len(group) // 2], group[len(group) // 2 :]]
        else:
            late += group
    # A FIFO a deadlock waited on holds tokens its reader takes only later (values waiting for their scores): its
    # depth is a buffer the LP sized on a rigid profile, often well above what the schedule needs. One whose
    # lowering only made the run late paces a critical stream (a weight prefetch), where the LP's depth tends to
    # be close: bisect the held ones first.
    def widest(names: list[str]) -> list[str]:
        return sorted(names, key=lambda n: -width[n] * depths[n])

    for name in widest(held) + widest(late):
        # Bisect between the failing _TRIM_DEPTH and the passing depth, after one probe just below the passing
        # depth: a FIFO the LP sized within the precision already fails it and costs one simulation, not the
        # bisection's three or more (a paper-size GPT-2 prefill block's budget went to three such FIFOs before
        # the two 8192-bit ones that the LP had sized at twice their need).
        low, high = _TRIM_DEPTH, depths[name]
        probe = high - max(1, high // _TRIM_PRECISION)
        while high - low > max(1, high // _TRIM_PRECISION):
            middle = probe if probe > low else (low + high + 1) // 2
            probe = low
            result = attempt({**depths, name: middle})
            if result is None:
                break
            if _in_time(result, latency_limit):
                high = middle
            else:
                low = middle
    if found is None:
        return sizing
    trimmed = solve_profiles(net, found.firing_times, sizing.strategy, time_limit_s, latency_limit, depth_caps)
    ok = trimmed.total_bits < sizing.total_bits and trimmed.predicted_latency <= latency_limit
    return trimmed if ok else sizing


def _size(net: ProcessNetwork, strategy: Strategy, time_limit_s: float, schedule: Schedule,
          latency_slack: float, depth_caps: Mapping[str, int], trim: bool) -> FifoSizing:
    """One strategy: solve on its profiles, then (schedule ``demand``) refine, squeeze and (``trim``) trim. The
    steps are functions of their own: a schedule no sizing refers to any more is dropped with its step (its times
    are a simulation's arrays, which a later simulation then takes: ``timing_sim``)."""
    if schedule == "free":
        return solve_profiles(net, start_profiles(net, strategy, schedule, depth_caps), strategy, time_limit_s,
                              depth_caps=depth_caps)
    best, cap = _start(net, strategy, time_limit_s, latency_slack, depth_caps)
    limit = max(best.predicted_latency, cap)
    best = _refine_and_squeeze(net, best, strategy, time_limit_s, limit, depth_caps)
    # Trim simulates forward only, and nothing after sizing runs backward: the mirrored network's tables need
    # not stay through the trim, the allocation's simulations and the report (issue 21: memory of the finest
    # tilings, linear in their firings).
    forget_mirrored(net)
    best = replace(best, latency_limit=limit)
    return trim_sizing(net, best, time_limit_s, depth_caps) if trim else best


def _start(net: ProcessNetwork, strategy: Strategy, time_limit_s: float, latency_slack: float,
           depth_caps: Mapping[str, int]) -> tuple[FifoSizing, int]:
    """Step 1 of the demand schedule: the sizing on the starting profiles (``normal``: the better of the latest
    schedule's and the one with sources released at its times), and the latency every later solve keeps."""
    profiles = start_profiles(net, strategy, "demand", depth_caps)
    # The latency of the starting schedule (normal: the unbounded-FIFO makespan, the capped FIFOs at their caps),
    # raised by the slack the caller grants, caps every solve.
    cap = math.floor(max(int(ft.complete[-1]) for ft in profiles.values()) * (1 + latency_slack))
    best = solve_profiles(net, profiles, strategy, time_limit_s, cap, depth_caps)
    if strategy == "normal":  # profiles: the latest schedule
        release = source_release(net, profiles)
        del profiles  # its simulation's arrays serve the next one
        trial = solve_profiles(net, sources_released_at(net, release, depth_caps), strategy, time_limit_s, cap,
                               depth_caps)
        if trial.total_bits < best.total_bits and trial.predicted_latency <= best.predicted_latency:
            best = trial
    return best, cap


def _refine_and_squeeze(net: ProcessNetwork, best: FifoSizing, strategy: Strategy, time_limit_s: float,
                        limit: int, depth_caps: Mapping[str, int]) -> FifoSizing:
    """Steps 2 and 3 of the demand schedule, in turn while a squeeze lowers the bits."""
    release = release_times(net, strategy)
    refining, squeezing = _SimBudget(_REFINE_FIRINGS), _SimBudget(_SQUEEZE_FIRINGS)
    while True:
        best = _refine(net, best, strategy, time_limit_s, release, refining, limit, depth_caps)
        squeezed = _squeeze(net, best, release, squeezing, limit)
        if squeezed is None:
            return best
        trial = solve_profiles(net, squeezed, strategy, time_limit_s, limit, depth_caps)
        if trial.total_bits >= best.total_bits or trial.predicted_latency > limit:
            return best
        best = trial


def trim_sizing(net: ProcessNetwork, sizing: FifoSizing, time_limit_s: float,
                depth_caps: Mapping[str, int] | None = None) -> FifoSizing:
    """Step 4 (``trim_fifos``) of a sizing the search returned untrimmed (``size_fifos_lp(trim=False)``), within
    the latency it kept: a one-token block trims once its HBM shares have settled (``analysis.allocation``)."""
    trimmed = trim_fifos(net, sizing, release_times(net, sizing.strategy), sizing.latency_limit, time_limit_s,
                         depth_caps)
    return replace(trimmed, latency_limit=sizing.latency_limit)


def size_fifos_lp(net: ProcessNetwork, strategy: Strategy = "normal", time_limit_s: float = 10.0,
                  schedule: Schedule = "free", latency_slack: float = 0.0,
                  depth_caps: Mapping[str, int] | None = None, trim: bool = True) -> FifoSizing:
    """Size every FIFO of an acyclic ``net`` by the LP of ``fifo_lp``.

    The result is the sizing of the strategy asked for (exact depths of two heuristic LP optima are not
    ordered by construction: on some networks Conservative needs more bits than Normal). ``time_limit_s``
    applies to each HiGHS solve.
    ``schedule`` picks the profiles: ``free`` (running as early as their inputs allow) or ``demand`` (paced by
    their consumers, then refined by back-pressure; see the module docstring). ``latency_slack`` (schedule
    ``demand`` only) lets every solve end up to that fraction after the starting schedule's latency: FIFO bits
    bought with makespan (0: none, the unbounded-FIFO makespan is kept). ``depth_caps``: per stream, a depth
    its FIFO never exceeds (a one-token block's read DMAs prefetch at most one HBM latency,
    ``analysis.contention``): every schedule is simulated with those FIFOs at their caps and the LP keeps each
    within its cap, so it sizes the other FIFOs for the schedule the capped design runs, and its latency is
    that design's. ``trim`` (schedule ``demand``): end with step 4; without it, ``trim_sizing`` does it later.
    """
    if strategy not in ("normal", "conservative"):
        raise ValueError(f"unknown FIFO sizing strategy {strategy!r} (normal | conservative)")
    if schedule not in ("free", "demand"):
        raise ValueError(f"unknown FIFO sizing schedule {schedule!r} (free | demand)")
    if not 0.0 <= latency_slack <= 1.0:
        raise ValueError(f"latency slack {latency_slack!r} is not a fraction in [0, 1]")
    if latency_slack and schedule != "demand":
        raise ValueError("a latency slack needs schedule 'demand' (the free schedule keeps its minimal latency)")
    caps = dict(depth_caps or {})
    bad = [f"{s}: {d}" for s, d in caps.items() if d < 1 or s not in {t.name for t in net.streams}]
    if bad:
        raise ValueError(f"bad FIFO depth caps (a stream of the network, at least 1): {', '.join(bad)}")
    net.topological_order()  # ValueError on a feedback cycle: start-time constraints need a DAG
    return _size(net, strategy, time_limit_s, schedule, latency_slack, caps, trim)
