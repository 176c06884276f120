"""Stream-level execution of dataflow graphs equals the Linalg reference, token counts are enforced."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FAMILIES, tiny_block
from linalg_builders import build, check_exec, empty, graph, matmul, matmul_graph, unary, value

from streamtensor.codegen.vitis.boards import U55C
from streamtensor.errors import VerificationError
from streamtensor.interp.linalg_interpreter import run_generic
from streamtensor.interp.stream_exec import StreamExecError, run_streams
from streamtensor.ir.affine import AffineMap
from streamtensor.ir.dataflow import ConverterNode, KernelNode
from streamtensor.ir.itensor import ITensorType, parse_itensor_type
from streamtensor.ir.linalg import EmptyOp, GenericOp, ScalarBody, ScalarOp, TensorType, Value
from streamtensor.transforms.build_dataflow import build_dataflow
from streamtensor.transforms.tiling import tile_graph
from streamtensor.transforms.tiling.plan import TilingOptions

CONFIGS = [(4, 16, 2), (8, 64, 2), (16, 256, 2), (16, 256, 1)]  # tile, unroll budget, token rank


def _max_err(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(np.asarray(g, np.float64) - np.asarray(w, np.float64)))) for g, w in
               zip(got, want, strict=True))


@pytest.mark.parametrize("mode", ["prefill", "decode"])
@pytest.mark.parametrize("config", CONFIGS, ids=[f"t{t}-u{u}-r{r}" for t, u, r in CONFIGS])
@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_blocks_stream_like_the_reference(family: str, mode: str, config: tuple[int, int, int]) -> None:
    design, block = tiny_block(family, mode)
    tile, budget, rank = config
    tiling = tile_graph(design.graph, U55C, TilingOptions(tile, budget, max_token_rank=rank))
    dfg = build_dataflow(design.graph, tiling)
    dfg.verify()
    for node in dfg.nodes.values():
        if isinstance(node, ConverterNode):
            src, res = dfg.streams[node.inputs[0]].type, dfg.streams[node.outputs[0]].type
            assert src != res and node.buffer.bytes > 0
    for s in dfg.streams.values():
        assert parse_itensor_type(str(s.type)) == s.type
    args = block.example_inputs(seed=3)
    got = run_streams(dfg, args)
    want = design.run_reference(*args)
    assert [g.shape for g in got] == [w.shape for w in want]
    assert _max_err(got, want) <= 1e-5


def test_design_simulate_streams_and_report() -> None:
    design, block = tiny_block("qwen2", "decode")
    args = block.example_inputs(seed=1)
    assert _max_err(design.simulate_streams(*args), design.run_reference(*args)) <= 1e-5
    report = design.report
    assert report["tiling"]["default_tile_size"] == 16 and report["tiling"]["intensity_aware_unroll"] is True
    assert len(report["kernels"]) == report["dataflow"]["nodes"]["kernel"]
    assert len(report["converters"]) == report["dataflow"]["nodes"].get("itensor_converter", 0)
    kernel = next(k for k in report["kernels"] if k["name"] == "matmul_1")
    assert kernel["op"] == "matmul" and kernel["latency"] > 0 and kernel["inputs"] and kernel["outputs"]
    assert design.dataflow is not None and len(design.dataflow.groups) >= 1


def test_linalg_index_sees_the_tile_origin() -> None:
    """iota[i] = i computed in tiles of 4: each firing's linalg.index is offset by its tile origin."""
    out = Value("o", TensorType((16,), "i64"))
    body = ScalarBody((("o", "i64"),), (ScalarOp("i", "linalg.index", (), "index", (("dim", 0),)),
                                        ScalarOp("c", "arith.index_cast", ("i",), "i64")), ("c",))
    iota = GenericOp([Value("r", out.type)], "iota_1", [], [out], [AffineMap.identity(1)], ["parallel"], body)
    four = TensorType((4,), "i64")
    tile = GenericOp([Value("r", four)], "iota_1", [], [Value("o", four)], [AffineMap.identity(1)],
                     ["parallel"], body)
    assert list(run_generic(tile, [np.zeros(4, np.int64)], [8])[0]) == [8, 9, 10, 11]
    g = graph([], [EmptyOp([out]), iota], [iota.results[0]])
    dfg = build(g, 4)
    assert dfg.nodes["iota_1"].firings == 4
    assert list(run_streams(dfg, [])[0]) == list(range(16))


def test_streamed_init_is_read_once_per_output_tile() -> None:
    """c = exp(a) + a @ b: the accumulator starts from another kernel's stream, not a folded fill."""
    a, b = value("a", 8, 8), value("b", 8, 8)
    e = empty("e", 8, 8)
    x = unary("x", a, e.results[0], "elementwise_1", "(d0, d1) -> (d0, d1)", "math.exp")
    mm = matmul("c", a, b, x.results[0], "matmul_1")
    g = graph([a, b], [e, x, mm], [mm.results[0]])
    dfg = build(g, 4)
    kernel = dfg.nodes["matmul_1"]
    assert isinstance(kernel, KernelNode) and kernel.input_operands == [0, 1, 2] and not kernel.init_constants
    init = dfg.streams[kernel.inputs[2]].type
    assert init == kernel.result_type(0) and init.num_tokens == 4 and kernel.firings == 8
    check_exec(g, dfg)


def test_token_count_mismatch_is_an_error() -> None:
    g, _ = matmul_graph()
    dfg = build(g, 4)
    args = [np.ones((8, 8), np.float32)] * 2
    stream = dfg.streams[dfg.nodes["matmul_1"].inputs[0]]
    # One extra repeat loop: the DMA streams 16 tokens where the kernel fires 8 times.
    stream.type = ITensorType((4, 4), "f32", (8, 8), (2, 2, 2, 2), (4, 4, 4, 4),
                              AffineMap.from_dims(4, [0, 3]))
    with pytest.raises(StreamExecError, match="kernel matmul_1: read 8 of the 16 tokens on input port 0"):
        run_streams(dfg, args)
    with pytest.raises(VerificationError, match="input port 0 has type"):
        dfg.verify()
    stream.type = ITensorType((4, 4), "f32", (8, 8), (2, 2), (4, 4), AffineMap.from_dims(2, [0, 1]))
    with pytest.raises(StreamExecError, match="input port 0 \\(a\\) runs out of tokens after 4"):
        run_streams(dfg, args)
