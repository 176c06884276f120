"""Firing-time profiles the FIFO-sizing LP (``fifo_lp``) shifts, one per strategy, and the schedules derived
from them: as late as possible (a mirrored network), forwarders eager.

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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

from .fifo_lp import Strategy
from .process_network import Process, ProcessNetwork, Stream
from .sim_kernel import reflect
from .timing_sim import FiringTimes, process_trace, raw_latency, simulate

Schedule = Literal["free", "demand"]


def release_times(net: ProcessNetwork, strategy: Strategy) -> dict[str, np.ndarray]:
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


def start_profiles(net: ProcessNetwork, strategy: Strategy, schedule: Schedule,
                   depth_caps: Mapping[str, int] | None = None) -> dict[str, FiringTimes]:
    """Firing times of every process in one unbounded-FIFO simulation (see module docstring), or the latest
    schedule for ``normal`` under the ``demand`` schedule; the FIFOs of ``depth_caps`` hold at most their cap
    (a DMA's prefetch, ``analysis.contention``)."""
    if strategy == "normal" and schedule == "demand":
        return latest_firing_times(net, depth_caps)
    return _capped_schedule(net, depth_caps, release_times(net, strategy))


def source_release(net: ProcessNetwork, late: dict[str, FiringTimes]) -> dict[str, np.ndarray]:
    """Every source's (no input) issue times in ``late``, copied: a caller that drops ``late`` then holds no
    simulation's arrays (``timing_sim``: a later simulation takes those)."""
    return {p.name: late[p.name].issue.copy() for p in net.processes if not p.reads}


def sources_released_at(net: ProcessNetwork, release: dict[str, np.ndarray],
                        depth_caps: Mapping[str, int] | None = None) -> dict[str, FiringTimes]:
    """Unbounded-FIFO schedule (but for the FIFOs of ``depth_caps``) with every source released at its times in
    ``release`` (``source_release``)."""
    return _capped_schedule(net, depth_caps, release)


def _capped_schedule(net: ProcessNetwork, depth_caps: Mapping[str, int] | None,
                     release: dict[str, np.ndarray]) -> dict[str, FiringTimes]:
    """Firing times of one simulation with every FIFO unbounded but those of ``depth_caps``."""
    result = simulate(net, depth_caps or {}, release)
    if result.deadlock:  # acyclic (checked by the caller): only a cap can deadlock it
        raise ValueError(f"the FIFO depth caps deadlock the network: {result.describe()}")
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
    return ProcessNetwork(processes, streams, net.srl_max_bits)


_MIRRORED = "mirrored"  # ProcessNetwork.derived key of the mirrored network (and its simulator tables)


def forget_mirrored(net: ProcessNetwork) -> None:
    """Drop the mirrored network ``latest_firing_times`` keeps with ``net``: as large as ``net``'s own simulator
    tables (2.2 GB at a 31 M-firing GPT-2 prefill point), and no use once the backward schedules are done."""
    net.forget(_MIRRORED)


def latest_firing_times(net: ProcessNetwork, depths: Mapping[str, int] | None = None) -> dict[str, FiringTimes]:
    """As-late-as-possible schedule of an acyclic ``net`` with FIFO ``depths`` (default: unbounded), ending at
    its critical-path length C (the makespan of the earliest schedule with the same depths): the earliest
    schedule of :func:`mirrored` read backwards from C. A bounded FIFO mirrors onto itself (the write of token
    k waits for the read of token k - D either way), so every event is then as late as it can be without
    delaying the last event past C."""
    result = simulate(net.derived(_MIRRORED, lambda: mirrored(net)), depths or {})
    if result.makespan_cycles is None:
        raise ValueError(f"no latest schedule: {result.describe()}")
    end = result.makespan_cycles
    # In place: the mirror's run is of no other use (issue 21: new arrays for a paper-size block's 18 M firings
    # were a third of a second).
    out = {}
    for p in net.processes:
        ft = result.firing_times[p.name]
        reflect(end, ft.issue)
        reflect(end, ft.complete)
        out[p.name] = FiringTimes(issue=ft.complete, complete=ft.issue)
    return out


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
            readable = out[src.name].complete[src.writes[s.name]] + raw_latency(s.width_bits, 1, net.srl_max_bits)
            np.maximum.at(ready, p.reads[s.name], readable)
        trace = process_trace(p)
        dep = np.where(trace.is_write, ready.min(), ready[trace.firing])
        t = trace.static + np.maximum.accumulate(dep - trace.static)  # t_j = max(t_{j-1} + s_j - s_{j-1}, dep_j)
        out[name] = FiringTimes(issue=t[trace.read_pos], complete=t[trace.write_pos])
    return out
