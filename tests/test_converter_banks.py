"""One window or a ping-pong pair per converter: the candidates (steps), the choice by simulation, the verifier."""

from dataclasses import replace

import pytest
from conftest import TINY_MAX_LEN, TINY_SEQ_LEN
from linalg_builders import build, exp_matmul_graph, nodes_of

from streamtensor.analysis.converter_banks import choose_converter_banks, one_window_candidate
from streamtensor.analysis.memory import absorbed_converters, node_groups
from streamtensor.analysis.timing_model import build_process_network
from streamtensor.analysis.timing_sim import simulate
from streamtensor.codegen.vitis.boards import U55C
from streamtensor.driver import compile_llm_block
from streamtensor.errors import VerificationError
from streamtensor.ir.converter_buffer import window_phases
from streamtensor.ir.dataflow import ConverterNode, DataflowGraph
from streamtensor.transforms.fusion import apply_fusion


@pytest.mark.parametrize(("windows", "fill", "drain", "candidate"), [
    (1, 64, 64, False),  # one window already
    (2, 8, 16, True),  # 8 extra steps against a 16-step drain
    (4, 4, 16, True),  # 12
    (5, 4, 16, True),  # 16: at most one drain
    (6, 4, 16, False),  # 20
    (8, 16, 1024, True),  # a row tile replayed 64 times
    (256, 2, 32, False),
    (4, 8, 8, False),  # equal fill and drain: the pair halves the steps
])
def test_one_window_candidate(windows: int, fill: int, drain: int, candidate: bool) -> None:
    assert one_window_candidate(windows, fill, drain) is candidate


def _makespan(dfg: DataflowGraph, group: int) -> int:
    makespan = simulate(build_process_network(dfg, U55C, group), {}).makespan_cycles
    assert makespan is not None
    return makespan


def test_a_converter_keeps_one_window_where_its_group_finishes_sooner() -> None:
    """exp's 2 row tiles replayed per column tile: with one window the matmul does not wait for the second row
    to drain the first, and the design finishes sooner; over 4 rows one window would cost 24 extra steps against
    a 16-step drain: no candidate, the pair stays."""
    dfg = build(exp_matmul_graph(), 4, layout_aware_order=False)
    (conv,) = nodes_of(dfg, ConverterNode)
    assert isinstance(conv, ConverterNode) and conv.buffer.banks == 2
    pair = _makespan(dfg, 0)
    assert choose_converter_banks(dfg, U55C) == [conv.name] and conv.buffer.banks == 1
    assert _makespan(dfg, 0) < pair
    dfg.verify()

    rows = build(exp_matmul_graph(m=16), 4, layout_aware_order=False)
    (conv,) = nodes_of(rows, ConverterNode)
    assert isinstance(conv, ConverterNode)
    assert not one_window_candidate(*window_phases(rows.streams[conv.inputs[0]].type,
                                                   rows.streams[conv.outputs[0]].type, conv.buffer))
    assert choose_converter_banks(rows, U55C) == [] and conv.buffer.banks == 2


def test_a_candidate_no_faster_with_one_window_keeps_its_pair() -> None:
    """A tiny GPT-2 prefill block in 4-element tiles has two candidates: the scores' converter gets one window
    (its group finishes sooner), the MLP input's keeps its pair (one window would not finish sooner, checked by
    flipping it alone); the compile chose the same."""
    design, _ = compile_llm_block("gpt2", mode="prefill", seq_len=TINY_SEQ_LEN, max_len=TINY_MAX_LEN, size="tiny",
                                  default_tile_size=4)
    dfg = design.dataflow
    candidates = [n for n in nodes_of(dfg, ConverterNode) if isinstance(n, ConverterNode) and one_window_candidate(
        *window_phases(dfg.streams[n.inputs[0]].type, dfg.streams[n.outputs[0]].type, n.buffer))]
    compiled = {n.name: n.buffer.banks for n in candidates}
    assert sorted(compiled.values()) == [1, 2]
    for node in candidates:
        node.buffer = replace(node.buffer, banks=2)
    group = node_groups(dfg)[candidates[0].name]
    pairs = _makespan(dfg, group)
    chosen = choose_converter_banks(dfg, U55C)
    assert {n.name: n.buffer.banks for n in candidates} == compiled
    assert chosen == [n for n, banks in compiled.items() if banks == 1]
    chosen_makespan = _makespan(dfg, group)
    assert chosen_makespan < pairs
    (kept,) = [n for n in candidates if n.buffer.banks == 2]
    kept.buffer = replace(kept.buffer, banks=1)
    assert _makespan(dfg, group) >= chosen_makespan


def test_the_verifier_takes_one_window_for_a_pair_but_no_other_buffer() -> None:
    dfg = build(exp_matmul_graph(), 4, layout_aware_order=False)
    (conv,) = nodes_of(dfg, ConverterNode)
    assert isinstance(conv, ConverterNode)
    pair = conv.buffer
    conv.buffer = replace(pair, banks=1)
    dfg.verify()
    conv.buffer = replace(pair, banks=3)
    with pytest.raises(VerificationError, match="has 3 banks, not 1 or 2"):
        dfg.verify()
    conv.buffer = replace(pair, shape=(8, 32))
    with pytest.raises(VerificationError, match="is not the inferred one"):
        dfg.verify()


def test_a_converter_read_from_external_memory_has_no_buffer_to_choose() -> None:
    """With its buffer over the on-chip cap, exp_matmul's converter opens a second accelerator and reads its input
    from external memory: its read DMA streams the result layout (``memory.absorbed_converters``), so it is no
    candidate, as it is when on chip."""
    dfg = build(exp_matmul_graph(), 4, layout_aware_order=False)
    apply_fusion(dfg, c_max_bytes=0)
    (conv,) = nodes_of(dfg, ConverterNode)
    assert isinstance(conv, ConverterNode) and absorbed_converters(dfg) == [conv.name]
    assert choose_converter_banks(dfg, U55C) == [] and conv.buffer.banks == 2
