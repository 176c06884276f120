"""Decoder-only architectures beyond the four built-in families, on tiny random checkpoints built as the
conformance sweep builds them (benchmarks/conformance.py): one per construct.

- the extracted block computes what the model's own forward computes for its first layer (parallel residuals,
  partial rotary, QK-norm, sliding window with soft-capping, post-norms, multi-query attention, biases);
- unsupported constructs are refused before export in one line naming the model type and the construct;
- compile + C simulation of the blocks the sweep once failed on (slow: tens of seconds each); apertus's xIELU
  activation exercises math.log1p/expm1.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from streamtensor import compile_llm_block
from streamtensor.errors import UnsupportedModelError, UnsupportedOpError
from streamtensor.frontend.block import DecoderBlock, model_decoder_layers
from streamtensor.frontend.lowering import _index
from streamtensor.frontend.models import load_checkpoint
from streamtensor.frontend.position_bias import PROBE_LEN, fit_affine, fit_mask

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from conformance import (  # noqa: E402
    MAX_LEN,
    RESULTS_HEADER,
    SEQ_LEN,
    ModeRow,
    build_checkpoint,
    read_results,
    shrink_config,
    structural_refusal,
    write_csim_table,
)

# Variants of a model type the sweep's default config does not exercise: (model type, config changes)
VARIANTS = {"falcon_alibi": ("falcon", {"alibi": True}),
            "falcon_new": ("falcon", {"new_decoder_architecture": True, "num_kv_heads": 2})}


@cache
def _checkpoint(model_type: str, root: Path) -> str:
    directory = root / model_type
    base, changes = VARIANTS.get(model_type, (model_type, {}))
    build_checkpoint(base, directory, changes=changes)
    return str(directory)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")


# model type -> the construct its layer 0 exercises
DENSE = {
    "gpt_neox": "parallel attention/MLP residual, partial rotary, cache argument 'layer_past'",
    "phi": "parallel residual with one shared norm, partial rotary, biases",
    "qwen3": "QK-norm",
    "gemma2": "sliding-window attention with its mask, logit soft-capping, post-norms",
    "olmo2": "post-norms only",
    "gpt_bigcode": "multi-query attention, learned positions outside the layer",
    "arcee": "ReLU^2 MLP (arith.cmpf unordered predicate)",
    "cohere": "interleaved rotary (strided slices), parallel residual",
    "deepseek_v3": "multi-head latent attention (rope/pass-through concatenation as insert_slice)",
    "emu3": "a text config the causal-LM auto mapping lacks (loaded through its architectures class)",
    "bloom": "ALiBi bias computed by the model ('alibi'), rebuilt in the block from the key positions",
    "mpt": "ALiBi over a fixed length the layer slices ('position_bias'), boolean attention mask",
    "falcon": "multi-query fused QKV split by index lists (one-hot lookups), rotary",
    "falcon_alibi": "ALiBi folded into the attention mask by the model as well as passed to the layer",
    "falcon_new": "grouped KV heads split from the fused QKV by index lists on an inner dim (prefill)",
}


@pytest.mark.parametrize("model_type", sorted(DENSE))
def test_block_matches_the_models_own_layer(model_type: str, checkpoints: Path) -> None:
    """The block's prefill output equals the model's hidden state after layer 0, from the same input."""
    loaded = load_checkpoint(_checkpoint(model_type, checkpoints))
    ids = torch.randint(0, loaded.config.get_text_config().vocab_size, (1, SEQ_LEN),
                        generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        states = loaded.model(input_ids=ids, output_hidden_states=True).hidden_states
    block = DecoderBlock(loaded, "prefill", SEQ_LEN, SEQ_LEN).eval()
    weights = block.example_inputs()[1:]
    with torch.no_grad():
        hidden_out, keys, _ = block(states[0], *weights)
    assert keys.shape[2] == SEQ_LEN
    torch.testing.assert_close(hidden_out, states[1], rtol=1e-5, atol=1e-5)


REFUSED = {
    "mixtral": "mixture-of-experts",
    "mamba": "recurrent or state-space",
    "bart": "cross-attention",
    "openai-gpt": "takes no KV cache",
    "hy_v4": "hyper-connections",
    "cpmant": "takes 'position_bias' from the model outside the layer and fails without it",
    "kimi_linear": "recurrent or state-space layer state",  # delta-rule linear attention
    "gemma3n_text": "alternating updates (AltUp",  # a learned router that routes to no expert: not MoE
}


@pytest.mark.parametrize("model_type", sorted(REFUSED))
def test_unsupported_construct_refused_in_one_line(model_type: str, checkpoints: Path) -> None:
    loaded = load_checkpoint(_checkpoint(model_type, checkpoints))
    with pytest.raises(UnsupportedModelError) as info:
        DecoderBlock(loaded, "prefill", SEQ_LEN, SEQ_LEN)
    message = str(info.value)
    assert "\n" not in message
    assert f"model type '{model_type}' is not supported" in message and REFUSED[model_type] in message
    assert "it would need" in message


def test_sweep_config_keeps_layer_zero_and_one_layer_of_each_kind() -> None:
    """A hybrid's shrunk config keeps an attention layer (its config requires one); per-layer dicts follow."""
    values = {"num_hidden_layers": 6, "hidden_size": 512, "head_size": 512, "layer_types": ["linear"] * 3 +
              ["full"] * 3, "per_layer": {"0": 1, "3": 2, "5": 3}, "sub_config": {"hidden_size": 512, "eps": 1.0}}
    out = shrink_config(values)
    assert out["num_hidden_layers"] == 2 and out["layer_types"] == ["linear", "full"]
    assert out["per_layer"] == {"0": 1, "1": 2}
    assert out["head_size"] == out["hidden_size"] == 64  # a width equal to the hidden size shrinks with it
    assert out["sub_config"] == {"hidden_size": 64, "eps": 1.0}  # a sub-config is given whole


