"""The compile pipeline's IR-to-IR steps by name, with the IR kind each takes and gives: what
``streamtensor opt`` runs and the golden tests check, one pass at a time.

In ``driver.compile`` order: ``sink-casts``, ``split-slices``, ``fuse-into-contractions`` (Linalg to Linalg),
``build-dataflow`` (Linalg to dataflow: tiling with the default ``TilingOptions``, then the dataflow graph),
``chain-input``, ``replay``, ``fusion``, ``stripe`` (HBM stripes of the DMAs), ``converter-banks`` (one window
or a ping-pong pair per converter, by timing simulation) and ``size-fifos`` (dataflow to
dataflow; the FIFO LP of resource allocation with the ``normal`` strategy, its depths and the timing and memory
attributes written into the IR), ``allocate`` (the whole resource allocation of ``compile`` with its defaults: FIFO
sizing, timing simulation, resources, SLR plan; a deadlock or a design over the target's budget is an error).
Passes that weigh device costs (tiling, fusion's memory cap, FIFO sizing) read the target given to
:func:`run_passes`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from streamtensor._version import GENERATOR
from streamtensor.analysis.allocation import run_allocation, size_fifos
from streamtensor.analysis.converter_banks import choose_converter_banks
from streamtensor.errors import OptionError
from streamtensor.ir.dataflow import DataflowGraph, print_dataflow
from streamtensor.ir.dataflow_parser import parse_dataflow
from streamtensor.ir.linalg import Graph, print_graph
from streamtensor.ir.linalg_parser import parse_graph
from streamtensor.ir.text import Cursor
from streamtensor.target import Target
from streamtensor.transforms.build_dataflow import build_dataflow
from streamtensor.transforms.chain_input import read_input_as_output
from streamtensor.transforms.fuse_into_contractions import (
    fuse_elementwise_into_contractions,
    hoist_recomputed_prologues,
)
from streamtensor.transforms.fusion import apply_fusion
from streamtensor.transforms.replay import replay_forked_accumulators
from streamtensor.transforms.sink_casts import sink_widening_casts
from streamtensor.transforms.split_slices import split_sliced_results
from streamtensor.transforms.stripes import stripe_dmas
from streamtensor.transforms.tiling import TilingOptions, tile_graph

IRKind = Literal["linalg", "dataflow"]
IR = Graph | DataflowGraph
_KIND_WORDS: dict[str, str] = {"linalg": "a Linalg graph", "dataflow": "a dataflow graph"}


@dataclass(frozen=True)
class Pass:
    name: str
    takes: IRKind
    gives: IRKind
    run: Callable[[IR, Target], IR]  # may update its argument in place; the result is what counts
    summary: str


def _build_dataflow(graph: IR, target: Target) -> IR:
    assert isinstance(graph, Graph)
    return build_dataflow(graph, tile_graph(graph, target, TilingOptions()))


def _chain_input(graph: IR, target: Target) -> IR:
    assert isinstance(graph, DataflowGraph)
    read_input_as_output(graph)
    return graph


def _replay(graph: IR, target: Target) -> IR:
    assert isinstance(graph, DataflowGraph)
    replay_forked_accumulators(graph)
    return graph


def _fusion(graph: IR, target: Target) -> IR:
    assert isinstance(graph, DataflowGraph)
    return apply_fusion(graph, target.onchip_bytes)


def _stripe(graph: IR, target: Target) -> IR:
    assert isinstance(graph, DataflowGraph)
    stripe_dmas(graph, target)
    return graph


def _converter_banks(graph: IR, target: Target) -> IR:
    assert isinstance(graph, DataflowGraph)
    choose_converter_banks(graph, target)
    return graph


def _size_fifos(graph: IR, target: Target) -> IR:
    assert isinstance(graph, DataflowGraph)
    size_fifos(graph, target)
    return graph


def _allocate(graph: IR, target: Target) -> IR:
    assert isinstance(graph, DataflowGraph)
    run_allocation(graph, target)
    return graph


def _linalg(rewrite: Callable[[Graph], Graph]) -> Callable[[IR, Target], IR]:
    """A Linalg rewrite as a pass: it weighs no device cost."""
    def run(graph: IR, target: Target) -> IR:
        assert isinstance(graph, Graph)
        return rewrite(graph)
    return run


PASSES: dict[str, Pass] = {p.name: p for p in (
    Pass("sink-casts", "linalg", "linalg", _linalg(sink_widening_casts),
         "move widening casts past reshapes into their consumers"),
    Pass("hoist-prologues", "linalg", "linalg", _linalg(hoist_recomputed_prologues),
         "make a contraction's small, recomputed elementwise prologue a kernel of its own"),
    Pass("split-slices", "linalg", "linalg", _linalg(split_sliced_results),
         "split generics whose result is only read in slices"),
    Pass("fuse-into-contractions", "linalg", "linalg", _linalg(fuse_elementwise_into_contractions),
         "fuse multi-use elementwise generics into the contractions reading them"),
    Pass("build-dataflow", "linalg", "dataflow", _build_dataflow,
         "tile every generic (default tiling options) and build the dataflow graph"),
    Pass("chain-input", "dataflow", "dataflow", _chain_input,
         "read a one-token block's activation input in its output's packing (a converter where a use differs)"),
    Pass("replay", "dataflow", "dataflow", _replay, "replace forks of whole accumulated results by replay ports"),
    Pass("fusion", "dataflow", "dataflow", _fusion,
         "group the nodes into accelerators under the target's on-chip memory"),
    Pass("stripe", "dataflow", "dataflow", _stripe,
         "stripe every read-only external tensor over HBM pseudo-channels by its bandwidth demand"),
    Pass("converter-banks", "dataflow", "dataflow", _converter_banks,
         "one window instead of a ping-pong pair for every converter whose group then finishes sooner"),
    Pass("size-fifos", "dataflow", "dataflow", _size_fifos, "FIFO depths of every stream by the LP (normal)"),
    Pass("allocate", "dataflow", "dataflow", _allocate,
         "resource allocation: FIFO depths, timing simulation, resources and the SLR plan"),
)}


def ir_kind(ir: IR) -> IRKind:
    return "linalg" if isinstance(ir, Graph) else "dataflow"


def parse_ir(text: str, filename: str = "<text>") -> IR:
    """A Linalg graph (``func.func``) or a dataflow graph (``dataflow.graph``), told apart by its first op;
    verified."""
    cur = Cursor(text, filename)
    if cur.at("func.func"):
        return parse_graph(text, filename)
    if cur.at("dataflow.graph"):
        return parse_dataflow(text, filename)
    raise cur.expected("'func.func' (a Linalg graph) or 'dataflow.graph' (a dataflow graph)")


def print_ir(ir: IR) -> str:
    """The IR's text as the compiler writes its files: a first line naming the tool, then the printed IR."""
    body = print_graph(ir) if isinstance(ir, Graph) else print_dataflow(ir)
    return f"// Generated by {GENERATOR}\n{body}"


def run_passes(ir: IR, names: list[str], target: Target) -> IR:
    """``ir`` through the named passes in order, verified after each."""
    for name in names:
        if name not in PASSES:
            raise OptionError(f"unknown pass '{name}': expected one of {', '.join(PASSES)}")
        step = PASSES[name]
        if ir_kind(ir) != step.takes:
            raise OptionError(f"pass '{name}' takes {_KIND_WORDS[step.takes]}, but the IR is "
                              f"{_KIND_WORDS[ir_kind(ir)]}")
        ir = step.run(ir, target)
        ir.verify()
    return ir

