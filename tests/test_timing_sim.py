"""Token-level timing simulator: semantics on hand-computed cases, exact deadlock cycles, validation, a naive
reference cross-check, monotonicity in FIFO depth, and the minimal-depths oracle (fifo_depth_oracle)."""

from __future__ import annotations

import numpy as np
import pytest
from fifo_depth_oracle import minimal_depths
from hypothesis import given, settings
from hypothesis import strategies as st
from process_networks import bursty_fork, late_reader, paper_network, seq

from streamtensor.analysis import timing_sim
from streamtensor.analysis.process_network import Process, ProcessNetwork, Stream, even_firings
from streamtensor.analysis.sim_kernel import peak_occupancies
from streamtensor.analysis.timing_sim import (
    SimResult,
    Simulator,
    StallCycles,
    TokenTimes,
    peak_occupancy,
    process_trace,
    raw_latency,
    simulate,
)
from streamtensor.codegen.vitis.boards import U55C


def pair(width: int = 32) -> ProcessNetwork:
    """P (ii 1, depth 2) -> C (ii 1, depth 1), 3 tokens, one per firing."""
    return ProcessNetwork(
        [
            Process("P", 1, 2, 3, writes={"s": seq(3)}),
            Process("C", 1, 1, 3, reads={"s": seq(3)}),
        ],
        [Stream("s", "P", "C", width, 3)], U55C.memory.srl_max_bits,
    )


