"""Text the printers would not write: a ``ParseError`` naming ``file:line:col`` and what was expected there, and
from ``streamtensor opt`` one line on standard error with exit status 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ir_files import KERNELS, LINALG, MOVEMENT, edited, read

from streamtensor.cli import main
from streamtensor.errors import ParseError
from streamtensor.passes import parse_ir

CASES: dict[str, tuple[str, list[tuple[str, str]], str]] = {
    "not IR": ("dataflow.graph @g() -> () {\n}\n", [("dataflow.graph", "module")],
               "f.mlir:1:1: expected 'func.func' (a Linalg graph) or 'dataflow.graph' (a dataflow graph), "
               "found 'module'"),
    "unknown op": (LINALG, [("%y0 = tensor.empty()", "%y0 = foo.bar()")], "f.mlir:9:9: unknown op 'foo.bar'"),
    "missing token": (LINALG, [("ins(%x : tensor<8x32xf32>)", "ins(%x tensor<8x32xf32>)")],
                      "f.mlir:4:185: expected ':' and the operand's type, found 'tensor<8x32xf32>)'"),
    "bad affine map": (LINALG, [("affine_map<(d0, d1, d2) -> (d2, d1)>", "affine_map<(d0, d1, d2) -> (d3, d1)>")],
                       "f.mlir:15:110: d3 out of range for 3 dims in affine map"),
    "bad iterator": (LINALG, [('"reduction"', '"sequential"')],
                     'expected an iterator type "parallel" or "reduction", found \'"sequential"]}\''),
    "use type": (LINALG, [("ins(%e : tensor<8x32xf32>", "ins(%e : tensor<8x31xf32>")],
                 "%e is used as tensor<8x31xf32> but defined as tensor<8x32xf32>"),
    "domain": (LINALG, [("domain = [8, 8, 32]", "domain = [8, 8, 16]")],
               "f.mlir:15:43: domain [8, 8, 16] of matmul_1 does not match its operands' [8, 8, 32]"),
    "return count": (LINALG, [("return %y", "return %y, %e")], "returns 2 values but the signature has 1 results"),
    "constant data": (LINALG, [("%y0 = tensor.empty() : tensor<8x8xf32>",
                                "%y0 = arith.constant dense<[1.0, 2.0]> : tensor<3xf32>")],
                      "f.mlir:9:24: 2 values in constant data, the type needs 3"),
    "trailing text": (LINALG, [("  return %y\n}\n", "  return %y\n}\n}\n")], "expected end of file, found '}'"),
    "bad stream type": (MOVEMENT, [("tensor 4x4, [2, 2] * [2, 2], (d0, d1) -> (d0, d1)>  // read",
                                    "tensor 4x4, [2, 2], (d0, d1) -> (d0, d1)>  // read")],
                        "f.mlir:3:31: bad iteration space '[2, 2]' (expected e.g. [4, 2] * [2, 4])"),
    "no producer": (MOVEMENT, [("dma_read @read() -> (%rows)", "dma_read @read() -> ()")],
                    "f.mlir:3:3: stream %rows has no producer"),
    "second consumer": (MOVEMENT, [("@right(%cols_2)", "@right(%cols_1)")],
                        "stream %cols_1 has a second consumer @right (the first is @left)"),
    "node defined twice": (MOVEMENT, [("itensor_fork @fork", "itensor_fork @read")], "node @read defined twice"),
    "converter bytes": (MOVEMENT, [("bytes = 64", "bytes = 65")], "bytes = 65 but the buffer holds 64"),
    "kernel attribute": (KERNELS, [("operands = [0]}", "operands = [0], max_ii = 2}")],
                         "unknown kernel attribute 'max_ii' (expected initN, min_pipeline_ii or replays)"),
    "loop tile order": (KERNELS, [("d1: 2x16/u16", "d2: 2x16/u16")], "expected the tile of loop d1"),
    "kernel region": (KERNELS, [("    %e = linalg.generic @exp_1", "    %e = tensor.empty() : tensor<8x32xf32>\n"
                                 "    %e1 = linalg.generic @exp_1")],
                      "expected one of linalg.generic, found 'tensor.empty'"),
    "attribute value": (MOVEMENT, [("itensor_fork @fork(%cols) -> (%cols_1, %cols_2)",
                                    "itensor_fork @fork(%cols) -> (%cols_1, %cols_2) attributes {impl = srl}")],
                        "expected an integer, a float or a quoted string as the value of attribute 'impl'"),
    "group numbering": (MOVEMENT, [("dataflow.graph @movement(%a: tensor<4x4xf32>) -> (@write) {",
                                    "dataflow.graph @movement(%a: tensor<4x4xf32>) -> (@write) {\n"
                                    "  dataflow.kernel @group1 {"), ("\n}\n", "\n  }\n}\n")],
                        "expected @group0 (groups are numbered in order)"),
    "stream in another group": (MOVEMENT, [("  %rows = itensor_instance", "  dataflow.kernel @group0 {\n"
                                            "  %rows = itensor_instance"),
                                           ("  %cols = itensor_instance", "  }\n  dataflow.kernel @group1 {\n"
                                            "  %cols = itensor_instance"), ("\n}\n", "\n  }\n}\n")],
                                "stream %rows is declared in @group0 but its producer @read is in @group1"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_parse_error_names_the_place(case: str) -> None:
    base, edits, message = CASES[case]
    with pytest.raises(ParseError, match=re.escape(message)):
        parse_ir(edited(base, edits), "f.mlir")


def test_opt_reports_one_line_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.mlir"
    bad.write_text(read(LINALG).replace("return %y", "return %y %y"))
    assert main(["opt", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == f"streamtensor: error: {bad}:21:13: expected '}}' closing the function, found '%y'\n"
    assert main(["opt", str(tmp_path / "missing.mlir")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["opt", str(Path(__file__).parent / MOVEMENT), "--pass", "sink-casts"]) == 2
    assert capsys.readouterr().err == ("streamtensor: error: pass 'sink-casts' takes a Linalg graph, but the IR is "
                                       "a dataflow graph\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["opt", str(bad), "--pass", "no-such-pass"])
    assert exit_info.value.code == 2 and "invalid choice: 'no-such-pass'" in capsys.readouterr().err
