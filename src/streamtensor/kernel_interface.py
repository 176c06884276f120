"""The kernel's external-memory interface: the ABI shared by the code generator, the project writer and the
host runtimes.

Each external-memory argument (``MemoryArgument``) is the buffer of one DMA node in the packed layout of its
stream (``streamtensor.packing``); an ``HbmPlan`` lists the arguments in signature order with their HBM
pseudo-channels; ``KernelInterface`` is that plan plus the project's executables, stored as ``kernel.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from streamtensor._version import GENERATOR
from streamtensor.errors import StreamTensorError
from streamtensor.ir.itensor import ITensorType, parse_itensor_type
from streamtensor.ir.linalg import ReshapeOp, SliceOp
from streamtensor.packing import WORD_BITS, PackedLayout, pack, unpack

SIM_EXECUTABLE = "build/csim/block_sim"
INTERFACE_FILE = "kernel.json"
PARAMS_DIR = "params"
EXPECTED_DIR = "check/expected"  # PyTorch's outputs, packed, for the self-checking testbench


@dataclass(frozen=True)
class ViewStep:
    """One op of a DMA view as array code: an optional strided slice ``(offset, size, stride)`` per dim, then a
    row-major reshape to ``shape`` (the semantics of ``ir.dataflow.apply_view``)."""

    shape: tuple[int, ...]
    slice: tuple[tuple[int, int, int], ...] | None = None

    @classmethod
    def of(cls, op: ReshapeOp | SliceOp) -> ViewStep:
        shape = tuple(op.results[0].type.shape)
        if isinstance(op, SliceOp):
            return cls(shape, tuple(zip(op.offsets, op.sizes, op.strides, strict=True)))
        return cls(shape)

    def apply(self, array: np.ndarray) -> np.ndarray:
        if self.slice is not None:
            array = array[tuple(slice(o, o + n * s, s) for o, n, s in self.slice)]
        return array.reshape(self.shape)


@dataclass(frozen=True)
class MemoryArgument:
    """One external-memory kernel argument: the buffer of one DMA node, in the packed layout of its stream.

    A read DMA streams ``view(tensor)``; a write DMA stores ``view(streamed tensor)`` as the tensor."""

    name: str  # tensor name in the graph (several arguments may share it)
    arg: str  # C identifier, unique per kernel: kernel argument, m_axi port and file name
    dma: str  # DMA node name
    direction: str  # "read" | "write" | "readwrite" (a KV cache updated in place)
    role: str  # "input" | "weight" | "kv_cache" | "constant" | "output" | "scalar"
    itype: ITensorType  # the stream's type: its tensor is the streamed (viewed) tensor
    tensor_shape: tuple[int, ...]  # shape of the tensor itself
    view: tuple[ViewStep, ...] = ()
    # The argument whose buffer this one addresses (the row write of a cache updated in place: its own m_axi
    # port, as a dataflow region gives each pointer one process, on the cache's buffer); None: its own buffer.
    shares: str | None = None
    # Stripe ``stripe`` of ``stripes`` of the DMA's buffer (``packing``, module docstring): one argument, m_axi
    # port and buffer per stripe of a striped DMA.
    stripe: int = 0
    stripes: int = 1

    @cached_property
    def layout(self) -> PackedLayout:
        """The layout of this argument's buffer: the DMA's, or its stripe of it."""
        whole = PackedLayout.of(self.itype)
        return whole if self.stripes == 1 else whole.striped(self.stripe, self.stripes)

    @property
    def reads(self) -> bool:
        return self.direction in ("read", "readwrite")

    @property
    def writes(self) -> bool:
        return self.direction in ("write", "readwrite")

    @property
    def scalar(self) -> bool:
        """Passed by value in a control register (``s_axilite``), not through memory; its file and host buffer
        hold the packed value like any read argument's."""
        return self.role == "scalar"

    @property
    def buffer(self) -> str:
        """The argument owning the buffer this one addresses (itself unless it ``shares``)."""
        return self.shares or self.arg

    def pack_tensor(self, array: np.ndarray) -> bytes:
        """The buffer of a read argument: ``view(array)`` in the packed layout (``array`` is the whole tensor)."""
        data = self.pack_whole(array)
        return data if self.stripes == 1 else self.layout.take_stripe(data)

    def pack_whole(self, array: np.ndarray) -> bytes:
        """The whole buffer of the DMA this argument is a stripe of (``pack_tensor`` takes its stripe): the same
        bytes for every stripe of one DMA, so ``pack_arguments`` packs them once."""
        array = np.asarray(array)
        if array.shape != self.tensor_shape:
            raise ValueError(f"tensor {self.name} has shape {self.tensor_shape}, got an array of shape {array.shape}")
        for step in self.view:
            array = step.apply(array)
        return pack(self.itype, array)

    def unpack_tensor(self, data: bytes) -> np.ndarray:
        """The tensor a write argument's buffer stores: ``view(unpacked stream tensor)``."""
        if self.stripes > 1:  # only read-only buffers are striped (``DmaNode.stripes``)
            raise StreamTensorError(f"argument {self.arg} is stripe {self.stripe} of {self.stripes} of a read-only "
                                    "buffer: nothing to unpack")
        array = unpack(self.itype, data)
        if self.direction == "readwrite":  # the cache as read: its view only adds or drops unit dims
            return array.reshape(self.tensor_shape)
        for step in self.view:
            array = step.apply(array)
        return array


