"""One IR-in / IR-out golden per registered pass: ``tests/ir/<pass>/input.mlir`` through the pass gives
``expected.mlir``, in Python and through ``streamtensor opt``.

Regenerate the expected files after an intended change with ``STREAMTENSOR_UPDATE_GOLDENS=1`` (then review the
diff); without it the test only compares."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ir_files import IR_DIR, printed

from streamtensor.cli import main
from streamtensor.codegen.vitis.boards import U55C
from streamtensor.passes import PASSES, parse_ir, print_ir, run_passes

UPDATE = os.environ.get("STREAMTENSOR_UPDATE_GOLDENS") == "1"


@pytest.mark.parametrize("name", list(PASSES))
def test_pass_golden(name: str, tmp_path: Path) -> None:
    source = IR_DIR / name / "input.mlir"
    expected = IR_DIR / name / "expected.mlir"
    result = run_passes(parse_ir(source.read_text(), str(source)), [name], U55C)
    if UPDATE:
        expected.write_text(printed(result))
    assert printed(result) == expected.read_text()
    assert expected.read_text() != source.read_text()  # the golden shows the pass doing something
    # The expected text is itself IR the parser takes back unchanged, and opt gives the same file.
    assert printed(parse_ir(expected.read_text(), str(expected))) == expected.read_text()
    out = tmp_path / "out.mlir"
    assert main(["opt", str(source), "--pass", name, "-o", str(out)]) == 0
    assert out.read_text() == print_ir(result)


def test_passes_run_in_the_order_given() -> None:
    source = IR_DIR / "build-dataflow" / "input.mlir"
    result = run_passes(parse_ir(source.read_text()), ["build-dataflow", "fusion", "size-fifos"], U55C)
    assert printed(result) == (IR_DIR / "size-fifos" / "expected.mlir").read_text()
