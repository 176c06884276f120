"""Sink widening casts into their consumers: a stream carries the narrow type, each consumer widens in its body.

torch-mlir computes the variance of a LayerNorm in f64: a kernel whose body is only ``arith.extf`` widens the
f32 input to an f64 tensor, which the mean and the variance kernels then read. In a dataflow design that tensor
is a stream of twice the width (FIFOs, forks and the row buffer of the two-pass normalisation all double), and
in a buffer-based design a whole f64 copy of the input. Widening is exact, so each consumer can read the f32
tensor and apply the same ``arith.extf`` to the element it reads: the results are bit-identical, the arithmetic
stays in f64, and where the cast read a block input its consumers read that input from external memory
directly.

A cast is sunk when it is a ``linalg.generic`` with one input and one init, identity maps, only parallel loops
and a body that yields ``arith.extf`` of its input, and when every use of its result, through
``expand_shape`` / ``collapse_shape``, is an input of a ``linalg.generic`` (not a graph output, not an init, not
a slice or concat). The reshapes are rebuilt on the narrow tensor; the cast and the wide reshapes disappear.
"""

from __future__ import annotations

from dataclasses import replace

from streamtensor.ir import linalg
from streamtensor.ir.affine import AffineMap
from streamtensor.ir.linalg import EmptyOp, GenericOp, Graph, Op, ReshapeOp, ScalarBody, ScalarOp, TensorType, Value

_WIDEN = "arith.extf"


def _is_widening_cast(op: Op) -> bool:
    if not isinstance(op, GenericOp) or len(op.inputs) != 1 or len(op.inits) != 1:
        return False
    identity = AffineMap.identity(len(op.iterator_types))
    if any(t != "parallel" for t in op.iterator_types) or any(m != identity for m in op.indexing_maps):
        return False
    body = op.body
    return (len(body.ops) == 1 and body.ops[0].name == _WIDEN and body.ops[0].operands == (body.args[0][0],)
            and body.yields == (body.ops[0].result,))


def _uses(graph: Graph, cast: GenericOp) -> tuple[list[ReshapeOp], list[GenericOp]] | None:
    """The reshapes between ``cast`` and its consumers and the consumers, or None where one use forbids the
    rewrite."""
    users = graph.users()
    outputs = {v.name for v in graph.outputs}
    reshapes: list[ReshapeOp] = []
    consumers: list[GenericOp] = []
    frontier = [cast.results[0]]
    while frontier:
        value = frontier.pop()
        if value.name in outputs:
            return None
        for user in users.get(value.name, []):
            if isinstance(user, ReshapeOp):
                reshapes.append(user)
                frontier.append(user.results[0])
            elif isinstance(user, GenericOp) and all(v.name != value.name for v in user.inits):
                if all(c is not user for c in consumers):
                    consumers.append(user)
            else:
                return None
    return reshapes, consumers


def _widen_in_body(body: ScalarBody, positions: list[int], narrow: str) -> ScalarBody:
    """``body`` reading the block arguments at ``positions`` as ``narrow`` and widening them first."""
    taken = {name for name, _ in body.args} | {op.result for op in body.ops}
    args = list(body.args)
    widen: list[ScalarOp] = []
    for i in positions:
        name, wide = args[i]
        fresh = linalg.fresh_name(f"{name}_{narrow}", taken)
        args[i] = (fresh, narrow)
        widen.append(ScalarOp(name, _WIDEN, (fresh,), wide))
    return ScalarBody(tuple(args), tuple(widen) + body.ops, body.yields)


def sink_widening_casts(graph: Graph) -> Graph:
    """``graph`` with every sinkable widening cast (module docstring) folded into its consumers."""
    ops = list(graph.ops)
    names = {v.name for v in graph.inputs} | {r.name for op in ops for r in op.results}
    freed: set[str] = set()  # the inits of the sunk casts
    for cast in [op for op in graph.ops if _is_widening_cast(op)]:
        assert isinstance(cast, GenericOp)
        found = _uses(replace(graph, ops=ops), cast)
        if found is None:
            continue
        reshapes, consumers = found
        narrow_dtype = cast.inputs[0].type.dtype
        narrow = {cast.results[0].name: cast.inputs[0]}  # wide value -> its narrow counterpart
        rebuilt: dict[int, ReshapeOp] = {}
        position = {id(op): i for i, op in enumerate(ops)}
        consumer_ids = {id(c) for c in consumers}
        for reshape in sorted(reshapes, key=lambda r: position[id(r)]):  # sources are rebuilt before their uses
            wide = reshape.results[0]
            name = linalg.fresh_name(f"{wide.name}_{narrow_dtype}", names)
            narrow[wide.name] = Value(name, TensorType(wide.type.shape, narrow_dtype))
            rebuilt[id(reshape)] = replace(reshape, results=[narrow[wide.name]], source=narrow[reshape.source.name])
        for i, op in enumerate(ops):
            if id(op) in rebuilt:
                ops[i] = rebuilt[id(op)]
            elif id(op) in consumer_ids:
                assert isinstance(op, GenericOp)
                positions = [j for j, v in enumerate(op.inputs) if v.name in narrow]
                ops[i] = replace(op, inputs=[narrow.get(v.name, v) for v in op.inputs],
                                 body=_widen_in_body(op.body, positions, narrow_dtype))
        ops = [op for op in ops if op is not cast]
        freed.add(cast.inits[0].name)
    used = {v.name for op in ops for v in op.operands} | {v.name for v in graph.outputs}
    ops = [op for op in ops if not (isinstance(op, EmptyOp) and op.results[0].name in freed - used)]
    out = replace(graph, ops=ops)
    out.verify()
    return out
