"""Kernel-to-kernel edges of a Linalg graph: a kernel result reaching a kernel operand through reshapes, slices
and at most one concat; and the operands streamed from external memory instead."""

from __future__ import annotations

from dataclasses import dataclass

from streamtensor.ir.dataflow import reads_init
from streamtensor.ir.itensor import ITensorType, dtype_bits
from streamtensor.ir.layout import concat_regions
from streamtensor.ir.linalg import ConcatOp, GenericOp, Graph, Op, ReshapeOp, SliceOp
from streamtensor.transforms.tiling.liveness import fill_value

# An external tensor read by several kernels in one layout is read once and forked when it is this small: a fork
# ties its consumers together, so a consumer that runs late holds back the others by up to the whole tensor,
# which the fork's FIFOs must then buffer on chip (the FIFO sizing finds how much); a re-read costs an m_axi
# port and HBM bandwidth instead, the better trade for weights and long activations.
FORK_EXTERNAL_MAX_BYTES = 16 * 1024


def forks_external_read(t: ITensorType, scalar: bool) -> bool:
    """Whether reads of an external value in stream type ``t`` share one DMA, forked (scalars never do): the
    dataflow builder's rule, which the tiling's DMA model follows."""
    return not scalar and t.tensor_elements * dtype_bits(t.dtype) // 8 <= FORK_EXTERNAL_MAX_BYTES


@dataclass(frozen=True)
class MovementStep:
    """One Linalg data-movement op between two kernels: a reshape, or a slice (``offsets``/``sizes`` over
    ``source``; the result may drop unit dims)."""

    source: tuple[int, ...]
    result: tuple[int, ...]
    offsets: tuple[int, ...] | None = None  # None for a reshape
    sizes: tuple[int, ...] | None = None


@dataclass(frozen=True)
class KernelEdge:
    """A kernel result read by a kernel operand through reshapes / slices (``chain``, program order), possibly
    into input ``region`` (offsets, sizes) of a concat whose result reaches the operand through reshapes
    ``after``."""

    producer: int  # index into the kernel list
    result: int
    chain: tuple[MovementStep, ...]
    consumer: int
    operand: int
    region: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    after: tuple[MovementStep, ...] = ()


def trace_movement(name: str, producers: dict[str, Op]) -> tuple[str, Op | None, tuple[MovementStep, ...]]:
    """Walk back from value ``name`` over reshapes and slices: the value reached, its producer, the steps."""
    chain: list[MovementStep] = []
    source = producers.get(name)
    while isinstance(source, ReshapeOp | SliceOp):
        src, res = source.source.type.shape, source.results[0].type.shape
        chain.insert(0, MovementStep(src, res) if isinstance(source, ReshapeOp)
                     else MovementStep(src, res, tuple(source.offsets), tuple(source.sizes)))
        name, source = source.source.name, producers.get(source.source.name)
    return name, source, tuple(chain)


def kernel_edges(graph: Graph, ops: list[GenericOp]) -> list[KernelEdge]:
    """Every streamed operand of a kernel whose data comes from another kernel through reshapes, slices and at
    most one concat (values from external memory arrive through DMAs, which stream any order)."""
    producers = graph.producers()
    index = {op.name: i for i, op in enumerate(ops)}
    edges = []

    def add(name: str, c: int, j: int, region: tuple | None = None, after: tuple[MovementStep, ...] = ()) -> None:
        name, source, chain = trace_movement(name, producers)
        if isinstance(source, GenericOp) and source.name in index:
            result = next(r for r, value in enumerate(source.results) if value.name == name)
            edges.append(KernelEdge(index[source.name], result, chain, c, j, region, after))
        elif isinstance(source, ConcatOp) and region is None and all(step.offsets is None for step in chain):
            shapes = [v.type.shape for v in source.inputs]
            for value, place in zip(source.inputs, concat_regions(shapes, source.dim), strict=True):
                add(value.name, c, j, place, chain)

    for c, op in enumerate(ops):
        n_in = len(op.inputs)
        for j, v in enumerate(op.operands):
            if j >= n_in and (not reads_init(op, j - n_in) or fill_value(graph, v.name, producers) is not None):
                continue  # an unread or folded init has no stream
            add(v.name, c, j)
    return edges


def external_operands(op: GenericOp, producers: dict[str, Op]) -> set[int]:
    """Input operands of ``op`` streamed from external memory (block inputs, weights, constants, and reshapes
    or slices of them)."""
    return {j for j, v in enumerate(op.inputs)
            if not isinstance(trace_movement(v.name, producers)[1], GenericOp | ConcatOp)}
