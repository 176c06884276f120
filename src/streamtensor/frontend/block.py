"""Extraction of one decoder block of a Hugging Face decoder-only model as a function of explicit inputs.

The block is the unit of compilation (one accelerator invocation per layer). Its weights are function
arguments because they live in external memory and change per layer. Two modes:

- prefill: ``(hidden[1,S,H], *weights) -> (hidden[1,S,H], keys[1,KV,S,Dh], values[1,KV,S,Dh])``
- decode:  ``(hidden[1,1,H], position[1] int64, key_cache[1,KV,L,Dh], value_cache[1,KV,L,Dh], *weights)
  -> (hidden[1,1,H], key_cache, value_cache)``

Decoder layers, rotary embeddings and the cache protocol are found generically (no class names): the layers
are the model's largest homogeneous ``nn.ModuleList``; the rotary module is the one holding an ``inv_freq``
buffer; the cache is a duck-typed object with HF's ``update(key, value, layer_idx, ...)`` protocol.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch
from torch import nn

from streamtensor.errors import ModelError, OptionError
from streamtensor.frontend.models import LoadedModel

MODES = ("prefill", "decode")


def find_decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The largest ``nn.ModuleList`` whose members all share one class and hold parameters."""
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        classes = {type(m) for m in module}
        if len(classes) != 1 or not any(True for _ in module[0].parameters()):
            continue
        if best is None or len(module) > len(best[1]):
            best = (name, module)
    if best is None:
        raise ModelError(f"no decoder layers found in {type(model).__name__}: expected a ModuleList of "
                         "identical layers")
    return best


def find_rotary_embedding(model: nn.Module) -> nn.Module | None:
    """The module that turns positions into (cos, sin): it owns a buffer named ``*inv_freq``."""
    for _, module in model.named_modules():
        own_buffers = [n for n, _ in module.named_buffers(recurse=False)]
        if any(n.endswith("inv_freq") and not n.endswith("original_inv_freq") for n in own_buffers):
            return module
    return None


class _BlockCache:
    """HF cache protocol for one layer: prefill records K/V; decode writes the new entry at ``position``.

    The decode update is ``where(arange(L) == pos, new, cache)``: it lowers to upstream Linalg, where
    ``index_put`` would need the non-upstream ``tm_tensor.scatter``.
    """

    def __init__(self, key_cache: torch.Tensor | None = None, value_cache: torch.Tensor | None = None,
                 position: torch.Tensor | None = None) -> None:
        self.key_cache, self.value_cache, self.position = key_cache, value_cache, position
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self.is_updated: dict[int, bool] = {}

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: object, **kwargs: object
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.key_cache is None:
            self.keys, self.values = key, value
            return key, value
        assert self.value_cache is not None and self.position is not None
        slot = torch.arange(self.key_cache.shape[2]).view(1, 1, -1, 1) == self.position.view(1, 1, 1, 1)
        self.keys = torch.where(slot, key, self.key_cache)
        self.values = torch.where(slot, value, self.value_cache)
        return self.keys, self.values

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0 if self.key_cache is None else self.key_cache.shape[2]


@dataclass
class BlockSpec:
    """What was extracted: names and shapes of the block's inputs and outputs."""

    model_name: str
    mode: str
    layer_index: int
    layer_class: str
    input_names: list[str]
    output_names: list[str]
    weight_names: list[str]  # the subset of inputs that are weights, in input order
    hidden_size: int
    num_kv_heads: int
    head_dim: int
    seq_len: int  # tokens per invocation (1 in decode)
    max_len: int  # KV-cache capacity (decode) or prompt length (prefill)
    config: dict[str, object] = field(default_factory=dict)


