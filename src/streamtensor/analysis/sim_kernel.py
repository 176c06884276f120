"""Compiled event loop of the timing simulator (:mod:`.timing_sim`): the same trace model and the same exact,
event-driven evaluation, one event at a time in machine code (numba).

Why compiled: with the small FIFOs the LP sizes, producers and consumers advance a few events at a time in
alternation, so the Python engine spends its time in per-batch overhead (about 10^5 batches per simulation of a
paper-size decode block, seconds per simulation); here an event costs nanoseconds, and the sizing search's
dozens of simulations take well under a second. ``timing_sim``'s Python engine (``engine="python"``) is kept as
the oracle: the tests compare both on every result field.

Layout (flat int64 arrays but for the int32 token -> firing tables ``wfir`` / ``rfir``, built once per network by
``timing_sim._Compiled.packed``):

* per process p: its ``ii`` and pipeline depth ``pdepth``; its firings ``fire_off[p] .. fire_off[p+1]`` of the
  results ``issue`` / ``complete`` (times of each firing's read / write event, -1 where never reached) and, per
  run, where ``rel_off[p]`` is not -1, its firings' release times (of each one's read) ``rel[rel_off[p]] ..`` (only
  the processes released, a network's sources: not an array over every firing); its input / output stream ids
  ``in_idx[in_off[p]:in_off[p+1]]`` / ``out_idx[...]``. Its trace is not stored: the kernel walks it from the
  firings read and written so far (``reads_done`` / ``writes_done``), in ``merge_traces``'s order;
* per stream s: its writer / reader ``src[s]`` / ``tgt[s]``; its tokens ``tok_off[s] .. tok_off[s+1]`` of
  ``wfir`` / ``rfir`` (the firing whose write / read event moves the token), and the padded token times ``wt`` /
  ``rt`` at ``tok_off[s] + s``: index k + 1 of a stream's segment is token k (the Python engine's layout, so both
  share the result code; index 0 is never read here, and a token's time only once it is known);
* per run: ``depth[s]`` (0: unbounded) and ``raw[s]``, the FIFO read latency.
"""

from __future__ import annotations

import numba
import numpy as np

# Every array index of ``execute`` goes through this cast: numba wraps a signed index around (a negative one counts
# from the end) with a shift and a mask per access, an unsigned one not. Its indices are never negative, and the
# cast costs no instruction (issue 21: a quarter of a simulation).
_u = numba.uint64

NEG = -(2**62)  # "no constraint" / padding time (timing_sim._NEG)
POS = 2**62  # time of an event not computed (yet) (timing_sim._POS)


@numba.njit(cache=True, nogil=True, inline="always")
def read_first(f: int, g: int, n: int, ii: int, depth: int) -> bool:
    """Whether a trace of ``n`` firings of pipeline ``ii`` / ``depth`` whose firings ``< f`` have read and ``< g``
    have written goes on with the read of firing f (else the write of firing g): ``merge_traces``'s order, by static
    time (``f * ii``, ``g * ii + depth``), ties to the older firing, then to the read. Scalars only: inlined, it costs
    the kernel nothing (array arguments would, ``execute``)."""
    rs = f * ii
    ws = g * ii + depth
    return g >= n or (f < n and (rs < ws or (rs == ws and f <= g)))


