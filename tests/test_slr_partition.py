"""SLR partitioning ILP (HiGHS): clustering of heavy streams, capacities, DMA placement, time limit."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest
from devices import device
from test_fusion import CONVERTER_BYTES, GraphBuilder, chain_graph, ew_kernel

from streamtensor.analysis.memory import node_groups
from streamtensor.analysis.resources import estimate_resources
from streamtensor.analysis.slr_partition import SlrPartitionError, partition_slrs
from streamtensor.codegen.vitis.boards import U55C
from streamtensor.errors import OptionError
from streamtensor.ir.dataflow import DataflowGraph, DmaNode
from streamtensor.target import Target
from streamtensor.transforms.fusion import apply_fusion


def three_clusters() -> DataflowGraph:
    """dma_in -> k0 => k1 => conv1 -> k2 -> k3 -> conv2 => k4 => k5 => dma_out.

    k0, k1, k4, k5 stream whole 8x8 f32 tiles (=>: 2048-bit tokens); k2, k3 stream 4x2 tiles (->: 256 bits).
    Every kernel is ``a * 2`` on 2 lanes: 6 DSPs."""
    wide = {"tiles": (8, 8), "tile_order": (0, 1)}
    b = GraphBuilder("clusters").add(
        ew_kernel("k0", 1, "arith.mulf", **wide), ew_kernel("k1", 1, "arith.mulf", **wide),
        ew_kernel("k2", 1, "arith.mulf"), ew_kernel("k3", 1, "arith.mulf"),
        ew_kernel("k4", 1, "arith.mulf", **wide), ew_kernel("k5", 1, "arith.mulf", **wide))
    b.dma_in("dma_in", "k0.in0").direct("k0.out", "k1.in0").convert("conv1", "k1.out", "k2.in0")
    b.direct("k2.out", "k3.in0").convert("conv2", "k3.out", "k4.in0").direct("k4.out", "k5.in0")
    return b.dma_out("dma_out", "k5.out").graph()


# DSP for exactly two kernels per SLR; LUT, BRAM and URAM never bind.
TEN_DSP_PER_SLR = device("test", dsp=10, bram36=10, uram=10, lut=10_000_000)
TWO_KERNELS_PER_SLR = device("test", dsp=12, bram36=10, uram=10, lut=10_000_000)


def test_heavy_streams_stay_on_one_slr() -> None:
    graph = three_clusters()
    assert [graph.streams[s].type.token_bits for s in ("k1.in0", "k2.in0", "conv2.in", "k5.in0")] == [
        2048, 256, 256, 2048]
    result = partition_slrs(graph, target=TWO_KERNELS_PER_SLR, imbalance_weight=0.0)
    a = result.assignment
    assert result.optimal and not result.time_limit_hit
    # Capacity forces three clusters of two kernels; only the two 256-bit streams are cut.
    assert a["k0"] == a["k1"] == a["conv1"]
    assert a["k2"] == a["k3"]
    assert a["conv2"] == a["k4"] == a["k5"]
    assert {a["k0"], a["k2"], a["k4"]} == {0, 1, 2}
    assert sorted(result.crossing_streams) == ["conv2.in", "k2.in0"]
    # Optimum (either mirror image): the narrow cluster on SLR2, one wide cluster on SLR0 with its DMA, the
    # other on SLR1 with its DMA 512 bits x 1 die away from the HBM. Streams: 256 x 2 hops + 256 x 1 hop.
    assert a["k2"] == 2
    assert result.crossing_bits == 768
    assert result.objective == pytest.approx(768 + 512)
    for use in result.usage:
        assert use["dsp"] == 12 <= result.capacity["dsp"]


def test_capacities_are_respected_with_slack() -> None:
    graph = three_clusters()
    # 20% slack: 14.4 DSP per SLR, still two 6-DSP kernels at most.
    result = partition_slrs(graph, target=TEN_DSP_PER_SLR, slack=1.44)
    assert result.capacity["dsp"] == pytest.approx(14.4)
    assert all(use["dsp"] <= 14.4 for use in result.usage)
    assert sum(use["dsp"] for use in result.usage) == 36


def test_small_design_stays_on_slr0_next_to_the_hbm() -> None:
    graph = chain_graph()
    result = partition_slrs(graph, imbalance_weight=0.0, target=U55C)
    assert set(result.assignment.values()) == {0}
    assert result.crossing_bits == 0 and result.crossing_streams == []
    assert result.objective == pytest.approx(0.0)
    report = estimate_resources(graph, U55C)
    assert result.usage[0]["lut"] == report.lut
    assert result.capacity["lut"] == pytest.approx(U55C.slrs[0].lut)


def test_imbalance_weight_spreads_the_design() -> None:
    graph = chain_graph()
    packed = partition_slrs(graph, imbalance_weight=0.0, target=U55C)
    spread = partition_slrs(graph, imbalance_weight=1e9, target=U55C)
    assert len(set(spread.assignment.values())) > 1
    assert max(u["lut"] for u in spread.usage) < max(u["lut"] for u in packed.usage)


def test_partitioning_one_fusion_group() -> None:
    graph = apply_fusion(chain_graph(), CONVERTER_BYTES - 1)
    result = partition_slrs(graph, nodes=graph.groups[1], imbalance_weight=0.0, target=U55C)
    assert sorted(result.assignment) == ["conv", "dma_out", "dma_w", "k2"]
    # conv's input comes from external memory: an AXI port, so the group stays on SLR0 too.
    assert set(result.assignment.values()) == {0}


def test_node_larger_than_one_slr_is_rejected() -> None:
    with pytest.raises(SlrPartitionError, match="node k0 alone exceeds one SLR's capacity of dsp"):
        partition_slrs(three_clusters(), target=device("test", dsp=5, bram36=10, uram=10, lut=10_000_000))


def test_design_larger_than_the_device_is_rejected() -> None:
    # Each kernel fits a die (6 <= 10 DSP) but two do not: six kernels need more than three dies.
    with pytest.raises(SlrPartitionError, match="no SLR assignment fits"):
        partition_slrs(three_clusters(), target=TEN_DSP_PER_SLR)


def test_bad_options_are_rejected() -> None:
    with pytest.raises(OptionError, match="time_limit_s 0"):
        partition_slrs(chain_graph(), time_limit_s=0, target=U55C)
    with pytest.raises(OptionError, match="slack -1"):
        partition_slrs(chain_graph(), slack=-1, target=U55C)


def random_dag(kernels: int, seed: int) -> DataflowGraph:
    """Random DAG of elementwise kernels (``exp`` or ``+``), each input drawn from the last six values;
    forks for values with several readers, a DMA per read of the block input and per unread value."""
    rng = random.Random(seed)
    b = GraphBuilder("random")
    readers: dict[str, list[str]] = {"x": []}
    for i in range(kernels):
        arity = rng.choice((1, 2))
        k = ew_kernel(f"k{i}", arity, "arith.addf" if arity == 2 else "math.exp")
        b.add(k)
        for port in k.inputs:
            readers[rng.choice(list(readers)[-6:])].append(port)
        readers[k.name] = []
    for value, ports in readers.items():
        if value == "x":
            for j, port in enumerate(ports):
                b.dma_in(f"dma_x{j}", port)
        elif not ports:
            b.dma_out(f"out_{value}", f"{value}.out")
        elif len(ports) == 1:
            b.direct(f"{value}.out", ports[0])
        else:
            b.fork(f"fork_{value}", f"{value}.out", ports)
    return b.graph()


def test_time_limit_returns_the_best_incumbent() -> None:
    graph = random_dag(140, seed=0)
    assert len(graph.nodes) >= 200
    report = estimate_resources(graph, U55C)
    # DSP and LUT within 5% / 20% of a perfect three-way split: the ILP cannot close its gap in a second.
    tight = device("tight", dsp=int(report.dsp * 1.05 / 3), bram36=10, uram=10, lut=int(report.lut * 1.2 / 3))
    result = partition_slrs(graph, report, target=tight, time_limit_s=1.0)
    assert result.time_limit_hit and not result.optimal
    assert result.status == "Time limit reached"
    assert result.seconds < 10.0  # the limit is honoured (wide margin: shared machines are noisy)
    assert result.mip_gap > 0
    assert sorted(result.assignment) == sorted(graph.nodes)
    for use in result.usage:
        for r in ("dsp", "lut"):
            assert use[r] <= result.capacity[r] + 1e-6
    assert sum(use["dsp"] for use in result.usage) == report.dsp


def test_node_limit_is_a_deterministic_work_limit() -> None:
    # The instance above cannot close its gap in one node: a node limit stops it there with the same incumbent
    # every time, whatever the machine's load (a wall-clock limit does not).
    graph = random_dag(140, seed=0)
    report = estimate_resources(graph, U55C)
    tight = device("tight", dsp=int(report.dsp * 1.05 / 3), bram36=10, uram=10, lut=int(report.lut * 1.2 / 3))
    first, second = (partition_slrs(graph, report, target=tight, time_limit_s=120.0, max_nodes=1) for _ in range(2))
    assert first.node_limit_hit and not first.time_limit_hit and not first.optimal
    assert first.assignment == second.assignment and first.objective == second.objective
    with pytest.raises(OptionError, match="max_nodes 0"):
        partition_slrs(chain_graph(), max_nodes=0, target=U55C)


def brute_force_objective(graph: DataflowGraph, target: Target, imbalance_weight: float) -> float:
    """The least objective of the module docstring over every assignment that fits, by enumeration."""
    report = estimate_resources(graph, target)
    names = list(graph.nodes)
    S, hbm, w = len(target.slrs), target.hbm.slr, target.axi_word_bits
    caps = {r: min(getattr(d, r) for d in target.slrs) for r in ("dsp", "bram36", "uram", "lut")}
    ports = {n: int(isinstance(graph.nodes[n], DmaNode)) for n in names}
    best = float("inf")
    for slrs in itertools.product(range(S), repeat=len(names)):
        p = dict(zip(names, slrs, strict=True))
        use = [{r: sum(getattr(report.nodes[n], r) for n in names if p[n] == s) for r in caps} for s in range(S)]
        if any(u[r] > caps[r] for u in use for r in caps):
            continue
        cost = sum(s.type.token_bits * abs(p[s.source] - p[s.target]) for s in graph.streams.values())
        cost += sum(w * ports[n] * abs(p[n] - hbm) for n in names)
        cost += imbalance_weight * sum(max(u[r] for u in use) / caps[r] for r in caps if caps[r])
        best = min(best, cost)
    return best


@pytest.mark.parametrize("hbm_slr", [0, 1])
@pytest.mark.parametrize("seed", range(4))
def test_optimum_matches_enumeration(seed: int, hbm_slr: int) -> None:
    # The per-boundary model (y[n,b], module docstring) has the same optimum as trying every assignment; the HBM
    # on the middle die checks the |p - hbm| terms' constant part.
    graph = random_dag(3, seed)
    assert len(graph.nodes) <= 8 and set(node_groups(graph).values()) == {0}
    report = estimate_resources(graph, U55C)
    most = {r: max(getattr(report.nodes[n], r) for n in graph.nodes) for r in ("dsp", "lut")}
    # DSP for about 2/5 of the block per die and LUT for half (or the largest node): a split is forced.
    tight = device("tight", dsp=max(most["dsp"], -(-report.dsp * 2 // 5)), bram36=10, uram=10,
                   lut=max(most["lut"], -(-report.lut // 2)))
    tight = replace(tight, hbm=replace(tight.hbm, slr=hbm_slr))
    result = partition_slrs(graph, target=tight, mip_rel_gap=0.0)
    assert result.optimal
    assert result.objective == pytest.approx(brute_force_objective(graph, tight, 1000.0))
