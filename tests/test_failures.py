"""Failures that fail: a deadlock in the compile's own timing simulation, a design over its device budget and
an SLR plan with no assignment are errors unless overridden (and the override is in the report); an exception
inside a stage is one line naming the stage and the model construct; link.cfg pins the kernel to an SLR only
when the whole kernel fits one; no IR field is left that no pass sets."""

from __future__ import annotations

import json
import re
from dataclasses import MISSING, fields, replace
from pathlib import Path

import pytest
import torch
from conftest import FAMILIES, tiny_block
from devices import device
from linalg_builders import two_gemvs

import streamtensor
from streamtensor import compile_llm_block
from streamtensor.cli import main
from streamtensor.codegen.vitis.boards import U55C
from streamtensor.errors import DeadlockError, ResourceBudgetError, StageError
from streamtensor.frontend.block import MODES, DecoderBlock
from streamtensor.ir.dataflow import KernelNode
from streamtensor.transforms.build_dataflow import build_dataflow
from streamtensor.transforms.tiling import TilingOptions, tile_graph

TINY = ["--seq-len", "8", "--max-len", "16", "-q"]
CYCLE = re.compile(r"deadlocks with the sized FIFOs: ((?:\w+ blocked (?:writing|reading) \w+ \((?:full|empty)\)"
                   r"(?: -> )?)+) -> (\w+) \(")


