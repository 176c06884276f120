"""Token-level timing simulation of a process network with bounded FIFOs (target-and-verification §5).

Timing model (max-plus; integer cycles; the run starts at cycle 0). Each process is the §5 *trace* of its
pipelined loop: firing ``f`` has a read event at static time ``f*ii`` and a write event at ``f*ii + depth``,
merged in static-time order (ties: older firing first, a firing's read before its write). Along the trace

    t(e_j) = max(t(e_{j-1}) + s_j - s_{j-1}, dep(e_j))        (s: static times, t(e_{-1}) = s_{-1} = 0)

* read event of firing f: every token k it reads on stream s needs ``t_write(s, k) + raw(s)``;
* write event of firing f: every token k it writes on s needs, when ``k >= D_s`` (the FIFO depth),
  ``t_read(s, k - D_s) + 1`` (a slot freed by a read is writable the next cycle);
* ``raw(s)``, the FIFO read-after-write latency: 1 cycle for a shift-register FIFO (``width_bits * D_s <= 1024``),
  2 for a RAM FIFO (wider, or unbounded).

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
dependencies (token write times upstream, token read times downstream) are known, as one vectorized batch
(``t_j = s_j + cummax(dep_j - s_j)`` solves the recurrence) or, for short runs, a scalar loop. Each event is
computed once: O(firings + tokens). When no process can advance and some are unfinished, the blocked
processes form a wait-for cycle: a deadlock, reported like a co-simulation would.

Raising a FIFO's depth only removes or relaxes constraints, so the makespan is monotone non-increasing in each
depth *within a latency class*; crossing 1024 bits switches the FIFO from 1 to 2 cycles of read latency, which
can cost cycles. Whether a configuration deadlocks does not depend on latencies and is monotone in every depth.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .process_network import Process, ProcessNetwork

SRL_FIFO_MAX_BITS = 1024  # FIFOs up to this many bits are shift registers (1-cycle read latency)

_NEG = -(2**62)  # "no constraint" / padding time
_POS = 2**62  # time of an event not computed (yet)
_SCALAR_BATCH = 12  # runs of at most this many events are cheaper as a Python loop than as numpy calls


def raw_latency(width_bits: int, depth: int | None) -> int:
    """Read-after-write latency of a FIFO: 1 cycle for an SRL FIFO of <= 1024 bits, 2 for RAM (or unbounded)."""
    return 1 if depth is not None and width_bits * depth <= SRL_FIFO_MAX_BITS else 2


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


def process_trace(p: Process) -> ProcessTrace:
    """Merge the read events (``f*ii``) and write events (``f*ii + depth``) of ``p`` in static-time order."""
    f = np.arange(p.num_firings, dtype=np.int64)
    static = np.concatenate([f * p.ii, f * p.ii + p.depth])
    firing = np.concatenate([f, f])
    kind = np.repeat(np.array([0, 1], dtype=np.int64), p.num_firings)
    order = np.lexsort((kind, firing, static))  # ties: older firing first, then read before write
    pos = np.empty_like(order)
    pos[order] = np.arange(order.size)
    return ProcessTrace(static[order], firing[order], kind[order] == 1, pos[: p.num_firings], pos[p.num_firings :])


@dataclass(frozen=True)
class WaitFor:
    """One link of a deadlock's wait-for cycle: ``process`` is blocked on ``stream``."""

    process: str
    stream: str
    kind: Literal["full", "empty"]  # full: blocked writing; empty: blocked reading
    firing: int  # the firing that cannot issue
    token: int  # the token it cannot write (full) or read (empty)

    def describe(self) -> str:
        verb = "writing" if self.kind == "full" else "reading"
        return f"{self.process} blocked {verb} {self.stream} ({self.kind})"


@dataclass(frozen=True)
class StallCycles:
    """Cycles a process issued later than its II allowed, by the binding cause."""

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


@dataclass
class SimResult:
    """Outcome of one simulation. ``makespan_cycles`` is the completion cycle of the last firing
    (max over processes of last issue + depth), or None when the run deadlocked."""

    makespan_cycles: int | None
    deadlock: bool
    deadlock_cycle: list[WaitFor]
    stall_cycles: dict[str, StallCycles]
    peak_occupancy: dict[str, int]
    token_times: dict[str, TokenTimes]
    firings_done: dict[str, int]

    def describe(self) -> str:
        if self.deadlock:
            links = " -> ".join(w.describe() for w in self.deadlock_cycle)
            return f"DEADLOCK: {links} -> {self.deadlock_cycle[0].process}"
        return f"completed in {self.makespan_cycles} cycles"


