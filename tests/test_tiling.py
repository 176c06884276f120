"""Linalg tiling: tile sizes, loop orders, fill folding, intensity-aware and uniform unrolling, options."""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction

import pytest
from conftest import tiny_block
from devices import device
from linalg_builders import (
    build,
    check_exec,
    empty,
    exp_matmul_graph,
    fill,
    graph,
    matmul,
    matmul_graph,
    nodes_of,
    two_gemvs,
    unary,
    value,
)
from test_memory_resources import _quantized_gemv

from streamtensor import compile_llm_block
from streamtensor.analysis.allocation import size_fifos
from streamtensor.analysis.contention import prefetch_cap
from streamtensor.analysis.timing_model import build_process_network, kernel_node_timing, kernel_timing, node_timings
from streamtensor.analysis.timing_sim import simulate
from streamtensor.codegen.vitis.boards import U55C
from streamtensor.codegen.vitis.hbm import graph_hbm_plan
from streamtensor.codegen.vitis.hls.generate import generate_hls
from streamtensor.driver import _judge_tiling
from streamtensor.errors import OptionError
from streamtensor.ir.affine import AffineMap, parse_affine_map
from streamtensor.ir.dataflow import DmaNode, KernelNode, LoopTiling, print_dataflow
from streamtensor.ir.linalg import EmptyOp, GenericOp, Graph, ScalarBody, ScalarOp, TensorType, Value
from streamtensor.transforms.build_dataflow import build_dataflow
from streamtensor.transforms.tiling import tile_graph
from streamtensor.transforms.tiling.liveness import kernel_ops
from streamtensor.transforms.tiling.plan import OpTiling, Tiling, TilingOptions
from streamtensor.transforms.tiling.tile_sizes import initial_tiling, tile_size
from streamtensor.transforms.tiling.unroll import (
    DATAPATH_SHARE,
    _chains,
    _doubled,
    _Lanes,
    budget_units,
    external_streams,
    fed_downstream,
    paced_latency,
    tiling_cost,
    unroll_candidates,
)


def test_tile_size_is_the_most_unrollable_divisor_up_to_the_default() -> None:
    assert [tile_size(n, 16) for n in (64, 3, 96, 17, 1)] == [16, 3, 16, 1, 1]
    assert [tile_size(n, 8) for n in (12, 896, 6912, 5632)] == [4, 8, 8, 8]  # 12: 4 takes 4 lanes, 6 two
    assert [tile_size(n, 5) for n in (12, 7, 25)] == [4, 1, 5]
    # Llama's 44 and Gemma's 54 MLP groups of 128: not 11 (no lane) and 9, but 4 and 6
    assert [tile_size(n, 16) for n in (44, 54, 38)] == [4, 6, 2]


def test_loop_orders_follow_the_output_and_permutation() -> None:
    g, ops = matmul_graph()
    mm = ops[-1]
    t = initial_tiling(mm, TilingOptions(4, 1))
    assert t.tile_order == [0, 1, 2] and t.point_order == [2, 0, 1]
    assert [(lt.size, lt.tile, lt.unroll, lt.reduction) for lt in t.loops] == [
        (8, 4, 1, False), (8, 4, 1, False), (8, 4, 1, True)]
    assert initial_tiling(mm, TilingOptions(4, 1, permute_reductions_outward=False)).point_order == [0, 1, 2]
    # A transpose that writes out[d1, d0]: its tile loops follow the output's dims, d1 outermost.
    tr = unary("t", g.outputs[0], empty("e2", 8, 8).results[0], "transpose_1", "(d0, d1) -> (d0, d1)")
    tr.indexing_maps[1] = AffineMap.from_dims(2, [1, 0])
    assert initial_tiling(tr, TilingOptions(4, 1)).tile_order == [1, 0]


