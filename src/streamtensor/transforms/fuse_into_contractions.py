"""Fuse an elementwise kernel into every contraction that reads it, so the contractions read its inputs instead.

``linalg-fuse-elementwise-ops`` fuses a producer only into its single consumer. A normalization whose result
feeds several projections (RMSNorm before Q, K and V, or before the gate and up projections) thus stays a
kernel of its own, and its result must be forked to the projections. In a stream design that result cannot
start before the row's statistic (sum of squares) is complete, so every branch of the fork waits, and a branch
whose consumer is itself held back (the Q projection waits while attention reads all of K) buffers the whole
normalized input: 181 KiB on paper-size Llama prefill in 4-row token tiles (``fork_v18 -> matmul_1``).

A contraction re-reads its input in its own order anyway (its input tile or a converter holds it), so it can
compute the elementwise body on the fly from the producer's inputs: the raw input is read before the statistic
is known, the statistic is read only when the first product needs it, and the fork wait disappears. A block
input or a weight among those inputs is read from external memory by the consumer's own DMA.

Rewrite: a ``linalg.generic`` with only parallel loops, one result (not a block output) whose map is a permutation,
a body that does not read its init or ``linalg.index``, projected-permutation input maps, and at most one input
that is neither external (a block input, weight or constant, or a reshape or slice of one) nor broadcast (its map
omits a loop), so that no consumer needs more on-chip buffering than for the producer's result; every use of its
result is one input of a ``linalg.generic`` with a reduction loop. Each consumer gets the producer's inputs (maps
composed through the consumer's map of the result) and, in its body, the producer's ops in place of the block
argument it read. The producer disappears. Results are bit-identical: every element is computed by the same scalar
ops from the same operands, once per point of each consumer that reads it.

That recomputation is why expensive ops (a division or a ``math`` function) are never fused: they would be
computed at every multiply-accumulate of the consumer, in every lane, where their own kernel computes them once per
row. XLA's fusion refuses to duplicate the same ops (``IsExpensive``). An RMSNorm's last step,
``x * rsqrt(sum / n + eps) * w``, has both kinds: its expensive ops read only the row's statistic, so they are
first hoisted into a generic of their own over the rows (``rsqrt`` of the statistic, one element per row, read
broadcast), and only the cheap scaling ``x * r * w`` is fused. On paper-size Gemma prefill, fusing the whole step
made the projections' lanes about four times dearer in DSPs and seven in LUTs, and the unroll budget gave the K
and V projections a sixteenth of the lanes they have unfused (a quarter with the rsqrt hoisted).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from streamtensor.ir import linalg
from streamtensor.ir.affine import AffineDim, AffineMap
from streamtensor.ir.linalg import DTYPE_BITS, EmptyOp, GenericOp, Graph, Op, ScalarBody, ScalarOp, TensorType, Value
from streamtensor.transforms.tiling.edges import FORK_EXTERNAL_MAX_BYTES, external_operands
from streamtensor.transforms.tiling.plan import TilingOptions
from streamtensor.transforms.tiling.tile_sizes import tile_size

# Ops whose cores cost several multipliers (resources._OP_COST): not recomputed per point of a contraction.
_CHEAP_MATH = {"math.absf"}
_DIVISIONS = {"arith.divf", "arith.divsi", "arith.divui", "arith.remf", "arith.remsi", "arith.remui"}


# Casts: a prologue of casts alone costs a few LUTs per lane and is not worth a kernel of its own; a widening
# cast at its end stays in the contraction, so the prologue's result crosses in the narrow type.
_CASTS = {"arith.extf", "arith.extsi", "arith.extui", "arith.truncf", "arith.trunci", "arith.sitofp",
          "arith.uitofp", "arith.fptosi", "arith.fptoui"}
_WIDENING = {"arith.extf", "arith.extsi", "arith.extui"}


def _is_expensive(name: str) -> bool:
    return name in _DIVISIONS or (name.startswith("math.") and name not in _CHEAP_MATH)


# Rounding to an integer (a quantization's step) is fabric logic, not a core of its own.
_ROUNDING = {"math.roundeven", "math.round", "math.floor", "math.ceil", "math.trunc"}


def _builds_a_core(name: str) -> bool:
    """An expensive op (a division or a math function) that is more than rounding."""
    return _is_expensive(name) and name not in _ROUNDING


def _fusable_producer(op: GenericOp, external: set[int]) -> bool:
    """``external``: the inputs of ``op`` read from external memory (``tiling.edges.external_operands``)."""
    if len(op.results) != 1 or len(op.inits) != 1 or op.reduction_dims:
        return False
    init_arg = op.body.args[len(op.inputs)][0]
    if any(init_arg in o.operands for o in op.body.ops) or init_arg in op.body.yields:
        return False
    if any(o.name == "linalg.index" for o in op.body.ops) or not op.indexing_maps[-1].is_permutation():
        return False
    maps = op.indexing_maps[: len(op.inputs)]
    if not all(m.is_projected_permutation() for m in maps):
        return False
    streamed = [j for j, m in enumerate(maps) if j not in external and m.used_dims() == set(range(m.num_dims))]
    return len(streamed) <= 1


def _loop_dims(op: GenericOp) -> dict[str, set[int]]:
    """The loops every body value of ``op`` varies with: those of the operand maps it is computed from (an
    accumulator, read from the init, varies with every loop)."""
    every = set(range(len(op.iterator_types)))
    dims = {name: op.indexing_maps[j].used_dims() for j, (name, _) in enumerate(op.body.args[: len(op.inputs)])}
    dims |= {name: every for name, _ in op.body.args[len(op.inputs):]}
    for o in op.body.ops:
        dims[o.result] = set().union(*(dims[x] for x in o.operands))
    return dims


def _split_off(op: GenericOp, needed: set[str], label: str, taken: set[str]) -> tuple[list[Op], GenericOp] | None:
    """Split ``op`` into a generic (labelled ``label``) computing the body values ``needed`` (closed under their
    operands) over the loops they vary with, with an empty init for it, and the rest of ``op``, which reads that
    generic's one result broadcast. None when the split would compute no fewer points than ``op``, or when it
    would leave more than one value to the rest."""
    dims = _loop_dims(op)
    n = len(op.iterator_types)
    hoisted_ops = [o for o in op.body.ops if o.result in needed]
    read_by_rest = {x for o in op.body.ops if o.result not in needed for x in o.operands} | set(op.body.yields)
    crossing = [o for o in hoisted_ops if o.result in read_by_rest and o.name != "arith.constant"]
    loops = sorted(set().union(*(dims[o.result] for o in hoisted_ops)))
    if len(crossing) != 1:
        return None
    value = crossing[0]
    renumber = {d: i for i, d in enumerate(loops)}
    arg_names = [a for a, _ in op.body.args[: len(op.inputs)]]
    read = [j for j, a in enumerate(arg_names) if a in needed]
    # over no loop (decode: the statistic of the one row), the hoisted generic has one loop of one point
    rank = max(1, len(loops))
    shape = tuple(op.domain[d] for d in loops) or (1,)
    if math.prod(shape) >= math.prod(op.domain):
        return None
    init = EmptyOp([Value(linalg.fresh_name(f"{op.results[0].name}_init", taken), TensorType(shape, value.dtype))])
    result = Value(linalg.fresh_name(f"{op.results[0].name}_{value.result}", taken), TensorType(shape, value.dtype))
    init_arg = linalg.fresh_name("out", {a for a, _ in op.body.args} | {o.result for o in op.body.ops})
    hoist = GenericOp(
        [result], label, [op.inputs[j] for j in read], [init.results[0]],
        [AffineMap(rank, tuple(AffineDim(renumber[r.position]) if isinstance(r, AffineDim) else r
                               for r in op.indexing_maps[j].results)) for j in read]
        + [AffineMap.identity(rank)],
        ["parallel"] * rank,
        ScalarBody(tuple(op.body.args[j] for j in read) + ((init_arg, value.dtype),), tuple(hoisted_ops),
                   (value.result,)),
        location=op.location)
    # constants the rest reads stay there too (a constant costs nothing)
    rest_ops = tuple(o for o in op.body.ops if o.result not in needed
                     or (o.name == "arith.constant" and o.result in read_by_rest))
    keep = [j for j, a in enumerate(arg_names) if a in read_by_rest]
    rest = replace(
        op, inputs=[op.inputs[j] for j in keep] + [result],
        indexing_maps=[op.indexing_maps[j] for j in keep] + [AffineMap.from_dims(n, list(loops) or [None])]
        + op.indexing_maps[len(op.inputs):],
        body=ScalarBody(tuple(op.body.args[j] for j in keep) + ((value.result, value.dtype),)
                        + op.body.args[len(op.inputs):], rest_ops, op.body.yields))
    return [init, hoist], rest


def _hoist_expensive(op: GenericOp, taken: set[str]) -> tuple[list[Op], GenericOp] | None:
    """Split ``op`` into a generic computing its expensive ops (and what they read) over the loops they vary
    with and the rest of ``op`` (``_split_off``). None when an expensive op varies with every loop."""
    needed: set[str] = set()  # the expensive ops, what they read, and so on up to the block arguments
    for o in reversed(op.body.ops):
        if _is_expensive(o.name) or o.result in needed:
            needed |= {o.result, *o.operands}
    return _split_off(op, needed, op.name, taken)


def _contraction_uses(users: dict[str, list[Op]], outputs: set[str], producer: GenericOp
                      ) -> list[GenericOp] | None:
    """The consumers of ``producer``'s result when every use is one input of a reduction generic, else None."""
    name = producer.results[0].name
    consumers = users.get(name, [])
    if name in outputs or not consumers:
        return None
    for c in consumers:
        if (not isinstance(c, GenericOp) or not c.reduction_dims or any(v.name == name for v in c.inits)
                or sum(v.name == name for v in c.inputs) != 1):
            return None
    return [c for c in consumers if isinstance(c, GenericOp)]