def pack_arguments(pairs: Iterable[tuple[MemoryArgument, np.ndarray]]) -> list[bytes]:
    """``arg.pack_tensor(array)`` of every pair, the whole buffer of one DMA packed once for all its stripes (a
    paper-size weight striped over 8 HBM channels was packed 8 times: a second of a compile per weight)."""
    # Keyed by the array's identity; the entry holds the array, so no later array can take its id.
    whole: dict[tuple[int, ITensorType, tuple[ViewStep, ...]], tuple[np.ndarray, bytes]] = {}
    out = []
    for arg, array in pairs:
        if arg.stripes == 1:
            out.append(arg.pack_tensor(array))
            continue
        key = (id(array), arg.itype, arg.view)
        if key not in whole:
            whole[key] = (array, arg.pack_whole(array))
        out.append(arg.layout.take_stripe(whole[key][1]))
    return out


@dataclass(frozen=True)
class HbmAssignment:
    """One argument on a consecutive range of HBM pseudo-channels."""

    argument: MemoryArgument
    first: int  # first pseudo-channel
    last: int  # last pseudo-channel (inclusive)

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(range(self.first, self.last + 1))

    @property
    def bank(self) -> str:
        """The memory bank as v++ spells it: ``HBM[3]`` or ``HBM[0:1]``."""
        return f"HBM[{self.first}]" if self.first == self.last else f"HBM[{self.first}:{self.last}]"


@dataclass(frozen=True)
class HbmPlan:
    """The kernel's arguments in signature order, each with its HBM pseudo-channels."""

    kernel_name: str
    assignments: tuple[HbmAssignment, ...]  # in kernel argument order
    scalars: tuple[MemoryArgument, ...] = ()  # the scalar arguments, after the memory ones in the signature
    # m_axi bundle of every memory argument (by C identifier); arguments on one bundle share one port
    bundles: Mapping[str, str] = field(default_factory=dict)

    @property
    def compute_unit(self) -> str:
        return f"{self.kernel_name}_1"

    @property
    def arguments(self) -> tuple[MemoryArgument, ...]:
        """Every kernel argument in signature order: the memory arguments, then the scalars."""
        return tuple(a.argument for a in self.assignments) + self.scalars

    def bundle(self, arg: str) -> str:
        """The m_axi bundle of a memory argument (``gmem<i>``, its own, unless bundled with others)."""
        if arg in self.bundles:
            return self.bundles[arg]
        return f"gmem{[a.argument.arg for a in self.assignments].index(arg)}"

    @property
    def ports(self) -> int:
        """m_axi ports: one per bundle."""
        return len({self.bundle(a.argument.arg) for a in self.assignments})

    def assignment(self, arg: str) -> HbmAssignment:
        """The assignment of an argument, by its C identifier."""
        for a in self.assignments:
            if a.argument.arg == arg:
                return a
        raise KeyError(f"{arg!r} is not an external-memory argument of {self.kernel_name}")


def view_json(view: tuple[ViewStep, ...]) -> list[dict[str, Any]]:
    return [{"shape": list(v.shape), "slice": None if v.slice is None else [list(d) for d in v.slice]} for v in view]