def _error_line(err: str) -> str:
    """The one line the CLI prints for an error (transformers' config notes aside)."""
    lines = [line for line in err.splitlines() if not line.startswith("[transformers]")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("streamtensor: error: ")
    return lines[0]


def test_deadlock_is_an_error_naming_the_cycle_and_writes_nothing(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    # Every FIFO capped at one token: a fork whose branches reconverge through a reduction cannot hold the
    # tokens the direct branch needs before the reduction's result exists.
    out = tmp_path / "dead"
    assert main(["compile", "gpt2", "--mode", "decode", "-o", str(out), "--max-fifo-depth", "1", *TINY]) == 2
    line = _error_line(capsys.readouterr().err)
    cycle = CYCLE.search(line)
    assert cycle is not None, line
    links = re.findall(r"(\w+) blocked (writing|reading) (\w+)", cycle.group(1))
    assert len(links) >= 2 and cycle.group(2) == links[0][0]  # the wait-for cycle closes
    assert "--allow-deadlock" in line
    assert not out.exists()  # no Vitis project, no IR, no report

    # The override writes the design and records what it let through, with the simulator's own cycle.
    assert main(["compile", "gpt2", "--mode", "decode", "-o", str(out), "--max-fifo-depth", "1", "--allow-deadlock",
                 *TINY]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["options"]["allow_deadlock"] is True and report["options"]["max_fifo_depth"] == 1
    assert report["simulation"]["deadlock"] is True
    assert report["overrides"] == {"allow_deadlock": [line.removeprefix("streamtensor: error: ")]}
    (simulated,) = report["simulation"]["deadlock_cycle"]
    assert simulated == f"DEADLOCK: {cycle.group(1)} -> {cycle.group(2)}"
    assert (out / "Makefile").is_file() and (out / "link.cfg").is_file()
    assert all(f["depth"] == 1 for f in report["fifos"])


def test_deadlock_error_from_the_api() -> None:
    with pytest.raises(DeadlockError, match="timing simulation of fusion group 0 deadlocks"):
        compile_llm_block("llama", mode="decode", seq_len=8, max_len=16, max_fifo_depth=1)
    design, _ = compile_llm_block("llama", mode="decode", seq_len=8, max_len=16, max_fifo_depth=1,
                                  allow_deadlock=True)
    assert design.report["overrides"].keys() == {"allow_deadlock"}
    normal, _ = tiny_block("llama", "decode")
    assert normal.report["overrides"] == {} and not normal.report["simulation"]["deadlock"]


def test_design_over_budget_is_an_error(tmp_path: Path) -> None:
    small = device("small", dsp=4, bram36=4, uram=4, lut=7_000)  # 12 DSP, 21,000 LUT in all
    with pytest.raises(ResourceBudgetError) as err:
        compile_llm_block("llama", mode="decode", seq_len=8, max_len=16, target=small)
    line = str(err.value)
    assert re.fullmatch(r"the design does not fit the small \(small\): fusion group 0 needs dsp \d+ of 12, "
                        r".*lut \d+ of 21000 \(.*--allow-unfit.*\)", line), line
    design, _ = compile_llm_block("llama", mode="decode", seq_len=8, max_len=16, target=small, allow_unfit=True)
    report = design.report
    assert report["overrides"] == {"allow_unfit": [line]}
    assert report["resources"]["fits"] is False and report["resources"]["per_slr"] == []  # nothing placed


def test_slr_plan_without_assignment_is_an_error() -> None:
    # The device holds the design, but its dies have one DSP each: an fp32 multiply-accumulate lane needs more.
    diced = device("diced", dsp=1, bram36=1_000, uram=1_000, lut=10_000_000, slrs=1_000)
    with pytest.raises(ResourceBudgetError, match=r"fusion group 0 has no SLR placement: node \w+ alone exceeds "
                                                   r"one SLR's capacity of .*--allow-unfit"):
        compile_llm_block("llama", mode="decode", seq_len=8, max_len=16, target=diced)
    allowed, _ = compile_llm_block("llama", mode="decode", seq_len=8, max_len=16, target=diced, allow_unfit=True)
    (let_through,) = allowed.report["overrides"]["allow_unfit"]
    assert let_through.startswith("fusion group 0 has no SLR placement: ")
    assert allowed.report["resources"]["fits"] is True


def test_link_cfg_pins_the_kernel_only_when_it_fits_one_slr(tmp_path: Path) -> None:
    # The default tiny GPT-2 prefill takes nearly all of the device's LUTs: never pinned to one die, split over
    # the dies by the SLR plan (floorplan.tcl, given to Vivado by make link). With one lane per kernel the whole
    # kernel fits one SLR: pinned there whole, every process on that die, no floorplan.
    assert main(["compile", "gpt2", "-o", str(tmp_path / "wide"), *TINY]) == 0
    assert main(["compile", "gpt2", "-o", str(tmp_path / "narrow"), "--overall-unroll-size", "1", *TINY]) == 0
    for name, pinned in (("wide", False), ("narrow", True)):
        out = tmp_path / name
        res = json.loads((out / "report.json").read_text())["resources"]
        link = (out / "link.cfg").read_text()
        plan = res["slr_plan"]
        assert plan["realised"] is True and plan["single_slr"] is pinned and plan["split"] is not pinned
        over_a_die = any(res[r] > res["die"][r] for r in ("dsp", "bram36", "uram", "lut"))
        assert over_a_die is not pinned
        assert ("slr=gpt2_prefill_1:SLR0\n" in link) is pinned
        assert ("slr=" in link.replace("no slr=", "")) is pinned
        slrs = {p["slr"] for p in res["processes"].values()}
        assert (out / "floorplan.tcl").is_file() is not pinned
        makefile = (out / "Makefile").read_text()
        assert ("--vivado.prop run.impl_1.STEPS.OPT_DESIGN.TCL.PRE=$(CURDIR)/floorplan.tcl" in makefile) is not pinned
        if pinned:
            assert slrs == {0}
            continue
        assert len(slrs) > 1 and f"the kernel needs {len(slrs)} SLRs; floorplan.tcl" in link
        # floorplan.tcl places exactly the processes of the plan, each on its die, within each die's budget.
        placed = re.findall(r"^streamtensor_place (\d+) (\w+)$", (out / "floorplan.tcl").read_text(), re.M)
        assert sorted((name, int(slr)) for slr, name in placed) == sorted((n, p["slr"]) for n, p in
                                                                          res["processes"].items())
        for slr in slrs:
            for r in ("dsp", "bram36", "uram", "lut"):
                use = sum(p[r] for p in res["processes"].values() if p["slr"] == slr)
                assert use <= res["die"][r], (slr, r)


class _DataDependent(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.sum() > 0 else x  # control flow on a tensor's value: torch.export cannot trace it


def test_exception_in_a_stage_names_the_stage_and_the_module() -> None:
    with pytest.raises(StageError) as info:
        streamtensor.compile(_DataDependent(), [torch.randn(4, 8)])
    msg = str(info.value)
    assert msg.startswith("stage frontend.torch_to_linalg failed on module _DataDependent: ")
    assert "\n" not in msg and "--debug" in msg
    assert info.value.__cause__ is not None


def test_running_out_of_memory_blames_the_design_point_not_the_construct() -> None:
    msg = str(StageError("allocation.fifo_lp", "layer 0 of model llama", MemoryError("Unable to allocate 918. MiB")))
    assert msg.startswith("stage allocation.fifo_lp failed on layer 0 of model llama: MemoryError: Unable to ")
    assert "needs more memory than this machine has" in msg and "unsupported" not in msg


def test_running_out_of_memory_writing_the_report_is_one_line_on_the_cli(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The report of a huge network's simulation can exhaust the memory cap after every compile stage: its stage is
    named, and the design point is blamed (no "report it": not a bug)."""
    import streamtensor.driver as driver

    def exhausted(*args: object) -> None:
        raise MemoryError("Unable to allocate 56.8 MiB")

    monkeypatch.setattr(driver, "write_report", exhausted)
    assert main(["compile", "gpt2", "--mode", "decode", "-o", str(tmp_path / "x"), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the model's own warnings
    assert err.startswith("streamtensor: error: stage report failed on ")
    assert "needs more memory than this machine has" in err and "report it" not in err


def test_running_out_of_memory_outside_a_stage_blames_the_design_point(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import streamtensor.cli as cli

    def exhausted(args: object) -> None:
        raise MemoryError("Unable to allocate 56.8 MiB")

    monkeypatch.setattr(cli, "_compile", exhausted)
    assert main(["compile", "gpt2", "-o", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip() == ("streamtensor: error: compile ran out of memory -- the design point "
                                               "needs more memory than this machine has (finer tiles mean more "
                                               "firings for the timing simulation to hold)")


def test_unsupported_model_is_one_line_on_the_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    # A block whose forward branches on data, as an unsupported model would: export raises deep inside torch.
    def forward(self: DecoderBlock, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (args[0] * 2,) if args[0].sum() > 0 else (args[0],)

    monkeypatch.setattr(DecoderBlock, "forward", forward)
    out = str(tmp_path / "x")
    assert main(["compile", "llama", "--mode", "decode", "-o", out, *TINY]) == 2
    captured = capsys.readouterr()
    line = _error_line(captured.err)
    assert line.startswith("streamtensor: error: stage frontend.torch_to_linalg failed on layer 0 "
                           "(LlamaDecoderLayer, decode) of model llama: ")
    assert captured.out == ""
    assert main(["compile", "llama", "--mode", "decode", "-o", out, *TINY, "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1] == line


def test_no_kernel_field_is_left_unset_by_every_pass() -> None:
    """Every KernelNode field with a default is set to something else by some pass on the tiny blocks: a field
    no pass sets (like the removed ``local_operands``) is dead weight its readers pretend to handle."""
    defaults = {f.name: f.default if f.default is not MISSING else f.default_factory()
                for f in fields(KernelNode) if f.default is not MISSING or f.default_factory is not MISSING}
    assert defaults  # the fields with defaults: those a pass may leave as they are
    graphs = []
    for family in FAMILIES:
        for mode in MODES:
            design, _ = tiny_block(family, mode)
            assert design.dataflow is not None
            graphs.append(design.dataflow)
    # No tiny block is bound by its HBM bandwidth; two many-token projections on one pseudo-channel are (their
    # kernels' pipeline II paced to the weight DMAs).
    one_channel = replace(U55C, hbm=replace(U55C.hbm, channels=1))
    gemvs = two_gemvs(512)
    graphs.append(build_dataflow(gemvs, tile_graph(gemvs, one_channel, TilingOptions(16, 1024))))
    set_somewhere = set()
    for graph in graphs:
        for node in graph.nodes.values():
            if isinstance(node, KernelNode):
                set_somewhere |= {n for n, d in defaults.items() if getattr(node, n) != d}
    assert set_somewhere == set(defaults)
