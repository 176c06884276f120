"""Resource allocation (spec §4.3, pipeline step 7): FIFO depths, their check by simulation, memories and dies.

Sub-steps, each a driver stage (``allocation.<step>``) with its own seconds in the report:

0. ``contention`` (a one-token block, whose DMAs carry ``DmaNode.share``): the HBM contention shares settled
   with the read DMAs' FIFOs at their prefetch caps and the others unbounded (``analysis.contention``); after
   step 2, while the simulation with the sized FIFOs shows a DMA more contention than its share, the shares are
   raised and steps 1-2 run again (``contention_resizes``). Such a block's FIFO sizing leaves out its last and
   costliest step, the trim (``fifo_search.trim_sizing``), until the shares have settled, then trims and checks
   again (unless ``max_fifo_depth`` caps the depths: the cap applies to the trimmed sizing). The memo keeps the
   settled shares and what each sized design's simulation raised (``settle_memoized``, ``_raised_key``): a
   recompile simulates only the final design.
1. ``fifo_lp``: the process network of every fusion group (``timing_model.build_process_network``: one
   accelerator each) and its FIFO depths by the LP of ``fifo_lp`` with the chosen strategy (``normal`` or
   ``conservative``) on demand-paced profiles (``schedule="demand"``: producers stall where that costs no
   cycle, as the simulated minimum lets them), within the latency slack the caller grants (default none); a
   one-token block's read DMAs' FIFOs within their prefetch caps (the LP plans the schedule they allow).
   Every ``Stream.depth`` of the graph is set; a stream that crosses groups has a FIFO at each end (to the
   write DMA, from the read DMA) and keeps the deeper one. ``max_fifo_depth`` (0: none) caps every depth.
2. ``simulate``: the token-level simulator with the LP depths and, once they are final, with unbounded FIFOs (the
   baseline): makespan, deadlock (with its wait-for cycle), stall cycles. Groups run one after another, so
   makespans add up. A deadlock is a ``DeadlockError`` naming the wait-for cycle.
3. ``resources``: the memory of every FIFO (LUTRAM / BRAM / URAM by size, ``resources.memory_kind``) and the
   DSP / BRAM / URAM / LUT estimate of the graph with the sized FIFOs (``resources.estimate_resources``).
   A group over the device budget is a ``ResourceBudgetError``.
4. ``slr``: die placement of every group by the ILP of ``slr_partition``. A kernel that fits one die
   (``single_slr``) is pinned whole to the HBM's SLR by ``link.cfg``; one that does not is split as the plan
   says (the project's ``floorplan.tcl`` puts every process on its die). A group with no assignment within the
   per-die budgets is a ``ResourceBudgetError``: never a kernel pinned to a die it does not fit.

``allow_deadlock`` / ``allow_unfit`` turn those errors into entries of ``AllocationResult.overrides`` (option ->
the errors it let through), which the report carries; a design over budget then has no SLR placement.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from streamtensor.errors import DeadlockError, OptionError, ResourceBudgetError, SimulationSizeError
from streamtensor.ir.dataflow import DataflowGraph, DmaNode, print_dataflow
from streamtensor.target import Target

from . import solve_memo
from .annotate import annotate_memory, annotate_slrs, annotate_timing
from .contention import MAX_ROUNDS, prefetch_cap, prefetch_caps, raise_shares, settle_shares, to_static
from .fifo_lp import FifoSizing, Strategy
from .fifo_search import size_fifos_lp, trim_sizing
from .memory import node_groups
from .process_network import ProcessNetwork
from .resources import RESOURCES, ResourceReport, estimate_resources, memory_kind
from .slr_partition import SlrPartition, SlrPartitionError, one_slr, partition_slrs
from .timing_model import GroupNetworks, NodeTiming, dma_placement_of_group, node_timings, serial_dmas
from .timing_sim import SimResult, simulate

FIFO_STRATEGIES: tuple[Strategy, ...] = ("normal", "conservative")
LP_TIME_LIMIT_S = 10.0  # per HiGHS solve
# The SLR plan is bounded by branch-and-bound nodes, a deterministic work limit: a wall-clock limit of 10 s made
# it depend on the machine's load (a paper-size Qwen2 prefill block crossed 70656 bits when loaded, 58368 when
# not, issue 21). The paper-size blocks reach the gap below within 1-49 nodes; the time limit is a backstop only.
SLR_MAX_NODES = 200  # per group
SLR_TIME_LIMIT_S = 120.0  # per group
RESIZE_ROUNDS = 3  # FIFO sizings after the first while the sized design shows more HBM contention than assumed
# The SLR ILP is solved to its optimum (HiGHS's default gap): with binaries per die boundary (slr_partition) that
# takes no more CPU, all paper-size blocks together, than stopping within 20% of the bound did with one-hot
# binaries, whose answers were up to 22% above the optimum (GPT-2 prefill: 31764 against 26010; issue 21).
SLR_MIP_REL_GAP = 1e-4

T = TypeVar("T")
StageRunner = Callable[[str, Callable[[], T]], T]


@dataclass
class GroupAllocation:
    """FIFO sizing and simulation of one fusion group (one accelerator)."""

    group: int
    network: ProcessNetwork
    sizing: FifoSizing
    simulation: SimResult | None = None  # with the LP depths
    unbounded: SimResult | None = None  # every FIFO unbounded
    sizing_from_memo: bool = False  # the LP's depths were read from the memo (``_memoized``)


@dataclass(frozen=True)
class FifoReport:
    stream: str
    source: str
    target: str
    width_bits: int
    depth: int
    memory: str  # lutram | bram | uram
    group: int

    @property
    def bits(self) -> int:
        return self.width_bits * self.depth


@dataclass
class AllocationResult:
    """Everything resource allocation decided, with the seconds of each sub-step."""

    strategy: str
    latency_slack: float
    groups: list[GroupAllocation]
    timings: dict[str, NodeTiming]
    fifos: list[FifoReport] = field(default_factory=list)
    resources: ResourceReport | None = None
    placements: dict[int, SlrPartition] = field(default_factory=dict)
    overrides: dict[str, list[str]] = field(default_factory=dict)  # option -> the errors it let through
    seconds: dict[str, float] = field(default_factory=dict)
    contention_resizes: int = 0  # FIFO sizings redone because the sized design showed more HBM contention

    @property
    def fifo_total_bits(self) -> int:
        return sum(f.bits for f in self.fifos)

    @property
    def predicted_latency(self) -> int:
        return sum(g.sizing.predicted_latency for g in self.groups)

    @property
    def single_slr(self) -> bool:
        """The whole kernel (every group) fits one die (the smallest)."""
        res = self.resources
        return res is not None and all(getattr(res, r) <= getattr(res.die, r)
                                       for r in RESOURCES)

    def report(self) -> dict[str, Any]:
        """The report keys of resource allocation (see ``Design.report``)."""
        out: dict[str, Any] = {
            "fifos": [{"stream": f.stream, "source": f.source, "target": f.target, "width_bits": f.width_bits,
                       "depth": f.depth, "memory": f.memory, "group": f.group} for f in self.fifos],
            "fifo_total_bits": self.fifo_total_bits,
            "fifo_lp": {
                "strategy": self.strategy,
                "latency_slack": self.latency_slack,
                "predicted_latency_cycles": self.predicted_latency,
                "status": sorted({g.sizing.status for g in self.groups}),
                "solve_seconds": round(sum(g.sizing.solve_seconds for g in self.groups), 4),
            },
            "timing": {name: {"latency": t.latency, "delay": t.delay, "ii": round(t.ii, 4)}
                       for name, t in self.timings.items()},
            "allocation_seconds": dict(self.seconds),
            "contention_resizes": self.contention_resizes,
            "overrides": {option: list(errors) for option, errors in self.overrides.items()},
        }
        if all(g.simulation is not None and g.unbounded is not None for g in self.groups):
            out["simulation"] = self._simulation_report()
        if self.resources is not None:
            out["resources"] = self._resources_report(self.resources)
        return out

    def _simulation_report(self) -> dict[str, Any]:
        sims = [g.simulation for g in self.groups if g.simulation is not None]
        unbounded = [g.unbounded for g in self.groups if g.unbounded is not None]
        deadlock = any(s.deadlock for s in sims)
        by_process = {p: {"input_empty": c.input_empty, "output_full": c.output_full}
                      for s in sims for p, c in s.stall_cycles.items() if c.total}
        return {
            "makespan_cycles": None if deadlock else sum(s.makespan_cycles or 0 for s in sims),
            "unbounded_makespan_cycles": sum(s.makespan_cycles or 0 for s in unbounded),
            "deadlock": deadlock,
            "deadlock_cycle": [s.describe() for s in sims if s.deadlock],
            # Cycles processes waited, summed: for a token (input_empty, present with unbounded FIFOs too) or
            # for a free slot (output_full: what the FIFO depths cost).
            "stall_cycles": {"input_empty": sum(c["input_empty"] for c in by_process.values()),
                             "output_full": sum(c["output_full"] for c in by_process.values())},
            "stall_cycles_by_process": by_process,
        }

    def _resources_report(self, res: ResourceReport) -> dict[str, Any]:
        per_slr = []
        for g, part in sorted(self.placements.items()):
            for slr, usage in enumerate(part.usage):
                per_slr.append({"group": g, "slr": slr, **{r: round(usage[r], 2) for r in RESOURCES},
                                "nodes": sorted(n for n, s in part.assignment.items() if s == slr)})
        placed = {n: s for part in self.placements.values() for n, s in part.assignment.items()}
        split = bool(placed) and not self.single_slr
        if self.single_slr:
            why = "the whole kernel fits one SLR: link.cfg pins it to the HBM's SLR"
        elif split:
            why = ("the kernel needs more than one SLR: floorplan.tcl puts every process's RTL instance on the SLR "
                   "of this plan (Vivado pblocks), and link.cfg pins nothing")
        else:
            why = "no SLR plan fits (let through by --allow-unfit): v++ places the kernel"
        return {
            **{r: getattr(res, r) for r in RESOURCES},
            "fits": res.fits,
            "overflow": list(res.overflow),
            "utilization": {r: round(u, 4) for r, u in res.utilization().items()},
            "die": {r: getattr(res.die, r) for r in RESOURCES},
            "processes": {n: {"kind": r.kind, **{k: getattr(r, k) for k in RESOURCES}, "slr": placed.get(n)}
                          for n, r in res.nodes.items()},
            "per_slr": per_slr,
            "slr_crossing_bits": sum(p.crossing_bits for p in self.placements.values()),
            "slr_plan": {"realised": bool(placed), "single_slr": self.single_slr, "split": split, "why": why},
        }


def check_strategy(strategy: str) -> Strategy:
    """The FIFO sizing strategy named ``strategy``, or an OptionError."""
    for known in FIFO_STRATEGIES:
        if strategy == known:
            return known
    raise OptionError(f"bad fifo-strategy '{strategy}': expected one of {', '.join(FIFO_STRATEGIES)}")


def check_latency_slack(slack: float) -> float:
    """``slack`` if it is a fraction in [0, 1] (the FIFO LP's latency slack), else an OptionError."""
    if isinstance(slack, bool) or not isinstance(slack, int | float) or not 0.0 <= slack <= 1.0:
        raise OptionError(f"bad fifo-latency-slack {slack!r}: expected a fraction of the makespan in [0, 1]")
    return float(slack)


def size_fifos(graph: DataflowGraph, target: Target, strategy: str = "normal", latency_slack: float = 0.0,
               max_fifo_depth: int = 0, memo: Path | None = None, trim: bool = True,
               networks: GroupNetworks | None = None) -> AllocationResult:
    """Sub-step 1: process networks, LP depths (each capped at ``max_fifo_depth`` unless 0), ``Stream.depth``
    of every stream set (module docstring); ``memo``: the directory of the LP's kept answers (``_memoized``);
    ``trim``: the sizing search's last step included (else ``trim_allocation`` does it); ``networks``: the groups'
    process networks kept so far (default: none)."""
    strat = check_strategy(strategy)
    slack = check_latency_slack(latency_slack)
    cap = check_max_fifo_depth(max_fifo_depth)
    groups = node_groups(graph)
    count = max(groups.values(), default=-1) + 1
    allocs: list[GroupAllocation] = []
    prefetch = prefetch_caps(graph, target)  # a one-token block's read DMAs (analysis.contention)
    networks = networks or GroupNetworks(graph, target)
    for g in range(count):
        net = networks(g)
        caps = _caps_of(graph, target, net, prefetch)
        options = (strat, LP_TIME_LIMIT_S, slack, sorted(caps.items()), trim)
        sizing, kept = _memoized(memo, "fifo_lp", options, net, partial(
            size_fifos_lp, net, strat, LP_TIME_LIMIT_S, schedule="demand", latency_slack=slack, depth_caps=caps,
            trim=trim))
        if cap:
            sizing.depths = {s: min(d, cap) for s, d in sizing.depths.items()}
        allocs.append(GroupAllocation(g, net, sizing, sizing_from_memo=kept))
    return _with_depths(graph, target, AllocationResult(strategy, slack, allocs, {}))


def trim_allocation(graph: DataflowGraph, target: Target, result: AllocationResult, memo: Path | None = None
                    ) -> None:
    """Step 4 of the sizing search (``fifo_search.trim_sizing``) on every group of ``result``, sized without it;
    ``Stream.depth`` of every stream set again; ``memo``: as for ``size_fifos``."""
    prefetch = prefetch_caps(graph, target)
    for a in result.groups:
        caps = _caps_of(graph, target, a.network, prefetch)
        # The sizing trimmed, less its solve seconds (zero where it came from the memo).
        options = (LP_TIME_LIMIT_S, sorted(caps.items()), replace(a.sizing, solve_seconds=0.0))
        a.sizing, kept = _memoized(memo, "fifo_trim", options, a.network,
                                   partial(trim_sizing, a.network, a.sizing, LP_TIME_LIMIT_S, caps))
        a.sizing_from_memo = a.sizing_from_memo and kept
    _with_depths(graph, target, result)


def _caps_of(graph: DataflowGraph, target: Target, net: ProcessNetwork, prefetch: dict[str, int]
             ) -> dict[str, int]:
    """The depth caps of ``net``'s streams: the read DMAs' prefetch caps of a one-token block
    (``contention.prefetch_caps``), and in any block those of the read DMAs whose kernel reads faster than they
    deliver (``tiling.unroll.rate_matched``: it stalls on them). Such a DMA would otherwise stream ahead while its
    kernel waits for its other inputs, for the kernel to catch up later: a paper-size fp32 Qwen2 prefill block's
    LP kept a 2 MB weight prefetch so."""
    caps = {s.name: prefetch[s.name] for s in net.streams if s.name in prefetch}
    for s in net.streams:
        node = graph.nodes.get(s.source)
        if s.name not in caps and isinstance(node, DmaNode) and node.direction == "read":
            dma, reader = net.process(s.source), net.process(s.target)
            if reader.num_firings * reader.ii < dma.num_firings * dma.ii:
                caps[s.name] = prefetch_cap(graph, node, target)
    return caps


def _with_depths(graph: DataflowGraph, target: Target, result: AllocationResult) -> AllocationResult:
    """``result`` with its timings and FIFO reports from its groups' sizings, and those depths set on the
    graph's streams: a stream that crosses groups has a FIFO at each end and keeps the deeper one."""
    allocs = result.groups
    result.timings = {}
    for a in allocs:
        result.timings.update(node_timings(a.network))
    for s in graph.streams.values():
        s.depth = max(a.sizing.depths[s.name] for a in allocs if s.name in a.sizing.depths)
    annotate_timing(graph, [a.network for a in allocs], target)
    annotate_memory(graph, target)
    result.fifos = [FifoReport(s.name, s.source, s.target, s.width_bits, a.sizing.depths[s.name],
                               memory_kind(s.width_bits, a.sizing.depths[s.name], target.memory), a.group)
                    for a in allocs for s in a.network.streams]
    return result


def _memoized(memo: Path | None, kind: str, options: tuple[object, ...], net: ProcessNetwork,
              solve: Callable[[], FifoSizing]) -> tuple[FifoSizing, bool]:
    """``solve()``, kept in ``memo`` (``solve_memo``) by the whole network and the options: the sizing search
    and its HiGHS solves are deterministic, so the same network gets the same depths (issue 21: 1-5 s of a second
    compile of a paper-size block). A sizing whose last solve stopped at the time limit depends on the machine's
    load: it is not kept. With whether it was read from the memo."""
    key = solve_memo.memo_key(kind, repr(options), net.digest()) if memo is not None else ""
    kept = solve_memo.load(memo, key)
    if isinstance(kept, FifoSizing):
        return replace(kept, solve_seconds=0.0), True
    sizing = solve()
    if sizing.status != "Time limit reached":
        solve_memo.store(memo, key, replace(sizing, _model=None))  # the model: constraints for display only
    return sizing, False


def settle_memoized(graph: DataflowGraph, target: Target, networks: GroupNetworks, memo: Path | None) -> None:
    """``contention.settle_shares``, its shares kept in ``memo`` (``solve_memo``) by the graph, every group's
    process network and HBM placement at the shares it starts from, and the prefetch caps: the settling is
    deterministic, and a recompile of a paper-size decode block simulated it again (issue 21: four simulations,
    2 CPU s of a Gemma decode block)."""
    count = max(node_groups(graph).values(), default=-1) + 1
    key = ""
    if memo is not None:
        placements = [dma_placement_of_group(graph, g, target) for g in range(count)]
        options = (MAX_ROUNDS, sorted(prefetch_caps(graph, target).items()),
                   [(p.dma_ranges, p.ports) for p in placements])
        key = solve_memo.memo_key("contention_shares", repr(options), print_dataflow(graph), repr(target),
                                  *(networks(g).digest() for g in range(count)))
    kept = solve_memo.load(memo, key)
    dmas = {n: node for n, node in graph.nodes.items() if isinstance(node, DmaNode) and node.share is not None}
    if isinstance(kept, dict) and kept.keys() == dmas.keys():
        for name, share in kept.items():
            dmas[name].share = share
        return
    settle_shares(graph, target, networks)
    solve_memo.store(memo, key, {name: node.share for name, node in dmas.items()})


# The tokens a design's streams may carry per run for the compile to simulate it (``max_stream_tokens``: the
# converter banks' choice, the FIFO sizing and the timing simulation, whose work grows with them: every simulation
# computes each token's write and read; a one-token block's contention rounds simulate it more often). The paper-size
# blocks' heaviest tilings under 5 M compiled in 4.1-7.0 CPU s, and 3.5-6.9 s with the search's other options
# varied (benchmarks/compile_speed.md); a Llama decode block carrying 5.5 M took 9-10 s, 8.0 M up to 11 s, and 1-D
# tokens over untiled prefill rows carry 14-54 M (14-59 s).
MAX_STREAM_TOKENS = 5_000_000


def stream_tokens(graph: DataflowGraph) -> int:
    """The tokens ``graph``'s streams carry in one run."""
    return sum(s.type.num_tokens for s in graph.streams.values())


def check_max_stream_tokens(limit: int) -> int:
    """``limit`` if it is a limit of stream tokens (a non-negative int, 0: none), else an OptionError."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise OptionError(f"bad max-stream-tokens {limit!r}: expected a number of tokens >= 1, or 0 for no limit")
    return limit


def check_stream_tokens(graph: DataflowGraph, limit: int) -> None:
    """A ``SimulationSizeError`` when ``graph``'s streams carry more than ``limit`` tokens a run (0: no limit)."""
    tokens = stream_tokens(graph)
    if limit and tokens > limit:
        raise SimulationSizeError(
            f"the design's streams carry {tokens:,} tokens a run, more than the {limit:,} its timing simulation "
            f"and FIFO sizing are given (--max-stream-tokens; their work grows with the tokens): a coarser tiling "
            f"moves fewer (--max-token-rank 2, a larger --default-tile-size or a --token-tile-size), or raise the "
            f"limit (0: none)", tokens)


def check_max_fifo_depth(depth: int) -> int:
    """``depth`` if it is a FIFO depth cap (a non-negative int, 0: no cap), else an OptionError."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise OptionError(f"bad max-fifo-depth {depth!r}: expected a number of tokens >= 1, or 0 for no cap")
    return depth


def _overridden(result: AllocationResult, option: str, allowed: bool, error: Exception) -> None:
    """Raise ``error`` unless the user passed ``option``; then record it as one the option let through."""
    if not allowed:
        raise error
    result.overrides.setdefault(option, []).append(str(error))


def simulate_group(result: AllocationResult, a: GroupAllocation, allow_deadlock: bool = False) -> SimResult:
    """Sub-step 2 for group ``a`` of ``result``: its simulation with its LP depths (a deadlock is an error)."""
    a.simulation = simulate(a.network, a.sizing.depths)
    if a.simulation.deadlock:
        _overridden(result, "allow_deadlock", allow_deadlock, DeadlockError(
            f"the timing simulation of fusion group {a.group} deadlocks with the sized FIFOs: "
            f"{a.simulation.describe().removeprefix('DEADLOCK: ')} (deepen those FIFOs, e.g. drop "
            "--max-fifo-depth, or pass --allow-deadlock to write the design anyway)"))
    return a.simulation


def _raised_key(graph: DataflowGraph, target: Target, a: GroupAllocation, memo: Path | None) -> str:
    """The memo key of what the simulation of group ``a`` with its depths raises (``contention.raise_shares``):
    its network, depths, HBM placement and the shares of the graph's DMAs ("": the memo off)."""
    if memo is None:
        return ""
    placement = dma_placement_of_group(graph, a.group, target)
    shares = sorted((n, node.share) for n, node in graph.nodes.items() if isinstance(node, DmaNode)
                    and node.share is not None)
    options = (a.group, sorted(a.sizing.depths.items()), placement.dma_ranges, placement.ports, shares)
    return solve_memo.memo_key("contention_raised", repr(options), repr(target), a.network.digest())


def simulate_unbounded(result: AllocationResult) -> None:
    """Sub-step 2, the baseline: simulate every group with unbounded FIFOs."""
    for a in result.groups:
        a.unbounded = simulate(a.network, {})


def estimate_allocation(graph: DataflowGraph, target: Target, result: AllocationResult, allow_unfit: bool = False
                        ) -> None:
    """Sub-step 3: resources of the graph with its sized FIFOs; a group over the device budget is an error."""
    res = result.resources = estimate_resources(graph, target)
    if not res.fits:
        excess = {g: [f"{r} {use[r]} of {getattr(res.budget, r)}" for r in RESOURCES if use[r] > getattr(res.budget, r)]
                  for g, use in enumerate(res.groups)}
        over = "; ".join(f"fusion group {g} needs {', '.join(e)}" for g, e in excess.items() if e)
        _overridden(result, "allow_unfit", allow_unfit, ResourceBudgetError(
            f"the design does not fit the {target.board} ({target.name}): {over} (lower --overall-unroll-size or "
            "the tile sizes, or pass --allow-unfit to write it anyway)"))


def place_allocation(graph: DataflowGraph, target: Target, result: AllocationResult, allow_unfit: bool = False,
                     memo: Path | None = None) -> None:
    """Sub-step 4: SLR placement of every group (none for a design over budget: nothing to place); ``memo``: the
    directory of the SLR ILP's kept answers (``slr_partition``)."""
    if result.resources is None or not result.resources.fits:
        return
    groups = node_groups(graph)
    for a in result.groups:
        members = [n for n, g in groups.items() if g == a.group]
        if result.single_slr:  # the kernel fits one die: link.cfg pins it there whole, nothing to split
            result.placements[a.group] = one_slr(graph, result.resources, members, target)
            annotate_slrs(graph, result.placements[a.group].assignment)
            continue
        try:
            result.placements[a.group] = partition_slrs(graph, result.resources, nodes=members,
                                                        target=target,
                                                        time_limit_s=SLR_TIME_LIMIT_S,
                                                        mip_rel_gap=SLR_MIP_REL_GAP,
                                                        max_nodes=SLR_MAX_NODES, memo=memo)
            annotate_slrs(graph, result.placements[a.group].assignment)
        except SlrPartitionError as err:  # a budget error, like the device's: the same override applies
            _overridden(result, "allow_unfit", allow_unfit, ResourceBudgetError(
                f"fusion group {a.group} has no SLR placement: {err} (lower --overall-unroll-size or the tile "
                "sizes, or pass --allow-unfit to write it anyway)"))


def _timed(seconds: dict[str, float]) -> StageRunner:
    def run(stage: str, fn: Callable[[], T]) -> T:
        start = time.perf_counter()
        value = fn()
        seconds[stage] = round(seconds.get(stage, 0.0) + time.perf_counter() - start, 4)  # a re-run adds up
        return value
    return run


def run_allocation(graph: DataflowGraph, target: Target, strategy: str = "normal",
                   run_stage: StageRunner | None = None,
                   latency_slack: float = 0.0, max_fifo_depth: int = 0, allow_deadlock: bool = False,
                   allow_unfit: bool = False, memo: Path | None = None) -> AllocationResult:
    """All four sub-steps in order; ``run_stage(name, fn)`` runs each (the driver passes its progress).
    ``latency_slack``: the fraction of the unbounded-FIFO makespan the FIFO LP may give up for fewer bits;
    ``max_fifo_depth``, ``allow_deadlock``, ``allow_unfit``: see the module docstring; ``memo``: the directory of
    the FIFO LP's and the SLR ILP's kept answers (``analysis.solve_memo``; None: solve every time)."""
    seconds: dict[str, float] = {}
    timed = _timed(seconds)

    def stage(name: str, fn: Callable[[], T]) -> T:
        return timed(name, fn) if run_stage is None else run_stage(name, lambda: timed(name, fn))

    networks = GroupNetworks(graph, target)

    def size(trim: bool) -> AllocationResult:
        sized = stage("allocation.fifo_lp", lambda: size_fifos(graph, target, strategy, latency_slack,
                                                                 max_fifo_depth, memo, trim, networks))
        sized.seconds = seconds  # later stages keep filling it
        return sized

    def simulate_raising(sized: AllocationResult, last: bool) -> list[tuple[int, list[str]]]:
        """Sub-step 2 on every group of ``sized`` and the DMAs whose shares its simulation raised (``raise_shares``),
        by group. ``last``: the design is final unless a share is raised; one that another round replaces (a
        share raised, or the trim still to come) is not simulated where ``memo`` keeps what its simulation raised
        (``_raised_key``): a recompile of a paper-size decode block simulated two such designs (issue 21)."""
        raised = []
        kept_in = memo if serial else None  # no shares to raise otherwise
        for a in sized.groups:
            key = _raised_key(graph, target, a, kept_in)
            kept = solve_memo.load(kept_in, key)
            if isinstance(kept, dict) and (kept or not last):
                names = list(kept)
                for name in names:
                    node = graph.nodes[name]
                    assert isinstance(node, DmaNode)
                    node.share = kept[name]
            else:
                sim = stage("allocation.simulate", lambda a=a: simulate_group(sized, a, allow_deadlock))
                names = raise_shares(graph, target, a.group, sim)
                if not sim.deadlock:
                    solve_memo.store(kept_in, key, {name: graph.nodes[name].share for name in names})
            if names:
                raised.append((a.group, names))
        return raised

    serial = serial_dmas(graph)
    if serial:
        stage("allocation.contention", lambda: settle_memoized(graph, target, networks, memo))
    # A one-token block is sized again while its sized design shows more HBM contention than its shares: it trims
    # its FIFOs (the search's last and costliest step) once they have settled, and checks them again after.
    # A depth cap applies to the trimmed sizing: such a block trims as it sizes.
    trim_later = serial and not max_fifo_depth
    result = size(not trim_later)
    trimmed = not trim_later
    # The sized FIFOs change when each DMA transfers: re-size while the simulation with them shows a DMA more
    # contention than its share (analysis.contention). From round RESIZE_ROUNDS on, a DMA raised again gets the
    # static count, which no simulation exceeds: each such round leaves one DMA fewer to raise, so this ends.
    resizes = 0
    while True:
        raised = simulate_raising(result, trimmed)
        if raised:
            resizes += 1
            if resizes >= RESIZE_ROUNDS:
                for g, names in raised:
                    to_static(graph, target, g, names)
            result = size(not trim_later)
            trimmed = not trim_later
        elif trimmed:
            break
        else:
            stage("allocation.fifo_lp", partial(trim_allocation, graph, target, result, memo))
            trimmed = True
    result.contention_resizes = resizes
    stage("allocation.simulate", lambda: simulate_unbounded(result))
    stage("allocation.resources", lambda: estimate_allocation(graph, target, result, allow_unfit))
    stage("allocation.slr", lambda: place_allocation(graph, target, result, allow_unfit, memo))
    return result


def allocate_resources(graph: DataflowGraph, target: Target, strategy: str = "normal", latency_slack: float = 0.0
                       ) -> AllocationResult:
    """Resource allocation of ``graph`` (module docstring): sets every ``Stream.depth`` and returns the result."""
    return run_allocation(graph, target, strategy, latency_slack=latency_slack)
