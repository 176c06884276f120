"""Token-level timing simulation of a process network with bounded FIFOs (target-and-verification §5).

Timing model (max-plus; integer cycles; the run starts at cycle 0). Each process is the §5 *trace* of its
pipelined loop: firing ``f`` has a read event at static time ``f*ii`` and a write event at ``f*ii + depth``,
merged in static-time order (ties: older firing first, a firing's read before its write). Along the trace

    t(e_j) = max(t(e_{j-1}) + s_j - s_{j-1}, dep(e_j))        (s: static times, t(e_{-1}) = s_{-1} = 0)

* read event of firing f: every token k it reads on stream s needs ``t_write(s, k) + raw(s)``;
* write event of firing f: every token k it writes on s needs, when ``k >= D_s`` (the FIFO depth),
  ``t_read(s, k - D_s) + 1`` (a slot freed by a read is writable the next cycle);
* ``raw(s)``, the FIFO read-after-write latency: 1 cycle for a shift-register FIFO (``width_bits * D_s <=
  srl_max_bits``, 1024 on the U55C), 2 for a RAM FIFO (wider, or unbounded);
* optional release times: the read event of firing f also waits for ``release[P][f]`` (a delayed start, or
  the slowed issue of the LP's conservative profiles).

So a firing *issues* (reads) at ``t_f >= t_{f-1} + ii`` and writes ``depth`` cycles later unless the pipeline
stalled in between; a stall delays every later event of the process (the whole pipeline freezes), never an
earlier one. Why not the per-firing shortcut ``t_f = max(t_{f-1} + ii, ready_f, space_f - depth)``: its
``- depth`` lets a firing's issue wait on a read that happens inside its own pipeline latency, which creates
cycles of weight <= 0 (e.g. ``1 + raw - depth`` around a fork/join); they have a finite schedule yet no causal
evaluation order, so exact event-driven deadlock detection is impossible with it, and hardware does not delay
the read of a firing whose write stalls. In the trace model every dependency cycle crosses a FIFO edge of
weight >= 1 and trace gaps are >= 0, so a cycle of unresolved dependencies is exactly a deadlock.

Depth convention that follows: a token occupies its FIFO from its write cycle through its read cycle, both
inclusive; a depth-``D`` FIFO never holds more than ``D`` tokens, and a FIFO whose depth is at least the peak
occupancy of a schedule never back-pressures that schedule.

Evaluation is event driven and exact: a process advances over the longest run of trace events whose
dependencies (token write times upstream, token read times downstream) are known: in the compiled engine
(:mod:`.sim_kernel`, the default) one event at a time, a stopped process woken when the token it waits for is
known; in the Python engine as one vectorized batch (``t_j = s_j + cummax(dep_j - s_j)`` solves the recurrence)
or, for short runs, a scalar loop. Each event is computed once: O(firings + tokens). When no process can
advance and some are unfinished, the blocked processes form a wait-for cycle: a deadlock, reported like a
co-simulation would. Every dependency of an event is at an earlier cycle but along its own trace, so a run under
other depths repeats a finished run's events up to the first one the change can move (a write a lowered FIFO
holds back, a read whose latency class changed): ``Simulator.run(resume_from=...)`` starts there.

Raising a FIFO's depth only removes or relaxes constraints, so the makespan is monotone non-increasing in each
depth *within a latency class*; crossing the SRL limit switches the FIFO from 1 to 2 cycles of read latency, which
can cost cycles. Whether a configuration deadlocks does not depend on latencies and is monotone in every depth.
"""

from __future__ import annotations

import sys
from bisect import bisect_left
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np

from . import sim_kernel
from .process_network import Process, ProcessNetwork

_NEG = sim_kernel.NEG  # "no constraint" / padding time
_POS = sim_kernel.POS  # time of an event not computed (yet)
_NO_SHIFT = np.zeros(1, dtype=np.int64)  # peak_occupancies at the times as they are
_SCALAR_BATCH = 12  # runs of at most this many events are cheaper as a Python loop than as numpy calls
# The token -> firing tables of the compiled engine: half the bytes of int64 (hundreds of MB at a paper-size
# prefill block's finest tilings, issue 21); a process of 2**31 firings would not fit in memory anyway.
_FIRING_INDEX = np.int32
# A compiled run's times are int32 (half the bytes again) where no time of the run can reach this bound
# (``_Compiled.time_bound``): sums of two times and a time plus a shift stay within int32.
_INT32_TIMES = 2**30
_KEPT_RUNS = 4  # sets of a compiled run's time arrays kept for later runs (the trim holds two, its input one)
# The sets kept (``_run_buffers``): token write and read times, firing issue and completion times.
_KEPT: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []


def _run_buffers(tokens: int, firings: int, dtype: type[np.integer]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four time arrays (of ``dtype``) of a compiled run of a network of ``tokens`` padded token slots and
    ``firings`` firings (contents undefined), those of a run nothing refers to any more where one of that size
    and type is kept: a fresh array of hundreds of MB (a paper-size prefill block) costs as much to fault in as
    half a simulation (issue 21). Whether an array is free is told by its reference count (a view of it counts: a
    result's firing times, a profile). Kept by size, not by network: the mirrored network a latest schedule runs
    on, and the networks a decode block is rebuilt with at other DMA shares, have the sizes of the network. A new
    set takes the place of a free one of another size when ``_KEPT_RUNS`` are kept."""
    sizes = (tokens, tokens, firings, firings)
    for bufs in _KEPT:
        # References: the list's tuple, the loop's name, the argument of getrefcount.
        if (tuple(a.shape[0] for a in bufs) == sizes and bufs[0].dtype == dtype
                and all(sys.getrefcount(a) == 3 for a in bufs)):
            return bufs
    fresh = (np.empty(tokens, dtype=dtype), np.empty(tokens, dtype=dtype), np.empty(firings, dtype=dtype),
             np.empty(firings, dtype=dtype))
    if len(_KEPT) >= _KEPT_RUNS:
        free = [i for i, bufs in enumerate(_KEPT) if all(sys.getrefcount(a) == 3 for a in bufs)]
        if not free:
            return fresh
        del _KEPT[free[0]]
    _KEPT.append(fresh)
    return fresh


def raw_latency(width_bits: int, depth: int | None, srl_max_bits: int) -> int:
    """Read-after-write latency of a FIFO: 1 cycle for an SRL FIFO of at most ``srl_max_bits``, 2 for RAM (or
    unbounded)."""
    return 1 if depth is not None and width_bits * depth <= srl_max_bits else 2


def peak_occupancy(write_times: np.ndarray, read_times: np.ndarray) -> int:
    """Peak FIFO occupancy of one stream, i.e. the smallest depth that never back-pressures these times.

    Token k occupies the FIFO from ``write_times[k]`` through ``read_times[k]`` inclusive (a slot freed by a
    read is writable the next cycle), so when token k is written the FIFO holds
    ``k + 1 - #{j : read_times[j] < write_times[k]}`` tokens. Both arrays are sorted; ``read_times`` may be
    longer than ``write_times`` is known, with unread tokens at a huge time.
    """
    if len(write_times) == 0:
        return 0
    held = np.arange(1, len(write_times) + 1) - np.searchsorted(read_times, write_times, side="left")
    return int(np.max(held))


@dataclass(frozen=True)
class ProcessTrace:
    """The static event trace of one process (see module docstring): 2 * num_firings events."""

    static: np.ndarray  # static time of each trace position
    firing: np.ndarray  # firing of each trace position
    is_write: np.ndarray  # bool: write event (else read event)
    read_pos: np.ndarray  # trace position of firing f's read event
    write_pos: np.ndarray  # trace position of firing f's write event


def _merged_traces(processes: Sequence[Process]) -> list[ProcessTrace]:
    """The traces of ``processes``, as views into flat arrays (one merge, :mod:`.sim_kernel`)."""
    ev_off = np.zeros(len(processes) + 1, dtype=np.int64)
    ev_off[1:] = np.cumsum([2 * p.num_firings for p in processes])
    n = int(ev_off[-1])
    static, firing = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    is_write = np.empty(n, dtype=bool)
    read_pos, write_pos = np.empty(n // 2, dtype=np.int64), np.empty(n // 2, dtype=np.int64)
    sim_kernel.merge_traces(np.array([p.ii for p in processes], dtype=np.int64),
                            np.array([p.depth for p in processes], dtype=np.int64), ev_off, static, firing, is_write,
                            read_pos, write_pos)
    traces = []
    for a, b in zip(ev_off[:-1].tolist(), ev_off[1:].tolist(), strict=True):
        traces.append(ProcessTrace(static[a:b], firing[a:b], is_write[a:b], read_pos[a // 2 : b // 2],
                                   write_pos[a // 2 : b // 2]))
    return traces


def process_trace(p: Process) -> ProcessTrace:
    """Merge the read events (``f*ii``) and write events (``f*ii + depth``) of ``p`` in static-time order
    (ties: older firing first, then read before write)."""
    return _merged_traces([p])[0]


@dataclass(frozen=True)
class WaitFor:
    """One link of a deadlock's wait-for cycle: ``process`` is blocked on ``stream``."""

    process: str
    stream: str
    kind: Literal["full", "empty"]  # full: blocked writing; empty: blocked reading
    firing: int  # the firing whose read (empty) or write (full) event cannot happen
    token: int  # the token it cannot read (empty) or write (full)

    def describe(self) -> str:
        verb = "writing" if self.kind == "full" else "reading"
        return f"{self.process} blocked {verb} {self.stream} ({self.kind})"


@dataclass(frozen=True)
class StallCycles:
    """Cycles a process's trace slipped behind its static schedule, by cause: a read event waiting for a token
    (input empty; release waits included) or a write event waiting for a free slot (output full)."""

    input_empty: int
    output_full: int

    @property
    def total(self) -> int:
        return self.input_empty + self.output_full


@dataclass(frozen=True)
class TokenTimes:
    """First/last write and read cycles of a stream's tokens (None: that event never happened)."""

    first_write: int | None
    last_write: int | None
    first_read: int | None
    last_read: int | None


@dataclass(frozen=True)
class FiringTimes:
    """Per firing of one process: cycle of its read event (issue) and of its write event (completion);
    -1 where the event was never reached (deadlock)."""

    issue: np.ndarray
    complete: np.ndarray


@dataclass
class SimResult:
    """Outcome of one simulation. ``makespan_cycles`` is the cycle of the last write event (the completion of
    the last firing of the slowest process), or None when the run deadlocked."""

    makespan_cycles: int | None
    deadlock: bool
    deadlock_cycle: list[WaitFor]
    stall_cycles: dict[str, StallCycles]  # release waits count as input_empty
    token_times: dict[str, TokenTimes]
    firings_done: dict[str, int]
    firing_times: dict[str, FiringTimes]
    # Per stream, the write and read times of its tokens that were written / read: ``peak_occupancy`` on first
    # use (a merge of every stream's tokens, a seventh of a paper-size block's simulation; the sizing search
    # reads none of the thousands of results it takes, issue 21).
    stream_times: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False, compare=False)
    # The compiled run that computed the result (finished or deadlocked): ``Simulator.run(resume_from=...)`` starts
    # from it.
    run_state: _CompiledRun | None = field(default=None, repr=False, compare=False)

    @cached_property
    def peak_occupancy(self) -> dict[str, int]:
        """Per stream, the most tokens its FIFO held (unread tokens: read after every write, never counted)."""
        return {name: int(sim_kernel.peak_occupancies(wt, rt, _NO_SHIFT)[0])
                for name, (wt, rt) in self.stream_times.items()}

    def describe(self) -> str:
        if self.deadlock:
            links = " -> ".join(w.describe() for w in self.deadlock_cycle)
            return f"DEADLOCK: {links} -> {self.deadlock_cycle[0].process}"
        return f"completed in {self.makespan_cycles} cycles"


class _PyTables:
    """The Python engine's tables, built on its first use only: the merged traces, every token's trace position,
    and list twins of those arrays (scalar indexing of lists is cheaper than of numpy arrays). The compiled
    engine walks the traces from its firing counters and needs none of them (issue 21: the merge of a paper-size
    block's traces cost half a simulation)."""

    def __init__(self, c: _Compiled) -> None:
        self.traces = _merged_traces(c.net.processes)
        self.static = [t.static for t in self.traces]
        self.is_write = [t.is_write for t in self.traces]
        # Trace position of the event that writes / reads each token (sorted).
        self.wpos = [self.traces[u].write_pos[w] for u, w in zip(c.src, c.write_firing, strict=True)]
        self.rpos = [self.traces[v].read_pos[r] for v, r in zip(c.tgt, c.read_firing, strict=True)]
        self.neighbors = [sorted({c.src[s] for s in c.ins[p]} | {c.tgt[s] for s in c.outs[p]})
                          for p in range(len(c.names))]
        self.static_l = [a.tolist() for a in self.static]
        self.is_write_l = [a.tolist() for a in self.is_write]
        self.wpos_l = [a.tolist() for a in self.wpos]
        self.rpos_l = [a.tolist() for a in self.rpos]
        # Per trace position, the padded index (1 + token) of the last token the event depends on:
        # ev_read[s][j]: at a read event, 1 + last token of input s read by firings <= its firing (0: none);
        # ev_written[s][j]: at a write event, 1 + last token of output s written by firings <= its firing.
        # Both are 0 at events of the other kind. Cumulative indices are exact: an earlier token's constraint
        # is implied along the trace.
        self.ev_read = [
            np.where(tr.is_write, 0, np.searchsorted(idx, tr.firing, side="right"))
            for tr, idx in zip((self.traces[t] for t in c.tgt), c.read_firing, strict=True)
        ]
        self.ev_written = [
            np.where(tr.is_write, np.searchsorted(idx, tr.firing, side="right"), 0)
            for tr, idx in zip((self.traces[s] for s in c.src), c.write_firing, strict=True)
        ]
        self.ev_read_l = [a.tolist() for a in self.ev_read]
        self.ev_written_l = [a.tolist() for a in self.ev_written]


@dataclass(frozen=True)
class _Packed:
    """The compiled engine's flat tables (layout: :mod:`.sim_kernel`)."""

    fire_off: np.ndarray
    ii: np.ndarray
    depth: np.ndarray
    in_off: np.ndarray
    in_idx: np.ndarray
    out_off: np.ndarray
    out_idx: np.ndarray
    src: np.ndarray
    tgt: np.ndarray
    order: np.ndarray
    tok_off: np.ndarray
    wfir: np.ndarray
    rfir: np.ndarray


def _csr(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and concatenated values of a list of int lists."""
    off = np.zeros(len(rows) + 1, dtype=np.int64)
    off[1:] = np.cumsum([len(r) for r in rows])
    return off, np.array([v for r in rows for v in r], dtype=np.int64)


def _flat(arrays: list[np.ndarray], dtype: type[np.integer] = np.int64) -> np.ndarray:
    """The arrays one after the other, as ``dtype`` (copied once, not concatenated then cast)."""
    out = np.empty(sum(len(a) for a in arrays), dtype=dtype)
    at = 0
    for a in arrays:
        out[at : at + len(a)] = a
        at += len(a)
    return out


class _Compiled:
    """Depth-independent per-network tables, built once and reused by every simulation of the network."""

    def __init__(self, net: ProcessNetwork) -> None:
        self.names = [p.name for p in net.processes]
        pid = {n: i for i, n in enumerate(self.names)}
        self.stream_names = [s.name for s in net.streams]
        sid = {n: i for i, n in enumerate(self.stream_names)}
        self.width = [s.width_bits for s in net.streams]
        self.srl_max_bits = net.srl_max_bits
        self.tokens = [s.tokens for s in net.streams]
        self.src = [pid[s.source] for s in net.streams]
        self.tgt = [pid[s.target] for s in net.streams]
        self.ins = [[sid[s] for s in p.reads] for p in net.processes]
        self.outs = [[sid[s] for s in p.writes] for p in net.processes]
        self.net = net
        self.ii = np.array([p.ii for p in net.processes], dtype=np.int64)
        self.depth = np.array([p.depth for p in net.processes], dtype=np.int64)
        self.nev = [2 * p.num_firings for p in net.processes]
        self.fire_off = np.zeros(len(self.names) + 1, dtype=np.int64)  # firings of p: fire_off[p] .. [p + 1]
        self.fire_off[1:] = np.cumsum([p.num_firings for p in net.processes])
        # Token -> firing of the event that writes / reads it (sorted).
        self.write_firing = [net.process(s.source).writes[s.name] for s in net.streams]
        self.read_firing = [net.process(s.target).reads[s.name] for s in net.streams]
        self.order = self._dataflow_order()
        self._release: tuple[list[int], list[np.ndarray | None], np.ndarray, np.ndarray] | None = None

    @cached_property
    def time_bound(self) -> int:
        """A bound on every event time of a run released at cycle 0 (a release at r adds at most r): along the
        chain of events that sets the last one's time, each step is the previous event of the same trace (the
        static gap: a trace's steps add up to at most its static span ``(n - 1) * ii + depth``) or a token
        dependency (at most 2 cycles: a FIFO's read latency, or 1 after the read that frees a slot), and the
        chain visits each event at most once."""
        n = np.diff(self.fire_off)
        spans = np.where(n > 0, (n - 1) * self.ii + self.depth, 0)
        return int(spans.sum()) + 4 * int(n.sum()) + 2

    def flat_release(self, release: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
        """The release times of the processes that have them, flat (``rel``), and where each process's begin
        (``rel_off[p]``, -1: none). The last one is kept by the arrays it came from: a sizing's simulations share
        one set of release times (the conservative strategy's releases every firing of every process: at a
        paper-size block's finest tilings, hundreds of MB to copy and compare per run; issue 21). Release arrays
        are never changed in place (no caller does)."""
        key = [id(r) for r in release]
        if self._release is not None and self._release[0] == key:
            return self._release[2], self._release[3]
        sizes = [0 if r is None else len(r) for r in release]
        rel_off = np.where([r is not None for r in release], np.cumsum([0] + sizes[:-1]), -1).astype(np.int64)
        rel = _flat([r for r in release if r is not None])
        self._release = (key, release, rel_off, rel)  # the arrays kept alive: their ids stay theirs
        return rel_off, rel

    @cached_property
    def py(self) -> _PyTables:
        return _PyTables(self)

    @cached_property
    def pad(self) -> list[int]:
        """Stream s's padded segment of the flat token-time arrays: ``pad[s] .. pad[s + 1]`` (index 0 unused)."""
        return (self.packed.tok_off + np.arange(len(self.tokens) + 1)).tolist()

    @cached_property
    def packed(self) -> _Packed:
        if max(p.num_firings for p in self.net.processes) > np.iinfo(_FIRING_INDEX).max:
            raise ValueError("a process of more than 2**31 firings cannot be simulated")
        tok_off = np.zeros(len(self.tokens) + 1, dtype=np.int64)
        tok_off[1:] = np.cumsum(self.tokens)
        in_off, in_idx = _csr(self.ins)
        out_off, out_idx = _csr(self.outs)
        return _Packed(
            fire_off=self.fire_off, ii=self.ii, depth=self.depth, in_off=in_off, in_idx=in_idx,
            out_off=out_off, out_idx=out_idx, src=np.array(self.src, dtype=np.int64),
            tgt=np.array(self.tgt, dtype=np.int64), order=np.array(self.order, dtype=np.int64), tok_off=tok_off,
            wfir=_flat(self.write_firing, _FIRING_INDEX), rfir=_flat(self.read_firing, _FIRING_INDEX),
        )

    def _dataflow_order(self) -> list[int]:
        """Topological order (Kahn) where one exists, remaining processes appended: with unbounded FIFOs an
        acyclic network is then simulated in one batch per process."""
        indeg = [len(i) for i in self.ins]
        ready = [p for p in range(len(indeg)) if indeg[p] == 0]
        order: list[int] = []
        while ready:
            p = ready.pop()
            order.append(p)
            for s in self.outs[p]:
                indeg[self.tgt[s]] -= 1
                if indeg[self.tgt[s]] == 0:
                    ready.append(self.tgt[s])
        seen = set(order)
        return order + [p for p in range(len(indeg)) if p not in seen]


class _State:
    """What one simulation of a compiled network under one depth assignment has computed, and the results
    read from it; the engines below fill it. Token-time arrays are padded: index 0 holds _NEG ("token -1",
    no constraint), index k + 1 token k."""

    c: _Compiled
    fifo_depth: list[int | None]
    wt: list[np.ndarray]
    rt: list[np.ndarray]
    known_w: Sequence[int]  # per stream: tokens whose write time is known (a prefix)
    known_r: Sequence[int]  # per stream: tokens whose read time is known (a prefix)
    next_ev: Sequence[int]  # per process: its first event not computed
    stall_in: Sequence[int]
    stall_out: Sequence[int]

    @property
    def finished(self) -> bool:
        return all(int(n) == e for n, e in zip(self.next_ev, self.c.nev, strict=True))

    def blocked_on(self, p: int) -> WaitFor:
        """Why the next trace event of the unfinished, non-advancing process ``p`` cannot happen (first cause
        in the order of its reads / writes mappings)."""
        c = self.c
        write, f = self.next_event(p)
        if not write:
            for s in c.ins[p]:
                kw = int(self.known_w[s])
                if kw < c.tokens[s] and c.read_firing[s][kw] == f:
                    return WaitFor(c.names[p], c.stream_names[s], "empty", f, kw)
        for s in c.outs[p]:
            d = self.fifo_depth[s]
            kr = int(self.known_r[s]) + (d or 0)
            if write and d is not None and kr < c.tokens[s] and c.write_firing[s][kr] == f:
                return WaitFor(c.names[p], c.stream_names[s], "full", f, kr)
        raise AssertionError(f"process {c.names[p]} is not blocked")  # execute() stopped early: a bug

    def deadlock_cycle(self) -> list[WaitFor]:
        """Follow wait-for links from the first unfinished process until one repeats; every link leads to an
        unfinished process (the token or slot it waits for has not been produced), so a cycle is reached."""
        c = self.c
        unfinished = [p for p in range(len(c.names)) if self.next_ev[p] < c.nev[p]]
        if not unfinished:
            return []
        pid = {n: i for i, n in enumerate(c.names)}
        sid = {n: i for i, n in enumerate(c.stream_names)}
        path: list[WaitFor] = []
        seen: dict[int, int] = {}
        p = unfinished[0]
        while p not in seen:
            seen[p] = len(path)
            w = self.blocked_on(p)
            path.append(w)
            s = sid[w.stream]
            p = c.src[s] if w.kind == "empty" else c.tgt[s]
        cycle = path[seen[p] :]
        start = min(range(len(cycle)), key=lambda i: pid[cycle[i].process])  # canonical rotation
        return cycle[start:] + cycle[:start]

    def result(self) -> SimResult:
        c = self.c
        cycle = self.deadlock_cycle()
        firing_times = {n: self.firing_times(p) for p, n in enumerate(c.names)}
        # The last event of a trace is the write of its last firing.
        makespan = None if cycle else max(int(ft.complete[-1]) for ft in firing_times.values())
        stream_times: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        token_times: dict[str, TokenTimes] = {}
        for s, name in enumerate(c.stream_names):
            kw, kr = int(self.known_w[s]), int(self.known_r[s])
            wt, rt = self.wt[s][1 : kw + 1], self.rt[s][1 : kr + 1]
            stream_times[name] = (wt, rt)
            token_times[name] = TokenTimes(
                first_write=int(wt[0]) if kw else None,
                last_write=int(wt[-1]) if kw else None,
                first_read=int(rt[0]) if kr else None,
                last_read=int(rt[kr - 1]) if kr else None,
            )
        return SimResult(
            makespan_cycles=makespan,
            deadlock=bool(cycle),
            deadlock_cycle=cycle,
            stall_cycles={n: StallCycles(int(self.stall_in[p]), int(self.stall_out[p]))
                          for p, n in enumerate(c.names)},
            token_times=token_times,
            firings_done={n: self.firings_done(p) for p, n in enumerate(c.names)},
            firing_times=firing_times,
            stream_times=stream_times,
            run_state=self if isinstance(self, _CompiledRun) else None,
        )

    def firing_times(self, p: int) -> FiringTimes:
        raise NotImplementedError  # each engine keeps its own form

    def next_event(self, p: int) -> tuple[bool, int]:
        """Whether the next trace event of the unfinished ``p`` is a write, and its firing."""
        raise NotImplementedError

    def firings_done(self, p: int) -> int:
        """Firings of ``p`` whose write event happened."""
        raise NotImplementedError


class _CompiledRun(_State):
    """One simulation by the compiled event loop (:mod:`.sim_kernel`), the default engine."""

    def __init__(self, c: _Compiled, depths: list[int | None], release: list[np.ndarray | None],
                 arrays: _CompiledRun | None = None) -> None:
        """``arrays``: a run nothing needs any more, whose time arrays this one computes in (else a free set)."""
        self.c = c
        self.fifo_depth = depths
        pk = c.packed
        nfire = int(pk.fire_off[-1])
        self.rel_off, self.rel = c.flat_release(release)
        self.depth = np.array([d or 0 for d in depths], dtype=np.int64)
        self.raw = np.array([raw_latency(c.width[s], d, c.srl_max_bits) for s, d in enumerate(depths)],
                            dtype=np.int64)
        nproc, nstr = len(c.names), len(c.stream_names)
        # Token times are read only once known (sim_kernel), and firing times get -1 after the run where an event
        # was never reached (firing_times): no initial values needed, so those of a dropped run serve.
        dtype = np.int32 if c.time_bound + int(self.rel.max(initial=0)) < _INT32_TIMES else np.int64
        if arrays is not None and arrays.issue.dtype == dtype:
            self._take(arrays.wt_flat, arrays.rt_flat, arrays.issue, arrays.complete)
        else:
            self._take(*_run_buffers(c.pad[-1], nfire, dtype))
        self.known_w = np.zeros(nstr, dtype=np.int64)
        self.known_r = np.zeros(nstr, dtype=np.int64)
        self.reads_done = np.zeros(nproc, dtype=np.int64)
        self.writes_done = np.zeros(nproc, dtype=np.int64)
        self.next_ev = self.reads_done  # per process: reads_done + writes_done, once executed
        self.slip = np.zeros(nproc, dtype=np.int64)
        self.stall_in = np.zeros(nproc, dtype=np.int64)
        self.stall_out = np.zeros(nproc, dtype=np.int64)

    def _take(self, wt: np.ndarray, rt: np.ndarray, issue: np.ndarray, complete: np.ndarray) -> None:
        """Compute into these time arrays (token write and read times, firing issue and completion times)."""
        pad = self.c.pad
        self.wt_flat, self.rt_flat, self.issue, self.complete = wt, rt, issue, complete
        self.wt = [wt[pad[s] : pad[s + 1]] for s in range(len(pad) - 1)]
        self.rt = [rt[pad[s] : pad[s + 1]] for s in range(len(pad) - 1)]

    def resume(self, runs: Sequence[_CompiledRun], dropped: _CompiledRun | None = None) -> None:
        """Take the events of one of ``runs`` (runs of the same network, release times and engine) that it computed
        and that happen before the first one these depths can change: every event before it depends only on
        earlier ones, so it happens here at the same time (module docstring: every dependency is at an earlier
        cycle, but along a trace). Of several runs, the one that gives the most events. A deadlocked run computed
        its events up to the deadlock: those before the cut are taken too (an event it never reached depends on
        nothing it computed before the cut). ``dropped``: one of ``runs`` no longer needed, whose arrays this run
        was built on (``arrays``): where it is the one taken, its times are already in place; otherwise those
        taken are copied over its own (a third set of hundreds of MB at a paper-size prefill block's finest
        tilings would be faulted in for nothing: issue 21)."""
        c, pk = self.c, self.c.packed
        taken = -1
        for run in runs:
            # Per process: firings read and written, slip, stalls.
            state = [np.zeros(len(c.names), dtype=np.int64) for _ in range(5)]
            sim_kernel.resume_state(self._first_change(run), pk.fire_off, pk.ii, pk.depth, run.issue, run.complete,
                                    run.reads_done, run.writes_done, *state)
            events = int(state[0].sum() + state[1].sum())
            if events > taken:
                taken, prev = events, run
                self.reads_done, self.writes_done, self.slip, self.stall_in, self.stall_out = state
        in_place = prev is dropped and prev.issue is self.issue
        if not in_place:
            # Only the times taken are copied (the kernel writes the others, or they are never read): the arrays
            # are hundreds of MB at a paper-size prefill block's finest tilings.
            for p in range(len(c.names)):
                a = int(pk.fire_off[p])
                self.issue[a : a + self.reads_done[p]] = prev.issue[a : a + self.reads_done[p]]
                self.complete[a : a + self.writes_done[p]] = prev.complete[a : a + self.writes_done[p]]
        for s in range(len(c.stream_names)):  # the tokens moved by the firings done
            # Searched for in the maps' own type: numpy would copy a whole int32 map to compare it with an int64.
            w, r = c.write_firing[s], c.read_firing[s]
            self.known_w[s] = np.searchsorted(w, w.dtype.type(self.writes_done[c.src[s]]))
            self.known_r[s] = np.searchsorted(r, r.dtype.type(self.reads_done[c.tgt[s]]))
            if not in_place:
                self.wt[s][1 : self.known_w[s] + 1] = prev.wt[s][1 : self.known_w[s] + 1]
                self.rt[s][1 : self.known_r[s] + 1] = prev.rt[s][1 : self.known_r[s] + 1]

    def _first_change(self, prev: _CompiledRun) -> int:
        """A cycle no later than the first event of ``prev`` whose constraints differ here in a way that could move
        it: a write a lowered FIFO holds back (or a raised one held back: binding in ``prev``), a read whose FIFO
        read latency changed and that was within the larger latency of its token's write. Only the tokens ``prev``
        wrote and read count (all of them, unless it deadlocked)."""
        cut = _POS
        for s in range(len(self.c.stream_names)):
            d0, d1, r0, r1 = int(prev.depth[s]), int(self.depth[s]), int(prev.raw[s]), int(self.raw[s])
            n = self.c.tokens[s]
            kw, kr = int(prev.known_w[s]), int(prev.known_r[s])
            wt, rt = prev.wt[s][1 : kw + 1], prev.rt[s][1 : kr + 1]
            if d0 != d1:
                # The tighter depth's constraint may be violated; the looser one's may have bound in ``prev``.
                tighter = d0 == 0 or 0 < d1 < d0
                d = d1 if tighter else d0
                if 0 < d < n and kw > d:
                    m = min(kw - d, kr)  # tokens d .. d + m - 1 written, the tokens d earlier read
                    near = wt[d : d + m] <= rt[:m] + (0 if tighter else 1)
                    if near.any():
                        cut = min(cut, int(wt[d + int(np.argmax(near))]))
                    if kw - d > kr:  # the write of token kr + d waits for a read ``prev`` never reached
                        cut = min(cut, int(wt[d + kr]))
            if r0 != r1:
                near = rt <= wt[:kr] + max(r0, r1)
                if near.any():
                    cut = min(cut, int(rt[int(np.argmax(near))]))
        return cut

    def execute(self, horizon: int | None) -> bool:
        """Run until nothing can advance. False as soon as an event happens after ``horizon``."""
        pk = self.c.packed
        done = bool(sim_kernel.execute(
            pk.order, _POS if horizon is None else horizon, pk.fire_off, pk.ii, pk.depth, self.rel_off,
            self.rel, pk.in_off, pk.in_idx, pk.out_off, pk.out_idx, pk.src,
            pk.tgt, pk.tok_off, pk.wfir, pk.rfir, self.depth, self.raw, self.issue, self.complete, self.wt_flat,
            self.rt_flat, self.known_w, self.known_r, self.reads_done, self.writes_done, self.slip, self.stall_in,
            self.stall_out))
        self.next_ev = self.reads_done + self.writes_done
        return done

    def next_event(self, p: int) -> tuple[bool, int]:
        f, g = int(self.reads_done[p]), int(self.writes_done[p])
        n, ii, depth = self.c.nev[p] // 2, int(self.c.ii[p]), int(self.c.depth[p])
        if sim_kernel.read_first(f, g, n, ii, depth):
            return False, f
        return True, g

    def firings_done(self, p: int) -> int:
        return int(self.writes_done[p])

    def firing_times(self, p: int) -> FiringTimes:
        a, b = int(self.c.fire_off[p]), int(self.c.fire_off[p + 1])
        issue, complete = self.issue[a:b], self.complete[a:b]
        issue[self.reads_done[p] :] = -1  # the events never reached
        complete[self.writes_done[p] :] = -1
        return FiringTimes(issue=issue, complete=complete)


class _PyRun(_State):
    """One simulation by the Python engine: batches of events vectorized with numpy, short runs in a
    scalar loop. Slower than the compiled one where back-pressure splits the runs; kept as its oracle."""

    def __init__(self, c: _Compiled, depths: list[int | None], release: list[np.ndarray | None]) -> None:
        self.c = c
        self.fifo_depth = depths
        # Per trace position: release time of a read event, _NEG elsewhere (None: no releases).
        self.release = [
            None if r is None else np.where(t.is_write, _NEG, r[t.firing])
            for t, r in zip(c.py.traces, release, strict=True)
        ]
        self.release_l = [None if r is None else r.tolist() for r in self.release]
        self.raw = [raw_latency(c.width[s], d, c.srl_max_bits) for s, d in enumerate(depths)]
        nproc, nstr = len(c.names), len(c.stream_names)
        # Padded token-time arrays: index 0 holds _NEG ("token -1", no constraint), index k + 1 token k.
        self.wt = [np.full(t + 1, _POS, dtype=np.int64) for t in c.tokens]
        self.rt = [np.full(t + 1, _POS, dtype=np.int64) for t in c.tokens]
        for a in (*self.wt, *self.rt):
            a[0] = _NEG
        # Per process, the (array, index list, constant) triples the scalar path reads.
        self.scalar_ins = [[(self.wt[s], c.py.ev_read_l[s], self.raw[s]) for s in ins] for ins in c.ins]
        self.scalar_outs = [
            [(self.rt[s], c.py.ev_written_l[s], d) for s in outs if (d := depths[s]) is not None] for outs in c.outs
        ]
        self.known_w = [0] * nstr  # tokens whose write time is known (a prefix)
        self.known_r = [0] * nstr  # tokens whose read time is known (a prefix)
        # Per trace position of a bounded output's writer: padded index of the read that frees the slot.
        self.space_idx: list[np.ndarray | None] = [
            None if d is None else np.maximum(c.py.ev_written[s] - d, 0) for s, d in enumerate(depths)
        ]
        self.times = [np.full(n, _POS, dtype=np.int64) for n in c.nev]
        self.next_ev = [0] * nproc
        self.slip = [0] * nproc  # t - static of the last computed event (t(e_{-1}) = s_{-1} = 0)
        self.stall_in = [0] * nproc
        self.stall_out = [0] * nproc

    def limit(self, p: int) -> int:
        """First trace position of ``p`` whose dependency is not known yet (``2 * num_firings`` if none)."""
        c = self.c
        lim = c.nev[p]
        for s in c.ins[p]:
            kw = self.known_w[s]
            if kw < c.tokens[s]:
                lim = min(lim, c.py.rpos_l[s][kw])  # the read of the first unwritten token
        for s in c.outs[p]:
            d = self.fifo_depth[s]
            if d is not None and self.known_r[s] + d < c.tokens[s]:
                lim = min(lim, c.py.wpos_l[s][self.known_r[s] + d])  # needs the unknown read of token known_r
        return lim

    def advance(self, p: int, j0: int, j1: int) -> None:
        """Compute the times of trace events j0..j1-1 of ``p`` (dependencies known) and publish token times."""
        if j1 - j0 <= _SCALAR_BATCH:
            self._advance_scalar(p, j0, j1)
        else:
            self._advance_vector(p, j0, j1)
            c = self.c
            t = self.times[p]
            for s in c.outs[p]:
                k0, k1 = self.known_w[s], bisect_left(c.py.wpos_l[s], j1, self.known_w[s])
                self.wt[s][k0 + 1 : k1 + 1] = t[c.py.wpos[s][k0:k1]]
                self.known_w[s] = k1
            for s in c.ins[p]:
                k0, k1 = self.known_r[s], bisect_left(c.py.rpos_l[s], j1, self.known_r[s])
                self.rt[s][k0 + 1 : k1 + 1] = t[c.py.rpos[s][k0:k1]]
                self.known_r[s] = k1
        self.next_ev[p] = j1

    def _advance_vector(self, p: int, j0: int, j1: int) -> None:
        c = self.c
        n = j1 - j0
        rel = self.release[p]
        dep = np.full(n, _NEG, dtype=np.int64) if rel is None else rel[j0:j1].copy()
        for s in c.ins[p]:
            np.maximum(dep, self.wt[s][c.py.ev_read[s][j0:j1]] + self.raw[s], out=dep)
        for s in c.outs[p]:
            idx = self.space_idx[s]
            if idx is not None:
                np.maximum(dep, self.rt[s][idx[j0:j1]] + 1, out=dep)
        static = c.py.static[p][j0:j1]
        # t_j = max(t_{j-1} + s_j - s_{j-1}, dep_j)  <=>  t_j - s_j = max(slip_prev, max_{i<=j}(dep_i - s_i))
        slip = np.maximum(np.maximum.accumulate(dep - static), self.slip[p])
        # The slip grows only at events whose dependency bound: reads (input empty) or writes (output full).
        growth = np.diff(slip, prepend=self.slip[p])
        at_write = c.py.is_write[p][j0:j1]
        self.stall_out[p] += int(growth[at_write].sum())
        self.stall_in[p] += int(growth[~at_write].sum())
        self.times[p][j0:j1] = static + slip
        self.slip[p] = int(slip[-1])

    def _advance_scalar(self, p: int, j0: int, j1: int) -> None:
        """Same as the vector path, one event at a time in Python (cheaper for a handful of events)."""
        c = self.c
        static, is_write = c.py.static_l[p], c.py.is_write_l[p]
        rel = self.release_l[p]
        slip = self.slip[p]
        ts: list[int] = []
        for j in range(j0, j1):
            dep = _NEG if rel is None else rel[j]
            if is_write[j]:
                for rt, idx, d in self.scalar_outs[p]:
                    k = idx[j] - d  # padded index of the read that frees the slot
                    if k > 0:
                        dep = max(dep, rt.item(k) + 1)
            else:
                for wt, idx, raw in self.scalar_ins[p]:
                    k = idx[j]
                    if k:
                        dep = max(dep, wt.item(k) + raw)
            grown = dep - static[j] - slip
            if grown > 0:
                slip += grown
                if is_write[j]:
                    self.stall_out[p] += grown
                else:
                    self.stall_in[p] += grown
            ts.append(static[j] + slip)
        self.slip[p] = slip
        self.times[p][j0:j1] = ts
        for s in c.outs[p]:  # publish write times of the tokens written by these events
            pos, k, wt = c.py.wpos_l[s], self.known_w[s], self.wt[s]
            while k < c.tokens[s] and pos[k] < j1:
                wt[k + 1] = ts[pos[k] - j0]
                k += 1
            self.known_w[s] = k
        for s in c.ins[p]:  # and read times of the tokens read
            pos, k, rt = c.py.rpos_l[s], self.known_r[s], self.rt[s]
            while k < c.tokens[s] and pos[k] < j1:
                rt[k + 1] = ts[pos[k] - j0]
                k += 1
            self.known_r[s] = k

    def firing_times(self, p: int) -> FiringTimes:
        t = np.where(self.times[p] == _POS, -1, self.times[p])
        tr = self.c.py.traces[p]
        return FiringTimes(issue=t[tr.read_pos], complete=t[tr.write_pos])

    def next_event(self, p: int) -> tuple[bool, int]:
        tr, j = self.c.py.traces[p], int(self.next_ev[p])
        return bool(tr.is_write[j]), int(tr.firing[j])

    def firings_done(self, p: int) -> int:
        return int(np.searchsorted(self.c.py.traces[p].write_pos, self.next_ev[p]))

    def execute(self, horizon: int | None) -> bool:
        """Run until nothing can advance. False as soon as an event happens after ``horizon``."""
        c = self.c
        queue = deque(c.order)
        queued = [True] * len(c.names)
        while queue:
            p = queue.popleft()
            queued[p] = False
            j0 = self.next_ev[p]
            j1 = self.limit(p) if j0 < c.nev[p] else j0
            if j1 <= j0:
                continue
            self.advance(p, j0, j1)
            if horizon is not None and self.times[p][j1 - 1] > horizon:
                return False
            for q in c.py.neighbors[p]:
                if not queued[q]:
                    queued[q] = True
                    queue.append(q)
        return True


def _depth_list(c: _Compiled, depths: Mapping[str, int | None]) -> list[int | None]:
    unknown = sorted(set(depths) - set(c.stream_names))
    if unknown:
        raise ValueError(f"depths given for unknown streams {unknown}")
    out = [depths.get(n) for n in c.stream_names]
    for n, d in zip(c.stream_names, out, strict=True):
        if d is not None and d < 1:
            raise ValueError(f"stream {n!r}: FIFO depth must be >= 1 or None (unbounded), got {d}")
    return out


def _release_list(net: ProcessNetwork, release: Mapping[str, np.ndarray] | None) -> list[np.ndarray | None]:
    release = release or {}
    unknown = sorted(set(release) - {p.name for p in net.processes})
    if unknown:
        raise ValueError(f"release times given for unknown processes {unknown}")
    out: list[np.ndarray | None] = []
    for p in net.processes:
        r = release.get(p.name)
        if r is not None:
            r = np.asarray(r, dtype=np.int64)
            if r.shape != (p.num_firings,):
                raise ValueError(f"process {p.name!r}: release times need shape ({p.num_firings},), got {r.shape}")
        out.append(r)
    return out


Engine = Literal["compiled", "python"]
_ENGINES: dict[str, type[_CompiledRun] | type[_PyRun]] = {"compiled": _CompiledRun, "python": _PyRun}


class Simulator:
    """One process network prepared once (its depth-independent tables) and simulated under many FIFO depths.

    ``engine``: ``compiled`` (default; :mod:`.sim_kernel`) or ``python`` (numpy batches, the oracle the tests
    compare it with). Both compute the same exact schedule, hence identical results."""

    def __init__(self, net: ProcessNetwork, engine: Engine = "compiled") -> None:
        if engine not in _ENGINES:
            raise ValueError(f"unknown simulation engine {engine!r} (compiled | python)")
        self._net = net
        self._compiled = net.derived("timing_sim", lambda: _Compiled(net))
        self._engine = _ENGINES[engine]

    @property
    def stream_names(self) -> list[str]:
        return self._compiled.stream_names

    @property
    def width_bits(self) -> list[int]:
        """Per stream, in ``stream_names`` order."""
        return self._compiled.width

    @property
    def time_bound(self) -> int:
        """No event of a run happens later than this plus its latest release time (``_Compiled.time_bound``)."""
        return self._compiled.time_bound

    def run(self, depths: Mapping[str, int | None], release: Mapping[str, np.ndarray] | None = None,
            resume_from: SimResult | Sequence[SimResult] = (), dropping: SimResult | None = None) -> SimResult:
        """One run; ``depths[stream]`` is the FIFO depth (None or absent: unbounded).

        ``release[process][f]``, if given, is the earliest cycle at which firing f may issue. ``resume_from``: a
        run of this network with the same release times (other depths; finished or deadlocked), or several; the
        compiled engine takes the events of the one it can take the most of, up to the first one the change of
        depths can move, and computes only the rest (the result is the same; the Python engine, the oracle,
        always starts from cycle 0). ``dropping``: one of ``resume_from`` that the caller drops: the run may go on
        in its arrays instead of copying the times it takes (hundreds of MB a paper-size block's run need not fault
        in), and it is emptied.
        """
        c = self._compiled
        runs = [resume_from] if isinstance(resume_from, SimResult) else list(resume_from)
        if dropping is not None and not any(r is dropping for r in runs):
            raise ValueError("dropping is not one of resume_from")
        dropped = None if dropping is None else dropping.run_state
        args = (c, _depth_list(c, depths), _release_list(self._net, release))
        if self._engine is _CompiledRun:  # it computes in the dropped run's arrays
            run = _CompiledRun(*args, dropped if isinstance(dropped, _CompiledRun) and dropped.c is c else None)
        else:
            run = self._engine(*args)
        if isinstance(run, _CompiledRun) and runs:
            prevs = [r.run_state for r in runs]
            for prev in prevs:
                if prev is None or prev.c is not c or not _same_release(prev, run):
                    raise ValueError("resume_from is not a compiled run of this network with these release times")
            run.resume(prevs, dropped)
        if dropping is not None:  # its times are this run's now
            dropping.run_state = None
            dropping.firing_times.clear()
            dropping.stream_times.clear()
        run.execute(horizon=None)
        return run.result()

    def finishes_by(self, depths: Mapping[str, int | None], horizon: int) -> bool:
        """Whether a run with ``depths`` ends without deadlock and with no event after ``horizon``; it stops at
        the first event past the horizon, so a no costs less than a full ``run``."""
        return self.makespan_by(depths, horizon) is not None

    def makespan_by(self, depths: Mapping[str, int | None], horizon: int) -> int | None:
        """The makespan of a run with ``depths`` if it ends without deadlock and with no event after ``horizon``,
        else None (found at the first event past the horizon: a no costs less than a full ``run``)."""
        c = self._compiled
        run = self._engine(c, _depth_list(c, depths), [None] * len(c.names))
        if not (run.execute(horizon=horizon) and run.finished):
            return None
        return max(int(run.firing_times(p).complete[-1]) for p in range(len(c.names)))


def _same_release(a: _CompiledRun, b: _CompiledRun) -> bool:
    return (a.rel is b.rel and a.rel_off is b.rel_off) or (
        np.array_equal(a.rel_off, b.rel_off) and np.array_equal(a.rel, b.rel))


def simulate(
    net: ProcessNetwork,
    depths: Mapping[str, int | None],
    release: Mapping[str, np.ndarray] | None = None,
    engine: Engine = "compiled",
    resume_from: SimResult | Sequence[SimResult] = (),
    dropping: SimResult | None = None,
) -> SimResult:
    """Simulate one run of ``net`` (``Simulator.run``)."""
    return Simulator(net, engine).run(depths, release, resume_from, dropping)