def random_network(seed: int) -> ProcessNetwork:
    """A random DAG of 2-5 processes with uniform, late, grouped and reduction-like token patterns."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 6))
    firings = [int(rng.integers(3, 24)) for _ in range(n)]
    reads: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
    writes: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
    streams = []

    def pattern(tokens: int, nf: int, role: str) -> np.ndarray:
        kind = int(rng.integers(0, 4))
        if kind == 1:  # late writer / early reader
            cut = int(rng.integers(0, nf))
            return even_firings(tokens, cut, nf - 1) if role == "w" else even_firings(tokens, 0, cut)
        if kind == 2:  # g tokens per firing
            g = int(rng.integers(2, 5))
            return np.repeat(even_firings(-(-tokens // g), 0, nf - 1), g)[:tokens]
        if kind == 3 and tokens <= nf:  # reduction: write at a block's end, read at its start
            block = nf // tokens
            return np.arange(tokens) * block + (block - 1 if role == "w" else 0)
        return even_firings(tokens, 0, nf - 1)

    for j in range(1, n):
        preds = [i for i in range(j) if rng.random() < 0.5] or [int(rng.integers(0, j))]
        for i in preds:
            tokens = int(rng.integers(1, 30))
            name = f"P{i}->P{j}"
            streams.append(Stream(name, f"P{i}", f"P{j}", int(rng.choice([8, 64, 512, 2048])), tokens))
            writes[i][name] = pattern(tokens, firings[i], "w")
            reads[j][name] = pattern(tokens, firings[j], "r")
    procs = [
        Process(f"P{i}", int(rng.integers(1, 4)), int(rng.integers(0, 6)), firings[i], reads[i], writes[i])
        for i in range(n)
    ]
    return ProcessNetwork(procs, streams, U55C.memory.srl_max_bits)


def reference_makespan(net: ProcessNetwork, depths: dict[str, int | None]) -> int | None:
    """Naive evaluation of the §5 trace model, written independently: each process's events sorted by
    (static time, firing, read-before-write); sweep until no event can be computed. None on deadlock."""
    traces = {}
    for p in net.processes:
        events = [(f * p.ii + kind * p.depth, f, kind) for f in range(p.num_firings) for kind in (0, 1)]
        traces[p.name] = sorted(events)
    pos = {name: {(f, kind): j for j, (_, f, kind) in enumerate(ev)} for name, ev in traces.items()}
    t: dict[str, list[int | None]] = {name: [None] * len(ev) for name, ev in traces.items()}

    def event_time(proc: str, f: int, kind: int) -> int | None:
        return t[proc][pos[proc][(f, kind)]]

    progress = True
    while progress:
        progress = False
        for p in net.processes:
            ev = traces[p.name]
            for j, (static, f, kind) in enumerate(ev):
                if t[p.name][j] is not None:
                    continue
                prev = 0 if j == 0 else t[p.name][j - 1]
                if prev is None:
                    break
                cands = [prev + static - (ev[j - 1][0] if j else 0)]
                if kind == 0:
                    for s in net.inputs(p.name):
                        raw = raw_latency(s.width_bits, depths.get(s.name), U55C.memory.srl_max_bits)
                        src = net.process(s.source)
                        for k in np.nonzero(p.reads[s.name] == f)[0]:
                            cands.append(event_time(src.name, int(src.writes[s.name][k]), 1))
                            cands[-1] = None if cands[-1] is None else cands[-1] + raw
                else:
                    for s in net.outputs(p.name):
                        d = depths.get(s.name)
                        tgt = net.process(s.target)
                        for k in np.nonzero(p.writes[s.name] == f)[0]:
                            if d is not None and k >= d:
                                r = event_time(tgt.name, int(tgt.reads[s.name][k - d]), 0)
                                cands.append(None if r is None else r + 1)
                if any(c is None for c in cands):
                    break
                t[p.name][j] = max(c for c in cands if c is not None)
                progress = True
    if any(v is None for ts in t.values() for v in ts):
        return None
    return max(ts[-1] for ts in t.values() if ts[-1] is not None)


# --- semantics on hand-computed cases ---------------------------------------------------------------


def test_single_process_runs_its_static_latency() -> None:
    net = ProcessNetwork([Process("A", 3, 5, 10)], [], U55C.memory.srl_max_bits)
    res = simulate(net, {})
    assert res.makespan_cycles == net.process("A").latency == 9 * 3 + 5
    assert res.stall_cycles["A"] == StallCycles(0, 0)


def test_pair_unbounded_hand_computed() -> None:
    # P writes tokens at 2, 3, 4; an unbounded FIFO is a RAM FIFO (read latency 2), so C issues at 4, 5, 6
    # and its last firing completes at 6 + 1.
    res = simulate(pair(), {})
    assert res.makespan_cycles == 7
    assert res.token_times["s"] == TokenTimes(first_write=2, last_write=4, first_read=4, last_read=6)
    assert res.peak_occupancy["s"] == 3  # at cycle 4 tokens 0..2 are all in (token 0 is read that cycle)
    assert res.stall_cycles == {"P": StallCycles(0, 0), "C": StallCycles(input_empty=4, output_full=0)}
    assert res.firing_times["C"].issue.tolist() == [4, 5, 6]
    assert res.firing_times["P"].complete.tolist() == [2, 3, 4]


def test_pair_depth1_back_pressure_hand_computed() -> None:
    # Depth 1, 32 bits: SRL FIFO (read latency 1). Token k > 0 is writable one cycle after token k-1's read:
    # writes 2, 4, 6 (P's pipeline stalls 2 cycles on a full FIFO), reads 3, 5, 7, C completes at 8.
    res = simulate(pair(), {"s": 1})
    assert res.makespan_cycles == 8
    assert res.firing_times["P"].complete.tolist() == [2, 4, 6]
    assert res.firing_times["C"].issue.tolist() == [3, 5, 7]
    assert res.stall_cycles["P"] == StallCycles(input_empty=0, output_full=2)
    assert res.peak_occupancy["s"] == 1


def test_latency_class_switch_is_the_only_non_monotonicity() -> None:
    # Depth 2 is a 64-bit shift register (1-cycle reads): faster than the unbounded RAM FIFO (2 cycles).
    assert simulate(pair(), {"s": 2}).makespan_cycles == 6
    assert simulate(pair(), {"s": None}).makespan_cycles == 7
    # A 2048-bit stream is a RAM FIFO at any depth: depth 3 (its peak) reproduces the unbounded run exactly.
    assert simulate(pair(2048), {"s": 3}).firing_times["C"].issue.tolist() == [4, 5, 6]
    assert simulate(pair(2048), {"s": 2}).makespan_cycles == 8


def test_raw_latency_threshold() -> None:
    assert raw_latency(32, U55C.memory.srl_max_bits // 32, U55C.memory.srl_max_bits) == 1
    assert raw_latency(32, U55C.memory.srl_max_bits // 32 + 1, U55C.memory.srl_max_bits) == 2
    assert raw_latency(2048, 1, U55C.memory.srl_max_bits) == 2
    assert raw_latency(8, None, U55C.memory.srl_max_bits) == 2


def test_release_times_delay_a_start() -> None:
    res = simulate(pair(), {}, release={"C": np.full(3, 10)})
    assert res.firing_times["C"].issue.tolist() == [10, 11, 12]
    assert res.peak_occupancy["s"] == 3
    assert res.stall_cycles["C"].input_empty == 10
    with pytest.raises(ValueError, match="shape"):
        simulate(pair(), {}, release={"C": np.zeros(2)})


def test_peak_occupancy_convention() -> None:
    # A token occupies its slot from its write cycle through its read cycle inclusive.
    assert peak_occupancy(np.array([0, 1, 2]), np.array([1, 2, 3])) == 2
    assert peak_occupancy(np.array([0, 1, 2]), np.array([0, 1, 2])) == 1
    assert peak_occupancy(np.array([5, 5, 5]), np.array([6, 7, 8])) == 3


def all_times(res: SimResult) -> dict[str, tuple[list[int], list[int]]]:
    return {n: (t.issue.tolist(), t.complete.tolist()) for n, t in res.firing_times.items()}


@pytest.mark.parametrize("seed", range(8))
def test_peak_occupancy_is_the_depth_that_never_back_pressures(seed: int) -> None:
    net = random_network(seed)
    # All-RAM widths so that a finite depth keeps the unbounded read latency.
    wide = ProcessNetwork(net.processes, [Stream(s.name, s.source, s.target, 2048, s.tokens) for s in net.streams],
                          U55C.memory.srl_max_bits)
    base = simulate(wide, {})
    assert all_times(simulate(wide, dict(base.peak_occupancy))) == all_times(base)
    for s in wide.streams:
        if base.peak_occupancy[s.name] > 1:
            smaller = simulate(wide, {**base.peak_occupancy, s.name: base.peak_occupancy[s.name] - 1})
            assert smaller.deadlock or all_times(smaller) != all_times(base)


# --- deadlocks ------------------------------------------------------------------------------------------


def test_paper_example_deadlock_cycle_is_exact() -> None:
    # K2 needs K1's first row token before K0's row; K1 needs 8 tokens from K0 for it; with a depth-1
    # K0->K2 FIFO K0 cannot write its second token: K0 -> K2 -> K1 -> K0.
    res = simulate(paper_network(), {"K0->K2": 1})
    assert res.deadlock and res.makespan_cycles is None
    assert [(w.process, w.stream, w.kind) for w in res.deadlock_cycle] == [
        ("K0", "K0->K2", "full"),
        ("K2", "K1->K2", "empty"),
        ("K1", "K0->K1", "empty"),
    ]
    assert [(w.firing, w.token) for w in res.deadlock_cycle] == [(1, 1), (0, 0), (1, 1)]
    assert res.describe() == (
        "DEADLOCK: K0 blocked writing K0->K2 (full) -> K2 blocked reading K1->K2 (empty) -> "
        "K1 blocked reading K0->K1 (empty) -> K0"
    )
    # K1's firing 0 is still in its 3-deep pipeline, frozen behind the blocked read of firing 1.
    assert res.firings_done == {"K0": 1, "K1": 0, "K2": 0}


def test_pipeline_freeze_sets_the_deadlock_threshold() -> None:
    # K1 writes a row's token at firing 7 + depth 3, i.e. after the read events of firings 8 and 9 in its
    # trace: a blocked read freezes the whole pipeline, so K0 must get tokens 8 and 9 out as well before
    # K2 can read anything: K0->K2 needs 10 slots to avoid deadlock, not the row's 8.
    assert simulate(paper_network(), {"K0->K2": 9}).deadlock
    assert simulate(paper_network(), {"K0->K2": 10}).makespan_cycles == 63


def test_feedback_cycle_without_initial_tokens_deadlocks_even_unbounded() -> None:
    net = ProcessNetwork(
        [
            Process("A", 1, 1, 4, reads={"B->A": seq(4)}, writes={"A->B": seq(4)}),
            Process("B", 1, 1, 4, reads={"A->B": seq(4)}, writes={"B->A": seq(4)}),
        ],
        [Stream("A->B", "A", "B", 8, 4), Stream("B->A", "B", "A", 8, 4)], U55C.memory.srl_max_bits,
    )
    res = simulate(net, {})
    assert [(w.process, w.stream, w.kind) for w in res.deadlock_cycle] == [
        ("A", "B->A", "empty"),
        ("B", "A->B", "empty"),
    ]
    with pytest.raises(ValueError, match="deadlocks even with unbounded FIFOs"):
        minimal_depths(net)


# --- validation -----------------------------------------------------------------------------------------


def test_token_count_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"'s': token-count mismatch.*producer 'P' writes 2 and consumer 'C' reads 3"):
        ProcessNetwork(
            [Process("P", 1, 1, 3, writes={"s": seq(2)}), Process("C", 1, 1, 3, reads={"s": seq(3)})],
            [Stream("s", "P", "C", 8, 3)], U55C.memory.srl_max_bits,
        )


@pytest.mark.parametrize(
    ("procs", "streams", "message"),
    [
        ([Process("P", 1, 1, 2, writes={"s": seq(2)})], [Stream("s", "P", "C", 8, 2)], "target process 'C'"),
        (
            [Process("P", 1, 1, 2), Process("C", 1, 1, 2, reads={"s": seq(2)})],
            [Stream("s", "P", "C", 8, 2)],
            "source process 'P' does not write it",
        ),
        (
            [Process("P", 1, 1, 2, writes={"s": seq(2), "t": seq(2)}), Process("C", 1, 1, 2, reads={"s": seq(2)})],
            [Stream("s", "P", "C", 8, 2)],
            "writes unknown stream 't'",
        ),
        (
            [Process("P", 1, 1, 2, writes={"s": seq(2)}), Process("P", 1, 1, 2, reads={"s": seq(2)})],
            [Stream("s", "P", "C", 8, 2)],
            "duplicate process name 'P'",
        ),
    ],
)
def test_network_validation_errors(procs: list[Process], streams: list[Stream], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProcessNetwork(procs, streams, U55C.memory.srl_max_bits)


def test_process_validation_errors() -> None:
    with pytest.raises(ValueError, match="must be sorted"):
        Process("P", 1, 1, 4, writes={"s": np.array([0, 2, 1])})
    with pytest.raises(ValueError, match=r"must lie in \[0, 4\)"):
        Process("P", 1, 1, 4, reads={"s": np.array([0, 4])})
    with pytest.raises(ValueError, match="ii must be >= 1"):
        Process("P", 0, 1, 4)
    with pytest.raises(ValueError, match="source and target are both"):
        Stream("s", "P", "P", 8, 1)
    with pytest.raises(ValueError, match="unknown streams"):
        simulate(pair(), {"nope": 2})
    with pytest.raises(ValueError, match="depth must be >= 1"):
        simulate(pair(), {"s": 0})


def test_token_maps_are_int32_unless_the_firings_need_int64() -> None:
    """Half the memory of a fine tiling's maps; a process of 2**31 firings or more keeps int64 (its indices would
    not fit), and a map given in int64 is validated before it is narrowed (no index wraps around unseen)."""
    assert Process("P", 1, 1, 4, writes={"s": np.array([0, 3], dtype=np.int64)}).writes["s"].dtype == np.int32
    assert Process("P", 1, 1, 2**31, writes={"s": np.array([0, 2**31 - 1])}).writes["s"].dtype == np.int64
    with pytest.raises(ValueError, match=r"must lie in \[0, 4\)"):
        Process("P", 1, 1, 4, writes={"s": np.array([0, 2**32 + 1])})


def test_derived_timing() -> None:
    k1 = paper_network().process("K1")
    assert (k1.latency, k1.initial_delay, k1.first_write_firing) == (31 + 3, 7 + 3, 7)
    sink = paper_network().process("K2")
    assert sink.initial_delay == sink.latency == 31 + 1


# --- reference cross-check and monotonicity ----------------------------------------------------------------

depth_choice = st.one_of(st.none(), st.integers(1, 12))


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 10_000), data=st.data())
def test_matches_naive_reference(seed: int, data: st.DataObject) -> None:
    net = random_network(seed)
    depths = {s.name: data.draw(depth_choice) for s in net.streams}
    res = simulate(net, depths)
    assert res.makespan_cycles == reference_makespan(net, depths)
    assert res.deadlock == (res.makespan_cycles is None)


@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 10_000), data=st.data())
def test_bigger_depths_never_hurt(seed: int, data: st.DataObject) -> None:
    net = random_network(seed)
    small = {s.name: data.draw(st.integers(1, 10)) for s in net.streams}
    bigger: dict[str, int | None] = {}
    for s in net.streams:
        d = small[s.name] + data.draw(st.integers(0, 10))
        srl_max = U55C.memory.srl_max_bits // s.width_bits
        # Stay in the read-latency class: an SRL FIFO stays SRL; a RAM one may even become unbounded.
        bigger[s.name] = min(d, srl_max) if small[s.name] <= srl_max else (None if d > 15 else d)
    lo, hi = simulate(net, small), simulate(net, bigger)
    if not lo.deadlock:
        assert not hi.deadlock
        assert hi.makespan_cycles is not None and lo.makespan_cycles is not None
        assert hi.makespan_cycles <= lo.makespan_cycles
    # Deadlock freedom is monotone across latency classes too.
    anything_bigger = {s.name: small[s.name] + data.draw(st.integers(0, 40)) for s in net.streams}
    assert lo.deadlock or not simulate(net, anything_bigger).deadlock


# --- the compiled engine against the Python engine (its oracle) ----------------------------------------------


def assert_same_result(fast: SimResult, exact: SimResult) -> None:
    """Every field of two results equal, firing times included."""
    assert fast.makespan_cycles == exact.makespan_cycles
    assert fast.deadlock == exact.deadlock
    assert fast.deadlock_cycle == exact.deadlock_cycle
    assert fast.stall_cycles == exact.stall_cycles
    assert fast.peak_occupancy == exact.peak_occupancy
    assert fast.token_times == exact.token_times
    assert fast.firings_done == exact.firings_done
    assert all_times(fast) == all_times(exact)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10_000), data=st.data())
def test_compiled_engine_matches_python_engine(seed: int, data: st.DataObject) -> None:
    net = random_network(seed)
    depths = {s.name: data.draw(depth_choice) for s in net.streams}
    release = {p.name: np.sort(np.array(data.draw(st.lists(st.integers(0, 60), min_size=p.num_firings,
                                                           max_size=p.num_firings)), dtype=np.int64))
               for p in net.processes if data.draw(st.booleans())}
    assert_same_result(simulate(net, depths, release), simulate(net, depths, release, engine="python"))
    horizon = data.draw(st.integers(0, 200))
    assert Simulator(net).finishes_by(depths, horizon) == Simulator(net, "python").finishes_by(depths, horizon)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10_000), data=st.data())
def test_no_event_happens_after_the_time_bound(seed: int, data: st.DataObject) -> None:
    """The bound that lets a run keep its times in int32 holds: every event of every run (any depths, releases)."""
    net = random_network(seed)
    release = {p.name: np.sort(np.array(data.draw(st.lists(st.integers(0, 60), min_size=p.num_firings,
                                                           max_size=p.num_firings)), dtype=np.int64))
               for p in net.processes if data.draw(st.booleans())}
    result = simulate(net, {s.name: data.draw(depth_choice) for s in net.streams}, release)
    latest = max((int(ft.complete.max(initial=-1)) for ft in result.firing_times.values()), default=-1)
    assert latest <= Simulator(net).time_bound + max((int(r.max()) for r in release.values()), default=0)


@pytest.mark.parametrize("offset", [0, 2**31])
def test_runs_released_past_the_int32_range_keep_int64_times(offset: int) -> None:
    """A run whose times could pass the int32 range (released late here) computes in int64 arrays: the same
    results as the oracle's, shifted."""
    net = paper_network(64, 16)
    source = net.processes[0]
    release = {source.name: np.arange(source.num_firings, dtype=np.int64) + offset}
    fast, exact = simulate(net, {}, release), simulate(net, {}, release, engine="python")
    assert_same_result(fast, exact)
    assert fast.firing_times[source.name].issue.dtype == (np.int64 if offset else np.int32)
    assert fast.makespan_cycles > offset
    lowered = {s.name: 4 for s in net.streams}
    assert_same_result(simulate(net, lowered, release, resume_from=fast, dropping=fast),
                       simulate(net, lowered, release, engine="python"))


