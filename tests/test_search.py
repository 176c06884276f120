"""`streamtensor dse` (streamtensor.search): trials counted from the storage, shared by two processes, resumed after
an interruption; infeasible points pruned with their reason; bad options in one line. Tiny decode blocks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from streamtensor import search
from streamtensor.cli import main
from streamtensor.errors import OptionError, ResourceBudgetError, SimulationSizeError, StageError
from streamtensor.search import dse, open_storage, parse_objectives

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = {"mode": "decode", "size": "tiny", "max_len": 16}


def study_trials(storage: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=open_storage(storage)).get_trials()


def dse_process(out: Path, storage: Path, trials: int) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "streamtensor.cli", "dse", "gpt2", "-o", str(out), "--trials", str(trials),
           "--storage", str(storage), "--study-name", "shared", "--mode", "decode", "--size", "tiny",
           "--max-len", "16"]
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow  # two CLI processes, each importing torch and compiling: over a minute on a loaded machine
def test_two_processes_finish_one_study_together(tmp_path: Path) -> None:
    storage = tmp_path / "study.journal"
    procs = [dse_process(tmp_path / f"out{i}", storage, trials=3) for i in range(2)]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    trials = study_trials(str(storage), "shared")
    # Each process asked for 3 trials of the study: together they ran 3 (4 when both took the last at once).
    assert 3 <= len(trials) <= 4
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert all("study shared" in out for out in outputs)
    for i in range(2):
        best = json.loads((tmp_path / f"out{i}" / "best.json").read_text())
        assert best["best"] and best["objectives"] == {"tokens_per_s": "maximize"}
        assert (tmp_path / f"out{i}" / "best" / "Makefile").is_file()


@pytest.mark.slow  # a CLI process killed mid-study, then a resume
def test_an_interrupted_study_resumes(tmp_path: Path) -> None:
    storage = tmp_path / "study.journal"
    proc = dse_process(tmp_path / "out", storage, trials=5)
    deadline = time.time() + 600
    # Kill it (as a crash would) once a trial has finished; the next one may be running.
    while time.time() < deadline:
        if storage.exists():
            done = [t for t in study_trials(str(storage), "shared") if t.state == TrialState.COMPLETE]
            if done:
                break
        time.sleep(0.5)
    proc.kill()
    proc.communicate()
    before = study_trials(str(storage), "shared")
    assert any(t.state == TrialState.COMPLETE for t in before)
    result = dse("gpt2", tmp_path / "out", trials=len(before) + 1, storage=str(storage), study_name="shared",
                 write_best=False, **TINY)
    states = [t.state for t in result.trials]
    # The killed trial (if any) is failed, not left running; one more trial ran; the finished ones are kept.
    assert TrialState.RUNNING not in states
    assert len(result.trials) == len(before) + 1
    complete = {t.number for t in result.trials if t.state == TrialState.COMPLETE}
    assert {t.number for t in before if t.state == TrialState.COMPLETE} <= complete
    assert states[-1] == TrialState.COMPLETE
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| trial | state |" in summary
    # Only the first trial is the compiler's default (neighbours of the best are enqueued too).
    assert summary.count("The compiler's default point is trial") == 1 and "default point is trial 0." in summary


class _StandIn:
    """What the search reads of a compiled design: a memory ratio that falls with the tile size and with one
    token row (the study's bookkeeping and sampling are under test, not the compiler)."""

    def __init__(self, options: dict[str, Any]) -> None:
        ratio = 0.5 / int(options["default_tile_size"]) + 0.1 * (options["max_token_rank"] == 2)
        self.report = {"memory": {"fused_to_unfused": ratio}, "simulation": {"makespan_cycles": 100}}


def _stand_in_compile(model: str, **options: Any) -> tuple[_StandIn, None]:
    return _StandIn(options), None


def test_a_study_resumes_from_its_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In one process (the quick version of the two tests above, with a stand-in for the compile: the study's
    bookkeeping is under test): a study left with a trial running by a process that is gone and rerun with a
    larger count fails that trial, keeps the finished ones and adds the rest; its first trial is the compiler's
    default point, and the stored best is readable."""

    monkeypatch.setattr(search, "compile_llm_block", _stand_in_compile)
    storage = str(tmp_path / "study.journal")
    first = dse("gpt2", tmp_path, trials=1, storage=storage, study_name="s", write_best=False, objective="memory",
                **TINY)
    assert [t.state for t in first.trials] == [TrialState.COMPLETE]
    assert first.trials[0].params == search.default_point("decode")
    study = optuna.load_study(study_name="s", storage=open_storage(storage))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = study.ask()  # as a worker killed mid-trial leaves it
    orphan.set_user_attr("host", socket.gethostname())
    orphan.set_user_attr("pid", int(dead.stdout))
    again = dse("gpt2", tmp_path, trials=3, storage=storage, study_name="s", write_best=False, objective="memory",
                **TINY)
    states = [t.state for t in again.trials]
    assert states[0] == TrialState.COMPLETE and states[1] == TrialState.FAIL and len(states) == 3
    assert states[2] in (TrialState.COMPLETE, TrialState.PRUNED)
    assert again.trials[0].values == first.trials[0].values
    # The next trial is a neighbour of the best (the default): one option changed.
    default = search.default_point("decode")
    assert sum(again.trials[2].params[k] != v for k, v in default.items()) == 1
    best = search.stored_best(storage, "s")
    assert best.value == min(t.value for t in again.trials if t.state == TrialState.COMPLETE)
    with pytest.raises(OptionError, match="no best trial of study 'other'"):
        search.stored_best(storage, "other")


@pytest.mark.parametrize("error", [ResourceBudgetError, lambda text: SimulationSizeError(text, 1 << 25)],
                         ids=["unfit", "too-many-tokens"])
def test_infeasible_trials_are_pruned_with_their_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        error: Callable[[str], Exception]) -> None:
    """A design that does not fit, or whose streams carry too many tokens for its compile to simulate, is
    infeasible."""
    def unfit(model: str, **options: object) -> None:
        raise error(f"the design does not fit (tile {options['default_tile_size']})")

    monkeypatch.setattr(search, "compile_llm_block", unfit)
    result = dse("gpt2", tmp_path, trials=2, objective="memory", **TINY)
    assert [t.state for t in result.trials] == [TrialState.PRUNED, TrialState.PRUNED]
    assert all("does not fit" in t.user_attrs["reason"] for t in result.trials)
    assert result.best == []
    summary = (tmp_path / "summary.md").read_text()
    assert "2 pruned as infeasible" in summary and "does not fit (tile" in summary
    assert json.loads((tmp_path / "best.json").read_text())["best"] == []


def test_bad_options_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_objectives("tokens_per_s, memory") == ("tokens_per_s", "memory")
    for bad in ("speed", "memory,memory", ""):
        with pytest.raises(OptionError, match="bad objective"):
            parse_objectives(bad)
    with pytest.raises(OptionError, match="bad quant 'w2a8' to fix in the search: expected one of fp32, w8a8, w4a8"):
        dse("gpt2", tmp_path, trials=1, quant="w2a8", **TINY)
    with pytest.raises(OptionError, match="bad timeout"):
        dse("gpt2", tmp_path, trials=1, timeout=0, **TINY)
    assert main(["dse", "gpt2", "-o", str(tmp_path), "--trials", "1", "--objective", "speed"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("streamtensor: error: bad objective speed")


def test_the_local_search_climbs_from_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One objective: neighbours of the best first. A stand-in compile whose memory ratio falls with the tile size
    and with one token row; two moves from the default reach its minimum within the default's neighbourhood sizes
    (1 + 2 x 18 trials), where random sampling of the 27,648 points would take thousands."""

    monkeypatch.setattr(search, "compile_llm_block", _stand_in_compile)
    neighbours = sum(len(choices) - 1 for choices in search.SPACE.values())
    assert neighbours == 18
    result = dse("gpt2", tmp_path, trials=1 + 2 * neighbours, objective="memory", write_best=False, **TINY)
    assert result.best[0].value == pytest.approx(0.5 / 32)
    assert result.best[0].params["max_token_rank"] == 1 and result.best[0].params["default_tile_size"] == 32
    # Steepest ascent: the default's whole neighbourhood comes first (the tile-32 neighbour, a smaller gain than
    # one token row, does not pull the search away before the rest was tried), then the best move's.
    default = search.default_point("decode")
    first = result.trials[1:1 + neighbours]
    assert all(sum(t.params[k] != v for k, v in default.items()) == 1 for t in first)
    moved = {**default, "max_token_rank": 1}  # its neighbourhood less the default, tried already
    assert all(sum(t.params[k] != v for k, v in moved.items()) == 1
               for t in result.trials[1 + neighbours:2 * neighbours])


def test_an_option_given_to_the_search_is_fixed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--quant w4a8``: every trial compiles W4A8 (the option narrowed to that value); the other options move."""
    compiled: list[dict[str, Any]] = []

    def recording(model: str, **options: Any) -> tuple[_StandIn, None]:
        compiled.append(options)
        return _stand_in_compile(model, **options)

    monkeypatch.setattr(search, "compile_llm_block", recording)
    result = dse("gpt2", tmp_path, trials=4, objective="memory", write_best=False, quant="w4a8", **TINY)
    assert [o["quant"] for o in compiled] == ["w4a8"] * 4
    assert all(t.params["quant"] == "w4a8" for t in result.trials)
    assert len({tuple(sorted(o.items())) for o in compiled}) == 4  # the neighbours differ in other options
    # Unfixed, the quantization is a dimension of the space: the default point is fp32, a neighbour may change it.
    assert search.default_point("decode")["quant"] == "fp32"
    assert search.default_point("decode", {"quant": "w8a8"})["quant"] == "w8a8"


def test_a_trial_out_of_memory_is_pruned_under_the_workers_cap(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A design point too large to compile here fails its allocation under the worker's address-space cap (a
    MemoryError in a stage), and the trial is pruned as infeasible with that reason; the study goes on and the
    process's limit is restored afterwards."""
    import resource

    before = resource.getrlimit(resource.RLIMIT_AS)
    seen: list[tuple[int, int]] = []

    def huge_at_tile_4(model: str, **options: Any) -> tuple[_StandIn, None]:
        seen.append(resource.getrlimit(resource.RLIMIT_AS))
        if options["default_tile_size"] == 4:
            try:
                bytearray(seen[-1][0])  # the whole cap at once: over it, as the address space holds more
            except MemoryError as err:
                raise StageError("allocation.fifo_lp", "layer 0", err) from err
            raise AssertionError("the cap did not hold")
        return _stand_in_compile(model, **options)

    monkeypatch.setattr(search, "compile_llm_block", huge_at_tile_4)
    monkeypatch.setattr(search, "_untried_neighbour", lambda study, space, seed: (
        None if len(study.trials) > 1 else {**search.default_point("decode"), "default_tile_size": 4}))
    result = dse("gpt2", tmp_path, trials=3, objective="memory", write_best=False, **TINY)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert all(0 < soft <= search.MEMORY_SHARE * total for soft, _ in seen)
    assert resource.getrlimit(resource.RLIMIT_AS) == before
    pruned = [t for t in result.trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.params["default_tile_size"] == 4 for t in pruned)
    assert result.trials[1] in pruned  # the neighbour at 4-element tiles
    assert "needs more memory than this machine has" in pruned[0].user_attrs["reason"]
    assert len(result.trials) == 3