def test_permutation_lowers_the_pipeline_ii() -> None:
    _, ops = matmul_graph()
    permuted = initial_tiling(ops[-1], TilingOptions(4, 1))
    plain = initial_tiling(ops[-1], TilingOptions(4, 1, permute_reductions_outward=False))
    fast = kernel_timing(ops[-1], permuted.loops, permuted.tile_order, permuted.point_order, U55C.ops,
                         U55C.stream_max_bits)
    slow = kernel_timing(ops[-1], plain.loops, plain.tile_order, plain.point_order, U55C.ops, U55C.stream_max_bits)
    assert fast.pipeline_ii == 1 and slow.pipeline_ii > 1 and fast.latency < slow.latency


def test_fills_feeding_only_inits_are_folded() -> None:
    design, _ = tiny_block("gpt2", "decode")
    counts = design.graph.op_counts()
    kernels = kernel_ops(design.graph)
    assert not [op.name for op in kernels if op.name.startswith("fill_")]
    # The two f64 casts are sunk; the fused QKV projection and its bias split in three each (split_slices).
    assert len(kernels) == counts["linalg.generic"] - counts["generic.fill"] == 27
    assert design.dataflow is not None
    folded = {n.name: n.init_constants for n in design.dataflow.nodes.values()
              if getattr(n, "init_constants", None)}
    assert folded["matmul_1"] == {0: 0.0} and folded["reduce_max_1"] == {0: -math.inf}


def _unbalanced() -> Graph:
    """A 64x64x64 matmul and three cheap elementwise kernels after it."""
    a, b = value("a", 64, 64), value("b", 64, 64)
    ops = [empty("e", 64, 64)]
    ops.append(fill("z", ops[0].results[0], "fill_1"))
    ops.append(matmul("c", a, b, ops[1].results[0], "matmul_1"))
    x = ops[-1].results[0]
    for i in range(3):
        ops.append(unary(f"y{i}", x, ops[0].results[0], f"elementwise_{i + 1}", "(d0, d1) -> (d0, d1)"))
        x = ops[-1].results[0]
    return graph([a, b], ops, [x])


def test_the_heap_keys_kernels_by_the_cycles_they_add() -> None:
    # Kernel 1 waits for kernel 0's whole result and 3 for 2's: their latencies add along those chains.
    assert _chains([10, 100, 5, 50], [set(), {0}, set(), {2}]) == [110, 110, 55, 55]
    assert _chains([10, 100, 5], [set(), set(), {0, 1}]) == [15, 105, 105]  # the longer chain into 2
    # 0 streams into 1, 1 into 2: 0's result reaches 2 through 1.
    downstream = fed_downstream([set(), {0}, {1}, set()])
    assert downstream == [{1, 2}, {2}, set(), set()]
    # 2 is stuck at 60 cycles: 0 (40 cycles) runs at its pace and adds only the quarter of its run that 1 waits
    # for; 1 (100 cycles) is slower than 2 and adds its latency; 3 streams into nothing.
    lanes = _Lanes([], [], [], [], [], [40, 100, 60, 30], [set()] * 4, downstream, [0.25, 0.5, 0.0, 0.0], {2})
    assert [lanes.holder(i) for i in range(4)] == [2, None, None, None]
    assert lanes.keys() == [(10.0, 40), (100.0, 100), (60.0, 60), (30.0, 30)]


def test_intensity_aware_beats_uniform_on_an_unbalanced_graph() -> None:
    g = _unbalanced()
    smart = tile_graph(g, U55C, TilingOptions(16, 64))
    uniform = tile_graph(g, U55C, TilingOptions(16, 64, intensity_aware_unroll=False))
    assert {n: t.lanes for n, t in uniform.ops.items()} == {
        "matmul_1": 16, "elementwise_1": 16, "elementwise_2": 16, "elementwise_3": 16}
    # The heap spends the budget on the slowest kernel first: 32 lanes of matmul. The cheap kernels it feeds
    # keep one lane: at one lane each is no slower than the matmul, whose last tile it waits for anyway.
    assert {n: t.lanes for n, t in smart.ops.items()} == {
        "matmul_1": 32, "elementwise_1": 1, "elementwise_2": 1, "elementwise_3": 1}
    assert all(smart.timings[f"elementwise_{i}"].latency <= smart.timings["matmul_1"].latency for i in (1, 2, 3))
    assert smart.total_lanes == 35 and uniform.total_lanes == 64
    assert smart.max_latency < uniform.max_latency
    assert smart.max_latency == smart.timings["matmul_1"].latency