@pytest.mark.parametrize("net", [paper_network(), paper_network(64, 16), bursty_fork(), bursty_fork(512, 32),
                                 late_reader(), late_reader(256, 200)], ids=lambda n: f"{len(n.processes)}p")
@pytest.mark.parametrize("depth", [None, 1, 2, 5])
def test_compiled_engine_matches_python_engine_on_shared_networks(net: ProcessNetwork, depth: int | None) -> None:
    depths = {s.name: depth for s in net.streams}
    fast, exact = simulate(net, depths), simulate(net, depths, engine="python")
    assert_same_result(fast, exact)
    if fast.makespan_cycles is not None:
        for horizon in (fast.makespan_cycles - 1, fast.makespan_cycles):
            assert Simulator(net).finishes_by(depths, horizon) == (horizon == fast.makespan_cycles)
            assert Simulator(net).makespan_by(depths, horizon) == (fast.makespan_cycles if horizon ==
                                                                   fast.makespan_cycles else None)
    else:
        assert Simulator(net).makespan_by(depths, 2**40) is None


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10_000), data=st.data())
def test_a_resumed_run_equals_a_run_from_cycle_0(seed: int, data: st.DataObject) -> None:
    """Any change of depths (lowered, raised, unbounded, across the SRL latency class) from a finished or deadlocked
    run, or from the better of two, in the arrays of one of them or not."""
    net = random_network(seed)
    release = {p.name: np.sort(np.array(data.draw(st.lists(st.integers(0, 60), min_size=p.num_firings,
                                                           max_size=p.num_firings)), dtype=np.int64))
               for p in net.processes if data.draw(st.booleans())}
    base = simulate(net, {s.name: data.draw(depth_choice) for s in net.streams}, release)
    other = simulate(net, {s.name: data.draw(depth_choice) for s in net.streams}, release)
    depths = {s.name: data.draw(depth_choice) for s in net.streams}
    fresh = simulate(net, depths, release)
    assert_same_result(simulate(net, depths, release, resume_from=base), fresh)
    assert_same_result(simulate(net, depths, release, resume_from=[base, other]), fresh)
    # Going on in the arrays of a run the caller drops (emptied), whichever run it takes its events from: the same
    # result, in those arrays, the other run intact.
    arrays = other.run_state.issue
    resumed = simulate(net, depths, release, resume_from=[base, other], dropping=other)
    assert_same_result(resumed, fresh)
    assert resumed.run_state.issue is arrays
    assert other.run_state is None and not other.firing_times
    assert_same_result(simulate(net, depths, release, resume_from=base), fresh)


