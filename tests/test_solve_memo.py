"""The on-disk memo of the compiler's costly decisions (analysis.solve_memo): the SLR ILP's answer by its model,
the FIFO LP's depths by the process network, the token tile's scores by the compile's inputs. A hit gives what
solving gives without solving; another model or network misses; a second compile of a block writes the same
design."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from linalg_builders import build, exp_matmul_graph
from test_slr_partition import TWO_KERNELS_PER_SLR, three_clusters

import streamtensor.analysis.allocation as allocation
import streamtensor.analysis.slr_partition as slr_partition
import streamtensor.driver as driver
from streamtensor.analysis import solve_memo
from streamtensor.analysis.allocation import run_allocation
from streamtensor.codegen.vitis.boards import U55C
from streamtensor.driver import compile_llm_block
from streamtensor.errors import StageError
from streamtensor.transforms.tiling.tile_order import TileOrderSearch


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError("solved again: the memo missed")


def test_the_slr_plan_is_read_back_for_the_same_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    solved = slr_partition.partition_slrs(three_clusters(), target=TWO_KERNELS_PER_SLR, imbalance_weight=0.0,
                                          memo=tmp_path)
    assert len(list(tmp_path.glob("*.pickle"))) == 1
    monkeypatch.setattr(slr_partition, "_solve", _refuse)
    kept = slr_partition.partition_slrs(three_clusters(), target=TWO_KERNELS_PER_SLR, imbalance_weight=0.0,
                                        memo=tmp_path)
    assert kept.assignment == solved.assignment and kept.crossing_bits == solved.crossing_bits == 768
    assert kept.objective == solved.objective and kept.optimal and kept.seconds == 0.0
    with pytest.raises(AssertionError, match="memo missed"):  # another objective: another model
        slr_partition.partition_slrs(three_clusters(), target=TWO_KERNELS_PER_SLR, imbalance_weight=1.0,
                                     memo=tmp_path)


def test_an_answer_cut_short_by_the_time_limit_is_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    solve = slr_partition._solve

    def timed_out(*args: object) -> object:
        answer = solve(*args)  # type: ignore[arg-type]
        return slr_partition.replace(answer, status="Time limit reached", optimal=False, time_limit_hit=True)

    monkeypatch.setattr(slr_partition, "_solve", timed_out)
    result = slr_partition.partition_slrs(three_clusters(), target=TWO_KERNELS_PER_SLR, memo=tmp_path)
    assert result.time_limit_hit and not list(tmp_path.glob("*.pickle"))


def test_the_fifo_depths_are_read_back_for_the_same_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    dfg = build(exp_matmul_graph(m=8, k=32, n=8), 4)
    again = copy.deepcopy(dfg)
    solved = run_allocation(dfg, U55C, memo=tmp_path)
    monkeypatch.setattr(allocation, "size_fifos_lp", _refuse)
    kept = run_allocation(again, U55C, memo=tmp_path)
    assert [g.sizing.depths for g in kept.groups] == [g.sizing.depths for g in solved.groups]
    assert {s.name: s.depth for s in again.streams.values()} == {s.name: s.depth for s in dfg.streams.values()}
    assert kept.fifo_total_bits == solved.fifo_total_bits
    assert kept.report()["simulation"] == solved.report()["simulation"]
    with pytest.raises(AssertionError, match="memo missed"):  # another network: other tiles
        run_allocation(build(exp_matmul_graph(m=8, k=32, n=8), 2), U55C, memo=tmp_path)


_TIMING_KEYS = ("stages", "stage_cpu_seconds", "frontend_cache", "allocation_seconds", "fifo_lp")


def test_a_second_compile_decides_nothing_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A prefill block of 8 tokens: three candidate token tiles, each judged on the first compile only.
    monkeypatch.setenv("STREAMTENSOR_LINALG_CACHE", str(tmp_path))
    options = {"mode": "prefill", "size": "tiny", "seq_len": 8}
    first, _ = compile_llm_block("gpt2", **options)
    assert len(first.tiling.trials) == 3
    monkeypatch.setattr(driver, "_judge_tiling", _refuse)
    monkeypatch.setattr(allocation, "size_fifos_lp", _refuse)
    monkeypatch.setattr(slr_partition, "_solve", _refuse)
    monkeypatch.setattr(TileOrderSearch, "run", _refuse)
    second, _ = compile_llm_block("gpt2", **options)
    untimed = [{k: v for k, v in d.report.items() if k not in _TIMING_KEYS} for d in (first, second)]
    assert untimed[0] == untimed[1]
    assert driver.print_ir(first.dataflow) == driver.print_ir(second.dataflow)
    assert first.allocation is not None
    groups = len(first.allocation.groups)
    plans = sum(p.status != slr_partition.ONE_SLR for p in first.allocation.placements.values())
    assert first.report["frontend_cache"]["memo"] == {"token_tile": "miss", "tile_orders": "0/3",
                                                      "fifo_lp": f"0/{groups}", "slr": f"0/{plans}"}
    # The token tile's winner alone is tiled again, its orders read back.
    assert second.report["frontend_cache"]["memo"] == {"token_tile": "hit", "tile_orders": "1/1",
                                                       "fifo_lp": f"{groups}/{groups}", "slr": f"{plans}/{plans}"}
    # A prefill block has no HBM shares to keep: no entry without a key.
    assert not (tmp_path / "memo" / ".pickle").exists()
    # Other options: another key.
    with pytest.raises(StageError, match="memo missed"):
        compile_llm_block("gpt2", **options, overall_unroll_size=512)


def test_a_second_compile_of_a_one_token_block_sizes_and_trims_nothing_again(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # A decode block sizes its FIFOs untrimmed while its HBM shares settle, then trims (allocation.trim_allocation):
    # both are read back.
    monkeypatch.setenv("STREAMTENSOR_LINALG_CACHE", str(tmp_path))
    options = {"mode": "decode", "size": "tiny", "max_len": 16}
    simulated: list[object] = []
    simulate = allocation.simulate

    def counted(*args: object, **kwargs: object) -> object:
        simulated.append(args[0])
        return simulate(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(allocation, "simulate", counted)
    first, _ = compile_llm_block("gpt2", **options)
    assert first.allocation is not None
    groups = len(first.allocation.groups)
    assert len(simulated) > 2 * groups  # the untrimmed design too
    monkeypatch.setattr(allocation, "size_fifos_lp", _refuse)
    monkeypatch.setattr(allocation, "trim_sizing", _refuse)
    # The HBM shares are read back too (allocation.settle_memoized), and of the designs the sizing went through
    # only the last is simulated (with its FIFOs and unbounded): what the others' simulations raised is kept.
    monkeypatch.setattr(allocation, "settle_shares", _refuse)
    simulated.clear()
    second, _ = compile_llm_block("gpt2", **options)
    assert second.report["frontend_cache"]["memo"]["fifo_lp"] == f"{groups}/{groups}"
    assert len(simulated) == 2 * groups
    untimed = [{k: v for k, v in d.report.items() if k not in _TIMING_KEYS} for d in (first, second)]
    assert untimed[0] == untimed[1]


def test_tile_orders_are_read_back_at_another_lane_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The orders are searched before the lanes are given: a design point with another lane budget reads every
    candidate token tile's orders back, and gets the same orders as a search would."""
    monkeypatch.setenv("STREAMTENSOR_LINALG_CACHE", str(tmp_path))
    options = {"mode": "prefill", "size": "tiny", "seq_len": 8}
    compile_llm_block("gpt2", **options)
    searched, _ = compile_llm_block("gpt2", **options, overall_unroll_size=512, fifo_strategy="conservative")
    assert searched.report["frontend_cache"]["memo"]["tile_orders"] == "3/3"
    # The token tile's judge reads no FIFO sizing option: another strategy alone reads its scores back.
    resized, _ = compile_llm_block("gpt2", **options, fifo_strategy="conservative", fifo_latency_slack=0.05)
    assert resized.report["frontend_cache"]["memo"]["token_tile"] == "hit"
    monkeypatch.setenv("STREAMTENSOR_LINALG_CACHE", "off")
    fresh, _ = compile_llm_block("gpt2", **options, overall_unroll_size=512, fifo_strategy="conservative")
    assert searched.tiling is not None and fresh.tiling is not None
    assert ({n: t.tile_order for n, t in searched.tiling.ops.items()}
            == {n: t.tile_order for n, t in fresh.tiling.ops.items()})
    # Another order objective: another search.
    monkeypatch.setenv("STREAMTENSOR_LINALG_CACHE", str(tmp_path))
    monkeypatch.setattr(TileOrderSearch, "run", _refuse)
    with pytest.raises(StageError, match="memo missed"):
        compile_llm_block("gpt2", **options, order_objective="latency")


def test_keys_tell_their_parts_apart() -> None:
    assert solve_memo.memo_key("k", "ab", "c") != solve_memo.memo_key("k", "a", "bc")
    assert solve_memo.memo_key("k", b"x") == solve_memo.memo_key("k", "x") != solve_memo.memo_key("j", "x")
    ints = np.arange(5, dtype=np.int64)
    assert solve_memo.memo_key("k", memoryview(ints)) == solve_memo.memo_key("k", ints.tobytes())
    assert solve_memo.memo_key("k", memoryview(ints)) != solve_memo.memo_key("k", memoryview(ints[:4]))
    assert solve_memo.load(None, "any") is None