def test_sweep_judges_an_unbuildable_tiny_config_on_the_default_structure() -> None:
    """mamba2's tiny config fails its own validation; its default structure (meta device) shows the construct.
    dbrx's default config does not build in this transformers at all: said so, not blamed on the compiler."""
    refusal = structural_refusal("mamba2")
    assert refusal is not None and "recurrent or state-space" in refusal and "default config's structure" in refusal
    refusal = structural_refusal("dbrx")
    assert refusal is not None and "is not built by transformers" in refusal
    assert structural_refusal("llama") is None
    # dots3_note's tiny config fails its validation; its layer's probe on meta tensors asks for an indexer cache
    refusal = structural_refusal("dots3_note")
    assert refusal is not None and "sparse-attention indexer" in refusal


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["prefill", "decode"])
@pytest.mark.parametrize("model_type", ["arcee", "gpt_neox", "gemma2", "cohere", "deepseek_v3", "apertus", "bloom",
                                        "mpt", "falcon_alibi", "codegen"])
def test_compile_and_simulate(model_type: str, mode: str, checkpoints: Path) -> None:
    design, block = compile_llm_block(_checkpoint(model_type, checkpoints), mode=mode, seq_len=SEQ_LEN,
                                      max_len=MAX_LEN)
    report = design.simulate(*block.example_inputs(), runs=1)
    assert report.ok, report.describe()


ALIBI = ["bloom", "mpt", "falcon_alibi"]


@pytest.mark.parametrize("mode", ["prefill", "decode"])
@pytest.mark.parametrize("model_type", ALIBI)
def test_alibi_block_compiles_and_matches_pytorch(model_type: str, mode: str, checkpoints: Path) -> None:
    """ALiBi: the bias is computed in the block from the positions (slopes and offsets per head are the only
    constants), so the compiled graph matches PyTorch in prefill and decode (reference interpreter)."""
    block = _compiled_matches_pytorch(model_type, mode, checkpoints)
    assert any(b is not None for b in block.position_biases.values())
    if model_type == "falcon_alibi":
        assert block.mask_form.bias is not None  # the model's mask carries the bias too


def _compiled_matches_pytorch(model_type: str, mode: str, checkpoints: Path) -> DecoderBlock:
    """Compile to the dataflow graph; the reference interpreter matches the block in PyTorch (fp32, 1e-4)."""
    design, block = compile_llm_block(_checkpoint(model_type, checkpoints), mode=mode, seq_len=SEQ_LEN,
                                      max_len=MAX_LEN, size_fifos=False)
    args = block.example_inputs()
    got = design.run_reference(*args)
    with torch.no_grad():
        want = block(*args)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g, np.float64), w.numpy(), rtol=0, atol=1e-4)
    return block


def test_position_bias_fit_accepts_affine_and_names_the_rest() -> None:
    """An affine bias in the key position is rebuilt exactly; a relative-position bucket bias is not ALiBi."""
    slopes = torch.tensor([0.5, 0.25]).view(2, 1, 1)
    alibi = slopes * torch.arange(PROBE_LEN, dtype=torch.float32) - 3.0
    bias = fit_affine(alibi)
    assert bias is not None and bias.length is None
    torch.testing.assert_close(bias.tensor(PROBE_LEN), alibi, rtol=0, atol=0)
    fixed = fit_affine(slopes * torch.arange(16, dtype=torch.float32))  # built over a fixed length (MPT)
    assert fixed is not None and fixed.length == 16
    buckets = torch.arange(PROBE_LEN, dtype=torch.float32).clamp(max=3).view(1, 1, -1)  # saturating buckets
    assert fit_affine(buckets) is None
    assert fit_affine(torch.zeros(2, PROBE_LEN, PROBE_LEN)) is None  # depends on the query position too


def test_attention_mask_forms() -> None:
    """The model's mask for the probe prompt: boolean (either polarity) or additive with an ALiBi bias."""
    q = torch.arange(PROBE_LEN)
    allowed = q.view(1, -1) <= q.view(-1, 1)
    assert fit_mask("m", (~allowed).view(1, 1, PROBE_LEN, PROBE_LEN), allowed).boolean == "masked"
    assert fit_mask("m", allowed.view(1, 1, PROBE_LEN, PROBE_LEN), allowed).boolean == "allowed"
    lowest = torch.finfo(torch.float32).min
    slopes = torch.tensor([0.5, 0.25]).view(1, 2, 1, 1)
    mask = torch.where(allowed, slopes * q.float(), lowest)
    form = fit_mask("m", mask, allowed)
    assert form.bias is not None and form.boolean is None
    with pytest.raises(UnsupportedModelError, match="neither a causal mask"):
        fit_mask("m", torch.where(allowed, torch.rand(PROBE_LEN, PROBE_LEN), lowest), allowed)


