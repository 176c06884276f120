"""The simulation-only hls_stream.h: bounded FIFOs, one thread per dataflow process,
exact deadlock detection, region-exit checks and high-water reports (spec section 4).

Compiles the C++ programs in tests/cpp with g++ and checks their real output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
INCLUDE = ROOT / "src" / "streamtensor" / "codegen" / "vitis" / "include"
CPP = Path(__file__).resolve().parent / "cpp"
CXX = shutil.which("g++")
# STREAMTENSOR_CSIM selects streamtensor's simulation (hls_stream.h #errors without it).
FLAGS = ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Wshadow", "-Werror", "-pthread",
         "-DSTREAMTENSOR_CSIM"]
TSAN_FLAGS = ["-std=c++17", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-pthread", "-fsanitize=thread",
              "-DSTREAMTENSOR_CSIM"]

pytestmark = pytest.mark.skipif(CXX is None, reason="g++ is not installed")

# name -> (source, extra flags); tsan_* builds are optional (see tsan fixture).
BUILDS = {
    "chain": ("chain.cpp", FLAGS),
    "highwater": ("highwater.cpp", FLAGS),
    "reconvergent": ("reconvergent.cpp", FLAGS),
    "errors": ("errors.cpp", FLAGS),
    "nested": ("nested.cpp", FLAGS),
    "synth_macros": ("synth_macros.cpp", [*FLAGS, "-D__SYNTHESIS__"]),
    # Vitis C simulation and co-simulation: no __SYNTHESIS__, no STREAMTENSOR_CSIM.
    "vitis_csim_macros": ("synth_macros.cpp", [f for f in FLAGS if f != "-DSTREAMTENSOR_CSIM"]),
    # A Vitis flow that finds streamtensor's hls_stream.h on its include path (the shadowing the guard stops).
    "shadowing": ("chain.cpp", [f for f in FLAGS if f != "-DSTREAMTENSOR_CSIM"]),
}
TSAN_BUILDS = {
    "tsan_chain": ("chain.cpp", TSAN_FLAGS),
    "tsan_reconvergent": ("reconvergent.cpp", TSAN_FLAGS),
    "tsan_nested": ("nested.cpp", TSAN_FLAGS),
}

RECON_CYCLE = (
    "DEADLOCK in region recon: A blocked writing s_ab (full, depth 2) -> B blocked writing s_bd "
    "(full, depth 2) -> D blocked reading s_cd (empty, depth 2) -> C blocked reading s_ac "
    "(empty, depth 2) -> A"
)
RECON_PROCESSES = [
    "  processes of region recon:",
    "    A: blocked writing s_ab (full, depth 2); 6 written, 4 read",
    "    B: blocked writing s_bd (full, depth 2); 3 written, 1 read",
    "    C: blocked reading s_ac (empty, depth 2); 0 written, 0 read",
    "    D: blocked reading s_cd (empty, depth 2); 0 written, 0 read",
]


def _compile(out_dir: Path, name: str, source: str, flags: list[str]) -> tuple[str, Path, str, int]:
    exe = out_dir / name
    proc = subprocess.run(
        [CXX, *flags, f"-I{INCLUDE}", str(CPP / source), "-o", str(exe)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return name, exe, proc.stderr, proc.returncode


def _tsan_works(out_dir: Path) -> str | None:
    """None if -fsanitize=thread builds and runs here, else the reason it does not."""
    src = out_dir / "tsan_probe.cpp"
    src.write_text("#include <thread>\nint main() { std::thread t([] {}); t.join(); return 0; }\n")
    exe = out_dir / "tsan_probe"
    build = subprocess.run([CXX, *TSAN_FLAGS, str(src), "-o", str(exe)], capture_output=True, text=True)
    if build.returncode != 0:
        return f"g++ -fsanitize=thread does not build here: {build.stderr.strip()[:200]}"
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        return f"ThreadSanitizer binaries do not run here: {run.stderr.strip()[:200]}"
    return None


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("hls_sim")
    tsan_reason = _tsan_works(out_dir)
    jobs = dict(BUILDS)
    if tsan_reason is None:
        jobs.update(TSAN_BUILDS)
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = list(pool.map(lambda kv: _compile(out_dir, kv[0], *kv[1]), jobs.items()))
    exes, logs = {}, {}
    for name, exe, stderr, rc in results:
        logs[name] = (rc, stderr)
        if rc == 0:
            exes[name] = exe
    return {"exes": exes, "logs": logs, "tsan_reason": tsan_reason}


def _exe(builds, name: str) -> Path:
    if name not in builds["exes"]:
        rc, stderr = builds["logs"][name]
        pytest.fail(f"{name} did not compile (rc={rc}):\n{stderr}")
    return builds["exes"][name]


def _run(builds, name: str, *args: str, env: dict | None = None, timeout: float = 60):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMTENSOR_SIM_")}
    full_env.update(env or {})
    return subprocess.run(
        [str(_exe(builds, name)), *args], capture_output=True, text=True, timeout=timeout, env=full_env
    )


# ---------------------------------------------------------------------------------------------


def test_header_banner_and_compiles_warning_free(builds):
    first = (INCLUDE / "hls_stream.h").read_text().splitlines()[0]
    assert first.startswith("// Part of streamtensor 0.1.0")
    assert "never used for synthesis" in first
    assert (INCLUDE / "hls_dataflow_sim.h").read_text().startswith("// Part of streamtensor 0.1.0")
    for name in BUILDS.keys() - {"shadowing"}:
        rc, stderr = builds["logs"][name]
        assert rc == 0 and stderr == "", f"{name}: -Werror build not clean:\n{stderr}"


def test_nonblocking_access_is_intentionally_absent(tmp_path):
    src = tmp_path / "nb.cpp"
    src.write_text(
        '#include "hls_stream.h"\nint main() { hls::stream<int> s; int v; return s.read_nb(v); }\n'
    )
    proc = subprocess.run(
        [CXX, "-std=c++17", "-fsyntax-only", f"-I{INCLUDE}", str(src)], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "read_nb" in proc.stderr


def _chain_expected(stages: int, n: int) -> str:
    m32 = np.uint64(0xFFFFFFFF)
    v = (np.arange(n, dtype=np.uint64) * np.uint64(2654435761)) & m32
    for sid in range(stages):
        v = (((v ^ (v >> np.uint64(13))) * np.uint64(1103515245)) + np.uint64(sid)) & m32
    h = 1469598103934665603
    acc = np.float32(0.0)
    scale = np.float32(0.001)
    for x in v.tolist():
        h = ((h ^ x) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
        acc = np.float32(acc + np.float32(np.float32(x & 0xFFFF) * scale))
    bits = int(np.array([acc], dtype=np.float32).view(np.uint32)[0])
    return f"checksum {h:016x} acc {bits:08x} tokens {n} stages {stages}"


def test_chain_checksum_bit_identical(builds):
    # 40 processes (source, 38 stages, sink) through depth-2/4 FIFOs; speed is measured by
    # benchmarks/hls_stream_speed.py, not here (shared machines are noisy).
    expected = _chain_expected(38, 5_000)
    outputs = []
    for _ in range(2):
        proc = _run(builds, "chain", "38", "5000")
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""  # normal runs are quiet
        outputs.append(proc.stdout)
    assert outputs[0] == outputs[1] == expected + "\n"


def test_high_water_report(builds, tmp_path):
    report = tmp_path / "report.jsonl"
    proc = _run(builds, "highwater", env={"STREAMTENSOR_SIM_REPORT": str(report)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"sum {1 + 10 + sum(range(100, 110))}\n"
    assert proc.stderr == ""
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    common = {"region": "hw_top", "leftover": 0, "producer": "producer", "consumer": "consumer"}
    assert rows == [
        {**common, "stream": "go", "depth": 1, "high_water": 1, "tokens": 1},
        {**common, "stream": "s", "depth": 8, "high_water": 5, "tokens": 5},
        {**common, "stream": "t", "depth": 2, "high_water": 2, "tokens": 10},
    ]
    verbose = _run(builds, "highwater", env={"STREAMTENSOR_SIM_VERBOSE": "1"})
    assert verbose.returncode == 0
    assert verbose.stderr.splitlines() == [
        "[hls_sim] region hw_top: 2 processes, 3 streams, ok",
        "[hls_sim]   go: depth 1, high water 1, tokens 1",
        "[hls_sim]   s: depth 8, high water 5, tokens 5",
        "[hls_sim]   t: depth 2, high water 2, tokens 10",
    ]


def test_reconvergent_deadlock_names_the_cycle(builds):
    runs = [_run(builds, "reconvergent", "small", "declare") for _ in range(2)]
    for proc in runs:
        assert proc.returncode == 1
        assert proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert lines[0] == RECON_CYCLE
        assert lines[1].startswith("  cause: circular wait through bounded FIFOs")
        assert lines[2:7] == RECON_PROCESSES
        assert lines[-1] == "recon: region failed"
    assert runs[0].stderr == runs[1].stderr  # the deadlocked state of a bounded KPN is determinate


def test_reconvergent_deadlock_without_declared_endpoints(builds):
    proc = _run(builds, "reconvergent", "small", "nodeclare")
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[0] == (
        "DEADLOCK in region recon: A blocked writing s_ab (full, depth 2) -> B blocked writing s_bd "
        "(full, depth 2) -> D blocked reading s_cd (empty, depth 2) -> "
        "? (s_cd has no known producer: never written and not declared)"
    )
    assert "HLS_SIM_CONNECT" in lines[1]


def _recon_expected() -> int:
    k, tiles = 8, 50
    acc = 0
    for i in range(tiles * k):
        acc = (acc * 31 + 3 * i + 5 * i) % 2**64  # b = 3*i, c = -5*i; uint64 arithmetic
    return acc


def test_reconvergent_with_sufficient_depth_passes(builds):
    outs = [_run(builds, "reconvergent", "big", "declare") for _ in range(2)]
    for proc in outs:
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
    assert outs[0].stdout == outs[1].stdout == f"result {_recon_expected()}\n"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (
            "leftover",
            [
                "LEFTOVER in region leftover: stream s holds 1 unread token "
                "(depth 4; 3 written by P, 2 read by C)"
            ],
        ),
        (
            "orphan",
            [
                "LEFTOVER in region orphan: stream s holds 2 unread tokens "
                "(depth 4; 2 written by P, never read)"
            ],
        ),
        (
            "starved",
            [
                "DEADLOCK in region starved: C blocked reading s (empty, depth 4) -> P (finished)",
                "  cause: starved read: P finished after writing 2 tokens to s; "
                "C has read 2 and waits for more (token-count mismatch)",
                "  processes of region starved:",
                "    P: finished",
                "    C: blocked reading s (empty, depth 4); 2 written, 2 read",
            ],
        ),
        (
            "overfed",
            [
                "DEADLOCK in region overfed: P blocked writing s (full, depth 2) -> C (finished)",
                "  cause: overfed write: C finished after reading 3 tokens from s; P waits to write token #6 "
                "(token-count mismatch)",
            ],
        ),
        (
            "throws",
            [
                "ERROR in region throws: process P threw: boom",
                "DEADLOCK in region throws: C blocked reading s (empty, depth 4) -> P (finished)",
            ],
        ),
        (
            "testbench_bounded",
            [
                "DEADLOCK outside any dataflow region: main blocked writing tb_in (full, depth 2) -> "
                "? (tb_in has no known consumer: never read and not declared)",
            ],
        ),
    ],
)
def test_region_errors_fail(builds, mode, expected):
    proc = _run(builds, "errors", mode)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[: len(expected)] == expected


def test_two_producers_is_an_error(builds):
    proc = _run(builds, "errors", "twoproducers")
    assert proc.returncode == 1
    first = proc.stderr.splitlines()[0]
    assert first.startswith("ERROR in region twoprod: stream s is written by both ")
    assert "P1" in first and "P2" in first and "exactly one producer" in first


@pytest.mark.parametrize(
    ("mode", "out"), [("ok", "sum 3 failures 0\n"), ("testbench_unbounded", "sum 45 failures 0\n")]
)
def test_clean_regions_pass_quietly(builds, mode, out):
    proc = _run(builds, "errors", mode)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, out, "")


def test_nested_region(builds):
    ok = _run(builds, "nested", "ok")
    assert ok.returncode == 0 and ok.stderr == "", ok.stderr
    bad = _run(builds, "nested", "deadlock")
    assert bad.returncode == 1
    lines = bad.stderr.splitlines()
    assert lines[0] == (
        "DEADLOCK in region outer: src blocked writing s_side (full, depth 2) -> sink blocked reading s_out "
        "(empty, depth 2) -> mid waiting for its dataflow region mid_region -> m1 blocked reading s_in "
        "(empty, depth 2) -> src"
    )
    assert "    mid: waiting for its dataflow region mid_region" in lines
    assert lines[-1] == "hls_sim: dataflow region outer failed"


def test_synthesis_macros_are_plain_sequential_calls(builds):
    for name in ("synth_macros", "vitis_csim_macros"):
        proc = _run(builds, name)
        assert (proc.returncode, proc.stdout) == (0, "calls 3 1 2 3\n"), name


def test_the_simulation_header_refuses_a_vitis_build(builds):
    """Vitis's C simulation compiles the kernel with its own hls_stream.h; ours stops a build that would shadow
    it with one line naming the problem."""
    rc, stderr = builds["logs"]["shadowing"]
    assert rc != 0 and "shadowing" not in builds["exes"]
    assert ("#error \"streamtensor's hls_stream.h is for its own C simulation (-DSTREAMTENSOR_CSIM); Vitis C "
            "simulation and co-simulation must use Vitis's hls_stream.h") in stderr


def test_thread_sanitizer_clean(builds):
    if builds["tsan_reason"] is not None:
        pytest.skip(builds["tsan_reason"])
    cases = [
        ("tsan_chain", ("38", "2000"), 0),
        ("tsan_reconvergent", ("small", "declare"), 1),
        ("tsan_reconvergent", ("big", "declare"), 0),
        ("tsan_nested", ("deadlock",), 1),
        ("tsan_nested", ("ok",), 0),
    ]
    for name, args, rc in cases:
        proc = _run(builds, name, *args, timeout=120)
        assert "ThreadSanitizer" not in proc.stderr, proc.stderr
        assert proc.returncode == rc, (name, args, proc.stderr)
    chain = _run(builds, "tsan_chain", "38", "2000")
    assert chain.stdout == _chain_expected(38, 2000) + "\n"
    recon = _run(builds, "tsan_reconvergent", "small", "declare")
    assert recon.stderr.splitlines()[0] == RECON_CYCLE
