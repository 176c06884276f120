"""Vitis's own flow in a generated project: the self-checking testbench (``tb.file``) and the output checker
against ``check/expected``, the Makefile targets of Vitis C simulation, co-simulation, hardware emulation, the
bitstream and the board run (``make -n``), and the C++ host built against the real XRT (Debian's libxrt-dev)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from streamtensor.codegen.vitis.boards import U55C
from streamtensor.codegen.vitis.parameters import write_expected_outputs
from streamtensor.ir.itensor import parse_itensor_type
from streamtensor.kernel_interface import EXPECTED_DIR, HbmAssignment, HbmPlan, MemoryArgument, ViewStep
from streamtensor.packing import unpack

pytestmark = pytest.mark.skipif(shutil.which("g++") is None or shutil.which("make") is None,
                                reason="g++ and make are needed")

FAMILY, MODE, KERNEL = "gpt2", "decode", "gpt2_decode"
VITIS_CSIM_MODEL = Path(__file__).resolve().parent / "cpp" / "vitis_csim"


@pytest.fixture
def project(tiny_project, tmp_path: Path) -> Path:
    """A private copy of the tiny GPT-2 decode project (tests build in it and perturb its data)."""
    root = tmp_path / "project"
    shutil.copytree(tiny_project(FAMILY, MODE), root, ignore=shutil.ignore_patterns("build"))
    return root.resolve()


def _make_dry(root: Path, *args: str) -> list[str]:
    env = {**os.environ, "XILINX_XRT": "/opt/xilinx/xrt"}
    out = subprocess.run(["make", "-n", "-C", str(root), *args], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    return [line for line in out.stdout.splitlines() if not line.startswith("make")]


def test_make_dry_run_of_each_target_prints_the_documented_command(project: Path) -> None:
    platform, readme = U55C.platform, (project / "README.md").read_text()
    env = f"STREAMTENSOR_PROJECT={project}"
    synth = ["v++ -c --mode hls --config hls_config.cfg --work_dir build/hls", "touch build/hls/csynth.stamp"]
    package = "vitis-run --mode hls --package --config hls_config.cfg --work_dir build/hls"
    # A kernel split over SLRs (tiny GPT-2 decode is) gives Vivado its floorplan.
    floorplan = (f" --vivado.prop run.impl_1.STEPS.OPT_DESIGN.TCL.PRE={project}/floorplan.tcl"
                 if (project / "floorplan.tcl").is_file() else "")
    link = f"v++ -l --platform {platform} --config link.cfg -t hw --kernel_frequency 250{floorplan}"
    host = ("g++ -std=c++17 -O2 -Wall -Wextra -I/opt/xilinx/xrt/include host/block_host.cpp -o build/host/block_host "
            "-L/opt/xilinx/xrt/lib -lxrt_coreutil -pthread")
    check = "g++ -std=c++14 -O2 -Wall -Wextra -Werror tb/check_outputs.cpp -o build/check/check_outputs"
    xrt = f"XRT_INI_PATH={project}/xrt.ini"
    assert _make_dry(project, "csim-tb")[-2:] == [
        "g++ -std=c++17 -O2 -Wall -Wextra -Werror -Wno-unused-label -pthread -DSTREAMTENSOR_CSIM -Iinclude "
        "-isystem include/ap_types -Isrc "
        f"src/{KERNEL}.cpp tb/vitis_tb.cpp -o build/csim/{KERNEL}_tb",
        f"{env} build/csim/{KERNEL}_tb",
    ]
    assert _make_dry(project, "vitis-csim") == [
        f"{env} vitis-run --mode hls --csim --config hls_config.cfg --work_dir build/hls"]
    assert _make_dry(project, "cosim") == [
        *synth, f"{env} vitis-run --mode hls --cosim --config hls_config.cfg --work_dir build/hls"]
    assert _make_dry(project, "hw") == [*synth, package, f"{link} -o build/{KERNEL}.hw.xclbin build/{KERNEL}.xo"]
    assert _make_dry(project, "hw", "PROFILE=1")[-1] == (
        f"{link} --profile.data all:all:all --profile.stall all:all --profile.exec all:all "
        f"-o build/{KERNEL}.hw.xclbin build/{KERNEL}.xo")
    assert _make_dry(project, "hw_emu") == [
        *synth, package,
        f"v++ -l --platform {platform} --config link.cfg -t hw_emu --kernel_frequency 250{floorplan} "
        f"-o build/{KERNEL}.hw_emu.xclbin build/{KERNEL}.xo",
        f"emconfigutil --platform {platform} --od build",
        'test -n "/opt/xilinx/xrt" || { echo "host: XILINX_XRT is not set; source /opt/xilinx/xrt/setup.sh" >&2; '
        "exit 1; }",
        "mkdir -p build/host", host, "mkdir -p build/check", check, "mkdir -p build/hw_emu/out",
        f"XCL_EMULATION_MODE=hw_emu EMCONFIG_PATH=build {xrt} build/host/block_host build/{KERNEL}.hw_emu.xclbin "
        "params build/hw_emu/out",
        f"build/check/check_outputs build/hw_emu/out {EXPECTED_DIR}",
    ]
    assert _make_dry(project, "run", "DEVICE=1")[-3:] == [
        "mkdir -p build/run/out",
        f"{xrt} build/host/block_host build/{KERNEL}.hw.xclbin params build/run/out 1",
        f"build/check/check_outputs build/run/out {EXPECTED_DIR}",
    ]
    # The README documents each of these commands.
    for command in ("`vitis-run --mode hls --csim`", "`vitis-run --mode hls --cosim`", "`emconfigutil`",
                    "`XCL_EMULATION_MODE=hw_emu`", f"`v++ -l --platform {platform} --config link.cfg -t $(TARGET)`",
                    "`block_host` on the card", "`check_outputs`", "`tb/vitis_tb.cpp`"):
        assert command in readme, command
    config = (project / "hls_config.cfg").read_text().splitlines()
    for line in ("tb.file=tb/vitis_tb.cpp", "tb.cflags=-std=c++14", "syn.cflags=-std=c++14",
                 "cosim.enable_dataflow_profiling=true", "cosim.disable_deadlock_detection=false"):
        assert line in config
    ini = (project / "xrt.ini").read_text().splitlines()
    assert "[Debug]" in ini and "native_xrt_trace=true" in ini and "device_trace=fine" in ini


def _perturb_first_compared(root: Path, arg: str, by: float) -> None:
    data = np.fromfile(root / EXPECTED_DIR / f"{arg}.bin", dtype="<f4")
    mask = np.fromfile(root / EXPECTED_DIR / f"{arg}.mask", dtype=np.uint8)
    assert mask.any()
    data[int(np.argmax(mask))] += by  # f32 tiles of whole words: slot j of the mask is float j (no padding)
    data.tofile(root / EXPECTED_DIR / f"{arg}.bin")


def _outputs(root: Path) -> list[str]:
    lines = (root / EXPECTED_DIR / "manifest.txt").read_text().splitlines()
    return [line.split()[1] for line in lines if line.startswith("output ")]


def test_the_testbench_passes_on_the_bounded_simulation_and_fails_on_perturbed_data(project: Path) -> None:
    proc = subprocess.run(["make", "-s", "-C", str(project), "csim-tb"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outputs = _outputs(project)
    assert len(outputs) == 3  # decode: the hidden state and the key and value caches
    lines = proc.stdout.splitlines()
    assert lines[-1] == "PASS"
    assert all(any(line.startswith(f"  {arg}: ") and line.endswith(" ok") for line in lines) for arg in outputs)
    tb = [str(project / "build" / "csim" / f"{KERNEL}_tb"), str(project)]
    _perturb_first_compared(project, outputs[0], 1e-3)  # ten times the tolerance
    bad = subprocess.run(tb, capture_output=True, text=True)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"  {outputs[0]}: MISMATCH in 1 of " in bad.stdout and bad.stdout.splitlines()[-1] == "FAIL"
    # An output the manifest does not cover is an error, not a pass.
    manifest = project / EXPECTED_DIR / "manifest.txt"
    manifest.write_text("".join(line for line in manifest.read_text().splitlines(keepends=True)
                                if not line.startswith(f"output {outputs[1]} ")))
    missing = subprocess.run(tb, capture_output=True, text=True)
    assert missing.returncode == 2
    assert f"manifest.txt has no expected data for output {outputs[1]}" in missing.stderr


def test_the_testbench_builds_and_passes_as_vitis_c_simulation_runs_it(project: Path) -> None:
    """C++14, no streamtensor simulation header on the include path and no STREAMTENSOR_CSIM: the kernel gets
    the <hls_stream.h> it finds (here a model of Vitis's C simulation: unbounded streams, processes in sequence)
    and the <ap_int.h> Vitis ships (here the project's Apache-2.0 copy of it)."""
    exe = project / "vitis_tb"
    build = subprocess.run(["g++", "-std=c++14", "-O1", "-Wall", "-Wextra", "-Werror", "-Wno-unused-label",
                            f"-I{VITIS_CSIM_MODEL}", "-isystem", "include/ap_types", f"src/{KERNEL}.cpp",
                            "tb/vitis_tb.cpp", "-o", str(exe)], cwd=project, capture_output=True, text=True)
    assert build.returncode == 0 and build.stderr == "", build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, env={**os.environ,
                                                                          "STREAMTENSOR_PROJECT": str(project)})
    assert run.returncode == 0 and run.stdout.splitlines()[-1] == "PASS", run.stdout + run.stderr


def test_check_outputs_compares_a_run_with_pytorch(project: Path) -> None:
    proc = subprocess.run(["make", "-C", str(project), "build/check/check_outputs"], capture_output=True, text=True)
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
    run = project / "run_out"
    run.mkdir()
    for arg in _outputs(project):  # a run that produced exactly PyTorch's outputs
        shutil.copyfile(project / EXPECTED_DIR / f"{arg}.bin", run / f"{arg}.bin")
    check = [str(project / "build/check/check_outputs"), str(run), str(project / EXPECTED_DIR)]
    good = subprocess.run(check, capture_output=True, text=True)
    assert good.returncode == 0 and good.stdout.splitlines()[-1] == "PASS", good.stdout + good.stderr
    _perturb_first_compared(project, _outputs(project)[-1], -1.0)
    bad = subprocess.run(check, capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stdout.splitlines()[-1] == "FAIL"
    (run / f"{_outputs(project)[0]}.bin").write_bytes(b"short")
    short = subprocess.run(check, capture_output=True, text=True)
    assert short.returncode == 2 and "must hold exactly" in short.stderr


def test_expected_outputs_follow_the_write_view(tmp_path: Path) -> None:
    """A write argument stores view(stream tensor): the expected file is the stream tensor in its packed layout,
    and the mask compares only the elements the view keeps (here rows 0:2 of a 4x8 stream, reshaped to 16)."""
    itype = parse_itensor_type("itensor<2x4xf32, tensor 4x8, [2, 2] * [2, 4], (d0, d1) -> (d0, d1)>")
    view = (ViewStep((2, 8), ((0, 2, 1), (0, 8, 1))), ViewStep((16,), None))
    arg = MemoryArgument("y", "y", "store_y", "write", "output", itype, (16,), view)
    plan = HbmPlan("top", (HbmAssignment(arg, 0, 0),))
    values = np.arange(16, dtype=np.float32) + 0.5
    files = write_expected_outputs(tmp_path, plan, {"y": values}, 1e-4)
    assert files == [f"{EXPECTED_DIR}/y.bin", f"{EXPECTED_DIR}/y.mask", f"{EXPECTED_DIR}/manifest.txt"]
    stream = unpack(itype, (tmp_path / EXPECTED_DIR / "y.bin").read_bytes())
    np.testing.assert_array_equal(stream[:2].ravel(), values)
    mask = np.frombuffer((tmp_path / EXPECTED_DIR / "y.mask").read_bytes(), dtype=np.uint8).reshape(2, 2, 2, 4)
    assert mask[0].all() and not mask[1].any()  # tiles of rows 0:2 compared, rows 2:4 not
    assert (tmp_path / EXPECTED_DIR / "manifest.txt").read_text().splitlines()[-1] == "output y f32 4 1 8 0.0001"


def _xrt_tree(tmp_path: Path) -> Path | None:
    """A XILINX_XRT folder over Debian's libxrt-dev (vitis-rules.md): include -> /usr/include/xrt, lib/ with
    links to the XRT libraries (XRT opens $XILINX_XRT/lib/libxrt_core.so.2 at run time). None without it."""
    include = Path("/usr/include/xrt")
    libs = sorted(p for d in Path("/usr/lib").glob("*-linux-gnu") for p in d.glob("libxrt_core*.so*"))
    if not (include / "xrt" / "xrt_kernel.h").is_file() or not libs:
        return None
    tree = tmp_path / "xrt"
    (tree / "lib").mkdir(parents=True)
    (tree / "include").symlink_to(include)
    for lib in libs:
        (tree / "lib" / lib.name).symlink_to(lib)
    return tree


def test_the_host_builds_against_the_real_xrt_and_fails_in_one_line_without_a_card(project: Path,
                                                                                   tmp_path: Path) -> None:
    tree = _xrt_tree(tmp_path)
    if tree is None:
        pytest.skip("XRT headers and libraries absent (apt-get install libxrt-dev: XRT 2.13)")
    env = {**os.environ, "XILINX_XRT": str(tree)}
    build = subprocess.run(["make", "-C", str(project), "host"], capture_output=True, text=True, env=env)
    assert build.returncode == 0 and build.stderr == "", build.stderr  # warning-free
    run = subprocess.run([str(project / "build/host/block_host"), str(project / "none.xclbin"), str(project / "params"),
                          str(tmp_path)], capture_output=True, text=True, env=env)
    assert run.returncode == 1
    assert run.stderr == (f"block_host: no device 0 ({U55C.board} with XRT's driver, or XCL_EMULATION_MODE for "
                          "emulation): Could not open device with index '0'\n")
