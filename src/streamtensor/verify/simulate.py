"""Bounded C simulation of a compiled design against PyTorch: the design's Vitis project with its check data,
a build cache, ``streamtensor verify OUTDIR`` and ``Design.simulate``.

``write_design_project(design, outdir, args)`` writes the Vitis project of the design (``codegen.vitis.project``:
sources from ``codegen.vitis.hls``, Makefile, link.cfg, ...) into ``outdir`` and adds what ``verify`` needs::

    params/<arg>.bin     every tensor the kernel reads, packed: weights, constants and the example inputs
                         (so ``make csim`` and ``verify`` need no Python model)
    check/inputs.npz     the example inputs, by block input name (to re-run PyTorch or the simulation)
    check/expected.npz   PyTorch eager's outputs for them, by block output name (under --quant: of the quantized
                         reference, ``frontend.quant``)
    check/expected_fp32.npz  under --quant only: the unquantized model's outputs (reported, never asserted)
    check/check.json     kernel, the outputs with their write arguments, tolerance, PyTorch eager seconds
    check/expected/      PyTorch's outputs packed for the self-checking testbench (tb/vitis_tb.cpp) and the
                         board's output checker (codegen.vitis.parameters.write_expected_outputs)

``verify_project(outdir)`` builds the simulation (``make`` with the project's flags: g++ -std=c++17 -O2 -Wall
-Wextra -Werror -pthread), loads every ``params`` file into its device buffer as a board's host program would,
runs the kernel twice, and compares every output with ``expected.npz`` (max absolute error) and the two runs
with each other (bit-identical); the report lists each stream's high-water mark next to its depth.

**Build cache.** Executables are cached under ``$STREAMTENSOR_CACHE_DIR`` (default
``$XDG_CACHE_HOME/streamtensor`` or ``~/.cache/streamtensor``) in ``csim/<key>/``, where the key hashes the
compiler's version, the Makefile (flags) and every source and header the build reads: an unchanged design
rebuilds in no time, any change in a source rebuilds.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from streamtensor._version import GENERATOR
from streamtensor.codegen.vitis.hbm import c_identifier, graph_hbm_plan, kernel_slr
from streamtensor.codegen.vitis.hls.generate import generate_hls
from streamtensor.codegen.vitis.parameters import write_expected_outputs
from streamtensor.codegen.vitis.project import VitisProject, write_project
from streamtensor.errors import OptionError, StreamTensorError
from streamtensor.frontend.block_cache import EagerReference
from streamtensor.ir.dataflow import DataflowGraph
from streamtensor.kernel_interface import (
    PARAMS_DIR,
    SIM_EXECUTABLE,
    load_kernel_interface,
    pack_arguments,
    simulation_build_command,
)
from streamtensor.runtime.host import RunResult, StreamReport
from streamtensor.runtime.simulation import SimulationBackend, SimulationError
from streamtensor.target import Target

if TYPE_CHECKING:
    import torch

CHECK_DIR = "check"
FLOAT_EXPECTED = "expected_fp32.npz"
TOLERANCE = 1e-4  # max absolute error against PyTorch eager (fp32)


class Design(Protocol):
    """What verification reads of a compiled design (``streamtensor.driver.Design``, one layer up)."""

    name: str
    input_names: list[str]
    output_names: list[str]
    stages: dict[str, float]
    dataflow: DataflowGraph | None
    module: torch.nn.Module | None
    float_reference: Callable[[Sequence[torch.Tensor]], list[np.ndarray]] | None
    reference: EagerReference | None

    @property
    def target(self) -> Target: ...


def kernel_name(design: Design) -> str:
    return c_identifier(design.name)


def _graph(design: Design) -> DataflowGraph:
    if design.dataflow is None:
        raise OptionError(f"design {design.name} has no dataflow graph to generate HLS C++ from")
    return design.dataflow


def _as_arrays(names: Sequence[str], args: Sequence[torch.Tensor | np.ndarray]) -> dict[str, np.ndarray]:
    if len(args) != len(names):
        raise OptionError(f"expected {len(names)} inputs ({', '.join(names)}), got {len(args)}")
    return {n: (a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)) for n, a in  # tensor or array
            zip(names, args, strict=True)}


def eager_reference(module: torch.nn.Module, args: Sequence[torch.Tensor], budget_s: float = 2.0
                    ) -> tuple[list[np.ndarray], float]:
    """PyTorch eager outputs of ``module(*args)`` and its best wall time over repeated calls after a warm-up,
    with PyTorch's default intra-op threads and with one thread (on a loaded machine, OpenMP threads that spin
    for a busy core can be 100x slower than one thread; the better of the two is PyTorch's fair figure)."""
    import torch

    threads = torch.get_num_threads()
    best = float("inf")
    with torch.no_grad():
        outputs = module(*args)
        try:
            for n in sorted({threads, 1}, reverse=True):
                torch.set_num_threads(n)
                module(*args)
                times: list[float] = []
                start = time.perf_counter()
                while len(times) < 3 or (time.perf_counter() - start < budget_s / 2 and len(times) < 50):
                    t0 = time.perf_counter()
                    module(*args)
                    times.append(time.perf_counter() - t0)
                best = min(best, *times)
        finally:
            torch.set_num_threads(threads)
    if isinstance(outputs, torch.Tensor):
        outputs = (outputs,)
    return [o.detach().numpy() for o in outputs], best


