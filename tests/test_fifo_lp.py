"""FIFO-sizing LP: the paper's constraints, depths checked against the timing simulator (no deadlock, makespan
kept, bits close to the simulated minimum), both strategies, the Eq. 1 / Eq. 2 closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from fifo_depth_oracle import minimal_depths
from process_networks import late_reader, paper_network, seq, shared_channel_reads

import streamtensor.analysis.fifo_lp as fifo_lp
from streamtensor.analysis.fifo_lp import (
    DepthCurves,
    FifoSizing,
    keep_evaluated_depths,
    paper_max_tokens,
    solve_profiles,
)
from streamtensor.analysis.fifo_search import size_fifos_lp
from streamtensor.analysis.process_network import Process, ProcessNetwork, Stream, even_firings
from streamtensor.analysis.sim_kernel import peak_occupancies
from streamtensor.analysis.timing_sim import simulate
from streamtensor.codegen.vitis.boards import U55C


def proc(name: str, ii: int, depth: int, nf: int, reads: dict | None = None, writes: dict | None = None) -> Process:
    return Process(name, ii, depth, nf, reads or {}, writes or {})


def chain(t: int = 256, buf: int = 16) -> ProcessNetwork:
    """DMA -> relu -> ping-pong converter (writes lag one buffer) -> reduction (1 token per 8) -> DMA writer
    (fast: it reads one 512-bit token per cycle once data is there)."""
    return ProcessNetwork(
        [
            proc("dma", 1, 4, t, writes={"a": seq(t)}),
            proc("relu", 1, 3, t, reads={"a": seq(t)}, writes={"b": seq(t)}),
            proc("conv", 1, 2, t + buf, reads={"b": seq(t)}, writes={"c": seq(t, buf)}),
            proc("mm", 1, 6, t, reads={"c": seq(t)}, writes={"d": np.arange(7, t, 8)}),
            proc("out", 1, 3, t // 8, reads={"d": seq(t // 8)}),
        ],
        [
            Stream("a", "dma", "relu", 64, t),
            Stream("b", "relu", "conv", 64, t),
            Stream("c", "conv", "mm", 64, t),
            Stream("d", "mm", "out", 512, t // 8),
        ], U55C.memory.srl_max_bits,
    )


def diamond(t: int = 256, row: int = 32) -> ProcessNetwork:
    """src -> (elementwise | row reduction) -> join, join needing each row's reduced token first."""
    rows = t // row
    return ProcessNetwork(
        [
            proc("src", 1, 3, t, writes={"s_ew": seq(t), "s_red": seq(t)}),
            proc("ew", 1, 5, t, reads={"s_ew": seq(t)}, writes={"ew_j": seq(t)}),
            proc("red", 1, 4, t, reads={"s_red": seq(t)}, writes={"red_j": np.arange(row - 1, t, row)}),
            proc("join", 1, 2, t, reads={"ew_j": seq(t), "red_j": np.arange(rows) * row}, writes={"j_out": seq(t)}),
            proc("out", 1, 1, t, reads={"j_out": seq(t)}),
        ],
        [
            Stream("s_ew", "src", "ew", 128, t),
            Stream("s_red", "src", "red", 128, t),
            Stream("ew_j", "ew", "join", 128, t),
            Stream("red_j", "red", "join", 32, rows),
            Stream("j_out", "join", "out", 128, t),
        ], U55C.memory.srl_max_bits,
    )


def fork3(t: int = 256) -> ProcessNetwork:
    """src forks to a uniform consumer, a bursty one (8 tokens per firing every 8 firings) and one that
    computes 48 firings before its first read."""
    return ProcessNetwork(
        [
            proc("src", 1, 2, t, writes={"u": seq(t), "b": seq(t), "l": seq(t)}),
            proc("uni", 1, 3, t, reads={"u": seq(t)}),
            proc("burst", 1, 3, t, reads={"b": np.repeat(np.arange(0, t, 8), 8)}),
            proc("late", 1, 3, t + 48, reads={"l": seq(t, 48)}),
        ],
        [Stream("u", "src", "uni", 64, t), Stream("b", "src", "burst", 64, t), Stream("l", "src", "late", 64, t)],
        U55C.memory.srl_max_bits,
    )


