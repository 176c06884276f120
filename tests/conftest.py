"""Shared fixtures: compiled tiny blocks are cached per session (compiling takes ~1 s each)."""

from __future__ import annotations

import os
import sys
import warnings
from functools import cache
from pathlib import Path

import pytest

from streamtensor import compile_llm_block

warnings.filterwarnings("ignore", category=FutureWarning)
# No on-disk Linalg cache (frontend.linalg_cache) in tests: every compile exports, as the stage checks expect;
# tests of the cache name their own directory. Set before anything compiles; subprocesses inherit it.
os.environ["STREAMTENSOR_LINALG_CACHE"] = "off"
# The paper's reference figures live with the benchmarks that print them (benchmarks/paper_figures.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

FAMILIES = ["gpt2", "llama", "qwen2", "gemma"]
TINY_SEQ_LEN = 8
TINY_MAX_LEN = 16


@cache
def tiny_block(family: str, mode: str):  # noqa: ANN201 - (Design, DecoderBlock)
    return compile_llm_block(family, mode=mode, seq_len=TINY_SEQ_LEN, max_len=TINY_MAX_LEN, size="tiny")


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - (family, mode) -> project dir
    """The Vitis project of a tiny block (with its check data), written once per session."""
    done: dict[tuple[str, str], Path] = {}

    def get(family: str, mode: str) -> Path:
        if (family, mode) not in done:
            design, block = tiny_block(family, mode)
            out = tmp_path_factory.mktemp(f"{family}_{mode}")
            design.write_project(out, *block.example_inputs(0))
            done[family, mode] = out
        return done[family, mode]

    return get


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return request.param