def design_reference(design: Design, inputs: Mapping[str, np.ndarray]) -> EagerReference | None:
    """PyTorch eager's outputs of the design for ``inputs``: those the design holds (``Design.reference``, from its
    frontend or the frontend's cache) when they are for these inputs, else computed by its module; None without
    either."""
    if design.reference is not None and design.reference.matches(list(inputs.values())):
        return design.reference
    if design.module is None:
        return None
    import torch  # here: a design whose reference is cached needs no PyTorch (issue 21)

    tensors = [torch.as_tensor(a) for a in inputs.values()]
    outputs, seconds = eager_reference(design.module, tensors)
    floats = design.float_reference(tensors) if design.float_reference is not None else None
    return EagerReference(list(inputs.values()), outputs, seconds, floats)


def write_design_project(design: Design, outdir: str | Path, args: Sequence[torch.Tensor]) -> VitisProject:
    """The design's Vitis project with the example inputs ``args`` packed into ``params/`` and PyTorch eager's
    outputs for them in ``check/`` (module docstring). Needs the design's module or its reference outputs for
    ``args`` (``compile`` keeps the module; a cached frontend, the outputs)."""
    if design.module is None and design.reference is None:
        raise OptionError(f"design {design.name} has no PyTorch module to compute the reference outputs with")
    graph = _graph(design)
    name = kernel_name(design)
    inputs = _as_arrays(design.input_names, args)
    start = time.perf_counter()
    target = design.target
    plan = graph_hbm_plan(graph, name, target.hbm)
    sources = generate_hls(graph, name, plan, target)
    design.stages["codegen.hls_cpp"] = round(time.perf_counter() - start, 4)
    start = time.perf_counter()
    single_slr = design.allocation is not None and design.allocation.single_slr
    project = write_project(outdir, graph, name, plan, sources, target=target, tensors=inputs,
                            kernel_slr=kernel_slr(target) if single_slr else None)
    design.stages["codegen.vitis_project"] = round(time.perf_counter() - start, 4)
    start = time.perf_counter()
    reference = design_reference(design, inputs)
    if reference is None:
        raise OptionError(f"design {design.name} has reference outputs for other inputs and no PyTorch module to "
                          "compute them for these")
    expected, eager_seconds = reference.outputs, reference.eager_seconds
    design.stages["reference.pytorch_eager"] = round(time.perf_counter() - start, 4)
    check = Path(outdir) / CHECK_DIR
    check.mkdir(exist_ok=True)
    np.savez(check / "inputs.npz", **inputs)
    np.savez(check / "expected.npz", **dict(zip(design.output_names, expected, strict=True)))
    if reference.float_outputs is not None:
        np.savez(check / FLOAT_EXPECTED, **dict(zip(design.output_names, reference.float_outputs, strict=True)))
    writes = {a.dma: a.arg for a in plan.arguments}
    write_expected_outputs(outdir, plan, {writes[dma]: e for dma, e in zip(graph.outputs, expected, strict=True)},
                           TOLERANCE)
    meta = {
        "generator": GENERATOR,
        "kernel": name,
        "design": design.name,
        "outputs": [{"name": n, "arg": writes[dma], "shape": list(e.shape), "dtype": str(e.dtype)}
                    for n, dma, e in zip(design.output_names, graph.outputs, expected, strict=True)],
        "tolerance": TOLERANCE,
        "eager_seconds": eager_seconds,
    }
    (check / "check.json").write_text(json.dumps(meta, indent=2) + "\n")
    return project