def test_resuming_a_run_of_other_release_times_or_another_network_is_rejected() -> None:
    net = paper_network()
    base = simulate(net, {})
    release = {net.processes[0].name: np.arange(net.processes[0].num_firings, dtype=np.int64)}
    for other, times in ((net, release), (paper_network(), None)):
        with pytest.raises(ValueError, match="not a compiled run of this network with these release times"):
            simulate(other, {}, times, resume_from=base)


def test_a_run_takes_the_arrays_of_a_dropped_run_but_not_of_one_still_referred_to(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timing_sim, "_KEPT", [])  # none kept by earlier tests' runs, still in use or not
    net = paper_network()
    name = net.processes[-1].name
    first = simulate(net, {})
    kept = first.firing_times[name].complete  # a view: the run's arrays stay in use
    expected = kept.copy()
    del first
    second = simulate(net, {s.name: 1 for s in net.streams})
    assert second.run_state is not None and second.run_state.complete is not kept.base
    del second
    free = {id(bufs[3]) for bufs in timing_sim._KEPT}  # ids: a reference would keep them in use
    third = simulate(net, {})
    assert third.run_state is not None and id(third.run_state.complete) in free  # a kept set, not a fresh one
    assert (kept == expected).all()  # the one still referred to is intact
    assert_same_result(third, simulate(net, {}, engine="python"))