def _compose(producer_map: AffineMap, result_map: AffineMap, consumer_map: AffineMap) -> AffineMap:
    """``producer_map`` over the consumer's loops: producer loop ``d`` is the consumer's expression at the
    position where the producer's result map puts ``d``."""
    position = {result_map.result_dim(j): j for j in range(result_map.num_results)}
    return AffineMap(consumer_map.num_dims, tuple(
        consumer_map.results[position[r.position]] if isinstance(r, AffineDim) else r
        for r in producer_map.results))  # a projected permutation: dims and the constant 0


def _fused_body(consumer: ScalarBody, k: int, inputs: int, producer: ScalarBody, producer_inputs: int
                ) -> ScalarBody:
    """``consumer``'s body with its block argument ``k`` computed by ``producer``'s ops from new arguments
    (appended after the consumer's other inputs)."""
    taken = {n for n, _ in consumer.args} | {o.result for o in consumer.ops}
    rename = {n: linalg.fresh_name(n, taken) for n, _ in producer.args[:producer_inputs]}
    rename.update({o.result: linalg.fresh_name(o.result, taken) for o in producer.ops})
    fused_arg, computed = consumer.args[k][0], rename[producer.yields[0]]
    ops = [replace(o, result=rename[o.result], operands=tuple(rename[x] for x in o.operands)) for o in producer.ops]
    ops += [replace(o, operands=tuple(computed if x == fused_arg else x for x in o.operands)) for o in consumer.ops]
    args = (consumer.args[:k] + consumer.args[k + 1 : inputs]
            + tuple((rename[n], t) for n, t in producer.args[:producer_inputs]) + consumer.args[inputs:])
    yields = tuple(computed if y == fused_arg else y for y in consumer.yields)
    return ScalarBody(args, tuple(ops), yields)


