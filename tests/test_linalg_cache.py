"""The on-disk Linalg cache (frontend.linalg_cache): a hit gives the graph an export gives and says so in the
report; other weights, another geometry or other sources miss; an unreadable entry is a miss, rewritten. The
frontend cache of built-in blocks (frontend.block_cache): a hit builds no model, imports no transformers, and
gives the report and check data a miss gives; the command line's compile on a hit imports no PyTorch at all."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import streamtensor
import streamtensor.cli
from streamtensor.driver import CompileOptions, _block_key, compile, compile_llm_block
from streamtensor.errors import OptionError
from streamtensor.frontend import block_cache, linalg_cache
from streamtensor.passes import print_ir

TINY = {"mode": "decode", "size": "tiny", "max_len": 16, "size_fifos": False}


def test_a_second_compile_hits_and_matches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMTENSOR_LINALG_CACHE", str(tmp_path))
    first, _ = compile_llm_block("gpt2", **TINY)
    second, _ = compile_llm_block("gpt2", **TINY)
    assert first.report["frontend_cache"]["linalg"] == "miss"
    assert second.report["frontend_cache"]["linalg"] == "hit"
    assert "frontend.torch_to_linalg" in first.stages and "frontend.torch_to_linalg" not in second.stages
    assert print_ir(first.graph) == print_ir(second.graph)
    assert print_ir(first.dataflow) == print_ir(second.dataflow)
    assert len(list(tmp_path.glob("*.pickle"))) == 1


def test_a_module_attribute_is_part_of_the_key() -> None:
    class Scale(torch.nn.Module):
        def __init__(self, factor: float) -> None:
            super().__init__()
            self.factor = factor

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.factor

    args = [torch.ones(2, 4)]
    assert linalg_cache.cache_key(Scale(2.0), args, None, ()) != linalg_cache.cache_key(Scale(3.0), args, None, ())
    assert linalg_cache.cache_key(Scale(2.0), args, None, ()) == linalg_cache.cache_key(Scale(2.0), args, None, ())
    assert linalg_cache.cache_key(Scale(2.0), args, None, ()) != linalg_cache.cache_key(Scale(2.0), [torch.ones(4, 2)],
                                                                                        None, ())
    # Weights and names are part of it too.
    torch.manual_seed(0)
    a, b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    assert linalg_cache.cache_key(a, args, None, ()) != linalg_cache.cache_key(b, args, None, ())
    assert linalg_cache.cache_key(a, args, None, ()) != linalg_cache.cache_key(a, args, ["x"], ())


def test_unreadable_entries_miss_and_off_exports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMTENSOR_LINALG_CACHE", str(tmp_path))
    module, args = torch.nn.Linear(4, 3), [torch.ones(2, 4)]
    first = compile(module, args, size_fifos=False)
    entry = Path(first.report["frontend_cache"]["path"])
    entry.write_bytes(b"not a pickle")
    again = compile(module, args, size_fifos=False)
    assert again.report["frontend_cache"]["linalg"] == "miss"
    assert compile(module, args, size_fifos=False).report["frontend_cache"]["linalg"] == "hit"
    monkeypatch.setenv("STREAMTENSOR_LINALG_CACHE", "off")
    off = compile(module, args, size_fifos=False)
    assert off.report["frontend_cache"] == {"linalg": "off", "key": "", "path": ""}
    assert print_ir(off.graph) == print_ir(first.graph)


# --- the frontend cache of built-in blocks (frontend.block_cache) ----------------------------------------------

_TIMING_KEYS = ("stages", "stage_cpu_seconds", "frontend_cache", "allocation_seconds", "fifo_lp")


def _untimed(report: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in report.items() if k not in _TIMING_KEYS}


@pytest.mark.parametrize("options", [
    {"mode": "decode", "max_len": 16},
    # Calibration and the fp32 reference as well: four more compile stages (over 20 s on a loaded machine).
    pytest.param({"mode": "prefill", "seq_len": 4, "quant": "w4a8"}, marks=pytest.mark.slow),
])
def test_a_cached_block_builds_no_model_and_writes_the_same_project(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, object]) -> None:
    monkeypatch.setenv("STREAMTENSOR_LINALG_CACHE", str(tmp_path / "cache"))
    first, first_block = compile_llm_block("gpt2", size="tiny", **options)
    second, second_block = compile_llm_block("gpt2", size="tiny", **options)
    assert isinstance(second_block, block_cache.CachedBlock) and second.module is None
    assert "frontend.load_model" in first.stages and "frontend.block_cache_store" in first.stages
    assert "frontend.load_model" not in second.stages and "frontend.block_cache_load" in second.stages
    assert second.report["frontend_cache"]["linalg"] == "hit"
    assert _untimed(first.report) == _untimed(second.report)
    first.write_project(tmp_path / "a", *first_block.example_inputs(0))
    second.write_project(tmp_path / "b", *second_block.example_inputs(0))
    for name in sorted(p.name for p in (tmp_path / "a" / "check").glob("*.npz")):
        a, b = np.load(tmp_path / "a" / "check" / name), np.load(tmp_path / "b" / "check" / name)
        assert sorted(a.files) == sorted(b.files) and all(np.array_equal(a[f], b[f]) for f in a.files), name
    with pytest.raises(OptionError, match="reference outputs for other inputs"):
        second.write_project(tmp_path / "c", *first_block.example_inputs(1))


def test_the_block_key_names_every_frontend_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMTENSOR_LINALG_CACHE", str(tmp_path))
    base = CompileOptions(mode="decode")
    keys = {_block_key("gpt2", replace(base, **change)) for change in
            ({}, {"seed": 1}, {"layer": 1}, {"mode": "prefill"}, {"max_len": 64}, {"quant": "w8a8"},
             {"kv_quant": "int8"}, {"size": "paper"})}
    assert len(keys) == 8
    assert _block_key("gpt2", replace(base, fifo_strategy="conservative")) == _block_key("gpt2", base)
    assert _block_key(str(tmp_path), base) is None  # a checkpoint: its weights are read anyway
    monkeypatch.setenv("STREAMTENSOR_LINALG_CACHE", "off")
    assert _block_key("gpt2", base) is None


def test_a_cache_hit_imports_no_transformers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMTENSOR_LINALG_CACHE", str(tmp_path))
    compile_llm_block("gpt2", **TINY)
    code = ("import sys; from streamtensor import compile_llm_block; "
            "d, _ = compile_llm_block('gpt2', mode='decode', size='tiny', max_len=16, size_fifos=False); "
            "assert d.report['frontend_cache']['linalg'] == 'hit'; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'torch_mlir', 'optuna')))")
    env = {**os.environ, "PYTHONPATH": str(Path(streamtensor.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_cli_compile_on_a_hit_imports_no_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 21: ``import torch`` alone costs 2-3 CPU s of every compile; a cached frontend needs none of it, through
    # the FIFO sizing, the report and the Vitis project with its check data.
    monkeypatch.setenv("STREAMTENSOR_LINALG_CACHE", str(tmp_path / "cache"))
    argv = ["compile", "gpt2", "--size", "tiny", "--mode", "decode", "--max-len", "16", "--quiet"]
    assert streamtensor.cli.main([*argv, "-o", str(tmp_path / "first")]) == 0
    code = ("import sys; from streamtensor.cli import main; "
            f"assert main({[*argv, '-o', str(tmp_path / 'second')]!r}) == 0; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'torch_mlir'}))")
    env = {**os.environ, "PYTHONPATH": str(Path(streamtensor.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
    first, second = (np.load(tmp_path / d / "check" / "expected.npz") for d in ("first", "second"))
    assert sorted(first) == sorted(second) and all(np.array_equal(first[k], second[k]) for k in first)
