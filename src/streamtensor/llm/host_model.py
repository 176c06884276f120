"""The parts of a whole model around its decoder blocks, as the host program and the accelerator split them.

- **Embedding** (host): a token table (Gemma's embedding scale folded in: the same single fp32 multiply) plus, for
  learned absolute positions (GPT-2's ``wpe``), a position table. ``embedding_tables`` checks the tables against
  what the model itself feeds its first layer, so a model whose embedding is something else is refused.
- **Output head** (device): the final norm and the LM head (and Gemma's logit soft-capping when configured) as a
  module whose weights are arguments, compiled like a block.
- **Layer groups**: layers that share one compiled block (same layer type: Gemma's sliding and full attention
  layers differ in mask and rotary base, so each type gets its own design).
- **Sampling**: greedy, top-k and temperature over the logits.
- **KV cache of the reference** (``QuantizedKvCache``): Hugging Face's cache holding int8 codes as the build's
  int8 KV cache does, and the per-layer calibration of its scales on the whole model (``calibrate_kv_scales``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import DynamicCache

from streamtensor.errors import ModelError, OptionError, UnsupportedModelError
from streamtensor.frontend.block import find_decoder_layers
from streamtensor.frontend.models import LoadedModel
from streamtensor.frontend.quant import (
    KvObserver,
    KvScales,
    QuantLinear,
    QuantScheme,
    dequantize_kv,
    quantize_kv,
    quantize_linears,
)

_FINAL_NORMS = ("norm", "ln_f", "final_layernorm", "final_layer_norm")

HEAD_VOCAB_MULTIPLE = 128  # the head kernel's logits: a multiple of this (``OutputHead``)
CALIBRATION_PROMPTS = 8  # token sequences (seeded, of the prompt length) the static activation scales see


def decoder_of(loaded: LoadedModel) -> nn.Module:
    decoder = loaded.model.get_decoder() if hasattr(loaded.model, "get_decoder") else None
    return decoder if isinstance(decoder, nn.Module) else loaded.model


def decoder_layers(loaded: LoadedModel) -> nn.ModuleList:
    return find_decoder_layers(decoder_of(loaded))[1]


def layer_groups(loaded: LoadedModel) -> list[str]:
    """The group of every layer: its layer type when the configuration names types, else ``"all"``."""
    count = len(decoder_layers(loaded))
    types = getattr(loaded.config.get_text_config(), "layer_types", None)
    return [str(types[i]) if types else "all" for i in range(count)]


@dataclass
class EmbeddingTables:
    tokens: np.ndarray  # [vocab, hidden] float32, scale folded in
    positions: np.ndarray | None  # [max_positions, hidden] float32 or None

    def embed(self, token_ids: list[int], first_position: int) -> np.ndarray:
        """Hidden states [1, n, hidden] of ``token_ids`` at consecutive positions from ``first_position``."""
        rows = self.tokens[np.asarray(token_ids, dtype=np.int64)]
        if self.positions is not None:
            rows = rows + self.positions[first_position:first_position + len(token_ids)]
        return rows[None].astype(np.float32)


class _FirstLayerInput(Exception):
    def __init__(self, hidden: torch.Tensor) -> None:
        super().__init__("captured")
        self.hidden = hidden


def model_embedding(loaded: LoadedModel, token_ids: list[int]) -> np.ndarray:
    """What the model itself feeds its first decoder layer for ``token_ids`` at positions 0..n-1."""
    layer = decoder_layers(loaded)[0]

    def capture(_module: nn.Module, args: tuple[object, ...], kwargs: dict[str, object]) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        assert isinstance(hidden, torch.Tensor)
        raise _FirstLayerInput(hidden.detach().clone())

    handle = layer.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        with torch.no_grad():
            loaded.model(torch.tensor([token_ids]), use_cache=False)
    except _FirstLayerInput as captured:
        return captured.hidden.numpy()
    finally:
        handle.remove()
    raise ModelError(f"{type(loaded.model).__name__} never called its first decoder layer")


def embedding_tables(loaded: LoadedModel) -> EmbeddingTables:
    """The token (and position) tables, checked against the model's own first-layer input."""
    model = loaded.model
    token_embedding = model.get_input_embeddings()
    if not isinstance(token_embedding, nn.Embedding):
        raise UnsupportedModelError(str(loaded.config.model_type), f"input embedding {type(token_embedding).__name__}",
                                    "the host embeds tokens with a table lookup (nn.Embedding)")
    with torch.no_grad():
        tokens = token_embedding.weight.detach().float()
        scale = getattr(token_embedding, "embed_scale", None)
        if scale is not None:
            tokens = tokens * torch.as_tensor(scale).to(tokens.dtype)
    others = [m for m in decoder_of(loaded).modules() if isinstance(m, nn.Embedding) and m is not token_embedding]
    positions = others[0].weight.detach().float().numpy().copy() if len(others) == 1 else None
    tables = EmbeddingTables(tokens.numpy().copy(), positions)
    probe_len = min(8, tables.tokens.shape[0], len(positions) if positions is not None else 8)
    probe = [(7 * i + 3) % tables.tokens.shape[0] for i in range(probe_len)]
    expected = model_embedding(loaded, probe)
    if expected.shape != (1, probe_len, tables.tokens.shape[1]) or not np.array_equal(tables.embed(probe, 0), expected):
        raise UnsupportedModelError(str(loaded.config.model_type), "its embedding",
                                    "the host computes token table (times a scale) plus a learned position table; "
                                    "this model's first-layer input is something else")
    return tables