def _fuse(producer: GenericOp, consumer: GenericOp) -> GenericOp:
    k = next(i for i, v in enumerate(consumer.inputs) if v.name == producer.results[0].name)
    n = len(consumer.inputs)
    composed = [_compose(m, producer.indexing_maps[-1], consumer.indexing_maps[k])
                for m in producer.indexing_maps[: len(producer.inputs)]]
    return replace(consumer,
                   inputs=consumer.inputs[:k] + consumer.inputs[k + 1 :] + producer.inputs,
                   indexing_maps=(consumer.indexing_maps[:k] + consumer.indexing_maps[k + 1 : n] + composed
                                  + consumer.indexing_maps[n:]),
                   body=_fused_body(consumer.body, k, n, producer.body, len(producer.inputs)))


def _next_fusion(graph: Graph, outputs: set[str], taken: set[str], tile: int
                 ) -> tuple[GenericOp, list[Op], GenericOp, list[GenericOp]] | None:
    """The first fusable producer of ``graph``: (the producer, the ops hoisted out of it to stay, the part to
    fuse, its consumers); None when there is none."""
    producers, users = graph.producers(), graph.users()
    for p in graph.ops:
        if not (isinstance(p, GenericOp) and _fusable_producer(p, external_operands(p, producers))
                and (consumers := _contraction_uses(users, outputs, p)) is not None):
            continue
        uses = [_use(c, [v.name for v in c.inputs].index(p.results[0].name)) for c in consumers]
        external = [p.inputs[j].type for j in external_operands(p, producers)]
        if _own_kernel(p.results[0].type, p.body.ops, external, uses, tile):
            continue  # a small prologue the contractions would recompute: ``hoist_recomputed_prologues``' rule
        if not any(_is_expensive(o.name) for o in p.body.ops):
            return p, [], p, consumers
        if (split := _hoist_expensive(p, taken)) is not None:
            return p, *split, consumers
    return None