@numba.njit(cache=True, nogil=True)
def execute(order: np.ndarray, horizon: int, fire_off: np.ndarray, ii: np.ndarray, pdepth: np.ndarray,
            rel_off: np.ndarray, rel: np.ndarray, in_off: np.ndarray, in_idx: np.ndarray, out_off: np.ndarray,
            out_idx: np.ndarray, src: np.ndarray, tgt: np.ndarray, tok_off: np.ndarray, wfir: np.ndarray,
            rfir: np.ndarray, depth: np.ndarray, raw: np.ndarray, issue: np.ndarray, complete: np.ndarray,
            wt: np.ndarray, rt: np.ndarray, known_w: np.ndarray, known_r: np.ndarray, reads_done: np.ndarray,
            writes_done: np.ndarray, slip: np.ndarray, stall_in: np.ndarray, stall_out: np.ndarray) -> bool:
    """Advance processes (a FIFO work queue, in ``order`` first) until none can; False as soon as an event
    happens after ``horizon``. The state reached does not depend on the visiting order: every event is
    computed once, from dependencies that are final when it is.

    Advancing p computes its events from the read of firing ``reads_done[p]`` / the write of ``writes_done[p]``
    on, in trace order, while their dependencies are known. Event j (static time s_j): t_j = max(t_{j-1} + s_j -
    s_{j-1}, dep_j), i.e. the slip t - s grows by dep_j - s_j - slip where that is positive (a stall, charged to
    input-empty at a read, output-full at a write). A read's dep: its release, and every token it reads written
    + raw; a write's: for every token k it writes with k >= D, the read of token k - D, + 1. Each event then
    publishes its time to the tokens it moves and advances their known prefix. An event that moves no token
    (before the next read firing ``rf`` / write firing ``wf`` that does) skips the streams.

    Wake-ups are exact (issue 21: with small FIFOs a visit moves a token or two, and waking every neighbour after
    each cost a visit in four that advanced nothing): a process that stops records the one token it waits for,
    as ``need_w[s]`` (the reader of s: that token's write) or ``need_r[s]`` (the writer of s: the read that frees
    its slot), and the visit that makes it known queues that process. Each process is therefore queued, running,
    waiting for one token, or finished, and the queue never holds it twice. Nothing is lost: what it waits for
    was unknown when it stopped, and only a later visit of the stream's other end can publish it.

    No software prefetch (it once fetched the lines a visit touches next): measured again on these machines
    (issue 21), a paper-size GPT-2 prefill block's runs took 9% (bounded FIFOs) to 17% (unbounded) longer with it,
    and a Gemma prefill or Llama decode block's no less.

    One flat function on purpose (issue 21): numba passes every array argument of a helper call with an atomic
    reference count increment and decrement, even when it inlines the helper, and with the few events per visit
    that small FIFOs allow those atomics took three quarters of the time."""
    nproc = order.shape[0]
    nstr = depth.shape[0]
    queue = order.copy()
    head = 0
    count = nproc
    # What a blocked process waits for: the reader of s, the write of token need_w[s]; the writer of s, the read
    # of token need_r[s] (POS: nothing).
    need_w = np.full(nstr, POS, dtype=np.int64)
    need_r = np.full(nstr, POS, dtype=np.int64)
    # Per process, the next firing whose read / write moves a token (its firing count: none). Only the reader of
    # a stream advances its read prefix, and only the writer its write prefix: these stay valid between visits.
    next_rf = np.empty(nproc, dtype=np.int64)
    next_wf = np.empty(nproc, dtype=np.int64)
    for p in range(nproc):
        n = fire_off[_u(p + 1)] - fire_off[_u(p)]
        rf = n
        for i in range(in_off[_u(p)], in_off[_u(p + 1)]):
            s = in_idx[_u(i)]
            k = tok_off[_u(s)] + known_r[_u(s)]
            if k < tok_off[_u(s + 1)] and rfir[_u(k)] < rf:
                rf = rfir[_u(k)]
        wf = n
        for i in range(out_off[_u(p)], out_off[_u(p + 1)]):
            s = out_idx[_u(i)]
            k = tok_off[_u(s)] + known_w[_u(s)]
            if k < tok_off[_u(s + 1)] and wfir[_u(k)] < wf:
                wf = wfir[_u(k)]
        next_rf[_u(p)] = rf
        next_wf[_u(p)] = wf
    while count > 0:
        p = queue[_u(head)]
        head += 1
        if head == nproc:
            head = 0
        count -= 1
        fbase = fire_off[_u(p)]
        rbase = rel_off[_u(p)]
        n = fire_off[_u(p + 1)] - fbase
        f = reads_done[_u(p)]
        g = writes_done[_u(p)]
        start = f + g
        sl = slip[_u(p)]
        iip = ii[_u(p)]
        dp = pdepth[_u(p)]
        t = NEG
        o0, o1, i0, i1 = out_off[_u(p)], out_off[_u(p + 1)], in_off[_u(p)], in_off[_u(p + 1)]
        # The next firing whose read moves a token (rf) and whose write does (wf): the events before them have no
        # dependency but a release, and skip the streams.
        rf = next_rf[_u(p)]
        wf = next_wf[_u(p)]
        while g < n:
            rs = f * iip
            ws = g * iip + dp
            if read_first(f, g, n, iip, dp):  # the read of firing f comes next
                dep = rel[_u(rbase + f)] if rbase >= 0 else NEG
                if f == rf:
                    blocked = False
                    for i in range(i0, i1):
                        s = in_idx[_u(i)]
                        t0 = tok_off[_u(s)]
                        m = tok_off[_u(s + 1)] - t0
                        k = known_r[_u(s)]
                        last = -1
                        while k < m and rfir[_u(t0 + k)] == f:
                            last = k
                            k += 1
                        if last >= 0:
                            if last >= known_w[_u(s)]:
                                need_w[_u(s)] = last  # a token it reads is not written yet
                                blocked = True
                                break
                            # Write times rise with the token: the last one binds.
                            v = wt[_u(t0 + s + 1 + last)] + raw[_u(s)]
                            if v > dep:
                                dep = v
                    if blocked:
                        break
                grown = dep - rs - sl
                if grown > 0:
                    sl += grown
                    stall_in[_u(p)] += grown
                t = rs + sl
                issue[_u(fbase + f)] = t
                if f == rf:
                    rf = n
                    for i in range(i0, i1):  # publish the read times of the tokens it reads
                        s = in_idx[_u(i)]
                        t0 = tok_off[_u(s)]
                        m = tok_off[_u(s + 1)] - t0
                        k = known_r[_u(s)]
                        while k < m and rfir[_u(t0 + k)] == f:
                            rt[_u(t0 + s + 1 + k)] = t
                            k += 1
                        known_r[_u(s)] = k
                        if k < m and rfir[_u(t0 + k)] < rf:
                            rf = rfir[_u(t0 + k)]
                f += 1
                continue
            if g == wf:
                dep = NEG
                blocked = False
                for i in range(o0, o1):
                    s = out_idx[_u(i)]
                    d = depth[_u(s)]
                    t0 = tok_off[_u(s)]
                    m = tok_off[_u(s + 1)] - t0
                    k = known_w[_u(s)]
                    while k < m and wfir[_u(t0 + k)] == g:
                        if d > 0 and k >= d:
                            if k - d >= known_r[_u(s)]:
                                need_r[_u(s)] = k - d  # the read that frees the slot has not happened yet
                                blocked = True
                                break
                            v = rt[_u(t0 + s + 1 + k - d)] + 1
                            if v > dep:
                                dep = v
                        k += 1
                    if blocked:
                        break
                if blocked:
                    break
                grown = dep - ws - sl
                if grown > 0:
                    sl += grown
                    stall_out[_u(p)] += grown
                t = ws + sl
                complete[_u(fbase + g)] = t
                wf = n
                for i in range(o0, o1):  # publish the write times
                    s = out_idx[_u(i)]
                    t0 = tok_off[_u(s)]
                    m = tok_off[_u(s + 1)] - t0
                    k = known_w[_u(s)]
                    while k < m and wfir[_u(t0 + k)] == g:
                        wt[_u(t0 + s + 1 + k)] = t
                        k += 1
                    known_w[_u(s)] = k
                    if k < m and wfir[_u(t0 + k)] < wf:
                        wf = wfir[_u(t0 + k)]
            else:
                t = ws + sl
                complete[_u(fbase + g)] = t
            g += 1
        reads_done[_u(p)] = f
        next_rf[_u(p)] = rf
        next_wf[_u(p)] = wf
        writes_done[_u(p)] = g
        slip[_u(p)] = sl
        if f + g == start:
            continue
        if t > horizon:  # its last event so far, the latest
            return False
        for i in range(o0, o1):  # wake the readers whose token came, the writers whose slot was freed
            s = out_idx[_u(i)]
            if known_w[_u(s)] > need_w[_u(s)]:
                need_w[_u(s)] = POS
                tail = head + count
                if tail >= nproc:
                    tail -= nproc
                queue[_u(tail)] = tgt[_u(s)]
                count += 1
        for i in range(i0, i1):
            s = in_idx[_u(i)]
            if known_r[_u(s)] > need_r[_u(s)]:
                need_r[_u(s)] = POS
                tail = head + count
                if tail >= nproc:
                    tail -= nproc
                queue[_u(tail)] = src[_u(s)]
                count += 1
    return True