def test_larger_budgets_lower_the_max_latency() -> None:
    design, _ = tiny_block("gpt2", "prefill")
    kernels = len(kernel_ops(design.graph))
    latencies = []
    for budget in (kernels, 2 * kernels, 256, 1024, 4096):
        tiling = tile_graph(design.graph, U55C, TilingOptions(16, budget))
        assert tiling.total_lanes <= budget
        for t in tiling.ops.values():
            for lt in t.loops:
                assert lt.tile % lt.unroll == 0 and lt.unroll & (lt.unroll - 1) == 0  # a power of two
        latencies.append(tiling.max_latency)
    # Past some budget the weight DMAs and the device's DSPs / LUTs, not the lane budget, bound the kernels.
    assert latencies == sorted(latencies, reverse=True) and latencies[0] > latencies[1] > latencies[2]
    assert latencies[3] == latencies[4]
    # Below the number of kernels nothing can be unrolled.
    assert tile_graph(design.graph, U55C, TilingOptions(16, 1)).total_lanes == kernels


def test_uniform_mode_gives_every_kernel_the_same_lanes_or_its_full_tile() -> None:
    design, _ = tiny_block("llama", "decode")
    tiling = tile_graph(design.graph, U55C, TilingOptions(8, 256, intensity_aware_unroll=False))
    full = {n: math.prod(lt.tile for lt in t.loops) for n, t in tiling.ops.items()}
    top = max(t.lanes for t in tiling.ops.values())
    for n, t in tiling.ops.items():
        assert t.lanes == min(top, full[n])
    # The largest uniform factor that fits: doubling it would overrun the budget.
    assert tiling.total_lanes <= 256 < sum(min(2 * top, f) for f in full.values())


def test_bad_tiling_options() -> None:
    with pytest.raises(OptionError, match="bad default-tile-size 0: must be an integer of at least 1"):
        TilingOptions(0, 16)
    with pytest.raises(OptionError, match="bad overall-unroll-size -4: must be an integer of at least 1"):
        TilingOptions(4, -4)
    with pytest.raises(OptionError, match="bad default-tile-size True"):
        TilingOptions(True, 4)  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="bad permute-reductions-outward 'yes': must be true or false"):
        TilingOptions(4, 4, permute_reductions_outward="yes")  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="bad overall-unroll-size 2.5"):
        compile_llm_block("gpt2", overall_unroll_size=2.5)
    with pytest.raises(OptionError, match="bad token-tile-size -1: must be an integer of at least 0"):
        TilingOptions(4, 4, token_tile_size=-1)


def test_wide_feature_tiles_take_the_rows_a_token_tile_gives_up() -> None:
    # 2-row token tiles of 4: the feature loops may reach 4 x 4 / 2 = 8, within the cap of 16 elements per
    # on-chip token; the design still computes what the graph does.
    g = exp_matmul_graph(m=8, k=16, n=8)
    dfg = build(g, 4, token_tile_size=2, wide_feature_tiles=True)
    assert [lt.tile for lt in dfg.nodes["exp_1"].loops] == [2, 8]
    assert [lt.tile for lt in dfg.nodes["matmul_1"].loops] == [2, 8, 8]
    check_exec(g, dfg)