def reductions(t: int = 512, k: int = 16) -> ProcessNetwork:
    """x -> r1 (1 token per k reads) -> r2 (ii 4, 1 per 4) -> add, plus the residual x -> add that add reads
    only once the reduced token of its block is in."""
    n1, n2 = t // k, t // k // 4
    return ProcessNetwork(
        [
            proc("x", 1, 2, t, writes={"x_r1": seq(t), "x_res": seq(t)}),
            proc("r1", 1, 6, t, reads={"x_r1": seq(t)}, writes={"r1_r2": np.arange(k - 1, t, k)}),
            proc("r2", 4, 5, n1, reads={"r1_r2": seq(n1)}, writes={"r2_add": np.arange(3, n1, 4)}),
            proc("add", 1, 2, t, reads={"x_res": seq(t), "r2_add": np.arange(n2) * (t // n2)}, writes={"y": seq(t)}),
            proc("y_out", 1, 2, t, reads={"y": seq(t)}),
        ],
        [
            Stream("x_r1", "x", "r1", 64, t),
            Stream("x_res", "x", "add", 64, t),
            Stream("r1_r2", "r1", "r2", 256, n1),
            Stream("r2_add", "r2", "add", 256, n2),
            Stream("y", "add", "y_out", 64, t),
        ], U55C.memory.srl_max_bits,
    )


def mismatched(t: int = 256) -> ProcessNetwork:
    """Fast DMA -> slow kernel (ii 4) -> fast writer: the source-faster case of Eq. 1."""
    return ProcessNetwork(
        [
            proc("dma", 1, 2, t, writes={"a": seq(t)}),
            proc("slow", 4, 6, t, reads={"a": seq(t)}, writes={"b": seq(t)}),
            proc("out", 1, 2, t, reads={"b": seq(t)}),
        ],
        [Stream("a", "dma", "slow", 64, t), Stream("b", "slow", "out", 64, t)], U55C.memory.srl_max_bits,
    )


def random_network(seed: int) -> ProcessNetwork:
    """Random DAG with uniform, late, grouped and block-reduction token patterns."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 7))
    nf = [int(rng.integers(4, 40)) for _ in range(n)]
    reads: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
    writes: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
    streams = []
    for j in range(1, n):
        for i in [i for i in range(j) if rng.random() < 0.5] or [int(rng.integers(0, j))]:
            t, name = int(rng.integers(1, 40)), f"P{i}->P{j}"
            streams.append(Stream(name, f"P{i}", f"P{j}", int(rng.choice([8, 64, 512, 2048])), t))
            cut_w, cut_r = int(rng.integers(0, nf[i])), int(rng.integers(0, nf[j]))
            writes[i][name] = even_firings(t, cut_w if rng.random() < 0.5 else 0, nf[i] - 1)
            reads[j][name] = even_firings(t, 0, cut_r if rng.random() < 0.5 else nf[j] - 1)
    return ProcessNetwork(
        [proc(f"P{i}", int(rng.integers(1, 4)), int(rng.integers(0, 6)), nf[i], reads[i], writes[i]) for i in range(n)],
        streams, U55C.memory.srl_max_bits,
    )


def check_safe(net: ProcessNetwork, sizing: FifoSizing) -> int:
    """The LP's guarantee: no deadlock and simulated makespan <= predicted latency. Returns the makespan."""
    res = simulate(net, dict(sizing.depths))
    assert not res.deadlock, res.describe()
    assert res.makespan_cycles is not None and res.makespan_cycles <= sizing.predicted_latency
    return res.makespan_cycles


# --- the paper's 3-kernel example ---------------------------------------------------------------------------


def test_paper_example_constraints() -> None:
    net = paper_network()
    d0, d1 = net.process("K0").initial_delay, net.process("K1").initial_delay
    assert (d0, d1) == (2, 7 + 3)
    sizing = size_fifos_lp(net)
    edge = {(c.source, c.target): c for c in sizing.edge_constraints}
    raw = 1  # 32-bit FIFOs of <= 32 tokens are shift registers
    # delay01 >= D0, delay12 >= D1, delay02 >= D0 (each plus the FIFO read latency)
    assert edge[("K0", "K1")].bound == d0 + raw
    assert edge[("K1", "K2")].bound == d1 + raw
    assert edge[("K0", "K2")].bound == d0 + raw
    assert dict(edge[("K1", "K2")].terms) == {"D[K1]": d1, "raw": raw, "skew": 0}
    # ... and the implied path constraint delay02 >= D0 + D1, stronger than the direct edge
    (implied,) = sizing.implied_constraints
    assert (implied.source, implied.target, implied.path) == ("K0", "K2", ("K0", "K1", "K2"))
    assert implied.bound == d0 + d1 + 2 * raw
    assert sizing.delays["K0->K2"] >= d0 + d1
    assert sizing.delays["K0->K2"] == sizing.delays["K0->K1"] + sizing.delays["K1->K2"]
    text = sizing.describe_constraints()
    assert "S[K1] - S[K0] >= 3  (= D[K0] 2 + raw 1 + skew 0)  via K0->K1" in text
    assert "S[K2] - S[K0] >= 14  (= D[K0] 2 + raw 1 + skew 0 + D[K1] 10 + raw 1 + skew 0)  via K0->K1->K2" in text
    assert sizing.status == "Optimal"


def test_paper_example_depths_against_the_simulator() -> None:
    net = paper_network()
    baseline = simulate(net, {}).makespan_cycles
    assert baseline is not None
    sizing = size_fifos_lp(net)
    assert check_safe(net, sizing) <= 1.01 * baseline
    md = minimal_depths(net)
    assert sizing.depths == md.depths == {"K0->K1": 2, "K1->K2": 1, "K0->K2": 13}
    # One token less on K0->K2 than its simulated minimum costs cycles (or deadlocks).
    res = simulate(net, {**md.depths, "K0->K2": md.depths["K0->K2"] - 1})
    assert res.deadlock or (res.makespan_cycles or 0) > baseline


# --- structured networks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [chain, diamond, fork3, reductions], ids=lambda b: b.__name__)
def test_lp_depths_keep_the_makespan_near_the_simulated_minimum(build) -> None:
    net = build()
    baseline = simulate(net, {}).makespan_cycles
    assert baseline is not None
    md = minimal_depths(net)
    assert md.complete
    normal = size_fifos_lp(net, "normal")
    conservative = size_fifos_lp(net, "conservative")
    for sizing in (normal, conservative):
        assert check_safe(net, sizing) <= 1.01 * baseline
    assert normal.total_bits <= 1.25 * md.total_bits
    # Conservative paces every process over the slowest one's latency: on fork3 the late branch then holds 39
    # tokens (2.5x the minimum's bits), elsewhere it needs what Normal needs. Both come back as solved.
    assert conservative.total_bits == (2.5 * md.total_bits if build is fork3 else normal.total_bits)


def test_known_depths_of_bursty_networks() -> None:
    # The row-skew FIFO of the diamond holds a row (32) on one side of `ew`; the residual of `reductions`
    # holds what `x` emits while r1 and r2 reduce the first block; the fork's late consumer gets its
    # 48-firing head start absorbed by delaying the source, not by a FIFO.
    diamond_depths = size_fifos_lp(diamond()).depths
    assert diamond_depths["s_ew"] + diamond_depths["ew_j"] == 34
    assert size_fifos_lp(reductions()).depths["x_res"] == 90
    assert size_fifos_lp(fork3()).depths == {"u": 2, "b": 9, "l": 9}


def test_fast_sink_is_not_oversized() -> None:
    # The DMA writer keeps pace with the 1-in-8 reduction once started (Eq. 2 semantics): one slot, not
    # the ~T*(1 - 1/8) a free-running writer that must never starve would need.
    assert size_fifos_lp(chain()).depths["d"] == 1


def test_source_faster_case_normal_vs_conservative() -> None:
    net = mismatched()
    normal = size_fifos_lp(net, "normal")
    # Normal: the DMA runs free at II 1 into an II-4 kernel: paper Eq. 1 at the LP's delay.
    dma = net.process("dma")
    eq1 = paper_max_tokens(
        256, normal.delays["a"], dma.initial_delay, dma.initial_delay + 255, ii_source=1, ii_target=4
    )
    assert normal.depths["a"] == eq1 == 192
    conservative = size_fifos_lp(net, "conservative")
    assert conservative.depths["a"] <= 2 and conservative.depths["b"] == 1
    md = minimal_depths(net)
    baseline = simulate(net, {}).makespan_cycles
    assert baseline is not None
    assert check_safe(net, conservative) <= 1.01 * baseline
    assert conservative.total_bits <= 1.5 * md.total_bits < normal.total_bits / 50


def test_conservative_is_returned_as_solved_even_when_normal_is_smaller() -> None:
    # On the late reader, the demand-paced Conservative profile holds more than Normal's: what comes back is
    # Conservative's own sizing under its own name, never Normal's relabelled.
    net = late_reader()
    normal = size_fifos_lp(net, "normal", schedule="demand")
    conservative = size_fifos_lp(net, "conservative", schedule="demand")
    assert conservative.strategy == "conservative" and normal.strategy == "normal"
    assert conservative.total_bits > normal.total_bits
    assert conservative.depths != normal.depths
    assert not simulate(net, conservative.depths).deadlock


# --- Eq. 1 / Eq. 2 --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ii_s", "ii_t"), [(1, 3), (2, 5), (1, 1), (3, 3), (4, 1), (3, 2)])
@pytest.mark.parametrize("extra_delay", [0, 1, 7, 30])
def test_paper_equations_match_the_simulator(ii_s: int, ii_t: int, extra_delay: int) -> None:
    # Uniform stream, consumer released at `delay` (then it keeps up); 2048-bit tokens: RAM FIFO, raw 2.
    t, depth_s = 24, 3
    net = ProcessNetwork(
        [proc("u", ii_s, depth_s, t, writes={"s": seq(t)}), proc("v", ii_t, 1, t, reads={"s": seq(t)})],
        [Stream("s", "u", "v", 2048, t)], U55C.memory.srl_max_bits,
    )
    d = depth_s
    no_starve = d + 2 + max(0, (t - 1) * (ii_s - ii_t))  # earliest start at which v never waits
    delay = (d + 2 if ii_s >= ii_t else no_starve) + extra_delay
    res = simulate(net, {}, release={"v": np.full(t, delay)})
    assert res.firing_times["v"].issue[0] == delay
    expected = paper_max_tokens(t, delay, d, d + (t - 1) * ii_s, ii_s, ii_t)
    assert res.peak_occupancy["s"] == expected
    # The LP's exact model agrees with the simulator at the delay it picks.
    sizing = size_fifos_lp(net)
    res = simulate(net, {}, release={"v": np.full(t, sizing.start_times["v"])})
    assert res.peak_occupancy["s"] == sizing.depths["s"]


# --- safety on random networks, errors ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_random_networks_are_safe(seed: int) -> None:
    net = random_network(seed)
    normal = size_fifos_lp(net, "normal")
    conservative = size_fifos_lp(net, "conservative")
    baseline = simulate(net, {}).makespan_cycles
    assert baseline is not None
    assert check_safe(net, normal) <= baseline  # normal's profiles are the unbounded schedule itself
    check_safe(net, conservative)
    assert normal.predicted_latency <= baseline


def test_time_limit_still_gives_safe_depths() -> None:
    net = diamond()
    rushed = size_fifos_lp(net, time_limit_s=0.0)
    assert rushed.status == "Time limit reached"
    check_safe(net, rushed)
    assert rushed.total_bits >= size_fifos_lp(net).total_bits


def test_errors() -> None:
    net = ProcessNetwork(
        [
            proc("A", 1, 1, 2, reads={"B->A": seq(2)}, writes={"A->B": seq(2)}),
            proc("B", 1, 1, 2, reads={"A->B": seq(2)}, writes={"B->A": seq(2)}),
        ],
        [Stream("A->B", "A", "B", 8, 2), Stream("B->A", "B", "A", 8, 2)], U55C.memory.srl_max_bits,
    )
    with pytest.raises(ValueError, match="feedback cycle"):
        size_fifos_lp(net)
    with pytest.raises(ValueError, match="unknown FIFO sizing strategy"):
        size_fifos_lp(paper_network(), "aggressive")  # type: ignore[arg-type]


def test_demand_sizing_drops_the_mirrored_network_but_not_its_results() -> None:
    """The backward schedules' mirrored network is as large as the network's simulator tables (gigabytes at the
    finest paper-size tilings): sizing forgets it once the backward schedules are done; sizing again (which
    builds it anew) gives the same depths."""
    net = paper_network()
    sized = size_fifos_lp(net, "normal", schedule="demand")
    again = size_fifos_lp(net, "normal", schedule="demand")
    assert net.derived("mirrored", lambda: "rebuilt") == "rebuilt"  # forgotten: the next use builds it again
    assert again.depths == sized.depths and again.total_bits == sized.total_bits


def test_depth_caps_size_for_the_schedule_the_capped_design_runs() -> None:
    """A one-token block's read DMAs prefetch at most their cap (analysis.contention). Sized without it, the LP plans
    both weights prefetched while the late hidden state arrives (makespan 201) and w1's FIFO is then cut to its cap,
    8 tokens of which the capped design, paced by the slower w2, needs 1. Sized with it, the LP plans the capped
    schedule: w1 at 1, w2 at its cap, its predicted latency the simulated makespan, and the simulated minimum."""
    net = shared_channel_reads()
    caps = {"w1": 8, "w2": 8}
    unaware = size_fifos_lp(net, schedule="demand")
    assert unaware.predicted_latency == 201 and unaware.depths["w1"] > 8
    cut = {s: min(d, caps.get(s, d)) for s, d in unaware.depths.items()}
    assert simulate(net, cut).makespan_cycles == 276  # the plan does not survive the cap

    sized = size_fifos_lp(net, schedule="demand", depth_caps=caps)
    assert sized.depths == {"h1": 1, "h2": 1, "w1": 1, "w2": 8, "o1": 2, "o2": 2}
    assert sized.total_bits == 4992 < sum(s.width_bits * cut[s.name] for s in net.streams) == 8576
    assert simulate(net, sized.depths).makespan_cycles == sized.predicted_latency == 276
    assert simulate(net, caps).makespan_cycles == 278  # the starting schedule: capped, the rest unbounded (RAM reads)
    assert minimal_depths(net, 10.0, start=sized.depths, target=276).depths == sized.depths
    with pytest.raises(ValueError, match="bad FIFO depth caps.*nope: 4"):
        size_fifos_lp(net, schedule="demand", depth_caps={"nope": 4})


def test_depth_curves_shared_by_solves_give_the_same_sizing_and_evaluate_once() -> None:
    net = paper_network()
    profiles = simulate(net, {}).firing_times
    curves = DepthCurves()
    first = solve_profiles(net, profiles, "normal", 10.0, curves=curves)
    evaluated = {s.name: dict(curves.known(profiles[s.source], profiles[s.target], s.name)) for s in net.streams}
    assert all(evaluated.values())
    again = solve_profiles(net, profiles, "normal", 10.0, curves=curves)
    alone = solve_profiles(net, profiles, "normal", 10.0)
    assert first.depths == again.depths == alone.depths
    # The second solve read every depth it needed from the first's evaluations.
    assert {s.name: curves.known(profiles[s.source], profiles[s.target], s.name) for s in net.streams} == evaluated
    # Each is the exact peak occupancy at its delay (the simulator's rule), whatever the order it was asked in.
    for s in net.streams:
        w = profiles[s.source].complete[net.process(s.source).writes[s.name]]
        r = profiles[s.target].issue[net.process(s.target).reads[s.name]]
        for shift, depth in evaluated[s.name].items():
            assert depth == int(peak_occupancies(w, r, np.array([shift], dtype=np.int64))[0])


def test_a_network_sharing_the_evaluated_depths_sizes_alike_and_evaluates_nothing_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A network built again (timing_model.GroupNetworks: other DMA shares) reads the depth curves its predecessor's
    # LPs evaluated: they are keyed by the streams' token times, whatever network or profile objects hold them.
    net, again = paper_network(), paper_network()
    keep_evaluated_depths(net)
    first = size_fifos_lp(net, schedule="demand")
    keep_evaluated_depths(again, net)

    def refuse(*args: object) -> None:
        raise AssertionError("a depth was evaluated again")

    monkeypatch.setattr(fifo_lp, "peak_occupancies", refuse)
    shared = size_fifos_lp(again, schedule="demand")
    assert shared.depths == first.depths and shared.total_bits == first.total_bits
    with pytest.raises(AssertionError, match="evaluated again"):  # on its own it evaluates them
        size_fifos_lp(paper_network(), schedule="demand")
    alone = paper_network()
    keep_evaluated_depths(alone)
    with pytest.raises(AssertionError, match="evaluated again"):
        size_fifos_lp(alone, schedule="demand")