def peak_occupancies(write_times: np.ndarray, read_times: np.ndarray, shifts: np.ndarray,
                     candidates: np.ndarray | None = None) -> np.ndarray:
    """``timing_sim.peak_occupancy(write_times, read_times + x)`` for every x in ``shifts``; ``candidates``: the
    writes the peak can be at (``peak_candidates`` of the same times, default: found here), kept by a caller that
    asks again for other shifts (the FIFO LP evaluates every curve at dozens)."""
    if candidates is None:
        candidates = peak_candidates(write_times, read_times)
    return _peaks_at(write_times, read_times, candidates, shifts)


@numba.njit(cache=True, nogil=True)
def peak_candidates(write_times: np.ndarray, read_times: np.ndarray) -> np.ndarray:
    """The writes at which the FIFO's occupancy can peak, whatever the shift of the reads: every write but those
    followed within the smallest gap between two reads by the next one. Why: between writes k and k + 1 the
    reads (shifted alike) fall in a window of ``W[k+1] - W[k]`` cycles, and a window no longer than every gap
    between reads holds at most one, so the FIFO holds at least as many tokens after write k + 1 as after write
    k. A paper-size block's streams run at a few steady paces with rare long gaps: a few thousand candidates
    of a million writes (issue 21: the FIFO LP's evaluations of the depth curves were a fifth of a compile)."""
    n = write_times.shape[0]
    gap = POS
    for j in range(1, read_times.shape[0]):
        if read_times[j] - read_times[j - 1] < gap:
            gap = read_times[j] - read_times[j - 1]
    keep = np.empty(n, dtype=np.int64)
    m = 0
    for k in range(n):
        if k == n - 1 or write_times[k + 1] - write_times[k] > gap:
            keep[m] = k
            m += 1
    return keep[:m].copy()