def test_the_token_tile_is_the_candidate_the_judge_scores_lowest() -> None:
    g = exp_matmul_graph(m=8, k=16, n=8)
    options = TilingOptions(4, 64, token_tile_size=None)
    tiling = tile_graph(g, U55C, options)
    assert set(tiling.trials) == {0, 2}  # untiled, and the divisors of the 8 rows from 2 below the 4-row tile
    best = min(tiling.trials, key=lambda t: (tiling.trials[t], -(t or 4)))  # ties: the larger tile
    assert tiling.options.token_tile_size == best and tiling.trials[best] == [tiling.max_latency]
    chosen = tile_graph(g, U55C, options, judge=lambda t, _: (-(t.options.token_tile_size or 0),)).options
    assert chosen.token_tile_size == 2 and chosen.wide_feature_tiles
    assert tile_graph(g, U55C, options, judge=lambda t, _: (0,)).options.token_tile_size == 0


def test_a_partial_score_prunes_a_candidate_only_when_it_cannot_win() -> None:
    # The judge sees the best score so far; a prefix of a score that already exceeds the best's is kept as the
    # candidate's trial and never chosen. One that does not exceed it is the judge's bug, named.
    g = exp_matmul_graph(m=8, k=16, n=8)
    options = TilingOptions(4, 64, token_tile_size=None)
    seen: list[tuple[float, ...] | None] = []

    def judge(t: Tiling, best: tuple[float, ...] | None) -> tuple[float, ...]:
        seen.append(best)
        return (0.0, 5.0) if best is None else (1.0,)

    tiling = tile_graph(g, U55C, options, judge=judge)
    assert seen == [None, (0.0, 5.0)]
    assert tiling.options.token_tile_size == 0 and tiling.trials == {0: [0.0, 5.0], 2: [1.0]}
    with pytest.raises(ValueError, match="partial score"):
        tile_graph(g, U55C, options, judge=lambda t, best: (0.0, 5.0) if best is None else (0.0,))


def test_known_scores_tile_the_winner_alone() -> None:
    # The compiler's memo gives tile_graph the scores an earlier choice gave every candidate: no candidate is
    # judged, and the tiling is the one the judged choice returns (the same rule, ties to the larger tile).
    g = exp_matmul_graph(m=8, k=16, n=8)
    options = TilingOptions(4, 64, token_tile_size=None)
    for scores in ({0: [0.0, 5.0], 2: [1.0]}, {0: [0.0, 9.0], 2: [0.0, 5.0]}, {0: [0.0, 5.0], 2: [0.0, 5.0]}):
        judged = tile_graph(g, U55C, options, judge=lambda t, _, s=scores: tuple(s[t.options.token_tile_size]))

        def judge(t: Tiling, best: tuple[float, ...] | None) -> tuple[float, ...]:
            raise AssertionError("a known choice judges no candidate")

        known = tile_graph(g, U55C, options, judge=judge, known=scores)
        assert known.options == judged.options and known.trials == judged.trials == scores
        assert known.ops == judged.ops and known.timings == judged.timings
    with pytest.raises(ValueError, match="candidates"):
        tile_graph(g, U55C, options, known={0: [0.0, 5.0]})


def test_the_compilers_judge_does_not_simulate_an_unfit_candidate_once_one_fits() -> None:
    # A die too small for anything: every candidate is unfit. Scored alone (or after an unfit best) it gets its
    # makespan; after a fitting best, only its fit flag, which loses to that best.
    g = exp_matmul_graph(m=8, k=16, n=8)
    tiny = device("tiny", dsp=1, bram36=1, uram=0, lut=100)
    tiling = tile_graph(g, tiny, TilingOptions(4, 64, token_tile_size=0))
    full = _judge_tiling(g, tiny, ["out0"], tiling, None)
    assert full[0] == 1.0 and full[1] > 0
    assert _judge_tiling(g, tiny, ["out0"], tiling, (1.0, 5.0)) == full
    assert _judge_tiling(g, tiny, ["out0"], tiling, (0.0, 5.0)) == (1.0,)
    fitting = _judge_tiling(g, U55C, ["out0"], tiling, (0.0, 5.0))
    assert fitting[0] == 0.0 and fitting[1] == full[1]


