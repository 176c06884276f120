"""Every error path names the problem (and, for ops, the op, its dialect and the PyTorch source line)."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import streamtensor
from streamtensor import CompileOptions, compile_llm_block
from streamtensor.analysis.allocation import stream_tokens
from streamtensor.errors import ModelError, OptionError, ShapeError, SimulationSizeError, UnsupportedOpError
from streamtensor.transforms.tiling.plan import TilingOptions


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamtensor.cli", *args], capture_output=True, text=True)


class _Sorts(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sort(x, dim=-1).values * 2  # sort has no linalg-on-tensors lowering


def test_unsupported_op_names_op_dialect_and_location() -> None:
    with pytest.raises(UnsupportedOpError) as info:
        streamtensor.compile(_Sorts(), [torch.randn(4, 8)])
    msg = str(info.value)
    # torch-mlir lowers sort to its own tm_tensor dialect, which has no dataflow lowering.
    line = inspect.getsourcelines(_Sorts.forward)[1] + 1  # the torch.sort line
    assert msg.startswith(f"unsupported op 'tm_tensor.sort' of dialect 'tm_tensor' (from test_errors.py:{line})")


def test_unknown_model_cli() -> None:
    proc = _cli("compile", "bert", "-o", "/tmp/unused")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == ("streamtensor: error: unknown model 'bert': expected one of "
                                                    "gpt2, llama, qwen2, gemma or the path of a local Hugging "
                                                    "Face checkpoint directory")
    assert "Traceback" not in proc.stderr


def test_bad_option_values_cli() -> None:
    proc = _cli("compile", "gpt2", "-o", "/tmp/unused", "--seq-len", "0")
    assert proc.returncode == 2 and "argument --seq-len: 0 must be at least 1" in proc.stderr
    proc = _cli("compile", "gpt2", "-o", "/tmp/unused", "--mode", "train")
    assert proc.returncode == 2 and "argument --mode: invalid choice: 'train'" in proc.stderr
    proc = _cli("compile", "gpt2", "-o", "/tmp/unused", "--size", "huge")
    assert "argument --size: invalid choice: 'huge'" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_options_api() -> None:
    with pytest.raises(OptionError, match="bad mode 'train': expected one of prefill, decode"):
        compile_llm_block("gpt2", mode="train")
    with pytest.raises(OptionError, match="unknown option\\(s\\) tile: expected some of"):
        compile_llm_block("gpt2", tile=3)
    with pytest.raises(OptionError, match="bad layer index 7: the model has 1 decoder layers"):
        compile_llm_block("gpt2", layer=7)
    with pytest.raises(OptionError, match="bad default-tile-size 0: must be an integer of at least 1"):
        compile_llm_block("gpt2", default_tile_size=0)
    with pytest.raises(OptionError, match="bad max-stream-tokens -1: expected a number of tokens >= 1, or 0"):
        compile_llm_block("gpt2", max_stream_tokens=-1)
    with pytest.raises(OptionError, match="bad fuse-into-contractions 'no': must be true or false"):
        compile_llm_block("gpt2", fuse_into_contractions="no")
    with pytest.raises(OptionError, match="give the tiling either as tiling= or as default_tile_size, not both"):
        CompileOptions.from_kwargs({"tiling": TilingOptions(), "default_tile_size": 8})


def test_flat_tiling_keywords_fill_the_tiling_options() -> None:
    opts = CompileOptions.from_kwargs({"mode": "decode", "default_tile_size": 8, "agree_tiles": False})
    # No token tile given: the compiler chooses it (None), as for a compile without tiling keywords.
    assert opts.tiling == TilingOptions(default_tile_size=8, agree_tiles=False, token_tile_size=None)
    assert opts.mode == "decode"
    given = TilingOptions(overall_unroll_size=64)
    assert CompileOptions.from_kwargs({"tiling": given}).tiling is given


def test_missing_checkpoint_pieces(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=f"checkpoint directory '{tmp_path / 'nope'}' does not exist"):
        compile_llm_block(str(tmp_path / "nope"))
    with pytest.raises(ModelError, match="has no config.json"):
        compile_llm_block(str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(ModelError, match="has no weights \\(expected one of model.safetensors"):
        compile_llm_block(str(tmp_path))
    proc = _cli("compile", str(tmp_path), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2 and "has no weights" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_shapes() -> None:
    design = streamtensor.compile(torch.nn.Linear(8, 4), [torch.randn(2, 8)])
    # A plain module's parameters are constants of the graph: the function takes the one activation.
    with pytest.raises(ShapeError, match="input %arg0 has shape \\[3, 8\\], expected \\[2, 8\\]"):
        design.run_reference(torch.randn(3, 8))
    with pytest.raises(ShapeError, match="takes 1 inputs, got 2"):
        design.run_reference(torch.randn(2, 8), torch.randn(2, 8))
    with pytest.raises(ShapeError, match="example argument 0 has an empty shape \\[0, 8\\]"):
        streamtensor.compile(torch.nn.Linear(8, 4), [torch.randn(0, 8)])


def test_a_design_whose_streams_carry_more_tokens_than_the_limit_is_refused_before_it_is_simulated() -> None:
    """The tiny GPT-2 prefill block's candidate token tiles carry 1.3-3.9 k tokens a run (2-row tiles the most).
    The tiling's judge scores a candidate over ``max_stream_tokens`` below every other without simulating it, and a
    compile whose design is over the limit is refused in one line naming both figures."""
    tokens = {}
    for tile in (0, 2, 4, 8):  # as the judge builds each candidate (a token tile widens the feature tiles)
        design, _ = compile_llm_block("gpt2", mode="prefill", size="tiny", size_fifos=False, token_tile_size=tile,
                                      wide_feature_tiles=tile > 0)
        assert design.dataflow is not None
        tokens[tile] = stream_tokens(design.dataflow)
    assert max(tokens, key=tokens.__getitem__) == 2
    design, _ = compile_llm_block("gpt2", mode="prefill", size="tiny", max_stream_tokens=tokens[2] - 1)
    assert design.tiling is not None and design.tiling.trials[2] == [2.0]
    assert design.tiling.trials[0][0] == 0.0 and len(design.tiling.trials[0]) == 2  # simulated
    limit = min(tokens.values()) - 1
    with pytest.raises(SimulationSizeError, match=f"tokens a run, more than the {limit:,} its timing simulation"):
        compile_llm_block("gpt2", mode="prefill", size="tiny", max_stream_tokens=limit)
    # Without the FIFO sizing too: the converter banks' choice simulates the design.
    with pytest.raises(SimulationSizeError) as info:
        compile_llm_block("gpt2", mode="prefill", size="tiny", size_fifos=False, max_stream_tokens=limit)
    assert info.value.tokens > limit
    proc = _cli("compile", "gpt2", "--mode", "prefill", "-o", "/tmp/unused", "--max-stream-tokens", str(limit))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("streamtensor: error: the design's streams carry ")
