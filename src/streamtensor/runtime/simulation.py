"""Simulation backend: runs the project's bounded threaded C simulation executable (needs only g++ and make).

Protocol of the simulation executable (``build/csim/block_sim``, built by the project's Makefile from the kernel
C++, ``tb/block_sim.cpp`` and streamtensor's ``hls_stream.h``)::

    block_sim IN_DIR OUT_DIR

* For every argument the kernel reads (direction ``read`` or ``readwrite``) it reads
  ``IN_DIR/<arg>.bin``: exactly the argument's packed layout (``PackedLayout.total_bytes`` bytes,
  ``streamtensor.packing``); ``<arg>`` is the argument's C identifier from ``kernel.json``. A scalar
  argument (``role`` ``scalar``) is passed by value: the first bytes of its packed buffer.
  Arguments only written start zeroed. An argument that ``shares`` another's buffer (the row write of a KV
  cache updated in place: the cache is ``readwrite``) has no file of its own.
* It calls the top function once, with one buffer per argument in ``kernel.json`` order.
* For every argument the kernel writes (``write`` or ``readwrite``) it writes ``OUT_DIR/<arg>.bin``, again
  exactly the packed layout. OUT_DIR must exist.
* Exit status 0 on success; 1 when the simulation fails: deadlock (the wait-for cycle), leftover tokens or a
  process error, with the message on stderr (``hls_stream.h``); 2 on a usage or file error (message on stderr).
* With ``STREAMTENSOR_SIM_REPORT=FILE`` in the environment, one JSON line per stream is appended to FILE at
  each region exit: ``{"region", "stream", "depth", "high_water", "tokens", "leftover", "producer",
  "consumer"}``.
* With ``STREAMTENSOR_SIM_TRAFFIC=FILE``, one JSON line per buffer is appended to FILE after the call:
  ``{"arg", "read_bytes", "written_bytes"}``, the bytes the kernel's tile loads and stores moved on it.

``block_host XCLBIN IN_DIR OUT_DIR`` (the XRT host program of the same project) follows the same protocol.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from streamtensor.kernel_interface import KernelInterface, MemoryArgument, simulation_build_command
from streamtensor.runtime.host import RunResult, Runtime, RuntimeBackendError, StreamReport

REPORT_ENV = "STREAMTENSOR_SIM_REPORT"
TRAFFIC_ENV = "STREAMTENSOR_SIM_TRAFFIC"


class SimulationError(RuntimeBackendError):
    """Building or running the simulation failed; ``stderr`` holds the executable's (or compiler's) message."""

    def __init__(self, message: str, returncode: int | None, stderr: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


class SimulationBackend(Runtime):
    """``load`` builds the simulation executable with the project's Makefile; ``run`` executes it once.

    ``timeout_s`` bounds a run's wall-clock time: deadlocks are detected exactly and need no timeout, but a
    process that loops forever without blocking would otherwise never end."""

    backend = "sim"

    def __init__(self, timeout_s: float | None = None) -> None:
        super().__init__()
        self.timeout_s = timeout_s
        self._executable = Path()
        self._host: dict[str, bytearray | memoryview] = {}  # a memoryview: a slice of a pool's
        # Device buffers: owner -> (memory, byte offset). Runtimes bound to one buffer (``bind``) hold the same
        # bytearray, so what one kernel writes the other reads.
        self._device: dict[str, tuple[bytearray, int]] = {}

    def _load(self, project_dir: Path, interface: KernelInterface) -> None:
        if shutil.which("make") is None:
            raise SimulationError("the simulation backend needs 'make' (and g++) on PATH", None, "")
        build = subprocess.run(simulation_build_command(project_dir), capture_output=True, text=True)
        if build.returncode != 0:
            raise SimulationError(
                f"building the simulation of kernel {interface.plan.kernel_name} failed:\n{build.stdout}{build.stderr}",
                build.returncode,
                build.stderr,
            )
        self._executable = (project_dir / interface.sim_executable).resolve()
        self._host.clear()
        self._device.clear()

    # Buffers by owner (``MemoryArgument.buffer``): an argument sharing another's buffer addresses that one.
    def _allocate(self, arg: MemoryArgument) -> None:
        self._host.setdefault(arg.buffer, bytearray(arg.layout.total_bytes))
        self._device.setdefault(arg.buffer, (bytearray(arg.layout.total_bytes), 0))

    def _write(self, arg: MemoryArgument, data: bytes) -> None:
        self._host[arg.buffer][:] = data

    def _span(self, arg: MemoryArgument) -> tuple[bytearray, slice]:
        owner = next(a for a in self.arguments if a.arg == arg.buffer)
        memory, offset = self._device[arg.buffer]
        return memory, slice(offset, offset + owner.layout.total_bytes)

    def _sync(self, arg: MemoryArgument, to_device: bool) -> None:
        memory, span = self._span(arg)
        if to_device:
            memory[span] = self._host[arg.buffer]
        else:
            self._host[arg.buffer][:] = memory[span]

    def _bind(self, arg: MemoryArgument, source: Runtime, source_arg: MemoryArgument, offset: int) -> None:
        assert isinstance(source, SimulationBackend)
        memory, base = source._device[source_arg.buffer]
        self._device[arg.buffer] = (memory, base + offset)

    def _unbind(self, arg: MemoryArgument) -> None:
        self._device[arg.buffer] = (bytearray(arg.layout.total_bytes), 0)

    def _make_pool(self, arg: MemoryArgument, count: int) -> object:
        return bytearray(count * arg.layout.total_bytes), bytearray(count * arg.layout.total_bytes)

    def _join_pool(self, arg: MemoryArgument, pool: object, offset: int) -> None:
        assert isinstance(pool, tuple)
        host, device = pool
        self._host[arg.buffer] = memoryview(host)[offset:offset + arg.layout.total_bytes]
        self._device[arg.buffer] = (device, offset)

    def _sync_pool(self, pool: object, to_device: bool) -> None:
        assert isinstance(pool, tuple)
        host, device = pool
        if to_device:
            device[:] = host
        else:
            host[:] = device

    def _run(self) -> RunResult:
        kernel = self.interface.plan.kernel_name
        with tempfile.TemporaryDirectory(prefix="streamtensor-sim-") as tmp:
            in_dir, out_dir, report = Path(tmp, "in"), Path(tmp, "out"), Path(tmp, "streams.jsonl")
            traffic_file = Path(tmp, "traffic.jsonl")
            in_dir.mkdir()
            out_dir.mkdir()
            for a in self.arguments:
                if a.reads and a.shares is None:
                    memory, span = self._span(a)
                    (in_dir / f"{a.arg}.bin").write_bytes(memory[span])
            start = time.perf_counter()
            try:
                proc = subprocess.run(
                    [str(self._executable), str(in_dir), str(out_dir)],
                    capture_output=True,
                    text=True,
                    env={**os.environ, REPORT_ENV: str(report), TRAFFIC_ENV: str(traffic_file)},
                    timeout=self.timeout_s,
                )
            except subprocess.TimeoutExpired as err:
                stderr = err.stderr.decode(errors="replace") if isinstance(err.stderr, bytes) else err.stderr or ""
                raise SimulationError(
                    f"simulation of kernel {kernel} did not finish within {self.timeout_s} s (a process that never "
                    "blocks and never ends; deadlocks are reported, not timed out)",
                    None,
                    stderr,
                ) from err
            seconds = time.perf_counter() - start
            if proc.returncode != 0:
                raise SimulationError(
                    f"simulation of kernel {kernel} failed (exit status {proc.returncode}):\n{proc.stderr}",
                    proc.returncode,
                    proc.stderr,
                )
            for a in self.arguments:
                if a.writes and a.shares is None:
                    memory, span = self._span(a)
                    memory[span] = self._output(out_dir / f"{a.arg}.bin", a, proc.stderr)
            streams = StreamReport.parse_lines(report.read_text()) if report.exists() else ()
            lines = traffic_file.read_text().splitlines() if traffic_file.exists() else []
            traffic = {(t := json.loads(line))["arg"]: (t["read_bytes"], t["written_bytes"]) for line in lines}
        return RunResult(self.backend, seconds, streams, traffic)

    @staticmethod
    def _output(path: Path, arg: MemoryArgument, stderr: str) -> bytes:
        if not path.is_file():
            raise SimulationError(f"the simulation wrote no {path.name} for output {arg.name}", 0, stderr)
        data = path.read_bytes()
        if len(data) != arg.layout.total_bytes:
            raise SimulationError(
                f"{path.name} has {len(data)} bytes, expected {arg.layout.total_bytes} (packed layout of {arg.name})",
                0,
                stderr,
            )
        return data

    def _read(self, arg: MemoryArgument) -> bytes:
        return bytes(self._host[arg.buffer])