def test_index_lookup_on_any_dim_matches_torch() -> None:
    """``table[..., idx, ...]`` with one index tensor (negative entries included) as a one-hot reduction."""
    table = torch.randn(2, 3, 6, 5)
    for indices in ([None, None, torch.tensor([-2])], [torch.tensor([[1, 0]])], [None, torch.tensor([2, 0, -1])]):
        want = table[tuple(slice(None) if i is None else i for i in indices)]
        torch.testing.assert_close(_index(table, indices), want, rtol=0, atol=0)


def test_per_token_inputs_become_block_inputs(checkpoints: Path) -> None:
    """Gemma 4's per-layer embeddings (computed by the model from the token ids, passed positionally) are a
    block input after the hidden state; its KV-sharing dict a new one per call. Fed the model's own per-layer
    input, the block's output equals the model's hidden state after layer 0."""
    loaded = load_checkpoint(_checkpoint("gemma4_text", checkpoints))
    ids = torch.randint(0, loaded.config.get_text_config().vocab_size, (1, SEQ_LEN),
                        generator=torch.Generator().manual_seed(0))
    _, layers = model_decoder_layers(loaded.model)
    seen: dict[str, torch.Tensor] = {}
    handle = layers[0].register_forward_pre_hook(lambda _, args, kwargs: seen.update(per_layer=args[1]),
                                                 with_kwargs=True)
    with torch.no_grad():
        states = loaded.model(input_ids=ids, output_hidden_states=True).hidden_states
    handle.remove()
    block = DecoderBlock(loaded, "prefill", SEQ_LEN, SEQ_LEN).eval()
    assert block.spec.token_inputs == ["per_layer_input"] and block.spec.input_names[1] == "per_layer_input"
    assert block.fresh_dicts == ["shared_kv_states"]
    weights = block.example_inputs()[2:]
    with torch.no_grad():
        hidden_out, _, _ = block(states[0], seen["per_layer"], *weights)
    torch.testing.assert_close(hidden_out, states[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["prefill", "decode"])
def test_per_token_input_block_compiles_and_matches_pytorch(mode: str, checkpoints: Path) -> None:
    block = _compiled_matches_pytorch("gemma4_text", mode, checkpoints)
    assert block.spec.token_inputs == ["per_layer_input"]


def test_whole_model_build_refuses_per_token_inputs(checkpoints: Path, tmp_path: Path) -> None:
    """The whole-model runner passes a layer only its hidden state: Gemma 4 is refused in one line."""
    from streamtensor.llm.build import build

    with pytest.raises(UnsupportedModelError, match=r"'gemma4_text' .*per-token inputs .*per_layer_input"):
        build(_checkpoint("gemma4_text", checkpoints), tmp_path / "out", prompt_len=4, max_new_tokens=4)


def test_csim_table_never_shows_a_mode_not_run_as_passed(tmp_path: Path) -> None:
    """The C-simulation tier's results file: the last record per (type, mode) wins; a type with a mode not run
    is 'incomplete', its cell 'not run', and is not counted as passed."""
    results = tmp_path / "results.jsonl"
    lines = [ModeRow("llama", "prefill", "failed", "verify: mismatch", 5.0), ModeRow("llama", "prefill", "passed",
             "max error 1e-06 (hidden_out)", 6.0), ModeRow("llama", "decode", "passed", "max error 1e-06", 7.0),
             ModeRow("gpt2", "prefill", "passed", "max error 1e-06", 8.0)]
    results.write_text(RESULTS_HEADER + "".join(json.dumps(asdict(r)) + "\n" for r in lines))
    records = read_results(results)
    assert records[("llama", "prefill")].status == "passed"
    summary = write_csim_table(records, tmp_path / "table.md", total_types=189)
    assert summary == "1 passed, 0 refused, 0 failed, 1 incomplete (a mode not run yet) (2 of 189 model types run)"
    table = (tmp_path / "table.md").read_text()
    assert "| gpt2 | incomplete | passed: max error 1e-06 (8 s) | not run |" in table


def test_a_cache_of_broadcast_kv_heads_is_refused_in_one_line(checkpoints: Path) -> None:
    """Falcon's new decoder architecture broadcasts its KV heads to the query heads before the cache: the decode
    cache update is refused in one line (the cache streamed otherwise than stored), not a traceback."""
    with pytest.raises(UnsupportedOpError, match="is streamed as") as info:
        compile_llm_block(_checkpoint("falcon_new", checkpoints), mode="decode", seq_len=SEQ_LEN, max_len=MAX_LEN,
                          size_fifos=False)
    assert "\n" not in str(info.value)
