"""Which Linalg values are live and which generics become kernels.

**Which generics become kernels.** Every ``linalg.generic`` whose result must be streamed, except constant
fills whose only uses are accumulator inits: such an init is folded into the consuming kernel as a constant
(``KernelNode.init_constants``). Liveness starts at the block outputs (looking through the reshapes between an
output and the value that produces it, since a write DMA addresses external memory in any order).
"""

from __future__ import annotations

import numpy as np

from streamtensor.ir.dataflow import reads_init
from streamtensor.ir.linalg import EmptyOp, GenericOp, Graph, Op, ReshapeOp, SliceOp
from streamtensor.ir.scalar_eval import eval_body


def _fill_scalar(op: GenericOp) -> float | int | bool | None:
    """The constant a pure fill writes: no inputs, a body of constants (and casts of them) only."""
    if op.inputs or any(s.name == "linalg.index" for s in op.body.ops):
        return None
    args = {name for name, _ in op.body.args}
    if any(a in s.operands for s in op.body.ops for a in args) or any(y in args for y in op.body.yields):
        return None
    (value,) = eval_body(op.body, [np.zeros(()) for _ in op.body.args], [])
    return np.asarray(value).item()


def fill_value(graph: Graph, name: str, producers: dict[str, Op] | None = None) -> float | int | bool | None:
    """The scalar every element of ``name`` holds when it is (a reshape/slice of) a constant fill or a
    ``tensor.empty`` (zeros, as the reference interpreter reads it), else None."""
    producers = producers if producers is not None else graph.producers()
    op = producers.get(name)
    while isinstance(op, ReshapeOp | SliceOp):
        op = producers.get(op.source.name)
    if isinstance(op, EmptyOp):
        return 0
    return _fill_scalar(op) if isinstance(op, GenericOp) else None


def init_constants(graph: Graph, op: GenericOp, producers: dict[str, Op] | None = None
                   ) -> dict[int, float | int | bool]:
    """The inits of ``op`` folded into its kernel as constants (``KernelNode.init_constants``), by result index:
    those its body reads that are (a reshape/slice of) a constant fill. They have no input port."""
    producers = producers if producers is not None else graph.producers()
    found = {r: fill_value(graph, v.name, producers) for r, v in enumerate(op.inits) if reads_init(op, r)}
    return {r: value for r, value in found.items() if value is not None}


def output_root(name: str, producers: dict[str, Op]) -> tuple[str, list[ReshapeOp]]:
    """The value a block output is a reshape chain of, and that chain in program order."""
    chain: list[ReshapeOp] = []
    op = producers.get(name)
    while isinstance(op, ReshapeOp):
        chain.insert(0, op)
        name = op.source.name
        op = producers.get(name)
    return name, chain


def streamed_uses(op: Op, graph: Graph, producers: dict[str, Op]) -> list[str]:
    """Operand values ``op`` needs as data (not folded inits, not unread inits)."""
    if not isinstance(op, GenericOp):
        return [v.name for v in op.operands]
    out = [v.name for v in op.inputs]
    for r, v in enumerate(op.inits):
        if reads_init(op, r) and fill_value(graph, v.name, producers) is None:
            out.append(v.name)
    return out


def live_values(graph: Graph) -> set[str]:
    """Values whose data must exist on chip or be read from memory (module docstring)."""
    producers = graph.producers()
    live = {output_root(v.name, producers)[0] for v in graph.outputs}
    for op in reversed(graph.ops):
        if any(r.name in live for r in op.results):
            live.update(streamed_uses(op, graph, producers))
    return live


def kernel_ops(graph: Graph) -> list[GenericOp]:
    """The generics that become kernels, in program order."""
    live = live_values(graph)
    return [op for op in graph.ops if isinstance(op, GenericOp) and any(r.name in live for r in op.results)]