def fuse_elementwise_into_contractions(graph: Graph, tile: int = TilingOptions.default_tile_size) -> Graph:
    """``graph`` with every fusable elementwise producer (module docstring) folded into its contractions, but for
    those that ``hoist_recomputed_prologues`` would make kernels of their own (``tile``: the default tile size)."""
    outputs = {v.name for v in graph.outputs}
    taken = {v.name for v in graph.inputs} | {r.name for op in graph.ops for r in op.results}
    ops = list(graph.ops)
    freed: set[str] = set()  # the inits of the fused producers
    # fusing one producer can leave another one's result read by contractions only
    while (found := _next_fusion(replace(graph, ops=ops), outputs, taken, tile)) is not None:
        producer, hoisted, fused_part, consumers = found
        fused = {id(c): _fuse(fused_part, c) for c in consumers}
        at = ops.index(producer)
        ops = [fused.get(id(op), op) for op in ops[:at] + hoisted + ops[at + 1 :]]
        freed.add(producer.inits[0].name)
    used = {v.name for op in ops for v in op.operands} | outputs
    ops = [op for op in ops if not (isinstance(op, EmptyOp) and op.results[0].name in freed - used)]
    out = replace(graph, ops=ops)
    out.verify()
    return out


@dataclass(frozen=True)
class _Use:
    """A contraction reading a prologue's result: the loops that result varies with there (``varying``), and
    those of them that another operand of the contraction varies with too (``shared``: its reduction over the
    input features, with their groups; not the tokens, which only the result and the output vary with)."""

    contraction: GenericOp
    varying: set[int]
    shared: set[int]

    def features(self, dims: set[int] | Sequence[int]) -> int:
        return math.prod(self.contraction.domain[d] for d in dims)

    def expands(self) -> bool:
        """Each element of the result feeds at least as many output features as the input features each output
        sums: the normalised rows before a Q/K/V or up projection, not the GELU before a down projection."""
        others = [d for d in range(len(self.contraction.domain)) if d not in self.varying]
        return self.features(others) >= self.features(self.shared)


