"""One invalid IR per verifier message (``ir/linalg.py``, ``ir/dataflow.py`` with ``ir/layout.py``, and
``ir/itensor.py`` through stream types): valid text with one edit, parsed (which verifies), the message asserted.
The few conditions the text cannot express (a stream end naming no node, groups that do not partition the
nodes, attribute values of other types) are built programmatically.

Not covered: ``layout.concat_sources``' "lies in no input region" cannot fire once every input is the chunk of
its region (regions cover the concatenated tensor), which is checked first."""

from __future__ import annotations

import re

import pytest
from ir_files import KERNELS, LINALG, MOVEMENT, REPLAY, edited, read

from streamtensor.errors import StreamTensorError, VerificationError
from streamtensor.ir.dataflow_parser import parse_dataflow
from streamtensor.passes import parse_ir

ROWS = "!itensor<2x2xf32, tensor 4x4, [2, 2] * [2, 2], (d0, d1) -> (d0, d1)>  // read"
COLS_2 = "%cols_2 = itensor_instance : !itensor<2x2xf32, tensor 4x4, [2, 2] * [2, 2], (d0, d1) -> (d1, d0)>"
LEFT = "%left = itensor_instance : !itensor<2x2xf32, tensor 4x2, [2] * [2], (d0) -> (d0, 0)>"
JOINED = "%joined = itensor_instance : !itensor<2x2xf32, tensor 4x4, [2, 2] * [2, 2], (d0, d1) -> (d1, d0)>"
BATCHED = "%batched = itensor_instance : !itensor<1x2x2xf32, tensor 1x4x4, [2, 2] * [2, 2], (d0, d1) -> (0, d1, d0)>"
EXP_ORDERS = "tile_order = [0, 1], point_order = [0, 1], operands = [0]"
X_STREAM = "%x = itensor_instance : !itensor<8x16xf32, tensor 8x32, [2] * [16], (d0) -> (0, d0)>"
CYCLE = """dataflow.graph @loop() -> () {
  %a = itensor_instance : !itensor<4xf32, tensor 4, [] * [], () -> (0)>
  %b = itensor_instance : !itensor<4xf32, tensor 4, [] * [], () -> (0)>
  itensor_fork @f(%b) -> (%a)
  itensor_fork @g(%a) -> (%b)
}
"""