# --- build cache ------------------------------------------------------------------------------------------------


def cache_root() -> Path:
    if os.environ.get("STREAMTENSOR_CACHE_DIR"):
        return Path(os.environ["STREAMTENSOR_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "streamtensor"


def _compiler_version() -> str:
    cxx = os.environ.get("CXX", "g++")
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise SimulationError(f"the C simulation needs a C++ compiler ({cxx}): {err}", None, "") from err


def build_key(project_dir: str | Path) -> str:
    """Hash of everything the simulation build reads: compiler, Makefile (flags), sources, testbench, headers."""
    root = Path(project_dir)
    digest = hashlib.sha256(_compiler_version().encode())
    files = [root / "Makefile", *sorted((root / "src").iterdir()), root / "tb" / "block_sim.cpp",
             *sorted(p for p in (root / "include").rglob("*") if p.is_file())]
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class BuildResult:
    seconds: float
    cached: bool
    key: str


def build_simulation(project_dir: str | Path) -> BuildResult:
    """``build/csim/block_sim`` of the project, from the cache when the same sources were built before."""
    root = Path(project_dir)
    start = time.perf_counter()
    key = build_key(root)
    cached = cache_root() / "csim" / key / "block_sim"
    target = root / SIM_EXECUTABLE
    target.parent.mkdir(parents=True, exist_ok=True)
    # One build at a time per project (Design.simulate's projects are shared by processes through the cache).
    with open(target.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if cached.is_file():
            shutil.copyfile(cached, target)
            target.chmod(0o755)
            os.utime(target)  # newer than the sources: make sees it up to date
            return BuildResult(time.perf_counter() - start, True, key)
        build = subprocess.run(simulation_build_command(root), capture_output=True, text=True)
        if build.returncode != 0:
            raise SimulationError(f"building the simulation of {root} failed:\n{build.stdout}{build.stderr}",
                                  build.returncode, build.stderr)
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cached.parent, delete=False) as tmp:
            shutil.copyfile(target, tmp.name)
        os.chmod(tmp.name, 0o755)
        os.replace(tmp.name, cached)  # atomic: concurrent builds of one key never see a partial file
    return BuildResult(time.perf_counter() - start, False, key)


# --- running ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputCheck:
    name: str
    max_abs_error: float
    ok: bool


@dataclass
class SimulationReport:
    """One verification: build, runs, per-output errors against the reference, per-stream FIFO statistics."""

    kernel: str
    build: BuildResult
    run_seconds: list[float] = field(default_factory=list)
    outputs: list[np.ndarray] = field(default_factory=list)
    checks: list[OutputCheck] = field(default_factory=list)
    streams: tuple[StreamReport, ...] = ()
    traffic: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # first run: bytes (read, written) per buffer
    deterministic: bool | None = None  # outputs bit-identical across runs (None: one run)
    failure: str | None = None  # the simulation's message when it failed (deadlock, leftover tokens, ...)
    eager_seconds: float | None = None
    tolerance: float = TOLERANCE
    reference: bool = False  # outputs compared with a reference (PyTorch eager): without one, never ok
    float_checks: list[OutputCheck] = field(default_factory=list)  # vs the fp32 model under --quant: reported

    @property
    def ok(self) -> bool:
        return (self.reference and self.failure is None and all(c.ok for c in self.checks)
                and self.deterministic is not False)

    def verdict(self) -> str:
        if self.failure is None and not self.reference and self.deterministic is not False:
            return "NO REFERENCE: the simulation ran; its outputs were not checked against anything"
        return "PASS" if self.ok else "FAIL"

    def describe(self) -> str:
        lines = [f"kernel {self.kernel}: C simulation (bounded FIFOs, one thread per process)"]
        lines.append(f"  build: {self.build.seconds:.2f} s" + (" (cached)" if self.build.cached else ""))
        if self.run_seconds:
            runs = ", ".join(f"{s:.3f} s" for s in self.run_seconds)
            lines.append(f"  run: {runs}" + ("" if self.deterministic is None else
                                            "; outputs bit-identical across runs" if self.deterministic
                                            else "; OUTPUTS DIFFER BETWEEN RUNS"))
        if self.eager_seconds and self.run_seconds:
            ratio = min(self.run_seconds) / self.eager_seconds
            lines.append(f"  PyTorch eager: {self.eager_seconds * 1e3:.3f} ms; simulation / eager = {ratio:.1f}x")
        if self.failure is not None:
            lines.append("  simulation FAILED:")
            lines.extend(f"    {line}" for line in self.failure.rstrip().splitlines())
        if self.checks:
            width = max(len(c.name) for c in self.checks)
            lines.append(f"  {'output':<{width}}  max |error|  (tolerance {self.tolerance:g})")
            for c in self.checks:
                lines.append(f"  {c.name:<{width}}  {c.max_abs_error:<11.3g}  {'ok' if c.ok else 'MISMATCH'}")
        if self.float_checks:
            lines.append("  max |error| against the unquantized fp32 model (quantization error; reported, not "
                         "asserted): " + ", ".join(f"{c.name} {c.max_abs_error:.3g}" for c in self.float_checks))
        if self.streams:
            lines.append(_stream_table(self.streams))
        lines.append(self.verdict())
        return "\n".join(lines)


def _stream_table(streams: Sequence[StreamReport]) -> str:
    width = max(len(s.stream) for s in streams)
    ends = max(len(f"{s.producer} -> {s.consumer}") for s in streams)
    lines = [f"  {'stream':<{width}}  {'producer -> consumer':<{ends}}  {'depth (LP)':>10}  {'high water':>10}"
             f"  {'tokens':>8}"]
    for s in streams:
        full = "  (full)" if s.high_water == s.depth else ""
        lines.append(f"  {s.stream:<{width}}  {f'{s.producer} -> {s.consumer}':<{ends}}  {s.depth:>10}"
                     f"  {s.high_water:>10}  {s.tokens:>8}{full}")
    return "\n".join(lines)


def _run_once(runtime: SimulationBackend, load: dict[str, bytes], written: list[str]
              ) -> tuple[list[np.ndarray], RunResult]:
    for arg, data in load.items():
        runtime.write_packed(arg, data)
        runtime.sync(arg, "to_device")
    for a in runtime.arguments:
        runtime.allocate(a.arg)
    result = runtime.run()
    outputs = []
    for arg in written:
        runtime.sync(arg, "from_device")
        outputs.append(runtime.read(arg))
    return outputs, result


def run_simulation(project_dir: str | Path, load: dict[str, bytes], written: list[str], runs: int,
                   report: SimulationReport) -> None:
    """Run the built simulation ``runs`` times on the packed buffers ``load`` (argument -> bytes), reading the
    write arguments ``written``; fills ``report`` (outputs of the first run, failure message, determinism)."""
    runtime = SimulationBackend()
    runtime.load(project_dir)
    first: list[np.ndarray] | None = None
    for _ in range(runs):
        try:
            outputs, result = _run_once(runtime, load, written)
        except SimulationError as err:
            report.failure = err.stderr or str(err)
            return
        report.run_seconds.append(result.seconds)
        if first is None:
            first, report.outputs, report.streams, report.traffic = outputs, outputs, result.streams, result.traffic
        else:
            same = all(a.tobytes() == b.tobytes() for a, b in zip(first, outputs, strict=True))
            report.deterministic = same if report.deterministic is None else report.deterministic and same


def compare(names: Sequence[str], outputs: Sequence[np.ndarray], expected: Sequence[np.ndarray],
            tolerance: float) -> list[OutputCheck]:
    checks = []
    for name, got, want in zip(names, outputs, expected, strict=True):
        if got.shape != want.shape:
            checks.append(OutputCheck(name, float("inf"), False))
            continue
        err = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))) if got.size else 0.0
        checks.append(OutputCheck(name, err, bool(err <= tolerance)))  # NaN fails
    return checks


