"""Sink widening casts into their consumers: a stream carries the narrow type, each consumer widens in its body.

torch-mlir computes the variance of a LayerNorm in f64: a kernel whose body is only ``arith.extf`` widens the
f32 input to an f64 tensor, which the mean and the variance kernels then read. In a dataflow design that tensor
is a stream of twice the width (FIFOs, forks and the row buffer of the two-pass normalisation all double), and
in a buffer-based design a whole f64 copy of the input. Widening is exact, so each consumer can read the f32
tensor and apply the same ``arith.extf`` to the element it reads: the results are bit-identical, the arithmetic
stays in f64, and where the cast read a block input its consumers read that input from external memory
directly.

The same holds for a kernel whose body *ends* in a widening cast. A W8A8/W4A8 activation quantize yields
``arith.extsi`` of its int8 result to i32 for the i32 contraction that reads it; where a head reshape
(``16x64 -> 8x128``) keeps it from being fused into that contraction, the stream between them would carry i32
and the contraction would multiply 32-bit operands (3 DSPs a lane instead of a shared one). The kernel instead
yields the i8 value and the contraction widens in its body, as the fused projections already do.

A cast is sunk from a ``linalg.generic`` with one init, only parallel loops, an identity init map and a body
whose yield is ``arith.extf`` / ``arith.extsi`` of a narrower value, when every use of its result, through the
pure data-movement ops ``expand_shape`` / ``collapse_shape`` / ``extract_slice``, is an input of a
``linalg.generic`` (not a graph output, not an init, not a concat). The data-movement ops are rebuilt on the
narrow tensor. A kernel that is only the cast of its input (identity map) disappears; any other keeps its body
without the cast, yields the narrow value and takes a narrow ``tensor.empty`` init (refused where its init is not
a ``tensor.empty`` or its body reads the init). A consumer that only copies the element (a transpose) thus
becomes such a kernel in turn, and the cast moves on past it: the pass repeats until no cast moves.
"""

from __future__ import annotations

from dataclasses import replace

from streamtensor.ir import linalg
from streamtensor.ir.affine import AffineMap
from streamtensor.ir.linalg import EmptyOp, GenericOp, Graph, Op, ReshapeOp, ScalarBody, ScalarOp, SliceOp

_WIDEN = ("arith.extf", "arith.extsi")


def _trailing_cast(op: Op, producers: dict[str, Op]) -> tuple[ScalarOp, str] | None:
    """The widening op whose result ``op`` yields and the narrow element type it widens, or None where ``op`` is
    not a kernel the cast can leave."""
    if not isinstance(op, GenericOp) or len(op.inits) != 1:
        return None
    if any(t != "parallel" for t in op.iterator_types):
        return None
    if op.indexing_maps[-1] != AffineMap.identity(len(op.iterator_types)):
        return None
    body = op.body
    cast = next((s for s in body.ops if s.result == body.yields[0]), None)
    if cast is None or cast.name not in _WIDEN:
        return None
    source = cast.operands[0]
    narrow = dict(body.args).get(source) or next(s.dtype for s in body.ops if s.result == source)
    if narrow == "i1":  # a stream of booleans: no narrower element than a byte in a stream, nothing to gain
        return None
    if not _is_pure_cast(op, cast):
        # The kernel stays: it needs a fresh narrow init, so the old one must be an empty it does not read.
        init_arg = body.args[-1][0]
        if not isinstance(producers.get(op.inits[0].name), EmptyOp):
            return None
        if any(init_arg in s.operands for s in body.ops) or init_arg in body.yields:
            return None
    return cast, narrow


def _is_pure_cast(op: GenericOp, cast: ScalarOp) -> bool:
    """``op`` only widens its one input, element for element: it disappears."""
    identity = AffineMap.identity(len(op.iterator_types))
    return (len(op.inputs) == 1 and op.indexing_maps[0] == identity and len(op.body.ops) == 1
            and cast.operands == (op.body.args[0][0],))


def _uses(graph: Graph, producer: GenericOp) -> tuple[list[ReshapeOp | SliceOp], list[GenericOp]] | None:
    """The data-movement ops between ``producer`` and its consumers and the consumers, or None where one use
    forbids the rewrite."""
    users = graph.users()
    outputs = {v.name for v in graph.outputs}
    movers: list[ReshapeOp | SliceOp] = []
    consumers: list[GenericOp] = []
    frontier = [producer.results[0]]
    while frontier:
        value = frontier.pop()
        if value.name in outputs:
            return None
        for user in users.get(value.name, []):
            if isinstance(user, ReshapeOp | SliceOp):
                if all(m is not user for m in movers):
                    movers.append(user)
                    frontier.append(user.results[0])
            elif isinstance(user, GenericOp) and all(v.name != value.name for v in user.inits):
                if all(c is not user for c in consumers):
                    consumers.append(user)
            else:
                return None
    return movers, consumers


