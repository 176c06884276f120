"""Backend-neutral host interface to a generated kernel: the same program drives the simulation and a board.

The model is XRT's: every external-memory argument has a host buffer and a device buffer. ``write`` packs an
array into the host buffer (``streamtensor.packing``), ``sync(name, "to_device")`` copies it to the
device, ``run`` executes the kernel once on the device buffers, ``sync(name, "from_device")`` copies results
back, and ``read`` unpacks the host buffer. Forgetting a sync therefore fails the same way on every backend.

Names are tensor names or argument identifiers. A tensor read by several DMAs has one argument (buffer) per
DMA (``codegen.vitis.hbm.memory_arguments``), except DMAs of a block input whose buffers would be the same bytes,
which share one: ``write(tensor, array)`` packs each DMA's view of the whole array into its buffer (a shared one
once), and ``allocate`` / ``sync`` by tensor name act on all of them (a shared buffer synced once).

``bind`` makes an input buffer of one runtime the output buffer (or a sub-buffer of it) of another runtime of the
same backend, as a host program passes one kernel's output ``xrt::bo`` to the next kernel: the next run reads what
the previous one wrote on the device, with no sync and no copy. An output buffer bound so (a prefill kernel's keys
into the decode kernel's resident cache buffer) is written where the other kernel reads it. ``pool_buffers`` gives
one argument of several runtimes of a kernel (one per layer) one host and device buffer, each runtime's a slice of
it (a sub-buffer): one sync moves all of them.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from streamtensor.errors import OptionError, StreamTensorError
from streamtensor.kernel_interface import KernelInterface, MemoryArgument, load_kernel_interface

SyncDirection = Literal["to_device", "from_device"]


class RuntimeBackendError(StreamTensorError):
    """A runtime call failed: unknown argument, wrong order of calls, or the backend reported an error."""


@dataclass(frozen=True)
class StreamReport:
    """Statistics of one stream at one exit of its dataflow region (one JSON line of the simulation report)."""

    region: str
    stream: str
    depth: int  # 0: unbounded
    high_water: int  # peak occupancy in tokens
    tokens: int  # tokens written since the stream was created
    leftover: int
    producer: str
    consumer: str

    @classmethod
    def parse_lines(cls, text: str) -> tuple[StreamReport, ...]:
        return tuple(cls(**json.loads(line)) for line in text.splitlines() if line.strip())


@dataclass(frozen=True)
class RunResult:
    backend: str
    seconds: float  # wall-clock time of the kernel run
    streams: tuple[StreamReport, ...] = ()  # empty when the backend reports none (XRT)
    # bytes (read, written) per buffer-owning argument, as the tile loads and stores counted them (simulation)
    traffic: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def high_water_marks(self) -> dict[str, int]:
        """Peak occupancy per stream name (the maximum over region exits)."""
        marks: dict[str, int] = {}
        for s in self.streams:
            marks[s.stream] = max(marks.get(s.stream, 0), s.high_water)
        return marks


@dataclass(frozen=True)
class BufferPool:
    """One host and device buffer holding the buffer of argument ``arg`` of each of ``runtimes`` in turn
    (``pool_buffers``)."""

    runtimes: tuple[Runtime, ...]
    arg: MemoryArgument
    handle: object  # the backend's buffer

    @property
    def total_bytes(self) -> int:
        return len(self.runtimes) * self.arg.layout.total_bytes

    def sync(self, direction: SyncDirection) -> None:
        """Copy every runtime's buffer of the pool to (from) the device at once: one buffer sync."""
        if direction not in ("to_device", "from_device"):
            raise OptionError(f"sync direction must be 'to_device' or 'from_device', got {direction!r}")
        self.runtimes[0]._sync_pool(self.handle, direction == "to_device")