def verify_project(project_dir: str | Path, runs: int = 2) -> SimulationReport:
    """Build and run the simulation of a project written by ``write_design_project``; compare with PyTorch."""
    root = Path(project_dir)
    check_file = root / CHECK_DIR / "check.json"
    if not check_file.is_file():
        raise StreamTensorError(f"{root} has no reference to verify against ({check_file} not found): write it "
                                "with streamtensor compile or Design.write_project")
    meta = json.loads(check_file.read_text())
    interface = load_kernel_interface(root)
    load = {a.arg: (root / PARAMS_DIR / f"{a.arg}.bin").read_bytes() for a in interface.plan.arguments if a.reads}
    report = SimulationReport(meta["kernel"], build_simulation(root), eager_seconds=meta["eager_seconds"],
                              tolerance=meta["tolerance"], reference=True)
    outputs = meta["outputs"]
    run_simulation(root, load, [o["arg"] for o in outputs], runs, report)
    if report.failure is None:
        with np.load(root / CHECK_DIR / "expected.npz") as expected:
            report.checks = compare([o["name"] for o in outputs], report.outputs,
                                    [expected[o["name"]] for o in outputs], report.tolerance)
        if (root / CHECK_DIR / FLOAT_EXPECTED).is_file():
            with np.load(root / CHECK_DIR / FLOAT_EXPECTED) as float_expected:
                report.float_checks = compare([o["name"] for o in outputs], report.outputs,
                                              [float_expected[o["name"]] for o in outputs], report.tolerance)
    return report


