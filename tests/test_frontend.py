"""Issue 2 acceptance: the Linalg IR of every block, run by the reference interpreter, equals PyTorch eager."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from conftest import TINY_MAX_LEN, TINY_SEQ_LEN, tiny_block

from streamtensor import compile_llm_block
from streamtensor.frontend.block import DecoderBlock, find_decoder_layers
from streamtensor.frontend.models import build_random_model

TOL = 1e-5


def _max_err(ours: list[np.ndarray], ref: tuple[torch.Tensor, ...]) -> float:
    return max(float(np.abs(o - r.numpy()).max()) for o, r in zip(ours, ref, strict=True))


@pytest.mark.parametrize("mode", ["prefill", "decode"])
def test_interpreter_matches_pytorch(family: str, mode: str) -> None:
    design, block = tiny_block(family, mode)
    args = block.example_inputs(seed=3)
    with torch.no_grad():
        ref = block(*args)
    ours = design.run_reference(*args)
    assert [o.shape for o in ours] == [tuple(r.shape) for r in ref]
    assert _max_err(ours, ref) <= TOL


def test_decode_steps_with_carried_cache(family: str) -> None:
    """Prefill 4 tokens, then decode positions 4..7, each step feeding back the updated cache."""
    design, block = tiny_block(family, "decode")
    args = block.example_inputs(seed=5)
    n_weights = len(block.spec.weight_names)
    weights = args[-n_weights:]
    prefill_block = DecoderBlock(_loaded(block), "prefill", seq_len=4, max_len=4)
    prompt = torch.randn(1, 4, block.spec.hidden_size, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        _, k, v = prefill_block(prompt, *weights)
    shape = (1, block.spec.num_kv_heads, TINY_MAX_LEN, block.spec.head_dim)
    k_ref, v_ref = torch.zeros(shape), torch.zeros(shape)
    k_ref[:, :, :4], v_ref[:, :, :4] = k, v
    k_ours, v_ours = k_ref.numpy().copy(), v_ref.numpy().copy()
    for step, pos in enumerate(range(4, 8)):
        hidden = torch.randn(1, 1, block.spec.hidden_size, generator=torch.Generator().manual_seed(20 + step))
        position = torch.tensor([pos])
        with torch.no_grad():
            h_ref, k_ref, v_ref = block(hidden, position, k_ref, v_ref, *weights)
        h_ours, k_ours, v_ours = design.run_reference(hidden, position, k_ours, v_ours, *weights)
        assert _max_err([h_ours, k_ours, v_ours], (h_ref, k_ref, v_ref)) <= TOL, f"step {step} (pos {pos})"
    # The cache really was written at positions 4..7 and left alone elsewhere.
    assert np.all(k_ours[:, :, 8:] == 0) and np.any(k_ours[:, :, 7] != 0)


def _loaded(block: DecoderBlock):  # noqa: ANN202
    """The LoadedModel behind a cached block (rebuilt deterministically from its seed)."""
    return build_random_model(block.spec.model_name, "tiny", seed=0)


def test_decode_agrees_with_prefill(family: str) -> None:
    """Decoding token p with the cache of tokens < p reproduces the prefill output of row p."""
    design, block = tiny_block(family, "decode")
    weights = block.example_inputs()[-len(block.spec.weight_names):]
    prefill_block = DecoderBlock(_loaded(block), "prefill", seq_len=6, max_len=6)
    prompt = torch.randn(1, 6, block.spec.hidden_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        h_pre, k, v = prefill_block(prompt, *weights)
    shape = (1, block.spec.num_kv_heads, TINY_MAX_LEN, block.spec.head_dim)
    kc, vc = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    kc[:, :, :5], vc[:, :, :5] = k[:, :, :5].numpy(), v[:, :, :5].numpy()
    h, k_out, _ = design.run_reference(prompt[:, 5:6], torch.tensor([5]), kc, vc, *weights)
    assert float(np.abs(h - h_pre[:, 5:6].numpy()).max()) <= TOL
    assert float(np.abs(k_out[:, :, 5] - k[:, :, 5].numpy()).max()) <= TOL


def test_block_equals_layer_inside_full_model(family: str) -> None:
    """The extracted block computes what the HF model computes for its first layer (mask, rope, cache)."""
    loaded = build_random_model(family, "tiny", seed=2, num_layers=2)
    block = DecoderBlock(loaded, "prefill", seq_len=TINY_SEQ_LEN, max_len=TINY_SEQ_LEN)
    ids = torch.randint(0, 256, (1, TINY_SEQ_LEN), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        states = loaded.model(ids, output_hidden_states=True).hidden_states
        weights = [p.detach() for p in block.layer.parameters()]
        out, _, _ = block(states[0], *weights)
    assert float((out - states[1]).abs().max()) <= 1e-5


def test_finds_layers_generically() -> None:
    loaded = build_random_model("gpt2", "tiny", num_layers=3)
    name, layers = find_decoder_layers(loaded.model)
    assert name == "transformer.h" and len(layers) == 3


def test_mistral_checkpoint_directory(tmp_path: Path) -> None:
    """An architecture outside the four built-ins compiles from a save_pretrained directory and matches."""
    cfg = transformers.MistralConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, vocab_size=128,
                                     max_position_embeddings=64, sliding_window=None)
    torch.manual_seed(0)
    transformers.MistralForCausalLM(cfg).save_pretrained(tmp_path)
    for mode in ("prefill", "decode"):
        design, block = compile_llm_block(str(tmp_path), mode=mode, seq_len=TINY_SEQ_LEN, max_len=TINY_MAX_LEN)
        assert design.report["layer_class"] == "MistralDecoderLayer"
        args = block.example_inputs(seed=1)
        with torch.no_grad():
            ref = block(*args)
        assert _max_err(design.run_reference(*args), ref) <= TOL


def test_cli_writes_linalg_and_report(tmp_path: Path) -> None:
    out = tmp_path / "gpt2"
    proc = subprocess.run([sys.executable, "-m", "streamtensor.cli", "compile", "gpt2", "--mode", "decode",
                           "--max-len", "16", "-o", str(out)], capture_output=True, text=True, check=True)
    assert "frontend.torch_to_linalg done" in proc.stderr  # progress lines
    text = (out / "linalg.mlir").read_text()
    assert text.startswith("// Generated by streamtensor 0.1.0")
    assert "linalg.generic @matmul_1" in text and "func.func @block(" in text
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == "gpt2" and report["mode"] == "decode"
    assert report["op_counts"]["linalg.generic"] > 10
    assert {"frontend.torch_to_linalg", "frontend.import_linalg"} <= set(report["stages"])
    assert report["inputs"]["key_cache"]["shape"] == [1, 4, 16, 16]


def test_generic_module_compiles() -> None:
    """Not only LLM blocks: any module whose graph lowers to supported ops."""
    import streamtensor

    class Mlp(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = torch.nn.Linear(16, 32), torch.nn.Linear(32, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.fc2(torch.relu(self.fc1(x))), dim=-1)

    model = Mlp().eval()
    x = torch.randn(4, 16)
    design = streamtensor.compile(model, [x])
    with torch.no_grad():
        ref = model(x)
    assert float(np.abs(design.run_reference(x)[0] - ref.numpy()).max()) <= TOL


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["prefill", "decode"])
def test_paper_size_compiles(family: str, mode: str) -> None:
    design, _ = compile_llm_block(family, mode=mode, seq_len=32, max_len=256, size="paper")
    assert design.report["op_counts"]["linalg.generic"] > 10
