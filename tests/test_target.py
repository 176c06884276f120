"""The device is one ``Target``: boards by name, a report and a project that name it, decisions that follow it,
and no device number outside the board descriptions."""

from __future__ import annotations

import ast
import json
import re
from fractions import Fraction
from pathlib import Path

import pytest
from test_fusion import GraphBuilder, ew_kernel

from streamtensor import compile_llm_block
from streamtensor.cli import main
from streamtensor.codegen.vitis.boards import TARGETS, U55C, U280, get_target
from streamtensor.errors import OptionError, ResourceBudgetError
from streamtensor.ir.dataflow import DataflowGraph
from streamtensor.passes import run_passes

SRC = Path(__file__).resolve().parents[1] / "src" / "streamtensor"
BOARDS = SRC / "codegen" / "vitis" / "boards"
HALF = U55C.scaled(Fraction(1, 2), name="u55c_half")


def test_boards_by_name() -> None:
    assert TARGETS == {"u55c": U55C, "u280": U280}
    assert get_target("u280") is U280 and get_target(HALF) is HALF
    with pytest.raises(OptionError, match=r"unknown target 'vu9p' \(known: u55c, u280\)"):
        get_target("vu9p")
    # The same dies, half the HBM per channel, its own part, platform and power.
    assert U280.totals == U55C.totals and U280.hbm.channel_bytes * 2 == U55C.hbm.channel_bytes
    assert (U280.part, U280.platform) != (U55C.part, U55C.platform)
    assert U55C.onchip_bytes == 2016 * 36 * 1024 // 8 + 960 * 288 * 1024 // 8 == 44_679_168
    assert HALF.totals.dsp == U55C.totals.dsp // 2 and HALF.hbm.channels == 16


def test_cli_rejects_an_unknown_target_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["compile", "gpt2", "--target", "vu9p", "-o", str(tmp_path / "x")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == ("streamtensor: error: argument --target: invalid choice: 'vu9p' "
                                       "(choose from 'u55c', 'u280')\n")


def test_u280_compiles_and_verifies_tiny_gpt2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "u280"
    assert main(["compile", "gpt2", "--target", "u280", "--seq-len", "16", "-q", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["target"]["name"] == "u280" and report["options"]["target"] == "u280"
    assert report["target"]["part"] == "xcu280-fsvh2892-2L-e"
    assert "PLATFORM := xilinx_u280_gen3x16_xdma_1_202211_1" in (out / "Makefile").read_text()
    assert "part=xcu280-fsvh2892-2L-e" in (out / "hls_config.cfg").read_text()
    assert "AMD Alveo U280" in (out / "README.md").read_text()
    assert main(["verify", str(out), "--runs", "1"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("PASS")


def test_halved_target_changes_tiling_and_allocation() -> None:
    full, _ = compile_llm_block("gpt2", mode="prefill", seq_len=16)
    # Half the dies: the per-die datapath share stops the big contractions' unroll earlier (cheaper kernels may
    # still grow: the unroll goes on while any kernel fits), and the design no longer fits.
    with pytest.raises(ResourceBudgetError, match=r"does not fit the AMD Alveo U55C \(u55c_half\)"):
        compile_llm_block("gpt2", mode="prefill", seq_len=16, target=HALF)
    half, _ = compile_llm_block("gpt2", mode="prefill", seq_len=16, target=HALF, allow_unfit=True)
    assert full.tiling is not None and half.tiling is not None
    processes = full.report["resources"]["processes"]
    biggest = max(full.tiling.ops, key=lambda name: processes[name]["dsp"] if name in processes else 0)
    assert half.tiling.ops[biggest].lanes < full.tiling.ops[biggest].lanes
    assert half.report["resources"]["dsp"] < full.report["resources"]["dsp"]
    assert full.report["resources"]["fits"] and not half.report["resources"]["fits"]
    assert half.report["target"]["dsp"] == full.report["target"]["dsp"] // 2


def big_two_converter_chain() -> DataflowGraph:
    """dma -> k0 -> conv0 -> k1 -> conv1 -> k2 -> dma on 2048 x 2048 f32, tile orders alternating: each converter
    buffers the whole tensor (16 MiB, one bank)."""
    b = GraphBuilder("big").add(ew_kernel("k0", 1, "math.exp", size=2048),
                                ew_kernel("k1", 1, "arith.mulf", tile_order=(0, 1), size=2048),
                                ew_kernel("k2", 1, "math.exp", size=2048))
    b.dma_in("dma_x", "k0.in0").convert("conv0", "k0.out", "k1.in0").convert("conv1", "k1.out", "k2.in0")
    return b.dma_out("dma_out", "k2.out").graph()


def test_halved_target_changes_fusion() -> None:
    # Two converters each buffering a whole 16 MiB tensor: both fit the U55C's 42.6 MiB of BRAM and URAM, only
    # one fits half of it.
    graph = big_two_converter_chain()
    assert [n.buffer.bytes for n in graph.nodes.values() if hasattr(n, "buffer")] == [2048 * 2048 * 4] * 2
    full = run_passes(big_two_converter_chain(), ["fusion"], U55C)
    half = run_passes(big_two_converter_chain(), ["fusion"], HALF)
    assert isinstance(full, DataflowGraph) and isinstance(half, DataflowGraph)
    assert len(full.groups) == 1 and len(half.groups) == 2


def _constants(path: Path) -> list[tuple[int, object]]:
    """Literal ints and strings of a module's code (docstrings left out)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and id(node) not in docstrings]


# Figures only a board knows: resource totals and per-die budgets, HBM capacity and bandwidth, clocks.
DEVICE_INTS = {9_024, 2_016, 960, 1_303_680, 3_008, 672, 320, 434_560, 14_375_000_000, 460_000_000_000,
               250_000_000, 300_000_000, 512 * 2**20, 256 * 2**20}
DEVICE_STRINGS = re.compile(r"xcu\d|xilinx_u\d|Alveo")


def test_no_device_number_outside_the_boards() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if BOARDS in path.parents:
            continue
        for line, value in _constants(path):
            if (isinstance(value, int) and not isinstance(value, bool) and value in DEVICE_INTS) or (
                    isinstance(value, str) and DEVICE_STRINGS.search(value)):
                found.append(f"{path.relative_to(SRC)}:{line}: {value!r}")
    assert not found, "device figures outside codegen/vitis/boards:\n" + "\n".join(found)