def test_token_tile_reaches_the_kernels_downstream_of_the_activations() -> None:
    # x (8 tokens x 16 features) is the first input: its token loops take tile 2, and tile agreement carries
    # that tile into the matmul reading exp(x); the weight's loops keep the default tile.
    g = exp_matmul_graph(m=8, k=16, n=8)
    dfg = build(g, 4, token_tile_size=2)
    assert [lt.tile for lt in dfg.nodes["exp_1"].loops] == [2, 4]
    assert [lt.tile for lt in dfg.nodes["matmul_1"].loops] == [2, 4, 4]
    assert [lt.tile for lt in build(g, 4).nodes["matmul_1"].loops] == [4, 4, 4]
    check_exec(g, dfg)


def test_bandwidth_aware_unroll_keeps_pace_with_the_weight_dma() -> None:
    # One pseudo-channel: no striping, so the weight DMAs are slower than the lanes the budget buys.
    one_channel = replace(U55C, hbm=replace(U55C.hbm, channels=1))
    g = two_gemvs(512)
    dfg = build_dataflow(g, tile_graph(g, one_channel, TilingOptions(16, 1024)))
    size_fifos(dfg, one_channel)  # codegen prints the timing the allocation writes into the IR
    net = build_process_network(dfg, one_channel)
    timing = node_timings(net)
    unbounded = simulate(net, {})
    cpp = generate_hls(dfg, "gemv", graph_hbm_plan(dfg, "gemv", one_channel.hbm), one_channel)["gemv.cpp"]
    for kernel, weight in zip(sorted(nodes_of(dfg, KernelNode), key=lambda k: k.name), ("w1", "w2"), strict=True):
        # One multiply-add per weight element: the pseudo-channel (57.5 B/cycle) feeds fewer than 16 f32 lanes,
        # so the lanes the budget buys run at a raised pipeline II, emitted as the HLS pipeline pragma: the
        # greatest at which they still read the weight at least as fast as its DMA delivers it.
        assert kernel.min_pipeline_ii > 1
        assert f"min_pipeline_ii = {kernel.min_pipeline_ii}" in print_dataflow(dfg)
        assert f"pipeline II={kernel.min_pipeline_ii}" in cpp
        (dma,) = [n for n in nodes_of(dfg, DmaNode) if n.tensor.name == weight]
        transfer = timing[dma.name].latency - timing[dma.name].delay
        paced = kernel_timing(kernel.op, kernel.loops, kernel.tile_order, kernel.point_order, one_channel.ops,
                              one_channel.stream_max_bits, kernel.min_pipeline_ii)
        slower = kernel_timing(kernel.op, kernel.loops, kernel.tile_order, kernel.point_order, one_channel.ops,
                               one_channel.stream_max_bits, kernel.min_pipeline_ii + 1)
        assert paced.firings * paced.ii <= transfer < slower.firings * slower.ii
        # Without the raised II the same lanes would read the weight faster than its DMA delivers it.
        loose = kernel_timing(kernel.op, kernel.loops, kernel.tile_order, kernel.point_order, one_channel.ops,
                              one_channel.stream_max_bits)
        assert loose.firings * loose.ii < transfer
        # A 2-token weight FIFO (the DMA back-pressured) gives up at most the head start the DMA takes while the
        # kernel waits for its first input: none for w1, matmul_1's delay for w2 (the kernel, no slower than the
        # DMA, never lets it run further ahead).
        head_start = 0 if weight == "w1" else timing["matmul_1"].delay
        assert 0 <= simulate(net, {dma.outputs[0]: 2}).makespan_cycles - unbounded.makespan_cycles <= head_start
        # The sizing keeps no more head start than one HBM latency's tokens (analysis.allocation._caps_of).
        assert dfg.streams[dma.outputs[0]].depth <= prefetch_cap(dfg, dma, one_channel)


