"""What a decoder layer must be for the compiler: constructs outside it are refused in one line, before export.

Each check names the model type, the construct (and the module or argument that shows it) and what supporting
it would need (``UnsupportedModelError``). Detection is generic: config flags, submodule names and class names,
the layer's own signature, and what the layer asks of its cache when it runs.
"""

from __future__ import annotations

import inspect
import re

from torch import nn

from streamtensor.errors import UnsupportedModelError

# Submodule names or class names that show a construct (matched case-insensitively on word parts).
_EXPERTS = re.compile(r"moe|experts?|(?<!modality_)router", re.IGNORECASE)  # AltUp's modality router: no experts
_CROSS_ATTENTION = re.compile(r"cross_?attn|crossattention|encoder_attn|cross_attention", re.IGNORECASE)
_RECURRENT = re.compile(r"mamba|(^|[^a-z])ssm|rwkv|recurrent|lstm|linear_?attn|linearattention|deltanet|"
                        r"delta_?attention|shortconv|rglru", re.IGNORECASE)
_ALTUP = re.compile(r"(^|[._])altup($|[._])|AltUp", re.IGNORECASE)
_HYPER_CONNECTIONS = re.compile(r"hyper_?connection|(^|_)hc$", re.IGNORECASE)
# Optional layer arguments that only switch outputs off or carry cross-attention inputs (refused separately):
# a layer runs without them.
_OPTIONAL_FLAGS = re.compile(r"^output_|use_cache|head_mask|^encoder_|^return_")
# How the layers take the KV cache, by HF's generations of decoder layers.
CACHE_ARGUMENTS = ("past_key_values", "past_key_value", "layer_past")


def _first_match(layer: nn.Module, pattern: re.Pattern[str]) -> str | None:
    """The first submodule of ``layer`` whose name or class name matches ``pattern``, as 'name (Class)'."""
    for name, module in layer.named_modules():
        cls = type(module).__name__
        if pattern.search(name) or pattern.search(cls):
            return f"{name} ({cls})" if name else cls
    return None


def check_model(model_type: str, config: object) -> None:
    """Model-level constructs: an encoder-decoder model's decoder layers cross-attend to the encoder."""
    if getattr(config, "is_encoder_decoder", False) or getattr(config, "add_cross_attention", False):
        raise UnsupportedModelError(
            model_type, "encoder-decoder model (its decoder layers cross-attend to an encoder's output)",
            "compiling it would need the encoder as a block of its own and its output as a block input")


def check_layer(model_type: str, layer: nn.Module, provided: set[str]) -> str:
    """Layer-level constructs; returns the name of the layer's KV-cache argument."""
    found = _first_match(layer, _ALTUP)  # before the experts: its learned router picks no expert
    if found:
        raise UnsupportedModelError(
            model_type, f"alternating updates (AltUp, {found}): several copies of the hidden state, one updated "
            "by the layer and the others predicted and corrected by learned mixing", "it would need the copies as "
            "block inputs and outputs")
    found = _first_match(layer, _EXPERTS)
    if found:
        raise UnsupportedModelError(
            model_type, f"mixture-of-experts layer ({found}): data-dependent routing of tokens to experts",
            "it would need the router run on the host and one kernel per expert (runtime-dependent control flow)")
    found = _first_match(layer, _CROSS_ATTENTION)
    if found:
        raise UnsupportedModelError(
            model_type, f"cross-attention ({found})",
            "it would need the encoder states as a block input")
    found = _first_match(layer, _RECURRENT)
    if found:
        raise_recurrent(model_type, layer, f"module {found}")
    found = _first_match(layer, _HYPER_CONNECTIONS)
    if found:
        raise UnsupportedModelError(
            model_type, f"hyper-connections ({found}): several residual streams mixed by learned weights, not one "
            "hidden state", "it would need the residual streams as block inputs and outputs")
    params = inspect.signature(layer.forward).parameters
    cache_args = [a for a in CACHE_ARGUMENTS if a in params]
    if not cache_args:
        raise UnsupportedModelError(
            model_type, f"{type(layer).__name__} takes no KV cache (arguments: {', '.join(params)})",
            "it would need the layer's keys and values as outputs, for decoding")
    missing = required_extras(layer, provided)
    if missing:
        raise UnsupportedModelError(
            model_type, f"{type(layer).__name__} takes '{', '.join(missing)}' computed outside the layer by the "
            "model (e.g. a relative position bias, per-language or per-block states)",
            "it would need that computation inside the block, as a function of the positions")
    return cache_args[0]


def required_extras(layer: nn.Module, provided: set[str]) -> list[str]:
    """The layer's required arguments (after the hidden states) beyond ``provided``: what the model computes for
    it outside the layer."""
    params = inspect.signature(layer.forward).parameters
    return [n for n, p in list(params.items())[1:] if p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n not in provided]


def unfed_arguments(layer: nn.Module, passed: set[str]) -> list[str]:
    """The layer's arguments (after the hidden states) not in ``passed`` that may carry what the model computes
    outside the layer: neither its cache nor output switches."""
    params = inspect.signature(layer.forward).parameters
    return [n for n, p in list(params.items())[1:] if n not in passed and p.kind not in (p.VAR_POSITIONAL,
            p.VAR_KEYWORD) and n not in CACHE_ARGUMENTS and not _OPTIONAL_FLAGS.search(n)]


def raise_probe_failure(model_type: str, layer: nn.Module, passed: set[str], exc: Exception) -> None:
    """The layer failed when run as one block on a short probe: name the optional arguments the model computes
    outside the layer (a position bias, per-layer inputs, shared states, block-sparse masks) when it takes some,
    else the layer and its error."""
    unfed = unfed_arguments(layer, passed)
    error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else '(no message)'}"
    if unfed:
        raise UnsupportedModelError(
            model_type, f"{type(layer).__name__} takes '{', '.join(unfed)}' from the model outside the layer and "
            f"fails without it ({error})", "it would need that computation inside the block or as block inputs")
    raise UnsupportedModelError(
        model_type, f"{type(layer).__name__} does not run as one block with hidden states, mask, positions and a "
        f"KV cache ({error})", "it would need the layer's other inputs as block inputs")


def raise_recurrent(model_type: str, layer: nn.Module, evidence: str) -> None:
    """A layer whose state is not a KV cache (state-space, recurrent, linear attention, convolution state)."""
    raise UnsupportedModelError(
        model_type, f"recurrent or state-space layer state in {type(layer).__name__} ({evidence}), not a KV cache",
        "it would need the state as a block input and output and its scan as a streaming kernel")


def raise_cache_state(model_type: str, layer: nn.Module, method: str) -> None:
    """A layer that asks its cache for more than a key/value update keeps another state there: a sparse-attention
    indexer's keys (top-k key selection, data-dependent), a convolution or recurrent state."""
    kind = ("a sparse-attention indexer's key cache (data-dependent top-k selection of the keys attended)"
            if "index" in method else "a recurrent or convolution state")
    raise UnsupportedModelError(
        model_type, f"layer state beyond keys and values in {type(layer).__name__} (it asks its cache for "
        f"'{method}': {kind})", "it would need that state as a block input and output and its update as a kernel")