# (base file, [(text, replacement), ...], the message)
CASES: dict[str, tuple[str, list[tuple[str, str]], str]] = {
    # --- Linalg graph (Graph.verify, verify_generic, TensorType)
    "unknown element type": (LINALG, [("%w: tensor<32x8xf32>", "%w: tensor<32x8xf33>")],
                             "unknown element type 'f33'"),
    "loop not indexed": (LINALG, [('affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]}'
                                   ' ins()', 'affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", '
                                   '"parallel", "parallel"]} ins()')],
                         "fill_1: a loop dimension is not indexed by any operand"),
    "use before definition": (LINALG, [("outs(%z : tensor<8x8xf32>)", "outs(%q : tensor<8x8xf32>)")],
                              "linalg.generic uses %q before it is defined"),
    "defined twice": (LINALG, [("%z = linalg.generic", "%e = linalg.generic")], "%e is defined twice"),
    "output never defined": (LINALG, [("return %y", "return %nope")], "output %nope is never defined"),
    "maps for operands": (LINALG, [("affine_map<(d0, d1, d2) -> (d2, d1)>, ", "")],
                          "matmul_1: 2 maps for 3 operands"),
    "map does not fit": (LINALG, [("affine_map<(d0, d1, d2) -> (d2, d1)>", "affine_map<(d0, d1, d2) -> (d2)>")],
                         "matmul_1: map (d0, d1, d2) -> (d2) does not fit %w : tensor<32x8xf32>"),
    "dim against loop range": (LINALG, [("indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) "
                                         "-> (d0, d1)>]", "indexing_maps = [affine_map<(d0, d1) -> (d1, d0)>, "
                                         "affine_map<(d0, d1) -> (d0, d1)>]")],
                               "exp_1: %e0 dim 0 is 8 but loop d0 has range 32"),
    "body arity": (LINALG, [("%y: f32, %acc: f32)", "%y: f32)")],
                   "matmul_1: body arity does not match its operands and results"),
    # --- dataflow graph (DataflowGraph.verify)
    "cycle": (CYCLE, [], "dataflow graph @loop has a cycle"),
    "node arity": (MOVEMENT, [("@left(%cols_1)", "@left(%cols_1, %cols_2)"), ("@right(%cols_2)", "@right()")],
                   "itensor_chunk left has 2 inputs, expected 1"),
    "stream twice in a node": (MOVEMENT, [("-> (%cols_1, %cols_2)", "-> (%cols_1, %cols_2, %cols_1)")],
                               "stream cols_1 is not exactly once in the outputs of fork"),
    "unknown stream": (MOVEMENT, [("@join(%left, %right)", "@join(%left, %right, %ghost)")],
                       "node join uses unknown stream ghost"),
    "output not a write DMA": (MOVEMENT, [("-> (@write)", "-> (@read)")],
                               "output 0 of @movement is not a write DMA: read"),
    "converter to its own type": (MOVEMENT, [("%cols = itensor_instance : !itensor<2x2xf32, tensor 4x4, [2, 2] * "
                                              "[2, 2], (d0, d1) -> (d1, d0)>", "%cols = itensor_instance : "
                                              "!itensor<2x2xf32, tensor 4x4, [2, 2] * [2, 2], (d0, d1) -> (d0, d1)>")],
                                  "itensor_converter transpose: converts a stream to its own type"),
    "converter changes the shape": (MOVEMENT, [("%cols = itensor_instance : !itensor<2x2xf32, tensor 4x4, [2, 2] "
                                                "* [2, 2], (d0, d1) -> (d1, d0)>", "%cols = itensor_instance : "
                                                "!itensor<2x2xf32, tensor 4x2, [2] * [2], (d0) -> (d0, 0)>")],
                                    "itensor_converter transpose: changes the tensor shape"),
    "converter buffer": (MOVEMENT, [("buffer = 1x4x4, shared_loops = 0, bytes = 64",
                                     "buffer = 1x2x4, shared_loops = 0, bytes = 32")],
                         "itensor_converter transpose: buffer ConverterBuffer(shape=(2, 4), shared_loops=0, "
                         "dtype='f32', direct=False, banks=1) is not the inferred one"),
    "converter banks": (MOVEMENT, [("buffer = 1x4x4, shared_loops = 0, bytes = 64",
                                    "buffer = 2x4x4, shared_loops = 0, bytes = 128")],
                        "itensor_converter transpose: buffer ConverterBuffer(shape=(4, 4), shared_loops=0, "
                        "dtype='f32', direct=False, banks=2) has 2 banks, not 1"),
    "fork changes the type": (MOVEMENT, [(COLS_2, COLS_2.replace("(d1, d0)", "(d0, d1)"))],
                              "itensor_fork fork: changes the stream type"),
    "reassociation dtype": (MOVEMENT, [(BATCHED, BATCHED.replace("1x2x2xf32", "1x2x2xf64"))],
                            "itensor_reassociate batch: the tensors differ in dtype or element count"),
    "reassociation token count": (MOVEMENT, [(BATCHED, BATCHED.replace(
        "1x2x2xf32, tensor 1x4x4, [2, 2] * [2, 2], (d0, d1) -> (0, d1, d0)",
        "1x4x4xf32, tensor 1x4x4, [] * [], () -> (0, 0, 0)"))],
        "itensor_reassociate batch: 4 source tokens but 1 result tokens"),
    "reassociation tile pattern": (MOVEMENT, [(BATCHED, BATCHED.replace(
        "1x2x2xf32, tensor 1x4x4, [2, 2] * [2, 2], (d0, d1) -> (0, d1, d0)",
        "1x1x4xf32, tensor 1x4x4, [4] * [1], (d0) -> (0, d0, 0)"))],
        "itensor_reassociate batch: the tiles cover different flat index patterns"),
    "reassociation token order": (MOVEMENT, [(BATCHED, BATCHED.replace("(0, d1, d0)", "(0, d0, d1)"))],
                                  "itensor_reassociate batch: token 1 starts at a different flat index"),
    "chunk slice shape": (MOVEMENT, [("{offsets = [0, 0], sizes = [4, 2]}", "{offsets = [0, 0], sizes = [2, 4]}")],
                          "itensor_chunk left: result tensor (4, 2) is not the slice shape (2, 4)"),
    "chunk tile shape": (MOVEMENT, [(LEFT, "%left = itensor_instance : !itensor<4x2xf32, tensor 4x2, [] * [], "
                                           "() -> (0, 0)>")],
                         "itensor_chunk left: a chunk keeps the tile shape"),
    "chunk straddles": (MOVEMENT, [("{offsets = [0, 0], sizes = [4, 2]}", "{offsets = [0, 1], sizes = [4, 2]}")],
                        "straddles the slice at [0, 1] of size [4, 2]"),
    "chunk token order": (MOVEMENT, [(LEFT, LEFT.replace("(d0) -> (d0, 0)", "(d0) -> (-d0 + 2, 0)"))],
                          "itensor_chunk left: the forwarded tokens are not the result stream in order"),
    "concat shapes": (MOVEMENT, [("{dim = 1}", "{dim = 0}")],
                      "itensor_concat join: inputs [(4, 2), (4, 2)] do not concatenate along dim 0 to (4, 4)"),
    "concat input not a chunk": (MOVEMENT, [(JOINED, "%joined = itensor_instance : !itensor<1x2xf32, tensor 4x4, "
                                                     "[4, 2] * [1, 2], (d0, d1) -> (d0, d1)>")],
                                 "is not the chunk of itensor<1x2xf32, tensor 4x4, [4, 2] * [1, 2], (d0, d1) -> "
                                 "(d0, d1)> at its region: a chunk keeps the tile shape"),
    "DMA view shape": (MOVEMENT, [("{tensor = %a : tensor<4x4xf32>", "{tensor = %a : tensor<4x8xf32>")],
                       "dma_read read: streams itensor<2x2xf32, tensor 4x4, [2, 2] * [2, 2], (d0, d1) -> (d0, d1)> "
                       "but its view is tensor (4, 8) of f32"),
    "DMA write view slices": (MOVEMENT, [("%out = tensor.collapse_shape %batched [[0, 1], [2]]",
                                          "%out = tensor.extract_slice %batched[0, 0, 0][1, 4, 4][1, 1, 1]")],
                              "dma_write write: a write view may only reshape"),
    "constant without data": (MOVEMENT, [("role = input", "role = constant")],
                              "dma_read read: no data for constant %a"),
    "no stripes": (MOVEMENT, [("role = input}", "role = input, stripes = 0}")],
                   "dma_read read: stripes = 0: at least 1, and only a read of a read-only buffer is striped"),
    "striped write": (MOVEMENT, [("role = output}", "role = output, stripes = 2}")],
                      "dma_write write: stripes = 2: at least 1, and only a read of a read-only buffer is striped"),
    # --- kernels (_kernel_error, and the generic they carry)
    "kernel generic": (KERNELS, [("indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> "
                                  "(d0, d1)>]", "indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>]")],
                       "exp_1: 1 maps for 2 operands"),
    "kernel tile order": (KERNELS, [(EXP_ORDERS, EXP_ORDERS.replace("tile_order = [0, 1]", "tile_order = [0, 0]"))],
                          "kernel exp_1: loops / tile_order do not cover the op's loops"),
    "kernel point order": (KERNELS, [(EXP_ORDERS, EXP_ORDERS.replace("point_order = [0, 1]",
                                                                     "point_order = [1, 1]"))],
                           "kernel exp_1: point_order is not a permutation of the loops"),
    "kernel loop tiling": (KERNELS, [("d1: 2x16/u16]", "d1: 2x16/u5]")],
                           "kernel exp_1: loop d1 tiling LoopTiling(size=32, tile=16, unroll=5, reduction=False) "
                           "does not fit range 32"),
    "kernel input ports": (KERNELS, [(EXP_ORDERS, EXP_ORDERS.replace("operands = [0]", "operands = [1]"))],
                           "kernel exp_1: input ports [1] but the streamed operands are [0]"),
    "kernel output ports": (KERNELS, [(EXP_ORDERS, EXP_ORDERS + ", replays = [0]")],
                            "kernel exp_1: output ports [0, 0] must be the results in order, then replays"),
    "kernel replay without whole result": (REPLAY, [("tile_order = [2, 0, 1]", "tile_order = [0, 1, 2]")],
                                           "kernel matmul_1: replay ports [0] need every output tile pending at "
                                           "once (1 of 4 are)"),
    "kernel replay of no result": (REPLAY, [("replays = [0]", "replays = [1]")],
                                   "kernel matmul_1: replay ports [1] name results the op does not have"),
    "kernel input port count": (KERNELS, [("kernel @exp_1(%x)", "kernel @exp_1(%x, %extra)"),
                                          (X_STREAM, X_STREAM + "\n  " + X_STREAM.replace("%x =", "%extra =")),
                                          ("  kernel @exp_1", "  dma_read @extra() -> (%extra) {tensor = %x : "
                                                             "tensor<8x32xf32>, role = input}\n  kernel @exp_1")],
                                "kernel exp_1: 2 input ports for operands [0]"),
    "kernel input port type": (KERNELS, [(X_STREAM, "%x = itensor_instance : !itensor<8x32xf32, tensor 8x32, [] * "
                                                    "[], () -> (0, 0)>")],
                               "kernel exp_1: input port 0 has type itensor<8x32xf32, tensor 8x32, [] * [], () -> "
                               "(0, 0)>, its tiling gives itensor<8x16xf32"),
    "kernel output port type": (KERNELS, [("%e = itensor_instance : !itensor<8x16xf32, tensor 8x32, [2] * [16], "
                                           "(d0) -> (0, d0)>", "%e = itensor_instance : !itensor<8x32xf32, tensor "
                                           "8x32, [] * [], () -> (0, 0)>")],
                                "kernel exp_1: output port 0 has type itensor<8x32xf32"),
    # --- stream types (ITensorType.verify)
    "itensor dtype": (MOVEMENT, [(ROWS, ROWS.replace("2x2xf32", "2x2xf33"))], "unknown dtype 'f33'"),
    "itensor element rank": (MOVEMENT, [(ROWS, ROWS.replace("2x2xf32", "2xf32"))],
                             "element rank 1 does not match tensor rank 2"),
    "itensor map results": (MOVEMENT, [(ROWS, ROWS.replace("(d0, d1) -> (d0, d1)", "(d0, d1) -> (d0)"))],
                            "iteration map has 1 results but the tensor has rank 2"),
    "itensor steps": (MOVEMENT, [(ROWS, ROWS.replace("* [2, 2]", "* [2]"))], "2 trip counts but 1 steps"),
    "itensor map dims": (MOVEMENT, [(ROWS, ROWS.replace("(d0, d1) -> (d0, d1)", "(d0) -> (d0, 0)"))],
                         "iteration map has 1 dims but the iteration space has 2 loops"),
    "itensor positive": (MOVEMENT, [(ROWS, ROWS.replace("[2, 2] *", "[2, 0] *"))],
                         "trip count 0 at position 1 must be positive"),
    "itensor bounds": (MOVEMENT, [(ROWS, ROWS.replace("[2, 2] *", "[2, 3] *"))],
                       "token 2 at offset (0, 4) carries a 2x2 tile outside the 4x4 tensor"),
    "itensor overlap": (MOVEMENT, [(ROWS, ROWS.replace("* [2, 2]", "* [2, 1]").replace("[2, 2] *", "[2, 3] *"))],
                        "tiles of iteration points (0, 0) and (0, 1) overlap at element (0, 1)"),
    "itensor hole": (MOVEMENT, [(ROWS, ROWS.replace("[2, 2] *", "[2, 1] *"))], "element (0, 2) is covered by no tile"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_ir_names_the_problem(case: str) -> None:
    base, edits, message = CASES[case]
    with pytest.raises(StreamTensorError, match=re.escape(message)):
        parse_ir(edited(base, edits), "invalid.mlir")


def test_what_text_cannot_express_is_verified_too() -> None:
    graph = parse_dataflow(read(MOVEMENT))
    graph.streams["rows"].source = "ghost"
    with pytest.raises(VerificationError, match="stream rows references unknown node ghost"):
        graph.verify()
    graph = parse_dataflow(read(MOVEMENT))
    graph.groups = [["read", "transpose"]]
    with pytest.raises(VerificationError, match="fusion groups of @movement do not partition its nodes"):
        graph.verify()
    graph = parse_dataflow(read(MOVEMENT))
    graph.nodes["fork"].attributes = {"bad key": 1}
    with pytest.raises(VerificationError, match="node fork: attribute name 'bad key' is not an identifier"):
        graph.verify()
    graph = parse_dataflow(read(MOVEMENT))
    graph.streams["rows"].attributes = {"ok": True}
    with pytest.raises(VerificationError, match="stream rows: attribute 'ok' has a bool value; expected an int, "
                                                "a float or a str"):
        graph.verify()
