"""External-memory arguments of a kernel and their placement on the target's HBM pseudo-channels (spec §1, §2).

Every DMA node of a dataflow graph is one kernel argument with its own m_axi bundle and its own buffer, holding
the DMA's streamed tensor (its view of the tensor: Linalg reshapes/slices) in the packed layout of its stream
type. A tensor read by several DMAs (one per consumer, each with its own layout or slice) thus has one buffer
per DMA, packed from the same host array, except that the DMAs of a block input (an activation the host writes
every run) whose buffers would be byte for byte the same (the same stripe of the same packing, whatever their
views and stream types) read the first one's buffer (``MemoryArgument.shares``): the host packs and syncs it
once. Their ports are on that buffer's channels, where the placement puts every DMA of the tensor anyway (stripe
``j`` of each on its ``j``-th range).

The arguments go on the HBM pseudo-channels the timing model charged their DMAs to: ``plan_hbm`` asks the one
placement model, ``analysis.hbm`` (a read-only DMA's buffer placed on its own, a KV cache's DMAs together;
stripe ``j`` of every DMA of such a unit on its ``j``-th channel range, units spread round-robin by bandwidth
demand within the target's capacity and interfaces per channel), with the same buffers and stripes (a striped
DMA: one argument and ``sp=`` line per stripe); a range of several PCs is ``HBM[a:b]``. When nothing fits,
planning fails with ``HbmPlanError``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from streamtensor.analysis.hbm import HbmPlanError, place_tensors, streamed_tensors
from streamtensor.analysis.timing_model import placement_units, serial_dmas
from streamtensor.errors import StreamTensorError
from streamtensor.ir.dataflow import DataflowGraph, DmaNode
from streamtensor.kernel_interface import HbmAssignment, HbmPlan, MemoryArgument, ViewStep
from streamtensor.packing import PackedLayout
from streamtensor.target import HbmSpec, Target

_CPP_KEYWORDS = frozenset(
    "alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t char32_t class "
    "compl concept const consteval constexpr constinit const_cast continue co_await co_return co_yield decltype "
    "default delete do double dynamic_cast else enum explicit export extern false float for friend goto if inline "
    "int long mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected public "
    "register reinterpret_cast requires return short signed sizeof static static_assert static_cast struct switch "
    "template this thread_local throw true try typedef typeid typename union unsigned using virtual void volatile "
    "wchar_t while xor xor_eq main".split()
)


def c_identifier(name: str) -> str:
    """A C identifier for a tensor name: other characters become ``_``; a leading digit or keyword gets a prefix."""
    ident = re.sub(r"\W", "_", name, flags=re.ASCII)
    if not ident or ident[0].isdigit() or ident in _CPP_KEYWORDS:
        ident = f"t_{ident}"
    return ident


def memory_arguments(graph: DataflowGraph) -> list[MemoryArgument]:
    """The kernel's arguments in signature order: one per DMA node, in topological order, then one per scalar.

    An argument is named after its tensor, with ``_<k>`` (k-th DMA of it) when the tensor has several DMAs. A
    KV cache updated in place is one buffer: its read argument is ``readwrite`` and its row write an argument
    ``<cache>_row`` sharing that buffer; a block input's DMA whose buffer would equal an earlier DMA's shares
    that one's (module docstring). A DMA striped over ``J`` pseudo-channels (``DmaNode.stripes``) is ``J``
    arguments ``<name>_s<j>``, one per stripe. The scalar DMAs of one input are one scalar argument."""
    dmas = [node for n in graph.topological_order() if isinstance(node := graph.nodes[n], DmaNode)]
    memory = [d for d in dmas if d.role != "scalar"]
    per_tensor = Counter(d.tensor.name for d in memory if d.rows is None or d.rows.into is None)
    updated = {d.rows.into for d in memory if d.rows is not None and d.rows.into is not None}
    seen: Counter[str] = Counter()
    args: list[MemoryArgument] = []
    scalars: dict[str, MemoryArgument] = {}
    for d in dmas:
        (stream,) = d.outputs if d.direction == "read" else d.inputs
        itype = graph.streams[stream].type
        view = tuple(ViewStep.of(op) for op in d.view)
        tensor_shape = tuple(d.tensor.type.shape)
        # The view maps the tensor to the stream's tensor (read) or the stream's tensor to the tensor (write).
        source, target = (tensor_shape, itype.tensor_shape)
        if d.direction == "write":
            source, target = target, source
        if (view[-1].shape if view else source) != target:
            raise StreamTensorError(f"DMA {d.name}: its view of shape {source} does not give shape {target}")
        name = d.tensor.name
        if d.role == "scalar":
            scalars.setdefault(name, MemoryArgument(name, c_identifier(name), d.name, "read", "scalar", itype,
                                                    tensor_shape, view))
            continue
        if d.rows is not None and d.rows.into is not None:
            owner = next(a.arg for a in args if a.name == d.rows.into)
            args.append(MemoryArgument(name, c_identifier(f"{d.rows.into}_row"), d.name, "write", d.role, itype,
                                       tensor_shape, view, shares=owner))
            continue
        base = name if per_tensor[name] == 1 else f"{name}_{seen[name]}"
        seen[name] += 1
        direction = "readwrite" if name in updated else d.direction
        # A striped DMA: one argument (m_axi port, buffer) per stripe, ``<arg>_s<j>``.
        for j in range(d.stripes):
            ident = c_identifier(base if d.stripes == 1 else f"{base}_s{j}")
            args.append(MemoryArgument(name, ident, d.name, direction, d.role, itype, tensor_shape, view,
                                       stripe=j, stripes=d.stripes))
    args = _share_identical_inputs(args)
    args.extend(scalars.values())
    taken: dict[str, str] = {}
    for a in args:
        if a.arg in taken:
            raise StreamTensorError(f"DMAs {taken[a.arg]} and {a.dma} both map to the C identifier {a.arg}")
        taken[a.arg] = a.dma
    return args


# Inputs up to this many elements are compared by packing their element indices as f32 (exact below 2^24).
_EXACT_F32 = 1 << 24


def _input_fingerprint(arg: MemoryArgument) -> bytes | None:
    """Where each element of a block input lands in this argument's buffer (its indices packed as the argument
    packs the tensor), or None for any other argument: two arguments with the same fingerprint hold the same
    bytes for every input array, whatever their views and stream types say."""
    if arg.role != "input" or arg.direction != "read" or arg.shares is not None or arg.itype.dtype != "f32":
        return None
    count = math.prod(arg.tensor_shape)
    if count >= _EXACT_F32:
        return None
    return arg.pack_tensor(np.arange(1, count + 1, dtype=np.float32).reshape(arg.tensor_shape))


def _share_identical_inputs(args: list[MemoryArgument]) -> list[MemoryArgument]:
    """Every block-input argument whose buffer would hold the same bytes as an earlier one's (same stripe of the
    same tensor) addresses that one's buffer instead (module docstring)."""
    first: dict[tuple[str, int, int, bytes], str] = {}
    out = []
    for a in args:
        fingerprint = _input_fingerprint(a)
        if fingerprint is None:
            out.append(a)
            continue
        owner = first.setdefault((a.name, a.stripes, a.stripe, fingerprint), a.arg)
        out.append(a if owner == a.arg else replace(a, shares=owner))
    return out