class DecoderBlock(nn.Module):
    """Calls one HF decoder layer with every parameter passed in as an argument."""

    def __init__(self, loaded: LoadedModel, mode: str, seq_len: int, max_len: int, layer_index: int = 0) -> None:
        super().__init__()
        if mode not in MODES:
            raise OptionError(f"bad --mode '{mode}': expected one of {', '.join(MODES)}")
        layers_name, layers = find_decoder_layers(loaded.model)
        if not 0 <= layer_index < len(layers):
            raise OptionError(f"bad layer index {layer_index}: the model has {len(layers)} decoder layers")
        self.layer = layers[layer_index]
        self.layer_index = layer_index
        self.mode = mode
        self.seq_len = seq_len if mode == "prefill" else 1
        self.max_len = max_len if mode == "decode" else seq_len
        cfg = loaded.config
        self.config = cfg
        self.rotary = find_rotary_embedding(loaded.model)
        layer_types = getattr(cfg, "layer_types", None)
        self.layer_type = layer_types[layer_index] if layer_types else None
        window = getattr(cfg, "sliding_window", None)
        self.sliding_window = window if window and self.layer_type == "sliding_attention" else None
        # Non-persistent buffers (rotary inv_freq, Gemma's embed scale) must be persistent for torch-mlir.
        for module in loaded.model.modules():
            module._non_persistent_buffers_set.clear()
        self.weight_names = [n for n, _ in self.layer.named_parameters()]
        self._layer_params = inspect.signature(self.layer.forward).parameters
        hidden = getattr(cfg, "hidden_size", None) or cfg.n_embd
        heads = getattr(cfg, "num_attention_heads", None) or cfg.n_head
        kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
        head_dim = getattr(cfg, "head_dim", None) or hidden // heads
        self.spec = BlockSpec(
            model_name=loaded.name, mode=mode, layer_index=layer_index, layer_class=type(self.layer).__name__,
            input_names=(["hidden"] if mode == "prefill" else ["hidden", "position", "key_cache", "value_cache"])
            + [_arg_name(n) for n in self.weight_names],
            output_names=["hidden_out", "keys", "values"] if mode == "prefill"
            else ["hidden_out", "key_cache_out", "value_cache_out"],
            weight_names=[_arg_name(n) for n in self.weight_names],
            hidden_size=hidden, num_kv_heads=kv_heads, head_dim=head_dim, seq_len=self.seq_len,
            max_len=self.max_len, config={"layers_module": layers_name, "layer_type": self.layer_type,
                                          "sliding_window": self.sliding_window})

    def _mask(self, query_pos: torch.Tensor, key_len: int) -> torch.Tensor:
        """Additive mask [1,1,q,k] built from positions (no large constants in the graph)."""
        key_pos = torch.arange(key_len).view(1, -1)
        allowed = key_pos <= query_pos.view(-1, 1)
        if self.sliding_window is not None:
            allowed = allowed & (key_pos > query_pos.view(-1, 1) - self.sliding_window)
        zero = torch.zeros((), dtype=torch.float32)
        return torch.where(allowed, zero, torch.finfo(torch.float32).min).view(1, 1, query_pos.numel(), key_len)

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.mode == "prefill":
            hidden, weights = args[0], args[1:]
            positions = torch.arange(self.seq_len)
            cache = _BlockCache()
            key_len = self.seq_len
        else:
            hidden, position, key_cache, value_cache = args[:4]
            weights = args[4:]
            positions = position
            cache = _BlockCache(key_cache, value_cache, position)
            key_len = self.max_len
        kwargs: dict[str, object] = {"attention_mask": self._mask(positions, key_len), "past_key_values": cache,
                                     "use_cache": True}
        position_ids = positions.view(1, -1)
        if "position_ids" in self._layer_params:
            kwargs["position_ids"] = position_ids
        if "cache_position" in self._layer_params:
            kwargs["cache_position"] = positions
        if "position_embeddings" in self._layer_params:
            if self.rotary is None:
                raise ModelError(f"{self.spec.layer_class} takes position_embeddings but the model has no "
                                 "rotary embedding module (no inv_freq buffer)")
            rotary_args: tuple[object, ...] = (hidden, position_ids)
            if "layer_type" in inspect.signature(self.rotary.forward).parameters:
                rotary_args += (self.layer_type,)
            kwargs["position_embeddings"] = self.rotary(*rotary_args)
        params = dict(zip(self.weight_names, weights, strict=True))
        out = torch.func.functional_call(self.layer, params, (hidden,), kwargs)
        hidden_out = out[0] if isinstance(out, tuple) else out
        assert cache.keys is not None and cache.values is not None, "the layer never updated its KV cache"
        return hidden_out, cache.keys, cache.values

    def example_inputs(self, seed: int = 0, position: int | None = None) -> list[torch.Tensor]:
        """Seeded random activations (and cache), followed by the layer's real weights."""
        gen = torch.Generator().manual_seed(seed)
        s = self.spec
        hidden = torch.randn(1, self.seq_len, s.hidden_size, generator=gen)
        weights = [p.detach().clone() for _, p in self.layer.named_parameters()]
        if self.mode == "prefill":
            return [hidden, *weights]
        pos = torch.tensor([position if position is not None else self.max_len // 2], dtype=torch.int64)
        cache_shape = (1, s.num_kv_heads, self.max_len, s.head_dim)
        return [hidden, pos, torch.randn(cache_shape, generator=gen), torch.randn(cache_shape, generator=gen),
                *weights]


def _arg_name(param_name: str) -> str:
    return param_name.replace(".", "_")