@numba.njit(cache=True, nogil=True)
def _peaks_at(write_times: np.ndarray, read_times: np.ndarray, candidates: np.ndarray, shifts: np.ndarray
              ) -> np.ndarray:
    """``peak_occupancies`` from the candidate writes: at each, the reads strictly before it (shifted by x) counted
    on from the previous candidate's count: by a galloping search where candidates are sparse (O(candidates *
    log(reads between them)) per shift instead of a merge of every token), by the merge where they are not."""
    nr = read_times.shape[0]
    sparse = 4 * candidates.shape[0] < nr
    out = np.zeros(shifts.shape[0], dtype=np.int64)
    for i in range(shifts.shape[0]):
        x = shifts[i]
        j = 0  # reads strictly before the current candidate write
        peak = 0
        for c in range(candidates.shape[0]):
            k = candidates[c]
            w = write_times[k] - x  # read j is before write k iff read_times[j] + x < write_times[k]
            if not sparse:
                while j < nr and read_times[j] < w:
                    j += 1
            elif j < nr and read_times[j] < w:
                # Gallop: read_times[lo] < w, then find the first index at or past w.
                lo = j
                step = 1
                while lo + step < nr and read_times[lo + step] < w:
                    lo += step
                    step *= 2
                hi = min(lo + step, nr)  # read_times[hi] >= w, or hi == nr
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if read_times[mid] < w:
                        lo = mid
                    else:
                        hi = mid
                j = hi
            if k + 1 - j > peak:
                peak = k + 1 - j
        out[i] = peak
    return out


