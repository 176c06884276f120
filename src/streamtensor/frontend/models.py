"""Built-in model configurations and loading of local checkpoints. Nothing is ever downloaded."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from streamtensor.errors import ModelError  # noqa: E402

if TYPE_CHECKING:
    import torch
    import transformers

SIZES = ("tiny", "paper")

# Block geometry of the paper's Table 7 ("paper") and a small one for tests ("tiny"). Vocabulary size does not
# affect a decoder block, so built-in models use a small vocabulary to keep memory low.
_FAMILIES: dict[str, dict[str, dict[str, Any]]] = {
    "gpt2": {  # GPT-2 medium
        "paper": dict(n_embd=1024, n_layer=24, n_head=16, n_inner=4096, n_positions=1024),
        "tiny": dict(n_embd=64, n_layer=2, n_head=4, n_inner=256, n_positions=128),
    },
    "llama": {  # TinyLlama-1.1B geometry
        "paper": dict(hidden_size=2048, num_hidden_layers=22, intermediate_size=5632, num_attention_heads=32,
                      num_key_value_heads=4, max_position_embeddings=2048, rms_norm_eps=1e-5),
        "tiny": dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=128),
    },
    "qwen2": {  # Qwen2.5-0.5B
        "paper": dict(hidden_size=896, num_hidden_layers=24, intermediate_size=4864, num_attention_heads=14,
                      num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0,
                      rms_norm_eps=1e-6),
        "tiny": dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=128),
    },
    "gemma": {  # Gemma-3-1B
        "paper": dict(hidden_size=1152, num_hidden_layers=26, intermediate_size=6912, num_attention_heads=4,
                      num_key_value_heads=1, head_dim=256, max_position_embeddings=32768, sliding_window=512,
                      query_pre_attn_scalar=256),
        "tiny": dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128, num_attention_heads=4,
                     num_key_value_heads=1, head_dim=16, max_position_embeddings=128, sliding_window=32,
                     query_pre_attn_scalar=16),
    },
}
# Names, not classes: ``transformers`` (3-4 CPU s of imports: its model modules pull in torch._dynamo and
# torch.distributed) is imported only by a compile that builds or loads a model, not by one whose whole frontend
# comes from the cache (``frontend.block_cache``, issue 21).
_CONFIG_CLASSES = {
    "gpt2": "GPT2Config",
    "llama": "LlamaConfig",
    "qwen2": "Qwen2Config",
    "gemma": "Gemma3TextConfig",
}
BUILTIN_MODELS = tuple(_FAMILIES)
_BUILTIN_VOCAB = 256


@dataclass
class LoadedModel:
    name: str  # built-in family name or checkpoint path
    model: torch.nn.Module  # a *ForCausalLM in eval mode, float32, eager attention
    config: transformers.PretrainedConfig
    source: str  # "random(seed=N)" or the checkpoint directory


def builtin_config(family: str, size: str, vocab_size: int = _BUILTIN_VOCAB) -> transformers.PretrainedConfig:
    if family not in _FAMILIES:
        raise ModelError(f"unknown model '{family}': expected one of {', '.join(BUILTIN_MODELS)} "
                         "or the path of a local Hugging Face checkpoint directory")
    if size not in SIZES:
        raise ModelError(f"unknown size '{size}': expected one of {', '.join(SIZES)}")
    import transformers

    cfg = getattr(transformers, _CONFIG_CLASSES[family])(vocab_size=vocab_size, **_FAMILIES[family][size])
    cfg._attn_implementation = "eager"
    return cfg


def randomize_params(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Seeded weights that keep activations O(1) through a block.

    HF's std-0.02 init makes MLP outputs ~1e-3, which post-norms (Gemma) rescale, so any check would compare
    amplified rounding noise. Matrices get std (rows*cols)^(-1/4) (= 1/sqrt(fan) when square, whatever the
    layout: nn.Linear is [out, in], GPT-2's Conv1D is [in, out]); vectors (norm weights, biases) keep HF's
    init plus a 0.1-std perturbation so they are exercised.
    """
    import torch  # here: a compile whose frontend is cached builds no model (issue 21)

    with torch.no_grad():
        for param in model.parameters():
            noise = torch.randn(param.shape, generator=generator)
            if param.dim() >= 2:
                param.copy_(noise * float(param.shape[-1] * param.shape[-2]) ** -0.25)
            else:
                param.add_(0.1 * noise)