def _widen_in_body(body: ScalarBody, positions: list[int], narrow: str, widen_op: str) -> ScalarBody:
    """``body`` reading the block arguments at ``positions`` as ``narrow`` and widening them first."""
    taken = {name for name, _ in body.args} | {op.result for op in body.ops}
    args = list(body.args)
    widen: list[ScalarOp] = []
    for i in positions:
        name, wide = args[i]
        fresh = linalg.fresh_name(f"{name}_{narrow}", taken)
        args[i] = (fresh, narrow)
        widen.append(ScalarOp(name, widen_op, (fresh,), wide))
    return ScalarBody(tuple(args), tuple(widen) + body.ops, body.yields)


def _without_cast(body: ScalarBody, cast: ScalarOp, narrow: str) -> ScalarBody:
    """``body`` yielding the cast's narrow operand, its init argument narrow; the cast dropped if nothing else
    reads it."""
    ops = tuple(s for s in body.ops if s is not cast or any(cast.result in o.operands for o in body.ops))
    args = body.args[:-1] + ((body.args[-1][0], narrow),)
    return ScalarBody(args, ops, (cast.operands[0],))


def _sink_one(graph: Graph, ops: list[Op], names: set[str], freed: set[str]) -> list[Op] | None:
    """``ops`` with the first sinkable cast moved into its consumers, or None where none is."""
    current = replace(graph, ops=ops)
    producers = current.producers()
    for producer in ops:
        found_cast = _trailing_cast(producer, producers)
        if found_cast is None:
            continue
        assert isinstance(producer, GenericOp)
        found = _uses(current, producer)
        if found is None:
            continue
        cast, narrow_dtype = found_cast
        movers, consumers = found
        out = list(ops)
        wide_result = producer.results[0]
        position = {id(op): i for i, op in enumerate(out)}
        if _is_pure_cast(producer, cast):
            narrow = {wide_result.name: producer.inputs[0]}  # wide value -> its narrow counterpart
            out.remove(producer)
            freed.add(producer.inits[0].name)
        else:
            narrow_value = linalg.Value(linalg.fresh_name(f"{wide_result.name}_{narrow_dtype}", names),
                                        linalg.TensorType(wide_result.type.shape, narrow_dtype))
            init = producer.inits[0]
            empty = EmptyOp([linalg.Value(linalg.fresh_name(f"{init.name}_{narrow_dtype}", names),
                                          linalg.TensorType(init.type.shape, narrow_dtype))])
            narrow = {wide_result.name: narrow_value}
            at = position[id(producer)]
            out[at] = replace(producer, results=[narrow_value], inits=[empty.results[0]],
                              body=_without_cast(producer.body, cast, narrow_dtype))
            out.insert(at, empty)
            freed.add(init.name)
        rebuilt: dict[int, Op] = {}
        for mover in sorted(movers, key=lambda m: position[id(m)]):  # sources are rebuilt before their uses
            wide = mover.results[0]
            narrow[wide.name] = linalg.Value(linalg.fresh_name(f"{wide.name}_{narrow_dtype}", names),
                                             linalg.TensorType(wide.type.shape, narrow_dtype))
            rebuilt[id(mover)] = replace(mover, results=[narrow[wide.name]], source=narrow[mover.source.name])
        consumer_ids = {id(c) for c in consumers}
        for i, op in enumerate(out):
            if id(op) in rebuilt:
                out[i] = rebuilt[id(op)]
            elif id(op) in consumer_ids:
                assert isinstance(op, GenericOp)
                positions = [j for j, v in enumerate(op.inputs) if v.name in narrow]
                out[i] = replace(op, inputs=[narrow.get(v.name, v) for v in op.inputs],
                                 body=_widen_in_body(op.body, positions, narrow_dtype, cast.name))
        return out
    return None


def sink_widening_casts(graph: Graph) -> Graph:
    """``graph`` with every sinkable widening cast (module docstring) folded into its consumers."""
    ops = list(graph.ops)
    names = {v.name for v in graph.inputs} | {r.name for op in ops for r in op.results}
    freed: set[str] = set()  # the inits of the rewritten kernels
    # Each step removes a cast from a kernel's yield or a kernel, and adds casts only inside consumers' bodies
    # ahead of other ops (a yield moves on only past a pure copy), so the loop ends.
    while (sunk := _sink_one(graph, ops, names, freed)) is not None:
        ops = sunk
    used = {v.name for op in ops for v in op.operands} | {v.name for v in graph.outputs}
    ops = [op for op in ops if not (isinstance(op, EmptyOp) and op.results[0].name in freed - used)]
    out = replace(graph, ops=ops)
    out.verify()
    return out
