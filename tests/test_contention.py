"""HBM contention of one-token blocks: the shares the simulation settles (analysis.contention), the stripes a
consumer absorbs and the IR that records them."""

import copy
import re
from fractions import Fraction

import numpy as np
import pytest
from conftest import tiny_block

from streamtensor.analysis import contention
from streamtensor.analysis.contention import raise_shares, settle_shares
from streamtensor.analysis.hbm import ExternalTensor, contention_shares, place_tensors, stripes_for_rate
from streamtensor.analysis.memory import node_groups
from streamtensor.analysis.timing_model import GroupNetworks, build_process_network, dma_placement_of_group
from streamtensor.analysis.timing_sim import simulate
from streamtensor.codegen.vitis.boards import U55C
from streamtensor.errors import VerificationError
from streamtensor.ir.dataflow import DmaNode, print_dataflow
from streamtensor.ir.dataflow_parser import parse_dataflow


def _one_channel_placement():  # noqa: ANN202 - HbmPlacement
    hbm = U55C.hbm.__class__(**{**U55C.hbm.__dict__, "channels": 1})
    return place_tensors([ExternalTensor("a", ("a0",), 64, 64), ExternalTensor("b", ("b0",), 64, 64)], hbm)


def test_contention_is_the_mean_of_the_ports_busy_with_a_dma() -> None:
    placement = _one_channel_placement()
    assert placement.shares == {"a0": 2, "b0": 2}  # the static count: both ports on the channel
    # a transfers in cycles 0..9, b in 5..14 and 100..109: a shares half its cycles, b a quarter.
    busy = {"a0": np.arange(10), "b0": np.concatenate([np.arange(5, 15), np.arange(100, 110)])}
    shares = contention_shares(placement, busy, 1)
    assert shares == {"a0": Fraction(3, 2), "b0": Fraction(5, 4)}
    # Apart in time: each alone on the channel. Rounded up to a quarter, never below its own port.
    assert contention_shares(placement, {"a0": np.arange(10), "b0": np.arange(10, 20)}, 1) == {
        "a0": 1, "b0": 1}
    assert contention_shares(placement, {"a0": np.arange(10), "b0": np.arange(9, 109)}, 1)["b0"] == Fraction(5, 4)
    assert contention_shares(placement, {"a0": np.arange(3)}, 1) == {"a0": 1, "b0": 1}  # b moved nothing


