"""A one-token block reads its activation input in the packing its output is written in (transforms.chain_input)."""

from __future__ import annotations

import copy

import numpy as np
from linalg_builders import build, check_exec, empty, graph, nodes_of, unary, value

from streamtensor.ir.dataflow import ConverterNode, DataflowGraph, DmaNode, print_dataflow
from streamtensor.ir.dataflow_parser import parse_dataflow
from streamtensor.ir.layout import element_order
from streamtensor.ir.linalg import Graph, ReshapeOp
from streamtensor.transforms.chain_input import read_input_as_output


def transposed_block(rows: int = 1) -> Graph:
    """out = -(each row of x viewed 8x8, read transposed): the output is written in the result's order, so the
    read of ``x`` streams another tile order than the output packs."""
    x = value("x", rows, 64)
    square = ReshapeOp([value("x2", rows, 8, 8)], x, [[0], [1, 2]], expand=True)
    e = empty("e", rows, 8, 8)
    neg = unary("y", square.results[0], e.results[0], "negate_1", "(d0, d1, d2) -> (d0, d2, d1)")
    flat = ReshapeOp([value("out", rows, 64)], neg.results[0], [[0], [1, 2]], expand=False)
    return graph([x], [square, e, neg, flat], [flat.results[0]])


def _read(dfg: DataflowGraph) -> DmaNode:
    (dma,) = [n for n in dfg.nodes.values() if isinstance(n, DmaNode) and n.direction == "read"]
    return dma


def _packing(dfg: DataflowGraph, dma: DmaNode) -> np.ndarray:
    t = dfg.streams[dma.outputs[0] if dma.direction == "read" else dma.inputs[0]].type
    return element_order(t)


def test_the_read_streams_the_output_packing_through_a_converter() -> None:
    g = transposed_block()
    before = build(g, 4)
    out = before.nodes[before.outputs[0]]
    assert not np.array_equal(_packing(before, _read(before)), _packing(before, out))
    after = copy.deepcopy(before)
    (name,) = read_input_as_output(after)
    conv = after.nodes[name]
    assert isinstance(conv, ConverterNode) and "packing of the block's output" in conv.reason
    dma = _read(after)
    assert after.consumer(dma.outputs[0]) is conv
    assert np.array_equal(_packing(after, dma), _packing(after, after.nodes[after.outputs[0]]))
    # the consumer still reads what it read before
    assert after.streams[conv.outputs[0]].type == before.streams[_read(before).outputs[0]].type
    check_exec(g, after)
    assert print_dataflow(parse_dataflow(print_dataflow(after))) == print_dataflow(after)


def test_a_block_of_several_rows_keeps_its_reads() -> None:
    dfg = build(transposed_block(rows=2), 4)
    assert not np.array_equal(_packing(dfg, _read(dfg)), _packing(dfg, dfg.nodes[dfg.outputs[0]]))
    text = print_dataflow(dfg)
    assert read_input_as_output(dfg) == [] and print_dataflow(dfg) == text


def test_a_read_already_in_the_output_packing_gets_no_converter() -> None:
    x = value("x", 1, 64)
    e = empty("e", 1, 64)
    neg = unary("out", x, e.results[0], "negate_1", "(d0, d1) -> (d0, d1)")
    dfg = build(graph([x], [e, neg], [neg.results[0]]), 4)
    assert read_input_as_output(dfg) == [] and not nodes_of(dfg, ConverterNode)