def _use(contraction: GenericOp, k: int) -> _Use:
    """How ``contraction`` reads its input ``k`` (a prologue's result): ``_Use``."""
    maps = contraction.indexing_maps
    varying = maps[k].used_dims()
    others: set[int] = set()
    for j in range(len(contraction.inputs)):
        if j != k:
            others |= maps[j].used_dims()
    return _Use(contraction, varying, varying & others)


def _own_kernel(result: TensorType, ops: Sequence[ScalarOp], external: list[TensorType], uses: list[_Use],
                tile: int) -> bool:
    """Whether a prologue of ``ops`` computing ``result`` is a kernel of its own rather than part of the
    contractions that read it (``hoist_recomputed_prologues``): it computes more than casts; it quantizes: its
    result is an integer narrower than float operands it reads from external memory (``external``, their types;
    an f32 prologue of integer positions, a rotary embedding, stays fused: hoisting one broke CodeGen's decode
    keys), so that an on-chip buffer replaying its result holds fewer bytes than the stream
    it replaces; a buffer of its result is cheap: the result is small (the bound under which an external tensor
    is read once and forked), or a contraction reading it expands (``_Use.expands``: its output is at least as
    wide as the result, so the buffer holds no more than the contraction streams out anyway), or the buffer
    pays for itself: the prologue computes a division or a math function other than rounding (``_builds_a_core``:
    a GELU's ``tanh``, a SiLU's ``exp``), which the contraction would build in every lane group; and a contraction
    tiles a loop it does not vary with more than once (``uses``; ``tile``: the default tile size), so that
    contraction would compute it and stream those operands from HBM again once per tile of those loops."""
    return (any(o.name not in _CASTS and o.name != "arith.constant" for o in ops)
            and result.dtype.startswith("i")
            and any(t.dtype.startswith(("f", "bf")) and DTYPE_BITS[t.dtype] > DTYPE_BITS[result.dtype]
                    for t in external)
            and (result.bytes <= FORK_EXTERNAL_MAX_BYTES or any(u.expands() for u in uses)
                 or any(_builds_a_core(o.name) for o in ops))
            and any(math.prod(n // tile_size(n, tile) for d, n in enumerate(u.contraction.domain)
                              if d not in u.varying) > 1 for u in uses))


def _prologue(op: GenericOp) -> set[str]:
    """The body values of contraction ``op`` that vary with fewer than all of its loops (with the constants and
    block arguments they read), less widening casts at their end: what ``op`` computes again at every point of
    the loops they do not vary with."""
    dims = _loop_dims(op)
    every = set(range(len(op.iterator_types)))
    prologue = {o.result for o in op.body.ops if o.name != "arith.constant" and dims[o.result] != every}
    readers: dict[str, set[str]] = {}
    for o in op.body.ops:
        for x in o.operands:
            readers.setdefault(x, set()).add(o.result)
    widening = [o for o in op.body.ops if o.name in _WIDENING]
    while trailing := [o for o in widening if o.result in prologue and o.result not in op.body.yields
                       and not readers.get(o.result, set()) & prologue]:
        prologue -= {o.result for o in trailing}
    return prologue | {x for o in op.body.ops if o.result in prologue for x in o.operands}


