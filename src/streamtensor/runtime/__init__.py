"""Host runtimes for generated kernels: one interface, a simulation backend and an XRT (board) backend."""

from __future__ import annotations

from pathlib import Path

from streamtensor.errors import OptionError
from streamtensor.runtime.host import RunResult, Runtime, RuntimeBackendError, StreamReport
from streamtensor.runtime.simulation import SimulationBackend
from streamtensor.runtime.xrt import XrtBackend

__all__ = ["RunResult", "Runtime", "RuntimeBackendError", "StreamReport", "open_runtime"]


def open_runtime(project_dir: str | Path, backend: str = "sim") -> Runtime:
    """A loaded runtime for a project: ``"sim"`` (bounded threaded C simulation, needs g++ and make) or
    ``"xrt"`` (a board, needs XRT's pyxrt)."""
    runtime: Runtime
    if backend == "sim":
        runtime = SimulationBackend()
    elif backend == "xrt":
        runtime = XrtBackend()  # imports pyxrt: only when chosen
    else:
        raise OptionError(f"unknown runtime backend {backend!r}; expected 'sim' or 'xrt'")
    runtime.load(project_dir)
    return runtime
