"""The on-disk Linalg cache (frontend.linalg_cache): a hit gives the graph an export gives and says so in the
report; other weights, another geometry or other sources miss; an unreadable entry is a miss, rewritten."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from streamtensor.driver import compile, compile_llm_block
from streamtensor.frontend import linalg_cache
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