def pool_buffers(runtimes: Sequence[Runtime], name: str) -> BufferPool:
    """The buffer of argument ``name`` (one buffer: not a scalar, not another's) of each of ``runtimes`` (one
    kernel loaded several times, of one backend) becomes a slice of one buffer, in their order, as
    ``xrt::bo(parent, size, offset)`` sub-buffers of one parent: zeroed, written and read as before, and synced
    all at once by the pool (``BufferPool.sync``). Before any ``bind`` to them."""
    first = runtimes[0]
    owners = [a for a in first.arguments_named(name) if a.shares is None and not a.scalar]
    if len(owners) != 1:
        raise RuntimeBackendError(f"{name!r} names {len(owners)} buffers of kernel "
                                  f"{first.interface.plan.kernel_name}; a pool needs exactly one")
    if any(type(r) is not type(first) or r.interface.plan.kernel_name != first.interface.plan.kernel_name
           for r in runtimes):
        raise RuntimeBackendError(f"a pool of {owners[0].arg} needs runtimes of one kernel on one backend")
    handle = first._make_pool(owners[0], len(runtimes))
    for i, runtime in enumerate(runtimes):
        runtime.allocate(owners[0].arg)
        runtime._join_pool(owners[0], handle, i * owners[0].layout.total_bytes)
    return BufferPool(tuple(runtimes), owners[0], handle)