def simulate_graph(graph: DataflowGraph, name: str, inputs: dict[str, np.ndarray], target: Target, runs: int = 1
                   ) -> SimulationReport:
    """The C simulation of ``graph`` (its FIFOs sized for ``target``) as kernel ``name`` on ``inputs`` (block
    input name -> whole tensor; the graph's constants are added): its project lives in the cache, keyed on the
    generated sources."""
    plan = graph_hbm_plan(graph, name, target.hbm)
    sources = generate_hls(graph, name, plan, target)
    digest = hashlib.sha256("".join(f"{k}\0{v}\0" for k, v in sorted(sources.items())).encode()).hexdigest()[:32]
    root = cache_root() / "projects" / digest
    if not (root / "kernel.json").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{digest}.", dir=root.parent))
        write_project(staging, graph, name, plan, sources, target=target)
        try:
            staging.rename(root)
        except OSError:  # another process wrote the same project meanwhile
            shutil.rmtree(staging)
    tensors = {**graph.constants, **inputs}
    reading = [a for a in plan.arguments if a.reads]
    load = dict(zip([a.arg for a in reading], pack_arguments((a, tensors[a.name]) for a in reading), strict=True))
    report = SimulationReport(name, build_simulation(root))
    writes = {a.dma: a.arg for a in plan.arguments}
    run_simulation(root, load, [writes[dma] for dma in graph.outputs], runs, report)
    return report


def simulate_design(design: Design, args: Sequence[torch.Tensor | np.ndarray], runs: int = 1) -> SimulationReport:
    """``Design.simulate``: ``simulate_graph`` of the design on ``args``, compared with PyTorch eager when the
    design has its module or reference outputs for ``args`` (without either the report says so and is not ok)."""
    inputs = _as_arrays(design.input_names, args)
    report = simulate_graph(_graph(design), kernel_name(design), inputs, design.target, runs)
    reference = design_reference(design, inputs)
    report.reference = reference is not None
    if report.failure is None and reference is not None:
        report.eager_seconds = reference.eager_seconds
        report.checks = compare(design.output_names, report.outputs, reference.outputs, report.tolerance)
        if reference.float_outputs is not None:
            report.float_checks = compare(design.output_names, report.outputs, reference.float_outputs,
                                          report.tolerance)
    return report
