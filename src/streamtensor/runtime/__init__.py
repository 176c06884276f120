"""Host runtimes for generated kernels: one interface, a simulation backend and an XRT (board) backend."""

from streamtensor.runtime.host import RunResult, Runtime, RuntimeBackendError, StreamReport, open_runtime

__all__ = ["RunResult", "Runtime", "RuntimeBackendError", "StreamReport", "open_runtime"]