class Runtime(ABC):
    """Loads a project (``write_project``'s output), then moves tensors and runs the kernel (module docstring)."""

    backend: str

    def __init__(self) -> None:
        self._interface: KernelInterface | None = None
        self._allocated: set[str] = set()

    @property
    def interface(self) -> KernelInterface:
        if self._interface is None:
            raise RuntimeBackendError(f"{self.backend} runtime: call load(project_dir) first")
        return self._interface

    @property
    def arguments(self) -> tuple[MemoryArgument, ...]:
        return self.interface.plan.arguments

    def load(self, project_dir: str | Path) -> None:
        interface = load_kernel_interface(project_dir)
        self._load(Path(project_dir), interface)
        self._interface = interface
        self._allocated.clear()

    def arguments_named(self, name: str) -> tuple[MemoryArgument, ...]:
        """The argument with this C identifier, else every argument of the tensor with this name."""
        by_arg = tuple(a for a in self.arguments if a.arg == name)
        found = by_arg or tuple(a for a in self.arguments if a.name == name)
        if not found:
            known = ", ".join(dict.fromkeys(a.name for a in self.arguments))
            raise RuntimeBackendError(
                f"{name!r} is not a tensor or argument of kernel {self.interface.plan.kernel_name} ({known})"
            )
        return found

    def allocate(self, name: str) -> tuple[MemoryArgument, ...]:
        """Create the host and device buffers of the named arguments (zeroed; idempotent)."""
        args = self.arguments_named(name)
        for arg in args:
            if arg.arg not in self._allocated:
                self._allocate(arg)
                self._allocated.add(arg.arg)
        return args

    def _allocated_arguments(self, name: str) -> tuple[MemoryArgument, ...]:
        args = self.arguments_named(name)
        for arg in args:
            if arg.arg not in self._allocated:
                raise RuntimeBackendError(f"argument {arg.arg} is not allocated: call allocate({arg.name!r}) first")
        return args

    def write(self, name: str, array: np.ndarray) -> None:
        """Pack the whole tensor ``array`` into the host buffer of every named argument the kernel reads
        (allocating them if needed)."""
        args = [a for a in self.arguments_named(name) if a.reads]
        if not args:
            raise RuntimeBackendError(f"{name!r} is not read by kernel {self.interface.plan.kernel_name}")
        owners = {a.arg for a in args}
        for arg in args:
            self.allocate(arg.arg)
            if arg.shares not in owners:  # else the same bytes in the same buffer: packed once, by its owner
                self._write(arg, arg.pack_tensor(array))

    def write_packed(self, arg: str, data: bytes) -> None:
        """Copy an argument's buffer as stored on disk (a packed parameter file, ``params/<arg>.bin``) into its
        host buffer, as a board's host program loads weights: no unpacking, no view."""
        found = [a for a in self.arguments if a.arg == arg]
        if not found:
            raise RuntimeBackendError(f"{arg!r} is not an argument of kernel {self.interface.plan.kernel_name}")
        argument = found[0]
        if len(data) != argument.layout.total_bytes:
            raise RuntimeBackendError(f"packed data for {arg} has {len(data)} bytes, its layout has "
                                      f"{argument.layout.total_bytes}")
        self.allocate(argument.arg)
        self._write(argument, data)

    def sync(self, name: str, direction: SyncDirection) -> None:
        if direction not in ("to_device", "from_device"):
            raise OptionError(f"sync direction must be 'to_device' or 'from_device', got {direction!r}")
        synced: set[str] = set()
        for arg in self._allocated_arguments(name):
            if arg.buffer not in synced:  # arguments sharing a buffer: one sync
                synced.add(arg.buffer)
                self._sync(arg, direction == "to_device")

    def bind(self, name: str, source: Runtime, source_name: str, offset: int = 0) -> None:
        """The kernel reads its input ``name`` (or writes its output ``name``) in ``source``'s device buffer of the
        argument ``source_name`` (one another kernel, or another runtime of this one, writes), from byte
        ``offset`` on: one buffer on the device, no copy and no sync (a sub-buffer, as ``xrt::bo(parent, size,
        offset)``). Writing or syncing ``name`` afterwards acts on ``source``'s buffer; ``unbind`` gives it its
        own buffer again."""
        owner = self._bound_owner(name)
        found = [a for a in source.arguments_named(source_name) if a.writes and a.shares is None]
        if len(found) != 1 or type(source) is not type(self):
            raise RuntimeBackendError(f"{source_name!r} is not one output buffer of a {self.backend} runtime")
        if offset < 0 or offset + owner.layout.total_bytes > found[0].layout.total_bytes:
            raise RuntimeBackendError(f"{owner.arg} ({owner.layout.total_bytes} bytes) does not fit in "
                                      f"{found[0].arg} ({found[0].layout.total_bytes} bytes) at offset {offset}")
        source.allocate(found[0].arg)
        self.allocate(name)
        self._bind(owner, source, found[0], offset)

    def unbind(self, name: str) -> None:
        """The kernel reads its input (writes its output) ``name`` in a (zeroed) buffer of its own again."""
        owner = self._bound_owner(name)
        self.allocate(name)
        self._unbind(owner)

    def _bound_owner(self, name: str) -> MemoryArgument:
        """The one buffer ``name`` names that may be bound: only read, or only written."""
        owners = [a for a in self.arguments_named(name) if a.reads != a.writes and a.shares is None and not a.scalar]
        if len(owners) != 1:
            raise RuntimeBackendError(f"{name!r} names {len(owners)} input or output buffers of kernel "
                                      f"{self.interface.plan.kernel_name}; binding needs exactly one")
        return owners[0]

    def run(self) -> RunResult:
        """Run the kernel once on the device buffers; every argument must be allocated."""
        missing = [a.name for a in self.arguments if a.arg not in self._allocated]
        if missing:
            raise RuntimeBackendError(f"allocate every argument before run(); missing: {', '.join(missing)}")
        return self._run()

    def read(self, name: str) -> np.ndarray:
        """The tensor in the host buffer of the named argument the kernel writes (after ``sync(name,
        "from_device")``)."""
        args = [a for a in self._allocated_arguments(name) if a.writes]
        if len(args) != 1:
            raise RuntimeBackendError(
                f"{name!r} names {len(args)} arguments written by kernel {self.interface.plan.kernel_name}; "
                "read needs exactly one (name it by its argument identifier)"
            )
        return args[0].unpack_tensor(self._read(args[0]))

    # Backend hooks: buffers are whole packed layouts (``arg.layout.total_bytes`` bytes).
    @abstractmethod
    def _load(self, project_dir: Path, interface: KernelInterface) -> None: ...

    @abstractmethod
    def _allocate(self, arg: MemoryArgument) -> None: ...

    @abstractmethod
    def _write(self, arg: MemoryArgument, data: bytes) -> None: ...

    @abstractmethod
    def _sync(self, arg: MemoryArgument, to_device: bool) -> None: ...

    @abstractmethod
    def _run(self) -> RunResult: ...

    @abstractmethod
    def _read(self, arg: MemoryArgument) -> bytes: ...

    @abstractmethod
    def _bind(self, arg: MemoryArgument, source: Runtime, source_arg: MemoryArgument, offset: int) -> None: ...

    @abstractmethod
    def _unbind(self, arg: MemoryArgument) -> None: ...

    @abstractmethod
    def _make_pool(self, arg: MemoryArgument, count: int) -> object:
        """A zeroed host and device buffer of ``count`` buffers of ``arg``."""

    @abstractmethod
    def _join_pool(self, arg: MemoryArgument, pool: object, offset: int) -> None:
        """``arg``'s host and device buffer become ``pool``'s from byte ``offset`` on."""

    @abstractmethod
    def _sync_pool(self, pool: object, to_device: bool) -> None: ...