def test_rate_matching_charges_the_channel_share_of_the_placement() -> None:
    # analysis.hbm places x, w1, w2 and the output y: on the U55C each on channels of its own, the weights striped
    # (w2, streamed twice as often per byte as w1, over twice the channels); all four on one channel of a
    # one-channel HBM, split fairly: x, the smallest, waits for three ports' as many bytes and a third of y's, the
    # weights for about half the channel, and the kernels are paced slower.
    g = two_gemvs(512)
    one = replace(U55C, name="u55c-1pc", hbm=replace(U55C.hbm, channels=1))
    ops = kernel_ops(g)
    tilings = [initial_tiling(op, TilingOptions(16, 1024)) for op in ops]
    # (share, stripes) of x, w1; w2 (h comes from matmul_1)
    assert external_streams(g, ops, tilings, U55C) == [{0: (1, 1), 1: (1, 8)}, {1: (1, 16)}]
    assert external_streams(g, ops, tilings, one) == [{0: (Fraction(97, 32), 1), 1: (Fraction(137, 64), 1)},
                                                      {1: (Fraction(137, 64), 1)}]
    wide, narrow = (tile_graph(g, t, TilingOptions(16, 1024)) for t in (U55C, one))
    for i, k in enumerate(("matmul_1", "matmul_2")):  # paced by their DMAs at under half a channel (not 8 or 16
        # whole ones), with far fewer lanes (those past the first doubling that paced them only bring its II
        # closer to the DMA's rate)
        assert narrow.ops[k].min_pipeline_ii > 1
        assert narrow.ops[k].lanes * 4 <= wide.ops[k].lanes
        paced = [paced_latency(ops[i], t.ops[k], external_streams(g, ops, [t.ops[op.name] for op in ops], target)[i],
                               target) for t, target in ((narrow, one), (wide, U55C))]
        assert paced[0] > 8 * paced[1]


def test_compute_bound_kernels_keep_the_recurrence_ii() -> None:
    # A square matmul reuses every weight tile n / tile times: no DMA limits it at this budget.
    g = _unbalanced()
    tiling = tile_graph(g, U55C, TilingOptions(16, 64))
    assert all(t.min_pipeline_ii == 1 for t in tiling.ops.values())


def test_unrolling_stays_within_the_device() -> None:
    # An unbounded lane budget: the datapaths (as generated: lane-invariant ops built once) stop at
    # DATAPATH_SHARE of the U55C's DSPs / LUTs, and no kernel takes more than that share of one SLR.
    design, _ = tiny_block("llama", "prefill")
    ops = kernel_ops(design.graph)
    tiling = tile_graph(design.graph, U55C, TilingOptions(16, 1 << 20))
    costs = [tiling_cost(op, tiling.ops[op.name], U55C) for op in ops]
    die = U55C.slrs[0]
    bounds = [(r, DATAPATH_SHARE[name] * getattr(U55C.totals, name), DATAPATH_SHARE[name] * getattr(die, name))
              for r, name in enumerate(("dsp", "lut"))]
    for r, total, per_die in bounds:
        assert sum(c[r] for c in costs) <= total
        assert all(c[r] <= per_die for c in costs)
    # ... and the bound is what stopped the unrolling: the slowest kernel's tile still has room for more lanes,
    # and each doubling of it would overrun the DSP or LUT share.
    slowest = max(range(len(ops)), key=lambda k: tiling.timings[ops[k].name].latency)
    t = tiling.ops[ops[slowest].name]
    assert t.lanes < math.prod(lt.tile for lt in t.loops)
    for d in unroll_candidates(t):
        grown = tiling_cost(ops[slowest], _doubled(t, d), U55C)
        doubled = [grown if k == slowest else c for k, c in enumerate(costs)]
        assert any(sum(c[r] for c in doubled) > total or grown[r] > per_die for r, total, per_die in bounds)


