"""Where the IR text tests keep their files, and the printed text of either IR kind without the tool line."""

from __future__ import annotations

from pathlib import Path

from streamtensor.ir.dataflow import print_dataflow
from streamtensor.ir.linalg import Graph, print_graph
from streamtensor.passes import IR

IR_DIR = Path(__file__).parent


def printed(ir: IR) -> str:
    return print_graph(ir) if isinstance(ir, Graph) else print_dataflow(ir)


def read(name: str) -> str:
    return (IR_DIR / name).read_text()