class _Compiled:
    """Depth-independent per-network tables, built once and reused by every simulation of the network."""

    def __init__(self, net: ProcessNetwork) -> None:
        self.net = net
        self.names = [p.name for p in net.processes]
        pid = {n: i for i, n in enumerate(self.names)}
        self.stream_names = [s.name for s in net.streams]
        sid = {n: i for i, n in enumerate(self.stream_names)}
        self.ii = [p.ii for p in net.processes]
        self.depth = [p.depth for p in net.processes]
        self.nf = [p.num_firings for p in net.processes]
        self.width = [s.width_bits for s in net.streams]
        self.tokens = [s.tokens for s in net.streams]
        self.src = [pid[s.source] for s in net.streams]
        self.tgt = [pid[s.target] for s in net.streams]
        self.writes = [net.process(s.source).writes[s.name] for s in net.streams]
        self.reads = [net.process(s.target).reads[s.name] for s in net.streams]
        # cnt_w[s][f] = tokens of s written by firings < f (len F_src + 1); cnt_r likewise for reads.
        # Hence cnt_r[s][f + 1] = 1 + (last token read by firings <= f), the padded index used in batches.
        self.cnt_w = [np.searchsorted(w, np.arange(self.nf[self.src[i]] + 1)) for i, w in enumerate(self.writes)]
        self.cnt_r = [np.searchsorted(r, np.arange(self.nf[self.tgt[i]] + 1)) for i, r in enumerate(self.reads)]
        # Python-list twins for the scalar lookups of the scheduler and of the short-run path.
        self.writes_l = [a.tolist() for a in self.writes]
        self.reads_l = [a.tolist() for a in self.reads]
        self.cnt_w_l = [a.tolist() for a in self.cnt_w]
        self.cnt_r_l = [a.tolist() for a in self.cnt_r]
        self.ins = [[sid[s] for s in p.reads] for p in net.processes]
        self.outs = [[sid[s] for s in p.writes] for p in net.processes]
        self.neighbors = [
            sorted({self.src[s] for s in self.ins[p]} | {self.tgt[s] for s in self.outs[p]})
            for p in range(len(self.names))
        ]
        self.order = self._dataflow_order()

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