def test_integer_mac_lanes_take_a_fraction_of_the_lane_budget() -> None:
    # An int8 MAC lane (0.5 DSP, 52 LUTs) against an f32 MAC lane (5 DSP, 310 LUTs): 52/310 of a budget unit.
    op = _quantized_gemv()
    outputs = OpTiling([LoopTiling(32, 16, 16, False), LoopTiling(64, 16, 1, True)], [0, 1], [1, 0])
    assert budget_units(op, outputs, U55C) == math.ceil(16 * 52 / 310)
    # A float lane counts one unit: the reduction lanes replicate the quantizer's float math.
    reduction = OpTiling([LoopTiling(32, 16, 1, False), LoopTiling(64, 16, 4, True)], [0, 1], [1, 0])
    assert budget_units(op, reduction, U55C) == 4



def _grouped_int4_gemv(vocab: int, groups: int, group: int) -> Graph:
    """y[v, g] = sum_k w[v, g, k] * x[g, k] (int4 weights, int8 activations, an int32 accumulator from a zero
    fill): the group-wise GEMV of a W4A8 LM head."""
    x, w = Value("x", TensorType((groups, group), "i8")), Value("w", TensorType((vocab, groups, group), "i4"))
    acc = TensorType((vocab, groups), "i32")
    e = EmptyOp([Value("e", acc)])
    zero = GenericOp([Value("z", acc)], "fill_1", [], [e.results[0]], [AffineMap.identity(2)], ["parallel"] * 2,
                     ScalarBody((("o", "i32"),), (ScalarOp("c", "arith.constant", (), "i32", (("value", 0),)),),
                                ("c",)))
    body = ScalarBody((("x", "i8"), ("w", "i4"), ("acc", "i32")), (
        ScalarOp("ex", "arith.extsi", ("x",), "i32"), ScalarOp("ew", "arith.extsi", ("w",), "i32"),
        ScalarOp("p", "arith.muli", ("ex", "ew"), "i32"), ScalarOp("s", "arith.addi", ("acc", "p"), "i32")), ("s",))
    maps = [parse_affine_map(m) for m in ("(d0, d1, d2) -> (d1, d2)", "(d0, d1, d2) -> (d0, d1, d2)",
                                          "(d0, d1, d2) -> (d0, d1)")]
    y = GenericOp([Value("y", acc)], "gemv", [x, w], [zero.results[0]], maps, ["parallel", "parallel", "reduction"],
                  body)
    return graph([x, w], [e, zero, y], [y.results[0]])


@pytest.mark.parametrize("tile", [32, 64])
def test_the_unroller_times_a_kernel_with_the_ports_it_is_built_with(tile: int) -> None:
    """An accumulator folded from a zero fill has no input port (``init_constants``), so its beats move in no
    step: the unroller times the kernel as the dataflow graph builds it. (Timed as a port, the 6-beat int32
    accumulator of a Gemma-3-like head GEMV, read in the firing's first steps, asked for II 2 at 1024 lanes: the
    unroller stopped at half the lanes, at twice the weight token's beats.)"""
    g = _grouped_int4_gemv(1024, 9, 128)
    tiling = tile_graph(g, U55C, TilingOptions(tile, 1024))
    dfg = build_dataflow(g, tiling)
    (node,) = nodes_of(dfg, KernelNode)
    assert node.init_constants == {0: 0} and tiling.ops["gemv"].read_operands == node.input_operands == [0, 1]
    assert tiling.timings["gemv"] == kernel_node_timing(dfg, node, U55C)
    # The pipeline moves a weight token a beat a step: a firing takes its beats, no more.
    weight = dfg.streams[node.inputs[1]].type
    assert tiling.timings["gemv"].ii == weight.beats(U55C.stream_max_bits)
