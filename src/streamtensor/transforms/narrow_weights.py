"""Narrow W4A8's int4 weights from their int8 containers to the IR's ``i4``: stored and streamed two per byte.

PyTorch has no int4 tensors, so ``QuantLinear`` holds its int4 weights (values in [-8, 7]) as int8 and the
imported graph reads them as ``i8``. Under a 4-bit weight scheme this pass retypes those weight inputs to ``i4``:
the packed layout then stores two per byte (half the HBM bytes and DMA words of an int8 weight), the streams carry
4-bit elements and the kernels widen them with the same ``arith.extsi`` / ``arith.sitofp`` the body already
applies. The rewrite is exact because every value fits 4 bits (the quantizer saturates to [-8, 7]; packing and the
interpreters reject anything outside), and it is refused (an error, not a skipped input) when a use could observe
the narrower type: a graph output, an init, a concat, or a body that does anything but widen the element.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from streamtensor.errors import StreamTensorError
from streamtensor.ir.linalg import GenericOp, Graph, ReshapeOp, ScalarBody, SliceOp, TensorType, Value

NARROW = "i4"
_WIDENING = ("arith.extsi", "arith.sitofp")


class NarrowWeightsError(StreamTensorError):
    """A weight input named for int4 storage cannot be narrowed."""


def _narrow_body(op: GenericOp, positions: list[int]) -> ScalarBody:
    """``op``'s body with the block arguments at ``positions`` typed ``i4``; each must only be widened."""
    args = list(op.body.args)
    for i in positions:
        name, _ = args[i]
        bad = [s.name for s in op.body.ops if name in s.operands and s.name not in _WIDENING]
        if bad or name in op.body.yields:
            raise NarrowWeightsError(f"{op.name}: reads %{op.inputs[i].name} with {', '.join(bad) or 'a yield'}, "
                                     f"not only a widening cast: it cannot be stored as {NARROW}")
        args[i] = (name, NARROW)
    return replace(op.body, args=tuple(args))


def narrow_int4_weights(graph: Graph, names: Iterable[str]) -> Graph:
    """``graph`` with the ``i8`` weight inputs ``names`` (and the reshapes and slices of them) typed ``i4``."""
    narrow: dict[str, Value] = {}
    for name in names:
        value = next((v for v in graph.inputs if v.name == name), None)
        if value is None or name not in graph.weight_names or value.type.dtype != "i8":
            raise NarrowWeightsError(f"%{name} is not an i8 weight input of @{graph.name}: cannot store it as i4")
        narrow[name] = Value(name, TensorType(value.type.shape, NARROW))
    if not narrow:
        return graph
    ops = []
    for op in graph.ops:
        touched = [v.name for v in op.operands if v.name in narrow]
        if not touched:
            ops.append(op)
        elif isinstance(op, (ReshapeOp, SliceOp)):  # a view: its result is narrow too
            result = op.results[0]
            narrow[result.name] = Value(result.name, TensorType(result.type.shape, NARROW))
            ops.append(replace(op, source=narrow[op.source.name], results=[narrow[result.name]]))
        elif isinstance(op, GenericOp) and not any(v.name in narrow for v in op.inits):
            positions = [i for i, v in enumerate(op.inputs) if v.name in narrow]
            ops.append(replace(op, inputs=[narrow.get(v.name, v) for v in op.inputs],
                               body=_narrow_body(op, positions)))
        else:
            raise NarrowWeightsError(f"{op.kind} {op.results[0].name} uses %{touched[0]} in a way that cannot "
                                     f"read {NARROW}")
    if any(v.name in narrow for v in graph.outputs):
        raise NarrowWeightsError(f"@{graph.name} returns an int4 weight: it cannot be stored as {NARROW}")
    out = replace(graph, inputs=[narrow.get(v.name, v) for v in graph.inputs], ops=ops)
    out.verify()
    return out