def test_unknown_engine_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown simulation engine"):
        Simulator(pair(), "fast")  # type: ignore[arg-type]


@pytest.mark.parametrize("ii", [1, 2, 3])
@pytest.mark.parametrize("depth", [0, 1, 2, 3, 7])
def test_merged_trace_matches_a_sort(ii: int, depth: int) -> None:
    """The merge orders events like a sort by (static time, firing, read before write)."""
    n = 9
    trace = process_trace(Process("p", ii, depth, n))
    f = np.arange(n)
    static = np.concatenate([f * ii, f * ii + depth])
    kind = np.repeat([0, 1], n)
    order = np.lexsort((kind, np.concatenate([f, f]), static))
    assert trace.static.tolist() == static[order].tolist()
    assert trace.is_write.tolist() == (kind[order] == 1).tolist()
    assert trace.firing.tolist() == np.concatenate([f, f])[order].tolist()
    assert trace.read_pos.tolist() == np.argsort(order)[:n].tolist()
    assert trace.write_pos.tolist() == np.argsort(order)[n:].tolist()


@pytest.mark.parametrize("seed", range(5))
def test_peak_occupancies_match_peak_occupancy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    writes, reads = np.sort(rng.integers(0, 100, 40)), np.sort(rng.integers(0, 100, 40))
    shifts = np.arange(-80, 80)
    assert peak_occupancies(writes, reads, shifts).tolist() == [peak_occupancy(writes, reads + x) for x in shifts]