def eos_token_ids(loaded: LoadedModel) -> list[int]:
    """The tokens that end generation, as Hugging Face's generate reads them (generation config, else config)."""
    generation = getattr(loaded.model, "generation_config", None)
    eos = getattr(generation, "eos_token_id", None)
    if eos is None:
        eos = getattr(loaded.config, "eos_token_id", None)
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, list | tuple) else [eos])]


class _Head(nn.Module):
    def __init__(self, norm: nn.Module, lm_head: nn.Module, softcap: float | None) -> None:
        super().__init__()
        self.norm, self.lm_head, self.softcap = norm, lm_head, softcap

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.lm_head(self.norm(hidden))
        if self.softcap is not None:  # as Gemma's CausalLM applies it
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


def padded_vocab(vocab: int) -> int:
    """The head kernel's logit rows: ``vocab`` rounded up to a multiple of ``HEAD_VOCAB_MULTIPLE``."""
    return -(-vocab // HEAD_VOCAB_MULTIPLE) * HEAD_VOCAB_MULTIPLE


def _pad_rows(lm_head: nn.Module, rows: int) -> nn.Module:
    """``lm_head`` with zero output rows appended up to ``rows`` (itself when it has them): their logits are 0
    (a bias's padding is 0 too) and the host drops them before sampling."""
    if isinstance(lm_head, QuantLinear):
        extra = rows - lm_head.weight_q.shape[0]
        if extra == 0:
            return lm_head

        def pad(t: torch.Tensor) -> torch.Tensor:
            return torch.cat([t.detach(), t.new_zeros((extra, *t.shape[1:]))])

        return QuantLinear(pad(lm_head.weight_q), pad(lm_head.weight_scale), lm_head.act_mult.detach().clone(),
                           lm_head.act_scale, None if lm_head.bias is None else pad(lm_head.bias), lm_head.group,
                           lm_head.dynamic)
    assert isinstance(lm_head, nn.Linear)
    if lm_head.out_features == rows:
        return lm_head
    padded = nn.Linear(lm_head.in_features, rows, bias=lm_head.bias is not None)
    with torch.no_grad():
        padded.weight.zero_()
        padded.weight[:lm_head.out_features] = lm_head.weight
        if lm_head.bias is not None:
            padded.bias.zero_()
            padded.bias[:lm_head.out_features] = lm_head.bias
    return padded


class OutputHead(nn.Module):
    """``(hidden[1,1,H], *weights) -> logits[1,1,P]``: final norm, LM head (, soft-capping), weights as inputs.
    ``P = padded_vocab(V)``: the LM head's rows padded with zeros to a multiple of ``HEAD_VOCAB_MULTIPLE``, as the
    tiler tiles a loop only by a divisor of its trip count (GPT-2's 50,257 = 29 x 1733 tokens would be tiled by 1:
    one logit per firing, ~14x slower). Logits ``V..P-1`` are 0; the host samples from the first ``V``."""

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__()
        decoder = decoder_of(loaded)
        norm = next((getattr(decoder, n) for n in _FINAL_NORMS if isinstance(getattr(decoder, n, None), nn.Module)),
                    None)
        lm_head = loaded.model.get_output_embeddings()
        if norm is None or not isinstance(lm_head, nn.Linear | QuantLinear):
            raise UnsupportedModelError(str(loaded.config.model_type), "its output head",
                                        f"expected a final norm named one of {', '.join(_FINAL_NORMS)} and a "
                                        "linear LM head")
        # A quantized head (--quant) keeps its weight as [vocab, hidden] integers.
        shape = lm_head.weight_q.shape if isinstance(lm_head, QuantLinear) else lm_head.weight.shape
        softcap = getattr(loaded.config.get_text_config(), "final_logit_softcapping", None)
        self.vocab_size, self.hidden_size = int(shape[0]), int(shape[1])
        self.padded_vocab = padded_vocab(self.vocab_size)
        self.inner = _Head(norm, _pad_rows(lm_head, self.padded_vocab), float(softcap) if softcap else None)
        self.param_names = [n for n, _ in self.inner.named_parameters()]
        self.input_names = ["hidden", *(_arg(n) for n in self.param_names)]
        self.weight_names = [_arg(n) for n in self.param_names]

    def forward(self, hidden: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self.inner, dict(zip(self.param_names, weights, strict=True)), (hidden,))

    def weights(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.inner.parameters()]

    def example_inputs(self, seed: int = 0) -> list[torch.Tensor]:
        hidden = torch.randn(1, 1, self.hidden_size, generator=torch.Generator().manual_seed(seed))
        return [hidden, *self.weights()]


def _arg(param_name: str) -> str:
    return param_name.replace(".", "_")


def sample(logits: np.ndarray, top_k: int, temperature: float, rng: np.random.Generator) -> int:
    """Greedy (``temperature == 0``: the first maximum, as ``torch.argmax``), else a draw from the softmax of
    ``logits / temperature`` over the ``top_k`` largest (0: all)."""
    if temperature < 0 or top_k < 0:
        raise OptionError(f"bad sampling: temperature {temperature} and top-k {top_k} must be non-negative")
    flat = np.asarray(logits, dtype=np.float64).reshape(-1)
    if temperature == 0:
        return int(np.argmax(flat))
    scaled = flat / temperature
    if 0 < top_k < flat.size:
        cutoff = np.partition(scaled, -top_k)[-top_k]
        scaled = np.where(scaled >= cutoff, scaled, -np.inf)
    probs = np.exp(scaled - scaled.max())
    return int(rng.choice(flat.size, p=probs / probs.sum()))


def host_token_seconds(vocab: int, hidden: int, rows: int = 4096) -> float:
    """Embedding lookup (one row of a ``rows``-row table: its cost does not depend on the table's length) and
    greedy sampling over ``vocab`` logits on this host, median of repeated runs: measured here."""
    rng = np.random.default_rng(0)
    tables = EmbeddingTables(rng.standard_normal((min(rows, vocab), hidden)).astype(np.float32), None)
    logits = rng.standard_normal(vocab).astype(np.float32)
    times = []
    for i in range(200):
        start = time.perf_counter()
        tables.embed([i % tables.tokens.shape[0]], 0)
        sample(logits, 0, 0.0, rng)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


class QuantizedKvCache(DynamicCache):
    """Hugging Face's dynamic cache as the build's int8 KV cache holds it: each key and value row the layer
    writes is quantized with that layer's static scales (``frontend.quant.quantize_kv``) and stored as int8 codes,
    and the layer attends over the dequantized cache, as the compiled blocks do (``frontend.block._BlockCache``).
    With ``observers`` (calibration) it stores the rows as given and records each layer's per-(head, channel)
    maxima instead."""

    def __init__(self, config: object, scales: Sequence[KvScales] = (), observers: Sequence[KvObserver] = ()
                 ) -> None:
        super().__init__(config=config)
        self.kv_scales, self.observers = list(scales), list(observers)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: object,
               **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        if self.observers:
            self.observers[layer_idx].record(key_states, value_states)
            return super().update(key_states, value_states, layer_idx, *args, **kwargs)
        scales = self.kv_scales[layer_idx]
        keys, values = super().update(quantize_kv(key_states, scales.key_mult),
                                      quantize_kv(value_states, scales.value_mult), layer_idx, *args, **kwargs)
        return dequantize_kv(keys, scales.key_scale), dequantize_kv(values, scales.value_scale)


def calibrate_kv_scales(loaded: LoadedModel, prompts: Sequence[torch.Tensor]) -> list[KvScales]:
    """Every decoder layer's int8 KV-cache scales: the per-(KV head, channel) maxima of the keys and values the
    layer writes while the whole model (as it is: quantized linear layers included, an fp32 cache) runs the
    token sequences ``prompts``. Per layer, because each layer's keys and values have their own ranges."""
    observers = [KvObserver() for _ in decoder_layers(loaded)]
    with torch.no_grad():
        for ids in prompts:
            loaded.model(ids, past_key_values=QuantizedKvCache(loaded.config, observers=observers), use_cache=True)
    return [o.scales() for o in observers]


def quantize_model(loaded: LoadedModel, scheme: QuantScheme, prompt_len: int, seed: int) -> None:
    """Replace every linear layer of the whole model (decoder layers and LM head) by ``frontend.quant``'s
    ``QuantLinear``, its static activation scale calibrated on ``CALIBRATION_PROMPTS`` seeded token sequences run
    through the fp32 model: the quantized PyTorch reference, which the blocks are then compiled from.

    The layers of a group share one compiled block, whose constants are its first layer's; a ``QuantLinear``'s
    activation scale is such a constant (its dequantizing multiply), so each layer's is folded into its weight
    scales (a per-layer kernel argument: ``(acc * w_scale) * s_x`` becomes ``acc * (w_scale * s_x)``, one f32
    rounding moved) and the constant becomes 1. The reference keeps exactly these modules."""
    vocab = loaded.model.get_input_embeddings().num_embeddings
    generator = torch.Generator().manual_seed(seed + 1)
    prompts = [torch.randint(0, vocab, (1, prompt_len), generator=generator) for _ in range(CALIBRATION_PROMPTS)]

    def run() -> None:
        for ids in prompts:
            loaded.model(ids, use_cache=False)

    quantize_linears(loaded.model, scheme, run)
    with torch.no_grad():
        for module in loaded.model.modules():
            if isinstance(module, QuantLinear):
                module.weight_scale.mul_(module.act_scale)
                module.act_scale = 1.0
