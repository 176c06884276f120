"""``trace.json``: the timing simulation in the Chrome trace-event format (JSON object form), which Perfetto and
chrome://tracing open. One process (``pid``) per fusion group, one thread (``tid``) per dataflow process with a
complete event (``ph: "X"``) per busy / stalled span, and a counter (``ph: "C"``) per FIFO with the tokens it
holds. Times are modelled microseconds at the target clock (``cycle / clock_mhz``); ``otherData`` says so.

Counters are exact (every change of level) for a FIFO that changes level at most ``COUNTER_POINTS`` times; a
busier one is sampled: the highest level in each of ``COUNTER_POINTS`` equal slices of its active time, so the
peak always shows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamtensor._version import GENERATOR

from .model import STATES, ReportModel, StreamInfo, occupancy_steps

COUNTER_POINTS = 1000


def trace_events(model: ReportModel) -> dict[str, Any]:
    """The trace of ``model`` as a JSON-ready object."""
    mhz = float(model.target.clock_mhz)
    events: list[dict[str, Any]] = []
    for g, offset in enumerate(model.group_offsets):
        events.append({"ph": "M", "name": "process_name", "pid": g, "tid": 0,
                       "args": {"name": f"fusion group {g} (starts at cycle {offset})"}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": g, "tid": 0, "args": {"sort_index": g}})
    for tid, p in enumerate(model.processes.values(), start=1):
        events.append({"ph": "M", "name": "thread_name", "pid": p.group, "tid": tid, "args": {"name": p.name}})
        events.append({"ph": "M", "name": "thread_sort_index", "pid": p.group, "tid": tid,
                       "args": {"sort_index": tid}})
        sp = p.spans
        for start, end, state in zip(sp.start.tolist(), sp.end.tolist(), sp.state.tolist(), strict=True):
            events.append({"ph": "X", "name": STATES[state], "cat": "busy" if state == 0 else "stall",
                           "pid": p.group, "tid": tid, "ts": round(start / mhz, 6),
                           "dur": round((end - start) / mhz, 6)})
    for s in model.streams:
        for t, level in _counter_points(s):
            events.append({"ph": "C", "name": f"fifo {s.name}", "pid": s.group, "ts": round(t / mhz, 6),
                           "args": {"tokens": level}})
    return {
        "traceEvents": events,
        "displayTimeUnit": "ns",
        "otherData": {
            "tool": GENERATOR, "model": model.report.get("model"), "mode": model.report.get("mode"),
            "time": f"modelled: timing simulation cycles at {mhz:g} MHz (ts and dur in microseconds)",
            "clock_mhz": mhz, "makespan_cycles": model.makespan,
            "counters": f"tokens held by each FIFO; exact up to {COUNTER_POINTS} changes, else the maximum per "
                        f"1/{COUNTER_POINTS} of its active time",
        },
    }


def _counter_points(s: StreamInfo) -> list[tuple[int, int]]:
    times, level = occupancy_steps(s.write_times, s.read_times)
    if len(times) <= COUNTER_POINTS:
        return list(zip(times.tolist(), level.tolist(), strict=True))
    edges = np.linspace(times[0], times[-1], COUNTER_POINTS + 1)[:-1]
    slot = np.searchsorted(edges, times, side="right") - 1
    peak = np.zeros(COUNTER_POINTS, dtype=np.int64)
    np.maximum.at(peak, slot, level)
    # The level a slice starts with: that of the last change at or before its start.
    before = np.searchsorted(times, edges, side="right") - 1
    value = np.maximum(peak, np.where(before >= 0, level[np.maximum(before, 0)], 0))
    points = [(int(edges[i]), int(value[i])) for i in range(COUNTER_POINTS)]
    points.append((int(times[-1]), int(level[-1])))
    return points
