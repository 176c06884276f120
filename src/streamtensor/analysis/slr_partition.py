"""Die (SLR) partitioning as an integer linear program solved by HiGHS (spec §4.3).

SLRs are stacked in a row (SLR0-SLR1-SLR2), so a node's placement is told by which die boundaries it lies
above. Variables: ``y[n,b]`` binary for each boundary b = 1 .. S-1 (between SLR b-1 and SLR b), node n on
SLR b or above, with ``y[n,b] >= y[n,b+1]``; the node's SLR index is ``p_n = sum_b y[n,b]`` and it is on SLR s
iff ``y[n,s] - y[n,s+1] = 1`` (``y[n,0] = 1``, ``y[n,S] = 0``); ``h_eb >= 0`` per stream e and boundary b;
``t_r >= 0`` per resource. (Binaries per boundary rather than one-hot ``x[n,s]``: the same integer points and
objective, but a branch decides one side of one boundary and a crossing row has two binaries, not 2(S-b).
HiGHS proves the optimum of every paper-size block in 21 CPU s, all 30 together, where the one-hot model took
28 s, and 22 s to get only within 20% of it; issue 21.)

- **Die crossings.** A stream between SLRs a and b passes ``|a - b|`` die boundaries and takes its token
  width in super-long lines at each. Linearized per boundary: ``h_eb >= y_ub - y_vb`` and
  ``h_eb >= y_vb - y_ub``; minimization makes ``sum_b h_eb = |p_u - p_v|``. Cost
  ``sum_e token_bits_e * sum_b h_eb`` (``crossing_bits``); it is the plain "bits on streams whose ends differ"
  whenever no stream skips a die.
- **HBM on its SLR** (``Target.hbm.slr``, SLR0 on the U55C and U280; below ``w`` is the target's m_axi width,
  512 bits). Every external-memory port is a ``w``-bit AXI link to the HBM:
  a node with ``k`` such ports (a DMA node: 1; a node with streams to other fusion groups or to nodes
  outside the partitioned set, which go through external memory: one per such stream) is charged
  ``w * k * |p_n - hbm|``, as if a ``w``-bit stream tied it to a fixed node there. A DMA thus sits there unless
  its on-chip stream is wider than its AXI link, where crossing with the narrower bus is cheaper.
- **Capacity.** ``use_{r,s} = sum_n res_{n,r} (y[n,s] - y[n,s+1]) <= cap_r = slack * budget_r`` (one die's
  budget) for r in dsp, bram36, uram, lut (resources from ``estimate_resources``; ``slack < 1`` keeps headroom per
  die for the platform shell and routing, ``> 1`` lets a die take more than a third).
- **Imbalance.** ``t_r >= use_{r,s} / cap_r`` for every s: ``t_r`` is the peak per-die utilization of r;
  the objective adds ``imbalance_weight * sum_r t_r`` (bits per unit of peak utilization; the default 1000
  makes ten points of peak utilization worth 100 crossing bits, a tie-breaker below real wiring).

Objective: ``sum_e bits_e sum_b h_eb + w sum_n k_n |p_n - hbm| + imbalance_weight sum_r t_r``.

The solver runs under ``time_limit_s`` and, if given, ``max_nodes`` branch-and-bound nodes (HiGHS's
``mip_max_nodes``: a work limit, so the plan does not depend on the machine's load as a wall-clock limit's does).
It starts from a feasible greedy assignment when one exists (fill SLR0, then SLR1, then SLR2 in topological
order), so a limited run still returns an assignment: the best incumbent, flagged by ``time_limit_hit`` (or
``node_limit_hit``) and a non-optimal ``status``.

With a ``memo`` directory the solver's answer is kept on disk (``solve_memo``), keyed by the whole model it was
given (columns, rows, start, options): HiGHS is deterministic on one thread, so the same model gets the same
answer, and a second compile of a block reads it instead of solving again (issue 21: 3-7 s of a paper-size
prefill block's compile). An answer cut short by the time limit depends on the machine's load: it is not kept.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import highspy
import numpy as np

from streamtensor.errors import OptionError, StreamTensorError
from streamtensor.ir.dataflow import DataflowGraph, DmaNode
from streamtensor.target import RESOURCES, Target

from . import solve_memo
from .memory import node_groups
from .resources import ResourceReport, estimate_resources

ONE_SLR = "fits one SLR"  # the status of ``one_slr``'s placement: no ILP solved


class SlrPartitionError(StreamTensorError):
    """No assignment of the nodes to the dies fits the per-die capacities."""


@dataclass
class SlrPartition:
    assignment: dict[str, int]  # node -> SLR
    crossing_bits: int  # sum over streams of token bits x die boundaries crossed
    crossing_streams: list[str]  # streams whose ends are on different SLRs
    usage: list[dict[str, float]]  # per SLR: resource -> amount used
    capacity: dict[str, float]  # per-SLR capacity of each resource
    objective: float
    status: str  # HiGHS model status
    optimal: bool
    time_limit_hit: bool  # the solver stopped at the time limit: assignment is the best incumbent
    node_limit_hit: bool  # ... or at the node limit
    mip_gap: float
    seconds: float
    from_memo: bool = False  # the solver's answer was read from the memo (module docstring)


def one_slr(graph: DataflowGraph, resources: ResourceReport, nodes: Iterable[str], target: Target) -> SlrPartition:
    """Every node of ``nodes`` on the HBM's SLR: the placement of a kernel that fits one die (``link.cfg`` pins it
    there whole), so no split is planned; the caller checks that it fits."""
    part = set(nodes)
    slr = target.hbm.slr
    usage = [{r: float(sum(getattr(resources.nodes[n], r) for n in part)) if s == slr else 0.0 for r in RESOURCES}
             for s in range(len(target.slrs))]
    capacity = {r: float(min(getattr(d, r) for d in target.slrs)) for r in RESOURCES}
    return SlrPartition(assignment=dict.fromkeys((n for n in graph.topological_order() if n in part), slr),
                        crossing_bits=0, crossing_streams=[], usage=usage, capacity=capacity, objective=0.0,
                        status=ONE_SLR, optimal=True, time_limit_hit=False, node_limit_hit=False, mip_gap=0.0,
                        seconds=0.0)


def _greedy_start(order: list[str], res: np.ndarray, cap: np.ndarray, slrs: int) -> list[int] | None:
    """Fill SLR0, then SLR1, ... in topological order; None when the nodes do not fit that way."""
    out, slr, used = [], 0, np.zeros(len(cap))
    for i in range(len(order)):
        while slr < slrs and np.any(used + res[i] > cap + 1e-9):
            slr, used = slr + 1, np.zeros(len(cap))
        if slr == slrs:
            return None
        used += res[i]
        out.append(slr)
    return out


def partition_slrs(
    graph: DataflowGraph,
    resources: ResourceReport | None = None,
    *,
    nodes: Iterable[str] | None = None,
    target: Target,
    slack: float = 1.0,
    imbalance_weight: float = 1000.0,
    time_limit_s: float = 10.0,
    mip_rel_gap: float = 1e-4,
    max_nodes: int | None = None,
    memo: Path | None = None,
) -> SlrPartition:
    """Assign ``nodes`` (default: all nodes of ``graph``; pass one fusion group to partition one accelerator)
    to the SLRs of ``target`` by the ILP of the module docstring. Every die is given the capacity of the
    smallest (the boards we know have identical dies). The solver stops once its incumbent is within
    ``mip_rel_gap`` of its bound (``optimal`` then means: within that gap; HiGHS's default 1e-4 here), or after
    ``max_nodes`` branch-and-bound nodes (None: no node limit). ``memo``: the directory of the solver's kept
    answers (module docstring; None: solve every time)."""
    if (slack <= 0 or imbalance_weight < 0 or time_limit_s <= 0 or not 0 <= mip_rel_gap < 1
            or (max_nodes is not None and max_nodes < 1)):
        raise OptionError(f"need slack > 0, imbalance_weight >= 0, time_limit_s > 0, 0 <= mip_rel_gap < 1 and "
                          f"max_nodes >= 1; got slack {slack}, imbalance_weight {imbalance_weight}, time_limit_s "
                          f"{time_limit_s}, mip_rel_gap {mip_rel_gap}, max_nodes {max_nodes}")
    report = resources if resources is not None else estimate_resources(graph, target)
    part = set(nodes) if nodes is not None else set(graph.nodes)
    order = [n for n in graph.topological_order() if n in part]
    index = {n: i for i, n in enumerate(order)}
    S, N = len(target.slrs), len(order)
    res = np.array([[getattr(report.nodes[n], r) for r in RESOURCES] for n in order], dtype=np.float64)
    res = res.reshape(N, len(RESOURCES))
    cap = np.array([slack * min(getattr(d, r) for d in target.slrs) for r in RESOURCES])
    for i, n in enumerate(order):
        over = [r for k, r in enumerate(RESOURCES) if res[i, k] > cap[k]]
        if over:
            raise SlrPartitionError(f"node {n} alone exceeds one SLR's capacity of {', '.join(over)}")
    group = node_groups(graph)
    edges = []  # (u, v, bits) inside the partitioned set
    ports = np.zeros(N)  # external-memory (AXI) ports per node
    for n in order:
        if isinstance(graph.nodes[n], DmaNode):
            ports[index[n]] += 1
    for s in graph.streams.values():
        inside = [e for e in (s.source, s.target) if e in part]
        if len(inside) == 2 and group[s.source] == group[s.target]:
            edges.append((index[s.source], index[s.target], s.type.token_bits))
        else:
            for e in inside:
                ports[index[e]] += 1
    E, R = len(edges), len(RESOURCES)

    B = S - 1  # die boundaries

    def y(i: int, b: int) -> int:  # node i on SLR b or above, b = 1 .. B
        return i * B + b - 1

    h_col, t_col = N * B, N * B + E * B
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit_s))
    h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
    if max_nodes is not None:
        h.setOptionValue("mip_max_nodes", int(max_nodes))
    # |p_i - hbm| = sum_{b <= hbm} (1 - y_ib) + sum_{b > hbm} y_ib: the constant part is the objective's offset.
    hbm = target.hbm.slr
    costs = np.zeros(N * B + E * B + R)
    for i in range(N):
        for b in range(1, S):
            costs[y(i, b)] = target.axi_word_bits * ports[i] * (1.0 if b > hbm else -1.0)
    offset = float(target.axi_word_bits * ports.sum() * min(hbm, B))
    for k, (_, _, bits) in enumerate(edges):
        costs[h_col + k * B : h_col + (k + 1) * B] = bits
    costs[t_col:] = imbalance_weight
    upper = np.concatenate([np.ones(N * B), np.full(E * B + R, highspy.kHighsInf)])
    h.addVars(len(costs), np.zeros(len(costs)), upper)
    h.changeColsCost(len(costs), np.arange(len(costs), dtype=np.int32), costs)
    h.changeObjectiveOffset(offset)
    h.changeColsIntegrality(N * B, np.arange(N * B, dtype=np.int32),
                            np.full(N * B, highspy.HighsVarType.kInteger))
    lower, upper_rows, starts, idx, val = [], [], [], [], []

    def row(lo: float, hi: float, entries: list[tuple[int, float]]) -> None:
        starts.append(len(idx))
        lower.append(lo)
        upper_rows.append(hi)
        idx.extend(c for c, _ in entries)
        val.extend(v for _, v in entries)

    inf = highspy.kHighsInf
    for i in range(N):
        for b in range(1, B):
            row(0, inf, [(y(i, b), 1.0), (y(i, b + 1), -1.0)])  # above boundary b+1 implies above b
    for k, (u, v, _) in enumerate(edges):
        for b in range(1, S):
            for sign in (1.0, -1.0):
                row(0, inf, [(h_col + k * B + b - 1, 1.0), (y(u, b), -sign), (y(v, b), sign)])
    for r in range(R):
        active = [i for i in range(N) if res[i, r] > 0]
        for s in range(S):
            # use_{r,s} = sum_i res_ir (y_is - y_i,s+1), y_i0 = 1 and y_iS = 0 folded into the row's bounds
            fixed = float(res[active, r].sum()) if s == 0 else 0.0
            use = ([(y(i, s), res[i, r]) for i in active] if s > 0 else []) + (
                [(y(i, s + 1), -res[i, r]) for i in active] if s < B else [])
            row(-inf, cap[r] - fixed, use)  # capacity
            row(fixed, inf, [(t_col + r, cap[r])] + [(c, -v) for c, v in use])  # t_r * cap_r >= use
    h.addRows(len(lower), np.array(lower, dtype=np.float64), np.array(upper_rows, dtype=np.float64), len(idx),
              np.array(starts, dtype=np.int32), np.array(idx, dtype=np.int32), np.array(val, dtype=np.float64))
    start = _greedy_start(order, res, cap, S)
    start_values = None if start is None else _start_values(start, edges, res, cap, N, S)
    key = ""
    if memo is not None:  # the whole model HiGHS is given (the first N * B columns integer) and its options
        key = solve_memo.memo_key("slr_partition", repr((N * B, offset, time_limit_s, mip_rel_gap, max_nodes)),
                                  *(np.asarray(a).tobytes() for a in (costs, upper, lower, upper_rows, starts, idx,
                                                                      val)),
                                  b"" if start_values is None else start_values.tobytes())
    answer = solve_memo.load(memo, key)
    from_memo = isinstance(answer, _Answer)
    if isinstance(answer, _Answer):
        answer = replace(answer, seconds=0.0)
    else:
        answer = _solve(h, start_values, N, S)
        if not answer.time_limit_hit:
            solve_memo.store(memo, key, answer)
    if answer.slr_of is None:
        caps = ", ".join(f"{r} {c:g}" for r, c in zip(RESOURCES, cap, strict=True))
        raise SlrPartitionError(f"no SLR assignment fits the per-die capacities ({caps}); HiGHS: {answer.status}")
    slr_of = answer.slr_of
    assignment = dict(zip(order, slr_of, strict=True))
    crossing = [s.name for s in graph.streams.values()
                if s.source in part and s.target in part and group[s.source] == group[s.target]
                and assignment[s.source] != assignment[s.target]]
    usage = [{r: float(res[[i for i in range(N) if slr_of[i] == s], k].sum()) for k, r in enumerate(RESOURCES)}
             for s in range(S)]
    return SlrPartition(
        assignment=assignment,
        crossing_bits=sum(bits * abs(slr_of[u] - slr_of[v]) for u, v, bits in edges),
        crossing_streams=crossing,
        usage=usage,
        capacity=dict(zip(RESOURCES, (float(c) for c in cap), strict=True)),
        objective=answer.objective,
        status=answer.status,
        optimal=answer.optimal,
        time_limit_hit=answer.time_limit_hit,
        node_limit_hit=answer.node_limit_hit,
        mip_gap=answer.mip_gap,
        seconds=answer.seconds,
        from_memo=from_memo,
    )


@dataclass(frozen=True)
class _Answer:
    """What one HiGHS run of the ILP answered (``slr_of`` None: no feasible assignment)."""

    slr_of: list[int] | None  # node index -> SLR
    status: str
    optimal: bool
    time_limit_hit: bool
    node_limit_hit: bool
    objective: float
    mip_gap: float
    seconds: float  # of the run that found it (0 when read from the memo)


def _solve(h: highspy.Highs, start_values: np.ndarray | None, N: int, S: int) -> _Answer:
    """Run HiGHS on the built model from the greedy start (if any)."""
    if start_values is not None:
        sol = highspy.HighsSolution()
        sol.col_value = start_values.tolist()
        h.setSolution(sol)
    t0 = time.perf_counter()
    h.run()
    seconds = time.perf_counter() - t0
    model_status = h.getModelStatus()
    slr_of = None
    if h.getInfo().primal_solution_status == 2:  # 2 = feasible solution available
        values = np.array(h.getSolution().col_value)
        slr_of = [int(np.rint(values[i * (S - 1): (i + 1) * (S - 1)]).sum()) for i in range(N)]
    return _Answer(slr_of=slr_of, status=h.modelStatusToString(model_status),
                   optimal=model_status == highspy.HighsModelStatus.kOptimal,
                   time_limit_hit=model_status == highspy.HighsModelStatus.kTimeLimit,
                   # HiGHS reports a node limit as its solution limit status.
                   node_limit_hit=model_status == highspy.HighsModelStatus.kSolutionLimit,
                   objective=float(h.getInfo().objective_function_value), mip_gap=float(h.getInfo().mip_gap),
                   seconds=seconds)


def _start_values(start: list[int], edges: list[tuple[int, int, int]], res: np.ndarray, cap: np.ndarray,
                  N: int, S: int) -> np.ndarray:
    """Column values of the greedy assignment (crossing and peak-utilization columns at their least values)."""
    B = S - 1
    above = np.array(start)[:, None] >= np.arange(1, S)[None, :]  # node i on SLR b or above
    values = np.zeros(N * B + len(edges) * B + len(cap))
    values[: N * B] = above.reshape(-1)
    for k, (u, v, _) in enumerate(edges):
        values[N * B + k * B : N * B + (k + 1) * B] = above[u] != above[v]
    slr = np.array(start)
    for r in range(len(cap)):
        values[N * B + len(edges) * B + r] = max(res[slr == s, r].sum() / cap[r] for s in range(S)) if cap[r] else 0
    return values