def hoist_recomputed_prologues(graph: Graph, tile: int = TilingOptions.default_tile_size) -> Graph:
    """``graph`` with the elementwise prologue of every contraction that computes it again per output tile a
    kernel of its own, where that pays by construction (``_own_kernel``; ``tile``: the default tile size).

    The front end's elementwise fusion (``linalg-fuse-elementwise-ops``) puts a single-use producer into its
    consumer: a LayerNorm's apply and the int8 quantization of its result, or GELU and its quantization, end up
    in the body of the projection reading them. There they vary with the reduction loop only, so the projection
    computes them once per point of its output loops as well: a paper-size GPT-2 decode block rebuilt the
    normalised, quantized row (1,024 elements) once per 16-column output tile of each of the Q, K and V
    projections, re-streaming the row and the norm's weight, bias and quantization multiplier from HBM 64
    times, and its MLP down projection computed GELU once per lane group (700 of its 832 DSPs) and streamed
    its bias and quantization multiplier (16 KiB each) 64 times. Hoisted, the
    prologue runs once per element of its own (smaller) domain and the contraction reads its int8 result from an
    on-chip buffer that replays it. A result larger than the small-tensor bound is hoisted only before a
    projection that expands (``_Use.expands``): a prefill block's normalised, quantized rows before its Q/K/V and
    up projections. Fused, those projections re-read the block's input from HBM once per output tile, in a
    packing of their own (so the host re-packed each layer's output for the next), and rebuilt the rows in every
    reduction lane; hoisted (W4A8, 32 tokens, paper size, modelled): GPT-2 249,735 -> 243,294 cycles, TinyLlama
    901,152 -> 577,184, Qwen2 (lane budget 512) 544,560 -> 373,059; GPT-2's input is then read in one packing, its
    output's, in 4-row token tiles, so its prefill layers chain on the device (``llm.perf``; in 2-row tiles its
    LayerNorm apply reads 2 x 64 tiles of rows written in 2 x 128 ones). Before a narrowing projection a large
    result is hoisted only when the prologue computes a math function other than rounding: fused, GPT-2's GELU
    (``tanh``) and its quantization were built in each of the down projection's 16 lane groups of a prefill block
    (704 of its 1,216 DSPs); hoisted (W4A8, 32 tokens, paper size, modelled), at the lane budget 2048 the DSPs go to
    the projections: 221,485 -> 158,532 cycles (at the default budget 1024 the lane budget, not the DSPs, then
    bounds the integer lanes: 259,624; the whole-model build chooses the budget,
    ``llm.estimate.compile_layer_block``); TinyLlama (SiLU's ``exp``) 559,468 -> 548,785 at 1024. So does a prologue
    that reads nothing from external memory (a LayerNorm's mean, its row sum divided by the width): it re-streams
    nothing, and as a kernel of its own in a paper-size GPT-2 prefill block it cost 62 KiB more FIFOs and 0.9% more
    cycles than the divisions it saved. And so does one whose result is as wide as the external data it reads (an
    f32 LayerNorm apply): there the tile order can read the row once (reduction loop outermost) at no cost in buffer
    bytes, and hoisted, the paper-size fp32 GPT-2 decode block's Q, K and V projections took 162,355 cycles
    against 130,954 fused."""
    taken = {v.name for v in graph.inputs} | {r.name for op in graph.ops for r in op.results}
    labels = {op.name for op in graph.ops if isinstance(op, GenericOp)}
    producers = graph.producers()
    ops: list[Op] = []
    for op in graph.ops:
        if not isinstance(op, GenericOp) or not op.reduction_dims:
            ops.append(op)
            continue
        needed = _prologue(op)
        label = next(f"elementwise_{k}" for k in range(1, len(labels) + 2) if f"elementwise_{k}" not in labels)
        split = _split_off(op, needed, label, taken) if needed else None
        if split is None:
            ops.append(op)
            continue
        (init, prologue), rest = split
        external = {op.inputs[j].name for j in external_operands(op, producers)}
        if not _own_kernel(prologue.results[0].type, prologue.body.ops,
                           [v.type for v in prologue.inputs if v.name in external],
                           [_use(rest, len(rest.inputs) - 1)], tile):
            ops.append(op)
            continue
        labels.add(label)
        ops += [init, prologue, rest]
    out = replace(graph, ops=ops)
    out.verify()
    return out