class _Run:
    """State of one simulation of a compiled network under one depth assignment."""

    def __init__(self, c: _Compiled, depths: list[int | None]) -> None:
        self.c = c
        self.fifo_depth = depths
        self.raw = [raw_latency(c.width[s], d) for s, d in enumerate(depths)]
        nproc, nstr = len(c.names), len(c.stream_names)
        # Padded token-time arrays: index 0 holds _NEG ("token -1", no constraint), index k + 1 token k.
        self.wt = [np.full(t + 1, _POS, dtype=np.int64) for t in c.tokens]
        self.rt = [np.full(t + 1, _POS, dtype=np.int64) for t in c.tokens]
        for a in (*self.wt, *self.rt):
            a[0] = _NEG
        self.known_w = [0] * nstr  # tokens whose write time is known (prefix)
        self.known_r = [0] * nstr  # tokens whose read time is known (prefix)
        # Space index per firing of a bounded output: padded read index of token (last written - D), or 0.
        self.space_idx: list[np.ndarray | None] = [
            None if d is None else np.maximum(c.cnt_w[s][1:] - d, 0) for s, d in enumerate(depths)
        ]
        self.times = [np.full(f, _POS, dtype=np.int64) for f in c.nf]
        self.next_f = [0] * nproc
        self.last_t = [-ii for ii in c.ii]  # issue time of the previous firing (t_{-1} = -ii)
        self.stall_in = [0] * nproc
        self.stall_out = [0] * nproc

    def limit(self, p: int) -> int:
        """First firing of ``p`` whose dependencies are not all known yet (num_firings if none)."""
        c = self.c
        lim = c.nf[p]
        for s in c.ins[p]:
            kw = self.known_w[s]
            if kw < c.tokens[s]:
                lim = min(lim, c.reads_l[s][kw])  # that firing reads the first unwritten token
        for s in c.outs[p]:
            d = self.fifo_depth[s]
            if d is not None and self.known_r[s] + d < c.tokens[s]:
                # token known_r + d needs the (unknown) read time of token known_r
                lim = min(lim, c.writes_l[s][self.known_r[s] + d])
        return lim

    def advance(self, p: int, f0: int, f1: int) -> None:
        """Compute issue times of firings f0..f1-1 of ``p`` (all dependencies known) and publish token times."""
        if f1 - f0 <= _SCALAR_BATCH:
            self._advance_scalar(p, f0, f1)
        else:
            self._advance_vector(p, f0, f1)
        c = self.c
        t = self.times[p]
        for s in c.outs[p]:
            k0, k1 = self.known_w[s], c.cnt_w_l[s][f1]
            if k1 > k0:
                self.wt[s][k0 + 1 : k1 + 1] = t[c.writes[s][k0:k1]] + c.depth[p]
                self.known_w[s] = k1
        for s in c.ins[p]:
            k0, k1 = self.known_r[s], c.cnt_r_l[s][f1]
            if k1 > k0:
                self.rt[s][k0 + 1 : k1 + 1] = t[c.reads[s][k0:k1]]
                self.known_r[s] = k1
        self.next_f[p] = f1

    def _advance_vector(self, p: int, f0: int, f1: int) -> None:
        c = self.c
        n, ii = f1 - f0, c.ii[p]
        c_in = np.full(n, _NEG, dtype=np.int64)
        for s in c.ins[p]:
            np.maximum(c_in, self.wt[s][c.cnt_r[s][f0 + 1 : f1 + 1]] + self.raw[s], out=c_in)
        c_out = np.full(n, _NEG, dtype=np.int64)
        for s in c.outs[p]:
            idx = self.space_idx[s]
            if idx is not None:
                np.maximum(c_out, self.rt[s][idx[f0:f1]] + (1 - c.depth[p]), out=c_out)
        c_all = np.maximum(c_in, c_out)
        # t_j = max(t_{j-1} + ii, c_j)  <=>  t_j = j*ii + max(t_prev + ii, max_{i<=j}(c_i - i*ii))
        base = np.arange(n, dtype=np.int64) * ii
        t = base + np.maximum(np.maximum.accumulate(c_all - base), self.last_t[p] + ii)
        prev = np.empty(n, dtype=np.int64)
        prev[0] = self.last_t[p]
        prev[1:] = t[:-1]
        gap = t - prev - ii  # > 0 exactly where a dependency, not the II, set the issue time
        stalled = gap > 0
        from_input = stalled & (c_in >= c_out)
        self.stall_in[p] += int(gap[from_input].sum())
        self.stall_out[p] += int(gap[stalled & ~from_input].sum())
        self.times[p][f0:f1] = t
        self.last_t[p] = int(t[-1])

    def _advance_scalar(self, p: int, f0: int, f1: int) -> None:
        c = self.c
        ii, dep = c.ii[p], c.depth[p]
        ins = [(self.wt[s], c.cnt_r_l[s], self.raw[s]) for s in c.ins[p]]
        outs = [(self.rt[s], c.cnt_w_l[s], d) for s in c.outs[p] if (d := self.fifo_depth[s]) is not None]
        last, times = self.last_t[p], self.times[p]
        for f in range(f0, f1):
            c_in = c_out = _NEG
            for wt, cnt, raw in ins:
                k = cnt[f + 1]  # padded index of the last token read by firings <= f
                if k:
                    c_in = max(c_in, wt.item(k) + raw)
            for rt, cnt, d in outs:
                k = cnt[f + 1] - d  # padded index of token (last written - d)
                if k > 0:
                    c_out = max(c_out, rt.item(k) + 1 - dep)
            t = max(last + ii, c_in, c_out)
            if t > last + ii:
                if c_in >= c_out:
                    self.stall_in[p] += t - last - ii
                else:
                    self.stall_out[p] += t - last - ii
            times[f] = t
            last = t
        self.last_t[p] = last

    def execute(self, horizon: int | None) -> bool:
        """Run until nothing can advance. False as soon as a firing completes after ``horizon``."""
        c = self.c
        queue = deque(c.order)
        queued = [True] * len(c.names)
        while queue:
            p = queue.popleft()
            queued[p] = False
            f0 = self.next_f[p]
            f1 = self.limit(p) if f0 < c.nf[p] else f0
            if f1 <= f0:
                continue
            self.advance(p, f0, f1)
            if horizon is not None and self.last_t[p] + c.depth[p] > horizon:
                return False
            for q in c.neighbors[p]:
                if not queued[q]:
                    queued[q] = True
                    queue.append(q)
        return True

    def blocked_on(self, p: int) -> WaitFor:
        """Why the next firing of the unfinished, non-advancing process ``p`` cannot issue (first cause in
        reads-then-writes order)."""
        c = self.c
        f = self.next_f[p]
        for s in c.ins[p]:
            kw = self.known_w[s]
            if kw < c.tokens[s] and c.reads_l[s][kw] == f:
                return WaitFor(c.names[p], c.stream_names[s], "empty", f, kw)
        for s in c.outs[p]:
            d = self.fifo_depth[s]
            if d is not None and self.known_r[s] + d < c.tokens[s] and c.writes_l[s][self.known_r[s] + d] == f:
                return WaitFor(c.names[p], c.stream_names[s], "full", f, self.known_r[s] + d)
        raise AssertionError(f"process {c.names[p]} is not blocked")  # execute() stopped early: a bug

    def deadlock_cycle(self) -> list[WaitFor]:
        """Follow wait-for links from the first unfinished process until one repeats; every link leads to an
        unfinished process (the token or slot it waits for has not been produced), so a cycle is reached."""
        c = self.c
        unfinished = [p for p in range(len(c.names)) if self.next_f[p] < c.nf[p]]
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
        makespan = None if cycle else max(self.last_t[p] + c.depth[p] for p in range(len(c.names)))
        peaks: dict[str, int] = {}
        token_times: dict[str, TokenTimes] = {}
        for s, name in enumerate(c.stream_names):
            kw, kr = self.known_w[s], self.known_r[s]
            wt, rt = self.wt[s][1 : kw + 1], self.rt[s][1:]
            peaks[name] = peak_occupancy(wt, rt)  # unread tokens have read time _POS
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
            stall_cycles={n: StallCycles(self.stall_in[p], self.stall_out[p]) for p, n in enumerate(c.names)},
            peak_occupancy=peaks,
            token_times=token_times,
            firings_done=dict(zip(c.names, self.next_f, strict=True)),
        )


#TAIL