def build_random_model(family: str, size: str, seed: int = 0, num_layers: int = 1, vocab_size: int = _BUILTIN_VOCAB
                       ) -> LoadedModel:
    """A built-in family with seeded random weights; only ``num_layers`` layers are built (one block compiles)."""
    import torch  # here: a compile whose frontend is cached builds no model (issue 21)

    cfg = builtin_config(family, size, vocab_size)
    if family == "gpt2":
        cfg.n_layer = num_layers
    else:
        cfg.num_hidden_layers = num_layers
        if getattr(cfg, "layer_types", None):
            cfg.layer_types = cfg.layer_types[:num_layers]
    import transformers

    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    randomize_params(model, torch.Generator().manual_seed(seed + 1))
    return LoadedModel(family, model.eval().float(), model.config, f"random(seed={seed})")


_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")


def load_checkpoint(path: str | Path) -> LoadedModel:
    """A local Hugging Face checkpoint directory: ``config.json`` plus weights."""
    directory = Path(path)
    if not directory.is_dir():
        raise ModelError(f"checkpoint directory '{directory}' does not exist")
    if not (directory / "config.json").is_file():
        raise ModelError(f"checkpoint '{directory}' has no config.json")
    if not any((directory / f).is_file() for f in _WEIGHT_FILES):
        raise ModelError(f"checkpoint '{directory}' has no weights (expected one of {', '.join(_WEIGHT_FILES)})")
    try:
        model = _from_pretrained(directory)
    except (OSError, ValueError, KeyError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load checkpoint '{directory}': {first_line}") from exc
    return LoadedModel(str(directory), model.eval(), model.config, str(directory))


def _from_pretrained(directory: Path) -> torch.nn.Module:
    """The causal LM of a checkpoint; a config class the auto mapping does not list (the text part of a
    multimodal model, saved on its own) loads through the class its ``architectures`` names."""
    import torch  # here: a compile whose frontend is cached builds no model (issue 21)
    import transformers

    kwargs: dict[str, Any] = dict(local_files_only=True, attn_implementation="eager", dtype=torch.float32)
    try:
        return transformers.AutoModelForCausalLM.from_pretrained(directory, **kwargs)
    except ValueError as exc:
        config = transformers.AutoConfig.from_pretrained(directory, local_files_only=True)
        named = [getattr(transformers, a, None) for a in (config.architectures or [])]
        model_class = next((c for c in named if c is not None), None)
        if "Unrecognized configuration class" not in str(exc) or model_class is None:
            raise
        return model_class.from_pretrained(directory, **kwargs)


def load_model(name: str, size: str = "tiny", seed: int = 0) -> LoadedModel:
    """A built-in family name (random weights from a config) or a local checkpoint path."""
    if name in _FAMILIES:
        return build_random_model(name, size, seed)
    if os.sep in name or name.startswith(".") or Path(name).exists():
        return load_checkpoint(name)
    raise ModelError(f"unknown model '{name}': expected one of {', '.join(BUILTIN_MODELS)} "
                     "or the path of a local Hugging Face checkpoint directory")


def load_full_model(name: str, size: str = "tiny", seed: int = 0, vocab_size: int = 0) -> LoadedModel:
    """Like ``load_model``, but a built-in family gets all the decoder layers of its configuration (a whole model
    to run, not one block to compile) and, when ``vocab_size`` is given, that vocabulary (the real model's, for
    the LM head's cost) instead of the small built-in one."""
    if name in _FAMILIES:
        cfg = builtin_config(name, size, vocab_size or _BUILTIN_VOCAB)
        return build_random_model(name, size, seed, num_layers=cfg.n_layer if name == "gpt2" else cfg.num_hidden_layers,
                                  vocab_size=cfg.vocab_size)
    if vocab_size:
        raise ModelError(f"a vocabulary size applies to built-in models only; {name} is a checkpoint")
    return load_model(name, size, seed)
