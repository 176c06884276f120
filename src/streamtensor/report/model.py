"""What the report shows, gathered from a compile's output directory: ``report.json``, ``dataflow.mlir`` and the
timing simulation, run again on the process network of every fusion group with the FIFO depths the allocation
simulated (``report["fifos"]``). The re-run is exact and deterministic, so its makespan must equal
``report["simulation"]``'s; a difference is an error, not a page that disagrees with the report. The compile
itself, which holds each group's network and simulation already, hands them over instead (``simulated``): the
same exact results, without a second simulation of a paper-size block (issue 21: compile speed).

Timeline (per process, from the simulator's per-firing issue / completion times): along the process's static
trace (``timing_sim.process_trace``, walked by ``sim_kernel.stall_spans``) every event whose slip grew waited
``growth`` cycles just before it, on an empty input at a read event, on a full output at a write event; the rest
of ``[0, last write]`` is busy. The stall cycles of these spans add up to the simulator's ``stall_cycles``
(checked here). Groups run one after another, so group ``g``'s cycles are offset by the makespans of the groups
before it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numba
import numpy as np

from streamtensor.analysis.hbm import dma_token_bytes
from streamtensor.analysis.memory import absorbed_converters, node_groups
from streamtensor.analysis.process_network import ProcessNetwork
from streamtensor.analysis.sim_kernel import stall_spans
from streamtensor.analysis.timing_model import build_process_network, dma_placement
from streamtensor.analysis.timing_sim import SimResult, simulate
from streamtensor.codegen.vitis.boards import get_target
from streamtensor.errors import StreamTensorError
from streamtensor.ir.dataflow import ConverterNode, DataflowGraph, DmaNode, KernelNode
from streamtensor.ir.dataflow_parser import parse_dataflow
from streamtensor.target import Target

BUSY, EMPTY, FULL = 0, 1, 2
STATES = ("busy", "stalled: input empty", "stalled: output full")


class ReportInputError(StreamTensorError):
    """The output directory lacks what the report is made from, or its files disagree."""


@dataclass(frozen=True)
class Spans:
    """One process's timeline: per state (BUSY, EMPTY, FULL), the ``[start, end)`` cycles (global: group offset
    included) of its spans, in time order. A fine tiling's process has millions of spans: the page, the trace and
    the totals each read one state's, so they are kept apart as the compiled walk writes them."""

    by_state: tuple[tuple[np.ndarray, np.ndarray], ...]

    @property
    def count(self) -> int:
        return sum(len(start) for start, _ in self.by_state)

    @property
    def first(self) -> int:
        """The cycle the first span starts (0 with no span)."""
        return min((int(start[0]) for start, _ in self.by_state if len(start)), default=0)

    @property
    def last(self) -> int:
        """The cycle the last span ends (0 with no span)."""
        return max((int(end[-1]) for _, end in self.by_state if len(end)), default=0)

    def cycles_before(self, state: int, at: np.ndarray) -> np.ndarray:
        """Cycles spent in ``state`` before each cycle of ``at``: the spans that ended, plus the part of the one
        running. Read at those cycles only (a fine tiling's process has millions of spans)."""
        start, end = self.by_state[state]
        if not len(start):
            return np.zeros(len(at), dtype=np.int64)
        # Spans started at or before each cycle; the cycles in the spans' type (numpy would copy int32 spans to
        # compare them with int64 cycles), those past its range clipped to it (past every span either way).
        k = np.searchsorted(start, np.minimum(at, np.iinfo(start.dtype).max).astype(start.dtype), side="right")
        last = np.maximum(k - 1, 0)
        length = end[last] - start[last]
        done = np.cumsum(end - start)[last] - length  # the spans before the last one started
        return np.where(k > 0, done + np.clip(at - start[last], 0, length), 0)

    @cached_property
    def _cycles(self) -> tuple[int, ...]:
        return tuple(int((end - start).sum()) for start, end in self.by_state)

    def cycles(self, state: int) -> int:
        return self._cycles[state]


@dataclass
class ProcessInfo:
    name: str
    group: int
    kind: str
    spans: Spans
    finish: int  # global cycle of its last write event
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class StreamInfo:
    name: str
    group: int
    source: str
    target: str
    width_bits: int
    tokens: int
    depth: int | None
    peak: int
    itype: str
    memory: str | None
    write_times: np.ndarray  # per token, global cycles
    read_times: np.ndarray