def test_contention_counts_the_ports_busy_in_each_cycle_of_a_dma() -> None:
    # The shares from the sorted busy cycles (hbm.contention_shares) against the definition, cycle by cycle: two
    # tensors striped over shared channels, busy cycles unsorted and repeated (a DMA busy once per cycle).
    hbm = U55C.hbm.__class__(**{**U55C.hbm.__dict__, "channels": 3})
    placement = place_tensors([ExternalTensor("a", ("a0",), 64, 64, stripes=2),
                               ExternalTensor("b", ("b0",), 64, 64, stripes=2),
                               ExternalTensor("c", ("c0",), 64, 64)], hbm)
    rng = np.random.default_rng(7)
    busy = {d: rng.integers(0, 300, size=n) for d, n in (("a0", 200), ("b0", 120), ("c0", 90))}
    ports = placement.channel_ports(3)
    expected = {}
    for d, cycles in busy.items():
        mine = set(cycles.tolist())
        worst = max(sum(len(mine & set(busy[e].tolist())) for e in ports[c])
                    for first, last in placement.dma_ranges[d] for c in range(first, last + 1))
        expected[d] = Fraction(-(-4 * worst // len(mine)), 4)
    assert contention_shares(placement, busy, 3) == expected
    assert any(share > 1 for share in expected.values())


def test_stripes_for_rate_keep_pace_with_the_fewest_ports() -> None:
    # A 16-word tile: one port moves 57.5 B/cycle, so 200 B/cycle needs 4 words per port (4 stripes) ...
    assert stripes_for_rate(16, Fraction(200), U55C) == 4
    assert stripes_for_rate(16, Fraction(57), U55C) == 1
    assert stripes_for_rate(16, Fraction(230), U55C) == 4  # 4 x 57.5 = 230 exactly
    assert stripes_for_rate(16, Fraction(231), U55C) == 6  # ceil(16 / 5) = 4 words per port: 6 takes 3
    assert stripes_for_rate(2, Fraction(10_000), U55C) == 2  # at most its words


@pytest.fixture(scope="module")
def decode_design():  # noqa: ANN201 - Design
    return tiny_block("gpt2", "decode")[0]


def test_a_decode_block_streams_at_the_contention_its_simulation_shows(decode_design) -> None:  # noqa: ANN001
    graph = decode_design.dataflow
    dmas = [n for n in graph.nodes.values() if isinstance(n, DmaNode) and n.role != "scalar"]
    assert dmas and all(n.share is not None for n in dmas)
    static = dma_placement_of_group(graph, 0, U55C).shares
    assert all(1 <= n.share <= static[n.name] for n in dmas)
    # Settled: the simulation with the sized FIFOs shows no DMA more contention than its share.
    probe = copy.deepcopy(graph)
    net = build_process_network(probe, U55C, 0)
    sim = simulate(net, {s.name: s.depth for s in probe.streams.values()})
    assert sim.makespan_cycles == decode_design.report["simulation"]["makespan_cycles"]
    assert raise_shares(probe, U55C, 0, sim) == []
    # ... while assuming every DMA alone on the HBM would not be (the fixed point had work to do).
    alone = copy.deepcopy(graph)
    for n in alone.nodes.values():
        if isinstance(n, DmaNode) and n.share is not None:
            n.share = Fraction(1)
    assert raise_shares(alone, U55C, 0, simulate(build_process_network(alone, U55C, 0), {}))


def test_shares_round_trip_through_the_ir(decode_design) -> None:  # noqa: ANN001
    text = print_dataflow(decode_design.dataflow)
    assert "share = " in text
    parsed = parse_dataflow(text)
    assert {n: d.share for n, d in parsed.nodes.items() if isinstance(d, DmaNode)} == {
        n: d.share for n, d in decode_design.dataflow.nodes.items() if isinstance(d, DmaNode)}
    broken = re.sub(r"share = [0-9/]+", "share = 0", text, count=1)
    with pytest.raises(VerificationError, match="share = 0.*at least 1"):
        parse_dataflow(broken)


def test_a_prefill_block_keeps_the_static_shares() -> None:
    graph = tiny_block("gpt2", "prefill")[0].dataflow
    assert all(n.share is None for n in graph.nodes.values() if isinstance(n, DmaNode))
    assert "share = " not in print_dataflow(graph)


def test_unsettled_shares_fall_back_to_the_static_count(decode_design, monkeypatch) -> None:  # noqa: ANN001
    graph = copy.deepcopy(decode_design.dataflow)
    for n in graph.nodes.values():
        if isinstance(n, DmaNode) and n.share is not None:
            n.share = Fraction(1)
    monkeypatch.setattr(contention, "MAX_ROUNDS", 1)  # no second simulation: whatever it raised goes static
    assert settle_shares(graph, U55C) == len(set(node_groups(graph).values()))
    static = dma_placement_of_group(graph, 0, U55C).shares
    fell_back = [n for n in graph.nodes.values() if isinstance(n, DmaNode) and n.share not in (None, 1)]
    assert fell_back and all(n.share == static[n.name] for n in fell_back)


def test_a_network_built_again_for_raised_shares_is_the_one_built_afresh(decode_design) -> None:  # noqa: ANN001
    # GroupNetworks builds again only the processes of the DMAs whose shares changed.
    graph = copy.deepcopy(decode_design.dataflow)
    networks = GroupNetworks(graph, U55C)
    before = networks(0)
    dmas = [n for n in graph.nodes.values() if isinstance(n, DmaNode) and n.share is not None and n.role != "scalar"]
    for n in dmas[::2]:
        n.share += 1
    after = networks(0)
    assert after is not before and after is networks(0)
    assert after.digest() == build_process_network(graph, U55C, 0).digest() != before.digest()
    raised = {n.name for n in dmas[::2]}
    assert all((p is before.process(p.name)) == (p.name not in raised) for p in after.processes)
