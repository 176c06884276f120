"""``trace.json``: the timing simulation in the Chrome trace-event format (JSON object form), which Perfetto and
chrome://tracing open. One process (``pid``) per fusion group, one thread (``tid``) per dataflow process with a
complete event (``ph: "X"``) per busy / stalled span, and a counter (``ph: "C"``) per FIFO with the tokens it
holds. Times are modelled microseconds at the target clock (``cycle / clock_mhz``); ``otherData`` says so.

Spans are exact for a process with at most ``SPAN_POINTS`` of them; a busier one (a fine tiling alternates busy and
stalled millions of times: a 650 MB trace that no viewer opens) is shown as ``SPAN_POINTS`` equal slices of its
run, each named by the state it spent most cycles in, with every state's cycles in its ``args`` (category
``coalesced``), so the stall totals still add up.

Counters are exact (every change of level) for a FIFO that changes level at most ``COUNTER_POINTS`` times; a
busier one is sampled: the highest level in each of ``COUNTER_POINTS`` equal slices of its active time, so the
peak always shows.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from streamtensor._version import GENERATOR

from .model import STATES, ReportModel, Spans, StreamInfo, occupancy_steps

COUNTER_POINTS = 1000
SPAN_POINTS = 2000


def trace_json(model: ReportModel) -> str:
    """The trace of ``model`` as JSON text, one event a line (spans and counters formatted directly: a paper-size
    block has hundreds of thousands)."""
    mhz = float(model.target.clock_mhz)
    meta: list[dict[str, Any]] = []
    lines: list[str] = []
    for g, offset in enumerate(model.group_offsets):
        meta.append({"ph": "M", "name": "process_name", "pid": g, "tid": 0,
                     "args": {"name": f"fusion group {g} (starts at cycle {offset})"}})
        meta.append({"ph": "M", "name": "process_sort_index", "pid": g, "tid": 0, "args": {"sort_index": g}})
    names = [json.dumps(n) for n in STATES]
    cats = ['"busy"', '"stall"', '"stall"']
    for tid, p in enumerate(model.processes.values(), start=1):
        meta.append({"ph": "M", "name": "thread_name", "pid": p.group, "tid": tid, "args": {"name": p.name}})
        meta.append({"ph": "M", "name": "thread_sort_index", "pid": p.group, "tid": tid,
                     "args": {"sort_index": tid}})
        sp = p.spans
        if sp.count > SPAN_POINTS:
            lines.extend(_coalesced_lines(sp, p.group, tid, mhz))
            continue
        for st, (start, end) in enumerate(sp.by_state):
            if not len(start):
                continue
            # A float's repr is most of a line's cost: the few distinct durations are formatted once each, and the
            # part of a line fixed by its process and state once per state.
            ts = map(repr, np.round(start / mhz, 6).tolist())
            cycles, inverse = np.unique(end - start, return_inverse=True)
            dur = [f',"dur":{d!r}}}' for d in np.round(cycles / mhz, 6).tolist()]
            head = f'{{"ph":"X","name":{names[st]},"cat":{cats[st]},"pid":{p.group},"tid":{tid},"ts":'
            lines.extend(head + t + dur[i] for t, i in zip(ts, inverse.tolist(), strict=True))
    for s in model.streams:
        head = f'{{"ph":"C","name":{json.dumps(f"fifo {s.name}")},"pid":{s.group},"ts":'
        times, levels = _counter_points(s)
        lines.extend(f'{head}{t!r},"args":{{"tokens":{v}}}}}'
                     for t, v in zip(np.round(times / mhz, 6).tolist(), levels.tolist(), strict=True))
    other = {
        "tool": GENERATOR, "model": model.report.get("model"), "mode": model.report.get("mode"),
        "time": f"modelled: timing simulation cycles at {mhz:g} MHz (ts and dur in microseconds)",
        "clock_mhz": mhz, "makespan_cycles": model.makespan,
        "counters": f"tokens held by each FIFO; exact up to {COUNTER_POINTS} changes, else the maximum per "
                    f"1/{COUNTER_POINTS} of its active time",
    }
    events = [json.dumps(m, separators=(",", ":")) for m in meta] + lines
    # otherData first: the file's first line names the tool.
    return ('{"otherData":' + json.dumps(other, separators=(",", ":")) + ',"displayTimeUnit":"ns",'
            '"traceEvents":[\n' + ",\n".join(events) + "\n]}\n")


def coalesced_spans(sp: Spans, points: int = SPAN_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(edges, cycles): ``points`` + 1 slice edges over ``sp``'s run and, per slice, the cycles of each state
    (shape ``points`` x len(STATES)); the spans tile the run, so a slice's cycles add up to its length."""
    edges = np.unique(np.linspace(sp.first, sp.last, points + 1).round().astype(np.int64))
    cycles = np.zeros((len(edges) - 1, len(STATES)), dtype=np.int64)
    for state in range(len(STATES)):
        cycles[:, state] = np.diff(sp.cycles_before(state, edges))
    return edges, cycles


def _coalesced_lines(sp: Spans, pid: int, tid: int, mhz: float) -> list[str]:
    """The complete events of a busy process's slices (module docstring)."""
    edges, cycles = coalesced_spans(sp)
    names = [json.dumps(n) for n in STATES]
    head = [f'{{"ph":"X","name":{n},"cat":"coalesced","pid":{pid},"tid":{tid},"ts":' for n in names]
    ts = np.round(edges[:-1] / mhz, 6).tolist()
    dur = np.round(np.diff(edges) / mhz, 6).tolist()
    # Named after the state of the most cycles (the first of equals); every state's cycles in one format.
    args = ",".join(f"{n}:{{}}" for n in names)  # the states' names hold no braces
    return [f'{head[w]}{t!r},"dur":{d!r},"args":{{{args.format(*row)}}}}}'
            for t, d, w, row in zip(ts, dur, np.argmax(cycles, axis=1).tolist(), cycles.tolist(), strict=True)]


def _counter_points(s: StreamInfo) -> tuple[np.ndarray, np.ndarray]:
    """(cycles, tokens held) of the FIFO's counter (module docstring)."""
    times, level = occupancy_steps(s.write_times, s.read_times)
    if len(times) <= COUNTER_POINTS:
        return times, level
    edges = np.linspace(times[0], times[-1], COUNTER_POINTS + 1)[:-1]
    # The changes in each slice (edges[i] <= time < edges[i + 1]) are a run of ``times``: its highest level (0 for a
    # slice without any).
    first = np.searchsorted(times, edges, side="left")
    empty = first == np.append(first[1:], len(times))
    peak = np.where(empty, 0, np.maximum(np.maximum.reduceat(level, first), 0))
    # The level a slice starts with: that of the last change at or before its start.
    before = np.searchsorted(times, edges, side="right") - 1
    value = np.maximum(peak, np.where(before >= 0, level[np.maximum(before, 0)], 0))
    return (np.concatenate([edges.astype(np.int64), times[-1:]]), np.concatenate([value, level[-1:]]))