@dataclass
class ReportModel:
    """Everything the page and the trace show."""

    report: dict[str, Any]
    target: Target
    group_offsets: list[int]
    makespan: int
    processes: dict[str, ProcessInfo]  # keyed by process name (unique over the groups: implicit DMAs are named
    streams: list[StreamInfo]  # by their stream, ``<stream>.dma_read`` / ``.dma_write``)
    crossings: list[tuple[str, str, str]]  # (stream, writer DMA, reader DMA) through external memory
    critical_path: list[str]
    bottleneck: str
    hbm_channels: dict[int, int]  # pseudo-channel -> bytes streamed per run
    dma_channels: dict[str, tuple[tuple[int, int], ...]]  # DMA -> (first, last) pseudo-channel per stripe
    deadlocks: list[str]  # the wait-for cycle of each group whose simulation deadlocks (--allow-deadlock)


def load_model(outdir: str | Path, target: Target | None = None,
               simulated: Sequence[tuple[ProcessNetwork, SimResult]] | None = None) -> ReportModel:
    """The report model of a ``streamtensor compile`` output directory (see module docstring); ``target``: the
    design's, where it is not one of the named boards (an API user's scaled target); ``simulated``: per fusion
    group, the compile's process network and its simulation with the sized FIFOs (default: built and simulated
    again from the files)."""
    out = Path(outdir)
    report = _read_json(out / "report.json")
    dataflow = out / "dataflow.mlir"
    if not dataflow.is_file():
        raise ReportInputError(f"{out}: no dataflow.mlir (not a compile output directory)")
    graph = parse_dataflow(dataflow.read_text(), str(dataflow))
    if "simulation" not in report or "fifos" not in report:
        raise ReportInputError(f"{out}: the design has no FIFO sizing and simulation (compiled with "
                               "--stop-after-dataflow): nothing to show a timeline of")
    if target is None:
        try:
            target = get_target(report["options"]["target"])
        except StreamTensorError:
            raise ReportInputError(f"{out}: target '{report['options']['target']}' is not a board this compiler "
                                   "knows (a Target of the API: write the report with it)") from None
    groups = node_groups(graph)
    count = max(groups.values(), default=-1) + 1
    depths: dict[int, dict[str, int]] = {}
    memories: dict[tuple[int, str], str] = {}
    for f in report["fifos"]:
        depths.setdefault(f["group"], {})[f["stream"]] = f["depth"]
        memories[(f["group"], f["stream"])] = f["memory"]
    processes: dict[str, ProcessInfo] = {}
    streams: list[StreamInfo] = []
    offsets: list[int] = []
    hbm: dict[int, int] = {}
    dma_channels: dict[str, tuple[tuple[int, int], ...]] = {}
    deadlocks: list[str] = []
    offset = 0
    if simulated is not None and len(simulated) != count:
        raise ReportInputError(f"{out}: {len(simulated)} simulated fusion groups handed over, dataflow.mlir has "
                               f"{count}")
    for g in range(count):
        if simulated is None:
            net = build_process_network(graph, target, g)
            sim = simulate(net, depths.get(g, {}))
        else:
            net, sim = simulated[g]
        if sim.deadlock:
            deadlocks.append(f"fusion group {g}: {sim.describe()}")
        offsets.append(offset)
        for p in net.processes:
            spans = process_spans(net, sim, p.name, offset)
            _check_stalls(spans, sim, p.name)
            finish = spans.last if spans.count else offset
            processes[p.name] = ProcessInfo(p.name, g, _kind(graph, p.name), spans, finish, _details(graph, p.name))
        for s in net.streams:
            # The times of the tokens written / read (a deadlock leaves the rest out), as the simulation keeps them
            # (read only here: shifted by the group's offset into int64 copies, as the spans).
            wt, rt = sim.stream_times[s.name]
            streams.append(StreamInfo(
                s.name, g, s.source, s.target, s.width_bits, s.tokens, depths.get(g, {}).get(s.name),
                sim.peak_occupancy[s.name], str(graph.streams[s.name].type) if s.name in graph.streams else "",
                memories.get((g, s.name)), _shifted(wt, offset), _shifted(rt, offset)))
        _hbm_traffic(graph, net, groups, g, target, hbm, dma_channels)
        # A deadlocked group ends (for the page) at its last event.
        offset = max([offset + (sim.makespan_cycles or 0)] + [processes[p.name].finish for p in net.processes])
    expected = report["simulation"]["makespan_cycles"]
    if bool(deadlocks) != report["simulation"]["deadlock"] or (not deadlocks and expected != offset):
        raise ReportInputError(f"{out}: the timing simulation of dataflow.mlir ends at cycle {offset}, report.json "
                               f"says {expected}: the files are from different compiles")
    crossings = [(s.name, f"{s.name}.dma_write", f"{s.name}.dma_read" if f"{s.name}.dma_read" in processes
                  else s.target) for s in graph.streams.values() if groups.get(s.source) != groups.get(s.target)]
    links = [(s.source, s.target) for s in streams] + [(a, b) for _, a, b in crossings]
    return ReportModel(report, target, offsets, offset, processes, streams, crossings,
                       critical_path(processes, links), bottleneck(processes), dict(sorted(hbm.items())),
                       dma_channels, deadlocks)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportInputError(f"{path.parent}: no report.json (not a streamtensor output directory)") from None
    except (OSError, json.JSONDecodeError) as err:
        raise ReportInputError(f"cannot read {path}: {err}") from None