def _view_from_json(data: list[dict[str, Any]]) -> tuple[ViewStep, ...]:
    return tuple(
        ViewStep(tuple(v["shape"]), None if v["slice"] is None else tuple(tuple(d) for d in v["slice"]))
        for v in data
    )


def layout_json(layout: PackedLayout) -> dict[str, Any]:
    """The packed layout of an argument as recorded in kernel.json and the parameter manifest."""
    t = layout.itype
    return {
        "itensor": str(t),
        "element_shape": list(t.element_shape),
        "trip_counts": list(t.trip_counts),
        "steps": list(t.steps),
        "iter_map": str(t.iter_map),
        "words_per_tile": layout.words_per_tile,
        "num_tiles": layout.num_tiles,
        "word_strides": list(layout.word_strides),
        "padding_bytes": layout.padding_bytes,
        "total_bytes": layout.total_bytes,
        "stripe": layout.stripe,
        "stripes": layout.stripes,
    }


@dataclass(frozen=True)
class KernelInterface:
    """What a runtime needs from a project: the arguments with their layouts and banks, and the executables."""

    plan: HbmPlan
    clock_mhz: int
    sim_executable: str  # relative to the project
    xclbin: str  # relative to the project

    def to_json(self) -> dict[str, Any]:
        return {
            "generator": GENERATOR,
            "kernel": self.plan.kernel_name,
            "compute_unit": self.plan.compute_unit,
            "clock_mhz": self.clock_mhz,
            "word_bits": WORD_BITS,
            "sim_executable": self.sim_executable,
            "xclbin": self.xclbin,
            "arguments": [
                {
                    "index": i,
                    "name": a.argument.name,
                    "arg": a.argument.arg,
                    "dma": a.argument.dma,
                    "direction": a.argument.direction,
                    "role": a.argument.role,
                    "tensor_shape": list(a.argument.tensor_shape),
                    "view": view_json(a.argument.view),
                    "bank": a.bank,
                    "channels": list(a.channels),
                    "bundle": self.plan.bundle(a.argument.arg),
                    "shares": a.argument.shares,
                    "layout": layout_json(a.argument.layout),
                }
                for i, a in enumerate(self.plan.assignments)
            ] + [
                {
                    "index": len(self.plan.assignments) + i,
                    "name": a.name,
                    "arg": a.arg,
                    "dma": a.dma,
                    "direction": a.direction,
                    "role": a.role,
                    "tensor_shape": list(a.tensor_shape),
                    "view": view_json(a.view),
                    "bank": None,
                    "channels": [],
                    "bundle": "control",
                    "shares": None,
                    "layout": layout_json(a.layout),
                }
                for i, a in enumerate(self.plan.scalars)
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KernelInterface:
        arguments = [
            MemoryArgument(
                name=a["name"],
                arg=a["arg"],
                dma=a["dma"],
                direction=a["direction"],
                role=a["role"],
                itype=parse_itensor_type(a["layout"]["itensor"]),
                tensor_shape=tuple(a["tensor_shape"]),
                view=_view_from_json(a["view"]),
                shares=a.get("shares"),
                stripe=a["layout"].get("stripe", 0),
                stripes=a["layout"].get("stripes", 1),
            )
            for a in data["arguments"]
        ]
        assignments = tuple(HbmAssignment(m, a["channels"][0], a["channels"][-1])
                            for m, a in zip(arguments, data["arguments"], strict=True) if not m.scalar)
        bundles = {a["arg"]: a["bundle"] for a in data["arguments"] if a["channels"] and "bundle" in a}
        plan = HbmPlan(data["kernel"], assignments, tuple(m for m in arguments if m.scalar), bundles)
        return cls(plan, data["clock_mhz"], data["sim_executable"], data["xclbin"])


def load_kernel_interface(project_dir: str | Path) -> KernelInterface:
    path = Path(project_dir) / INTERFACE_FILE
    if not path.is_file():
        raise StreamTensorError(f"{path} not found: not a streamtensor Vitis project (see write_project)")
    return KernelInterface.from_json(json.loads(path.read_text()))


def simulation_build_command(project_dir: str | Path) -> list[str]:
    """Builds the project's simulation executable (the Makefile's rule for it)."""
    return ["make", "-C", str(project_dir), SIM_EXECUTABLE]