# --- minimal depths ---------------------------------------------------------------------------------------


def test_minimal_depths_paper_example() -> None:
    net = paper_network()
    md = minimal_depths(net)
    assert md.complete and md.baseline_makespan == 48
    assert md.depths == {"K0->K1": 2, "K1->K2": 1, "K0->K2": 13}
    assert md.total_bits == 32 * (2 + 1 + 13)
    assert md.makespan <= md.baseline_makespan
    assert md.searched[0] == "K0->K2"  # widest baseline bits first
    # Every depth is minimal given the others (all SRL here, so monotone): one less breaks the makespan.
    for name, d in md.depths.items():
        if d > 1:
            res = simulate(net, {**md.depths, name: d - 1})
            assert res.deadlock or (res.makespan_cycles or 0) > md.baseline_makespan


def test_minimal_depths_out_of_budget_keeps_the_baseline_peaks() -> None:
    net = paper_network()
    md = minimal_depths(net, time_budget_s=0.0)
    assert not md.complete and md.searched == []
    assert md.depths == simulate(net, {}).peak_occupancy
    assert md.makespan <= md.baseline_makespan


def test_minimal_depths_from_given_start_depths() -> None:
    net = paper_network()
    start = {"K0->K1": 5, "K1->K2": 4, "K0->K2": 20}  # generous: keeps the makespan
    md = minimal_depths(net, start=start)
    assert md.complete and md.makespan <= md.baseline_makespan
    assert all(md.depths[s] <= d for s, d in start.items())
    assert md.depths == minimal_depths(net).depths  # here the per-FIFO minimum does not depend on the start
    with pytest.raises(ValueError, match="start depths do not keep the unbounded makespan 48"):
        minimal_depths(net, start={**start, "K0->K2": 12})


def test_minimal_depths_wide_stream_searches_ram_class() -> None:
    # 2048-bit tokens: no depth is a shift register, so only RAM depths are searched; 3 is the peak.
    md = minimal_depths(pair(2048))
    assert md.depths == {"s": 3} and md.makespan == md.baseline_makespan == 7