def process_spans(net: ProcessNetwork, sim: SimResult, name: str, offset: int = 0) -> Spans:
    """Busy / stalled spans of process ``name`` (module docstring), merged where one state continues
    (``sim_kernel.stall_spans``: one pass over its firings, no trace built)."""
    proc = net.process(name)
    ft = sim.firing_times[name]
    start, end, off = stall_spans(proc.ii, proc.depth, ft.issue, ft.complete)
    start, end = _shifted(start, offset), _shifted(end, offset)
    bounds = off.tolist()
    return Spans(tuple((start[a:b], end[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)))


def _shifted(times: np.ndarray, offset: int) -> np.ndarray:
    """``times`` of a later fusion group shifted by its ``offset``, in int64: the offset and a time of an int32 run
    may pass int32 together. Group 0's (offset 0) as they are."""
    return times.astype(np.int64) + offset if offset else times


def _check_stalls(spans: Spans, sim: SimResult, name: str) -> None:
    """The spans' stall cycles are the simulator's own totals (a bug here, not bad input, if not)."""
    stalls = sim.stall_cycles[name]
    got = (spans.cycles(EMPTY), spans.cycles(FULL))
    if got != (stalls.input_empty, stalls.output_full):
        raise AssertionError(f"{name}: timeline stalls {got} differ from the simulation's {stalls}")


def occupancy_steps(write_times: np.ndarray, read_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FIFO occupancy as a step function: ``(times, tokens held from that cycle on)``. A token is held from its
    write cycle through its read cycle (``timing_sim``'s depth convention), so its -1 lands the cycle after. Both
    sorted (a FIFO's token times): one compiled merge (a fine tiling's FIFO moves millions of tokens)."""
    if len(write_times) == 0:  # nothing written (a deadlock before the first token)
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return _occupancy_steps(np.ascontiguousarray(write_times), np.ascontiguousarray(read_times))  # int32 or int64


@numba.njit(cache=True, nogil=True)
def _occupancy_steps(write_times: np.ndarray, read_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``occupancy_steps``: the +1 of every write and the -1 of every read (the cycle after it) merged in time
    order, one step per cycle that changes the level (the level after all of that cycle's changes)."""
    nw, nr = write_times.shape[0], read_times.shape[0]
    times = np.empty(nw + nr, dtype=np.int64)
    level = np.empty(nw + nr, dtype=np.int64)
    i = j = m = held = 0
    while i < nw or j < nr:
        if i < nw and (j == nr or write_times[i] <= read_times[j] + 1):
            t = write_times[i]
            if i + 1 < nw and write_times[i + 1] < t:
                raise ValueError("FIFO write times out of order")
            held += 1
            i += 1
        else:
            t = read_times[j] + 1
            if j + 1 < nr and read_times[j + 1] + 1 < t:
                raise ValueError("FIFO read times out of order")
            held -= 1
            j += 1
        if m > 0 and times[m - 1] == t:
            level[m - 1] = held
        else:
            times[m] = t
            level[m] = held
            m += 1
    return times[:m].copy(), level[:m].copy()


def critical_path(processes: dict[str, ProcessInfo], links: list[tuple[str, str]]) -> list[str]:
    """The chain of processes, along ``links`` (streams, and external memory from one group to the next), that
    ends at the process finishing last and has the most busy cycles in total: the work the end of the run is
    waiting on (stalls are waits on others, not work). A link that closes a cycle (none in a dataflow graph
    built by the compiler) is not followed."""
    preds: dict[str, list[str]] = {n: [] for n in processes}
    succs: dict[str, list[str]] = {n: [] for n in processes}
    for a, b in links:
        preds[b].append(a)
        succs[a].append(b)
    indeg = {n: len(v) for n, v in preds.items()}
    ready = sorted(n for n, d in indeg.items() if d == 0)
    weight: dict[str, int] = {}
    best: dict[str, str | None] = {}
    while ready:
        n = ready.pop()
        done = [p for p in preds[n] if p in weight]
        prev = max(done, key=lambda p: (weight[p], p)) if done else None
        best[n] = prev
        weight[n] = processes[n].spans.cycles(BUSY) + (weight[prev] if prev is not None else 0)
        for m in succs[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    last = max((p for p in processes.values() if p.name in weight), key=lambda p: (p.finish, p.name)).name
    path = [last]
    while (prev := best[path[-1]]) is not None:
        path.append(prev)
    return path[::-1]


def bottleneck(processes: dict[str, ProcessInfo]) -> str:
    """The process busy the longest: the one the others wait for."""
    return max(processes.values(), key=lambda p: (p.spans.cycles(BUSY), p.name)).name


def _kind(graph: DataflowGraph, name: str) -> str:
    node = graph.nodes.get(name)
    if node is None:  # an implicit DMA of a stream crossing fusion groups
        return "dma_write" if name.endswith(".dma_write") else "dma_read"
    if isinstance(node, DmaNode):
        return f"dma_{node.direction}"
    return node.kind


def _details(graph: DataflowGraph, name: str) -> dict[str, Any]:
    node = graph.nodes.get(name)
    if node is None:
        return {"implicit": "DMA of a stream that crosses fusion groups (through external memory)"}
    out: dict[str, Any] = {k: v for k, v in node.attributes.items() if isinstance(v, (int, float, str))}
    if isinstance(node, KernelNode):
        out["op"] = node.op.name.rsplit("_", 1)[0]
        out["loops"] = " x ".join(f"{lt.size}/{lt.tile}/{lt.unroll}{'r' if lt.reduction else ''}"
                                  for lt in node.loops)
    elif isinstance(node, ConverterNode):
        out["reason"] = node.reason
        out["buffer"] = "x".join(map(str, node.buffer.shape))
        out["buffer_bytes"] = node.buffer.bytes
    elif isinstance(node, DmaNode):
        out["tensor"] = node.tensor.name
        out["role"] = node.role
    return out


def _hbm_traffic(graph: DataflowGraph, net: ProcessNetwork, groups: dict[str, int], g: int, target: Target,
                 hbm: dict[int, int], dma_channels: dict[str, tuple[tuple[int, int], ...]]) -> None:
    """Bytes each DMA of group ``g`` streams per run (tokens x bus bytes per token), spread evenly over the
    pseudo-channels of its tensor's stripe ranges (``analysis.hbm``)."""
    members = {n for n, gi in groups.items() if gi == g}
    crossing_in = [s for s in graph.streams.values() if s.target in members and s.source not in members]
    crossing_out = [s for s in graph.streams.values() if s.source in members and s.target not in members]
    absorbed = set(absorbed_converters(graph)) & members
    placement = dma_placement(graph, members, crossing_in, crossing_out, absorbed, target)
    for s in net.streams:
        for dma in (s.source, s.target):
            ranges = placement.dma_ranges.get(dma)
            if ranges is None:
                continue
            dma_channels[dma] = ranges
            itype = graph.streams[s.name].type
            moved = s.tokens * dma_token_bytes(itype, target)
            channels = [c for first, last in ranges for c in range(first, last + 1)]
            share, rest = divmod(moved, len(channels))
            for i, c in enumerate(channels):
                hbm[c] = hbm.get(c, 0) + share + (i < rest)  # every byte counted once
