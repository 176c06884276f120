"""XRT backend: runs the kernel on an Alveo board through XRT's Python binding ``pyxrt``.

``pyxrt`` ships with XRT (not on PyPI) and is imported only when this backend is created, so everything else
works on machines without XRT. Buffers are ``pyxrt.bo`` objects in the HBM bank that ``link.cfg`` connected to
each argument (``kernel.group_id(index)``).
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from streamtensor.kernel_interface import KernelInterface, MemoryArgument
from streamtensor.runtime.host import RunResult, Runtime, RuntimeBackendError


class XrtUnavailableError(RuntimeBackendError):
    """The XRT backend was chosen but its Python module ``pyxrt`` cannot be imported."""


def _import_pyxrt() -> ModuleType:
    try:
        return importlib.import_module("pyxrt")
    except ImportError as err:
        raise XrtUnavailableError(
            "the XRT backend needs the Python module 'pyxrt', which is not importable here "
            f"({err}); install AMD XRT (https://xilinx.github.io/XRT) and `source /opt/xilinx/xrt/setup.sh` so "
            "pyxrt is on PYTHONPATH, or use backend='sim' (needs only g++)"
        ) from err


class XrtBackend(Runtime):
    """``load`` programs the device with the project's xclbin (``make link``) or ``xclbin`` if given."""

    backend = "xrt"

    def __init__(self, device_index: int = 0, xclbin: str | Path | None = None) -> None:
        super().__init__()
        self._pyxrt = _import_pyxrt()
        self.device_index = device_index
        self.xclbin = xclbin
        self._device: Any = None
        self._kernel: Any = None
        self._bos: dict[str, Any] = {}
        self._scalars: dict[str, bytes] = {}

    def _load(self, project_dir: Path, interface: KernelInterface) -> None:
        xclbin = Path(self.xclbin) if self.xclbin is not None else project_dir / interface.xclbin
        if not xclbin.is_file():
            raise RuntimeBackendError(f"{xclbin} not found: build it with `make -C {project_dir} link`")
        self._device = self._pyxrt.device(self.device_index)
        uuid = self._device.load_xclbin(str(xclbin))
        self._kernel = self._pyxrt.kernel(self._device, uuid, interface.plan.kernel_name)
        self._bos.clear()

    def _allocate(self, arg: MemoryArgument) -> None:
        if arg.scalar:  # a control register: the host keeps its packed value
            self._scalars[arg.arg] = bytes(arg.layout.total_bytes)
            return
        if arg.buffer in self._bos:  # an argument sharing its owner's buffer
            return
        owner = next(a for a in self.arguments if a.arg == arg.buffer)
        index = self.arguments.index(owner)
        bo = self._pyxrt.bo(self._device, owner.layout.total_bytes, self._pyxrt.bo.normal,
                            self._kernel.group_id(index))
        # XRT does not promise zeroed memory; the simulation does, so match it.
        bo.write(bytes(owner.layout.total_bytes), 0)
        self._bos[arg.buffer] = bo

    def _write(self, arg: MemoryArgument, data: bytes) -> None:
        if arg.scalar:
            self._scalars[arg.arg] = data
        else:
            self._bos[arg.buffer].write(data, 0)

    def _sync(self, arg: MemoryArgument, to_device: bool) -> None:
        if arg.scalar:
            return
        directions = self._pyxrt.xclBOSyncDirection
        self._bos[arg.buffer].sync(
            directions.XCL_BO_SYNC_BO_TO_DEVICE if to_device else directions.XCL_BO_SYNC_BO_FROM_DEVICE
        )

    def _value(self, arg: MemoryArgument) -> Any:
        """A kernel call argument: the buffer object, or a scalar's value (its packed buffer unpacked)."""
        if arg.scalar:
            return arg.unpack_tensor(self._scalars[arg.arg]).reshape(-1)[0].item()
        return self._bos[arg.buffer]

    def _run(self) -> RunResult:
        start = time.perf_counter()
        run = self._kernel(*(self._value(a) for a in self.arguments))
        state = run.wait()
        seconds = time.perf_counter() - start
        if state != self._pyxrt.ert_cmd_state.ERT_CMD_STATE_COMPLETED:
            raise RuntimeBackendError(f"kernel {self.interface.plan.kernel_name} ended in state {state}")
        return RunResult(self.backend, seconds)

    def _bind(self, arg: MemoryArgument, source: Runtime, source_arg: MemoryArgument, offset: int) -> None:
        assert isinstance(source, XrtBackend)
        # A sub-buffer of the other kernel's buffer (same device: one xclbin holds every kernel of a build).
        self._bos[arg.buffer] = self._pyxrt.bo(source._bos[source_arg.buffer], arg.layout.total_bytes, offset)

    def _unbind(self, arg: MemoryArgument) -> None:
        del self._bos[arg.buffer]
        self._allocate(arg)

    def _make_pool(self, arg: MemoryArgument, count: int) -> object:
        size = count * arg.layout.total_bytes
        bo = self._pyxrt.bo(self._device, size, self._pyxrt.bo.normal,
                            self._kernel.group_id(self.arguments.index(arg)))
        bo.write(bytes(size), 0)
        return bo

    def _join_pool(self, arg: MemoryArgument, pool: object, offset: int) -> None:
        # A sub-buffer shares the parent's host and device memory: syncing the parent moves it.
        self._bos[arg.buffer] = self._pyxrt.bo(pool, arg.layout.total_bytes, offset)

    def _sync_pool(self, pool: object, to_device: bool) -> None:
        directions = self._pyxrt.xclBOSyncDirection
        pool.sync(directions.XCL_BO_SYNC_BO_TO_DEVICE if to_device  # type: ignore[attr-defined]
                  else directions.XCL_BO_SYNC_BO_FROM_DEVICE)

    def _read(self, arg: MemoryArgument) -> bytes:
        return self._bos[arg.buffer].read(arg.layout.total_bytes, 0).tobytes()