@numba.njit(cache=True, nogil=True)
def reflect(end: int, times: np.ndarray) -> None:
    """``times[:] = end - times[::-1]`` in place: a mirrored run's times read backwards from ``end``."""
    n = times.shape[0]
    for i in range((n + 1) // 2):
        a, b = times[i], times[n - 1 - i]
        times[i], times[n - 1 - i] = end - b, end - a


@numba.njit(cache=True, nogil=True)
def merge_traces(ii: np.ndarray, depth: np.ndarray, ev_off: np.ndarray, static: np.ndarray, firing: np.ndarray,
                 is_write: np.ndarray, read_pos: np.ndarray, write_pos: np.ndarray) -> None:
    """The static traces of processes of pipeline ``ii`` / ``depth`` and ``ev_off[p+1] - ev_off[p]`` events
    (``timing_sim.process_trace``): the reads ``f*ii`` and writes ``g*ii + depth``, both sorted, merged with
    ties going to the older firing, then to the read. ``read_pos`` / ``write_pos``: per firing (at
    ``ev_off[p] / 2``), the trace position of its read / write event."""
    for p in range(ii.shape[0]):
        base = ev_off[p]
        fbase = base // 2
        n = (ev_off[p + 1] - base) // 2
        f = 0
        g = 0
        for j in range(2 * n):
            rs = f * ii[p]
            ws = g * ii[p] + depth[p]
            if read_first(f, g, n, ii[p], depth[p]):
                static[base + j] = rs
                firing[base + j] = f
                is_write[base + j] = False
                read_pos[fbase + f] = j
                f += 1
            else:
                static[base + j] = ws
                firing[base + j] = g
                is_write[base + j] = True
                write_pos[fbase + g] = j
                g += 1


@numba.njit(cache=True, nogil=True)
def stall_spans(ii: int, depth: int, issue: np.ndarray, complete: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(start, end, off)``: the spans of the busy (0), input-empty (1) and output-full (2) states of one
    simulated process of pipeline ``ii`` / ``depth`` from its firings' ``issue`` / ``complete`` times, along its
    static trace as ``merge_traces`` orders it, without building the trace: every event whose slip grew waited
    ``growth`` cycles just before it (empty at a read, full at a write); the rest of ``[0, last event]`` is busy.
    A state that continues without a gap is merged into one span; the events after the first never reached (time
    -1, a deadlock) are left out. State k's spans, in time order, are ``off[k] .. off[k + 1]`` (every reader
    takes the spans of one state: grouped as they are written, not split afterwards). Two passes: the counts,
    then the spans (arrays of the exact size, of the times' type: a run's int32 times give int32 spans)."""
    at = np.zeros(3, dtype=np.int64)
    empty = np.empty(0, dtype=issue.dtype)
    _walk_spans(ii, depth, issue, complete, empty, empty, at, False)
    off = np.zeros(4, dtype=np.int64)
    off[1:] = np.cumsum(at)
    start = np.empty(off[3], dtype=issue.dtype)
    end = np.empty(off[3], dtype=issue.dtype)
    at[:] = off[:3]
    _walk_spans(ii, depth, issue, complete, start, end, at, True)
    return start, end, off


@numba.njit(cache=True, nogil=True, inline="always")
def _emit_span(start: np.ndarray, end: np.ndarray, at: np.ndarray, fill: bool, a: int, b: int, k: int) -> None:
    """Span ``[a, b)`` of state ``k`` at its state's next place ``at[k]`` (written where ``fill``)."""
    if fill:
        start[at[k]] = a
        end[at[k]] = b
    at[k] += 1


@numba.njit(cache=True, nogil=True)
def _walk_spans(ii: int, depth: int, issue: np.ndarray, complete: np.ndarray, start: np.ndarray, end: np.ndarray,
                at: np.ndarray, fill: bool) -> None:
    """The spans of ``stall_spans``, counted per state in ``at`` (and written at its places where ``fill``).
    The span being built is kept in ``a`` .. ``b`` / ``k`` until one that does not continue it comes."""
    n = issue.shape[0]
    a, b, k = 0, 0, -1  # the open span (k -1: none yet)
    f = 0
    g = 0
    slip = 0
    pos = 0  # where the busy stretch since the last stall began
    finish = -1
    for _ in range(2 * n):
        rs = f * ii
        ws = g * ii + depth
        if read_first(f, g, n, ii, depth):
            t = issue[f]
            st = 1
            s = rs
            f += 1
        else:
            t = complete[g]
            st = 2
            s = ws
            g += 1
        if t < 0:
            break
        grown = t - s - slip
        finish = t
        if grown <= 0:
            continue
        slip += grown
        for j in range(2):  # the busy stretch before the stall, then the stall
            lo, hi, kind = (pos, t - grown, 0) if j == 0 else (t - grown, t, st)
            if hi <= lo:
                continue
            if k == kind and b == lo:
                b = hi
                continue
            if k >= 0:
                _emit_span(start, end, at, fill, a, b, k)
            a, b, k = lo, hi, kind
        pos = t
    if finish > pos:
        if k == 0 and b == pos:
            b = finish
        else:
            if k >= 0:
                _emit_span(start, end, at, fill, a, b, k)
            a, b, k = pos, finish, 0
    if k >= 0:
        _emit_span(start, end, at, fill, a, b, k)


@numba.njit(cache=True, nogil=True)
def resume_state(cut: int, fire_off: np.ndarray, ii: np.ndarray, pdepth: np.ndarray, issue: np.ndarray,
                 complete: np.ndarray, reads_before: np.ndarray, writes_before: np.ndarray, reads_done: np.ndarray,
                 writes_done: np.ndarray, slip: np.ndarray, stall_in: np.ndarray, stall_out: np.ndarray) -> None:
    """Per process, the firings read / written, slip and stalls ``execute`` holds once it has computed exactly the
    events of the firing times ``issue`` / ``complete`` of a run that happen before ``cut``, of those that run
    computed (its firings ``reads_before`` / ``writes_before`` read / written: all, unless it deadlocked): event
    times never fall along a trace, so those events are a prefix of it (walked in ``merge_traces``'s order), and
    the slip after an event is its time less its static time (``execute``'s recurrence)."""
    for p in range(ii.shape[0]):
        fbase = fire_off[p]
        n = fire_off[p + 1] - fbase
        iip = ii[p]
        sl = 0
        f = 0
        g = 0
        while f < n or g < n:
            rs = f * iip
            ws = g * iip + pdepth[p]
            if read_first(f, g, n, iip, pdepth[p]):
                if f >= reads_before[p]:
                    break
                t = issue[fbase + f]
                if t >= cut:
                    break
                if t - rs > sl:
                    stall_in[p] += t - rs - sl
                    sl = t - rs
                f += 1
            else:
                if g >= writes_before[p]:
                    break
                t = complete[fbase + g]
                if t >= cut:
                    break
                if t - ws > sl:
                    stall_out[p] += t - ws - sl
                    sl = t - ws
                g += 1
        reads_done[p] = f
        writes_done[p] = g
        slip[p] = sl