def kernel_slr(target: Target) -> str:
    """Where a kernel that fits one die is pinned: the SLR its HBM attaches to."""
    return f"SLR{target.hbm.slr}"


def graph_hbm_plan(graph: DataflowGraph, kernel_name: str, hbm: HbmSpec) -> HbmPlan:
    """:func:`plan_hbm` of the graph's arguments, in stage order where its DMAs run one stage after another
    (``analysis.timing_model.serial_dmas``), as the timing model places them."""
    return plan_hbm(memory_arguments(graph), kernel_name, hbm, serial_dmas(graph),
                    placement_units(graph, hbm))


def plan_hbm(arguments: Sequence[MemoryArgument], kernel_name: str, hbm: HbmSpec, serial: bool = False,
             units: Mapping[str, str] | None = None) -> HbmPlan:
    """Every memory argument on its tensor's pseudo-channels (see the module docstring; an argument sharing a
    buffer on that buffer's), the scalars apart. Arguments on the same channel range share one m_axi bundle:
    their DMAs already split that range's bandwidth, so one port serves them at the modelled rate."""
    names = [a.arg for a in arguments]
    if len(set(names)) != len(names):
        raise HbmPlanError(f"duplicate argument names in {names}")
    memory = [a for a in arguments if not a.scalar]
    tensor_of = {a.arg: a.name for a in memory}
    # One buffer per DMA (its whole layout), striped as its arguments say; a plain read's buffer is placed on its
    # own, a cache's read and row write together (``DmaNode.placement_name``).
    # ``units`` (by DMA, ``analysis.timing_model.placement_units``) overrides where the graph says so.
    unit = {a.arg: (units or {}).get(a.dma) or (a.dma if a.direction == "read" and a.role != "kv_cache"
                                                  else tensor_of[a.buffer]) for a in memory}
    whole = {a.dma: (unit[a.arg], a.dma, PackedLayout.of(a.itype)) for a in memory}
    stripes = {unit[a.arg]: a.stripes for a in memory}
    placement = place_tensors(streamed_tensors(whole.values(), stripes), hbm, serial)
    assignments = tuple(HbmAssignment(a, *placement.dma_ranges[a.dma][a.stripe]) for a in memory)
    ranges = list(dict.fromkeys((a.first, a.last) for a in assignments))
    bundles = {a.argument.arg: f"gmem{ranges.index((a.first, a.last))}" for a in assignments}
    return HbmPlan(kernel_name, assignments, tuple(a for a in arguments if a.scalar), bundles)


def interfaces_per_channel(plan: HbmPlan, hbm: HbmSpec) -> list[int]:
    """How many kernel interfaces each pseudo-channel carries."""
    counts = [0] * hbm.channels
    for a in plan.assignments:
        for c in a.channels:
            counts[c] += 1
    return counts
