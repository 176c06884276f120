"""Where the IR text tests keep their files, edits of them, and the printed text of either IR kind without the
tool line."""

from __future__ import annotations

from pathlib import Path

from streamtensor.ir.dataflow import print_dataflow
from streamtensor.ir.linalg import Graph, print_graph
from streamtensor.passes import IR

IR_DIR = Path(__file__).parent
# Valid IR files the negative tests edit.
LINALG = "build-dataflow/input.mlir"  # exp(x) @ w
KERNELS = "build-dataflow/expected.mlir"  # its dataflow graph
REPLAY = "replay/expected.mlir"  # a kernel with a replay port
MOVEMENT = "movement.mlir"  # converter, fork, chunks, concat, reassociation, DMAs


def printed(ir: IR) -> str:
    return print_graph(ir) if isinstance(ir, Graph) else print_dataflow(ir)


def read(name: str) -> str:
    return (IR_DIR / name).read_text()


def edited(base: str, edits: list[tuple[str, str]]) -> str:
    """``base`` (a file under ``tests/ir``, or IR text itself) with each ``old`` (found exactly once) replaced."""
    text = base if base.startswith("dataflow.graph") else read(base)
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text
