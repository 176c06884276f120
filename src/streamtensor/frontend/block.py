"""Extraction of one decoder block of a Hugging Face decoder-only model as a function of explicit inputs.

The block is the unit of compilation (one accelerator invocation per layer). Its weights are function
arguments because they live in external memory and change per layer. Two modes:

- prefill: ``(hidden[1,S,H], *weights) -> (hidden[1,S,H], keys[1,KV,S,Dh], values[1,KV,S,Dh])``
- decode:  ``(hidden[1,1,H], position[1] int64, key_cache[1,KV,L,Dh], value_cache[1,KV,L,Dh], *weights)
  -> (hidden[1,1,H], key_cache, value_cache)``. The spec declares ``position`` a scalar argument and each
  returned cache an update of its input cache at row ``position`` along dim 2 (``BlockSpec.cache_updates``):
  the backend reads rows ``0..position`` only and writes the new row in place.

With an int8 KV cache (``kv_scales``, ``frontend.quant``) the caches (and prefill's keys and values) are int8 and
the block takes the four scale tensors ``KV_SCALE_NAMES`` as its last weights.

Decoder layers, rotary embeddings and the cache protocol are found generically (no class names): the layers
are the model's largest homogeneous ``nn.ModuleList``; the rotary module is the one holding an ``inv_freq``
buffer; the cache is a duck-typed object with HF's ``update(key, value, layer_idx, ...)`` protocol.
"""

from __future__ import annotations

import inspect
from collections.abc import MutableMapping

import torch
from torch import nn

from streamtensor.errors import ModelError, OptionError, UnsupportedModelError
from streamtensor.frontend.models import LoadedModel
from streamtensor.frontend.position_bias import (
    PROBE_LEN,
    AffineBias,
    MaskForm,
    capture_layer_inputs,
    fit_affine,
    fit_mask,
)
from streamtensor.frontend.quant import KV_SCALE_NAMES, KvObserver, KvScales, dequantize_kv, quantize_kv
from streamtensor.frontend.spec import MODES, BlockSpec  # noqa: F401  (re-exported)
from streamtensor.frontend.support import (
    check_layer,
    check_model,
    raise_cache_state,
    raise_probe_failure,
    raise_recurrent,
    required_extras,
    unfed_arguments,
)

_SEQ_DIM = 2  # the token dim of the KV-cache layout [batch, kv_heads, tokens, head_dim]
# The layer arguments a block computes itself (from the positions) or passes through.
LAYER_INPUTS = frozenset({"hidden_states", "attention_mask", "position_ids", "cache_position", "position_embeddings",
                          "use_cache"})


def find_decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The decoder layers: the shallowest ``nn.ModuleList`` of composite modules holding parameters (the longest
    at that depth). Shallowest, because experts, vision towers and sub-blocks nest their own lists deeper."""
    best: tuple[int, int, str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if not all(any(True for _ in m.children()) and any(True for _ in m.parameters()) for m in module):
            continue
        key = (name.count("."), -len(module), name, module)
        if best is None or key[:2] < best[:2]:
            best = key
    if best is None:
        raise ModelError(f"no decoder layers found in {type(model).__name__}: expected a ModuleList of "
                         "decoder layers")
    return best[2], best[3]


def model_decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The decoder layers of a causal LM: those of its ``get_decoder()`` (a multimodal model's language model:
    vision and audio towers have layers too), or of the whole model when that has none (some models'
    ``get_decoder()`` is their output head)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    if not isinstance(decoder, nn.Module) or not any(isinstance(m, nn.ModuleList) for m in decoder.modules()):
        decoder = model
    return find_decoder_layers(decoder)


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
    ``index_put`` would need the non-upstream ``tm_tensor.scatter``. With ``kv`` (the tensors of
    ``KV_SCALE_NAMES``) the stored keys and values are int8 and the layer attends over their dequantized values;
    ``observer`` records the unquantized ones (calibration).
    """

    def __init__(self, key_cache: torch.Tensor | None = None, value_cache: torch.Tensor | None = None,
                 position: torch.Tensor | None = None, kv: tuple[torch.Tensor, ...] = (),
                 observer: KvObserver | None = None) -> None:
        self.key_cache, self.value_cache, self.position = key_cache, value_cache, position
        self.kv, self.observer = kv, observer
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self.is_updated: dict[int, bool] = {}

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: object, **kwargs: object
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.observer is not None:
            self.observer.record(key, value)
        if self.kv:
            key_mult, _, value_mult, _ = self.kv
            key, value = quantize_kv(key, key_mult), quantize_kv(value, value_mult)
        if self.key_cache is None:
            self.keys, self.values = key, value
        else:
            assert self.value_cache is not None and self.position is not None
            slot = torch.arange(self.key_cache.shape[_SEQ_DIM]).view(1, 1, -1, 1) == self.position.view(1, 1, 1, 1)
            self.keys = torch.where(slot, key, self.key_cache)
            self.values = torch.where(slot, value, self.value_cache)
        if self.kv:
            _, key_scale, _, value_scale = self.kv
            return dequantize_kv(self.keys, key_scale), dequantize_kv(self.values, value_scale)
        return self.keys, self.values

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0 if self.key_cache is None else self.key_cache.shape[2]


class DecoderBlock(nn.Module):
    """Calls one HF decoder layer with every parameter passed in as an argument."""

    def __init__(self, loaded: LoadedModel, mode: str, seq_len: int, max_len: int, layer_index: int = 0,
                 kv_scales: KvScales | None = None) -> None:
        super().__init__()
        self.kv_scales = kv_scales
        self.kv_observer: KvObserver | None = None  # set while calibrating the KV scales
        if mode not in MODES:
            raise OptionError(f"bad --mode '{mode}': expected one of {', '.join(MODES)}")
        layers_name, layers = model_decoder_layers(loaded.model)
        if not 0 <= layer_index < len(layers):
            raise OptionError(f"bad layer index {layer_index}: the model has {len(layers)} decoder layers")
        self.layer = layers[layer_index]
        self.layer_index = layer_index
        self.mode = mode
        self.seq_len = seq_len if mode == "prefill" else 1
        self.max_len = max_len if mode == "decode" else seq_len
        cfg = loaded.config.get_text_config()
        self.config = cfg
        self.model_type = str(loaded.config.model_type)
        check_model(self.model_type, loaded.config)
        layer_types = getattr(cfg, "layer_types", None)
        self.layer_type = layer_types[layer_index] if layer_types else None
        window = getattr(cfg, "sliding_window", None)
        self.sliding_window = window if window and self.layer_type == "sliding_attention" else None
        # Position biases the model computes outside the layer (ALiBi): rebuilt here from the positions.
        self.position_biases: dict[str, AffineBias | None] = {}
        self.mask_form = MaskForm()
        extras = required_extras(self.layer, set(LAYER_INPUTS))
        if extras:
            self._capture_position_biases(loaded, extras)
        self.cache_argument = check_layer(self.model_type, self.layer, set(LAYER_INPUTS) | set(self.position_biases))
        self.rotary = find_rotary_embedding(loaded.model)
        # Non-persistent buffers (rotary inv_freq, Gemma's embed scale) must be persistent for torch-mlir.
        for module in loaded.model.modules():
            module._non_persistent_buffers_set.clear()
        self.weight_names = [n for n, _ in self.layer.named_parameters()]
        self._layer_params = set(inspect.signature(self.layer.forward).parameters)
        hidden = next((v for k in ("hidden_size", "n_embd", "d_model") if isinstance(v := getattr(cfg, k, None), int)),
                      None)
        if hidden is None:
            raise UnsupportedModelError(  # e.g. byte-level models: local and global stacks of their own widths
                self.model_type, f"{type(cfg).__name__} names no hidden size (hidden_size, n_embd or d_model) for "
                f"its decoder layers ({layers_name})", "it would need the width of the stack compiled from its config")
        # Per-token inputs the model computes outside the layer (Gemma 4's per-layer embeddings): block inputs.
        self.token_inputs: dict[str, tuple[int, ...]] = {}  # name -> feature shape after [1, tokens]
        self.fresh_dicts: list[str] = []  # dict arguments the layer writes to (a KV-sharing dict): a new one per call
        kv_heads, head_dim, value_head_dim = self._probe_kv_geometry(hidden, loaded)
        block_weights = [_arg_name(n) for n in self.weight_names] + (list(KV_SCALE_NAMES) if kv_scales else [])
        self.spec = BlockSpec(
            model_name=loaded.name, mode=mode, layer_index=layer_index, layer_class=type(self.layer).__name__,
            input_names=(["hidden"] if mode == "prefill" else ["hidden", "position", "key_cache", "value_cache"])
            + list(self.token_inputs) + block_weights,
            output_names=["hidden_out", "keys", "values"] if mode == "prefill"
            else ["hidden_out", "key_cache_out", "value_cache_out"],
            weight_names=block_weights,
            hidden_size=hidden, num_kv_heads=kv_heads, head_dim=head_dim, value_head_dim=value_head_dim,
            seq_len=self.seq_len,
            max_len=self.max_len, config={"layers_module": layers_name, "layer_type": self.layer_type,
                                          "sliding_window": self.sliding_window,
                                          "kv_cache": "int8" if kv_scales else "fp32"},
            scalar_names=[] if mode == "prefill" else ["position"], token_inputs=list(self.token_inputs),
            cache_updates=[] if mode == "prefill" else [("key_cache_out", "key_cache", "position", _SEQ_DIM),
                                                        ("value_cache_out", "value_cache", "position", _SEQ_DIM)])

    def _capture_position_biases(self, loaded: LoadedModel, names: list[str]) -> None:
        """The layer arguments ``names`` the model computes: each must be None or an affine function of the key
        position (ALiBi); then the model's attention mask is matched too (boolean, or with the bias folded in).
        A model that does not run on a plain prompt is left to ``check_layer``'s refusal of those arguments."""
        vocab = getattr(self.config, "vocab_size", None) or getattr(loaded.config, "vocab_size", None) or 2
        try:
            seen = capture_layer_inputs(loaded.model, self.layer, int(vocab))
        except Exception:  # noqa: BLE001 - the model's own forward; the refusal names the arguments instead
            return
        if any(isinstance(v, torch.Tensor) and v.is_meta for v in seen.values()):
            return  # a structure-only model: no values to fit
        for name in names:
            if name not in seen:
                continue
            value = seen[name]
            if value is None:
                self.position_biases[name] = None
                continue
            bias = fit_affine(value) if isinstance(value, torch.Tensor) else None
            if bias is None:
                raise UnsupportedModelError(
                    self.model_type, f"{type(self.layer).__name__} takes '{name}' from the model, and it is not a "
                    f"bias linear in the key position like ALiBi ({type(value).__name__}"
                    f"{list(value.shape) if isinstance(value, torch.Tensor) else ''}: e.g. a relative-position "
                    "bucket bias or a per-layer state)", "it would need that computation inside the block")
            self.position_biases[name] = bias
        if any(b is not None for b in self.position_biases.values()):
            if self.sliding_window is not None:
                raise UnsupportedModelError(
                    self.model_type, "an ALiBi position bias with a sliding-window mask",
                    "it would need the model's mask matched over a window")
            q = torch.arange(PROBE_LEN)
            self.mask_form = fit_mask(self.model_type, seen.get("attention_mask"), q.view(1, -1) <= q.view(-1, 1))

    def _capture_token_inputs(self, loaded: LoadedModel, passed: set[str]) -> bool:
        """The layer's optional arguments the block does not pass, as the model passes them: per-token float
        tensors [1, tokens, ...] become block inputs (``token_inputs``), empty dicts the layer fills (Gemma 4's
        KV-sharing dict, read only by later layers) a new empty dict per call. True when all of them are of these
        kinds (or None) and some were found; False leaves the failure to ``raise_probe_failure``."""
        vocab = getattr(self.config, "vocab_size", None) or getattr(loaded.config, "vocab_size", None) or 2
        try:
            seen = capture_layer_inputs(loaded.model, self.layer, int(vocab))
        except Exception:  # noqa: BLE001 - the model's own forward: the probe's failure is reported instead
            return False
        tokens: dict[str, tuple[int, ...]] = {}
        dicts: list[str] = []
        for name in unfed_arguments(self.layer, passed):
            value = seen.get(name)
            if value is None:
                continue
            if (isinstance(value, torch.Tensor) and not value.is_meta and value.is_floating_point()
                    and value.dim() >= 2 and tuple(value.shape[:2]) == (1, PROBE_LEN)):
                tokens[name] = tuple(value.shape[2:])
            elif isinstance(value, MutableMapping) and not value:
                dicts.append(name)
            else:
                return False
        if not tokens and not dicts:
            return False
        self.token_inputs, self.fresh_dicts = tokens, dicts
        return True

    def _probe_kv_geometry(self, hidden: int, loaded: LoadedModel) -> tuple[int, int, int]:
        """Run the layer once on a short prompt (eagerly): what it writes to its cache gives the KV heads and
        the key and value head sizes, and a layer that asks its cache for more than keys and values, or never
        writes it, keeps a recurrent state instead (refused). A layer that fails without optional arguments the
        model computes is probed again with them when they are per-token inputs (``_capture_token_inputs``)."""
        probe_len = 2
        cache = _BlockCache()
        tokens = {n: torch.zeros(1, probe_len, *shape) for n, shape in self.token_inputs.items()}
        kwargs = self._layer_kwargs(torch.arange(probe_len), probe_len, torch.zeros(1, probe_len, hidden), cache,
                                    tokens)
        try:
            with torch.no_grad():
                self.layer(torch.zeros(1, probe_len, hidden), **kwargs)
        except AttributeError as exc:
            if "_BlockCache" in str(exc):
                raise_cache_state(self.model_type, self.layer, str(exc.name))
            if not self.token_inputs and self._capture_token_inputs(loaded, set(kwargs)):
                return self._probe_kv_geometry(hidden, loaded)
            raise_probe_failure(self.model_type, self.layer, set(kwargs), exc)
        except Exception as exc:  # noqa: BLE001 - any failure of the model's own code is explained in one line
            if not self.token_inputs and self._capture_token_inputs(loaded, set(kwargs)):
                return self._probe_kv_geometry(hidden, loaded)
            raise_probe_failure(self.model_type, self.layer, set(kwargs), exc)
        if cache.keys is None:
            raise_recurrent(self.model_type, self.layer, "it never writes keys and values to its cache")
        assert cache.keys is not None and cache.values is not None
        keys, values = tuple(cache.keys.shape), tuple(cache.values.shape)
        if len(keys) != 4 or keys[0] != 1 or keys[2] != probe_len or keys[:3] != values[:3]:
            raise UnsupportedModelError(self.model_type, f"KV-cache layout {list(keys)}, {list(values)} for "
                                        f"{probe_len} tokens", "the block expects keys and values as "
                                        "[batch, kv_heads, tokens, head_dim]")
        return keys[1], keys[3], values[3]

    def _mask(self, query_pos: torch.Tensor, key_len: int) -> torch.Tensor:
        """Additive mask [1,1,q,k] built from positions (no large constants in the graph)."""
        key_pos = torch.arange(key_len).view(1, -1)
        allowed = key_pos <= query_pos.view(-1, 1)
        if self.sliding_window is not None:
            allowed = allowed & (key_pos > query_pos.view(-1, 1) - self.sliding_window)
        shape = (1, 1, query_pos.numel(), key_len)
        if self.mask_form.boolean is not None:  # the model's mask is boolean (MPT: True where masked)
            return (~allowed if self.mask_form.boolean == "masked" else allowed).view(shape)
        lowest = torch.finfo(torch.float32).min
        if self.mask_form.bias is not None:  # the model folds its ALiBi bias into the mask (Falcon)
            return torch.where(allowed.view(shape), self.mask_form.bias.tensor(key_len), lowest)
        zero = torch.zeros((), dtype=torch.float32)
        return torch.where(allowed, zero, lowest).view(shape)

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.mode == "prefill":
            hidden, args = args[0], args[1:]
            positions = torch.arange(self.seq_len)
            cache = _BlockCache()
            key_len = self.seq_len
        else:
            hidden, position, key_cache, value_cache = args[:4]
            args = args[4:]
            positions = position
            cache = _BlockCache(key_cache, value_cache, position)
            key_len = self.max_len
        tokens = dict(zip(self.token_inputs, args, strict=False))
        weights = args[len(self.token_inputs):]
        n = len(self.weight_names)
        cache.kv, cache.observer = tuple(weights[n:]), self.kv_observer
        params = dict(zip(self.weight_names, weights[:n], strict=True))
        kwargs = self._layer_kwargs(positions, key_len, hidden, cache, tokens)
        out = torch.func.functional_call(self.layer, params, (hidden,), kwargs)
        hidden_out = out[0] if isinstance(out, tuple) else out
        assert cache.keys is not None and cache.values is not None, "the probe saw the layer write its KV cache"
        return hidden_out, cache.keys, cache.values

    def _layer_kwargs(self, positions: torch.Tensor, key_len: int, hidden: torch.Tensor, cache: _BlockCache,
                      tokens: dict[str, torch.Tensor]) -> dict[str, object]:
        """The keyword arguments the layer's forward takes: mask, cache (under its name), positions, rotary,
        position biases, per-token inputs."""
        kwargs: dict[str, object] = {"attention_mask": self._mask(positions, key_len), self.cache_argument: cache,
                                     **tokens, **{name: {} for name in self.fresh_dicts}}
        for name, bias in self.position_biases.items():
            kwargs[name] = None if bias is None else bias.tensor(key_len)
        if "use_cache" in self._layer_params:
            kwargs["use_cache"] = True
        position_ids = positions.view(1, -1)
        if "position_ids" in self._layer_params:
            kwargs["position_ids"] = position_ids
        if "cache_position" in self._layer_params:
            kwargs["cache_position"] = positions
        if "position_embeddings" in self._layer_params:
            if self.rotary is None:
                raise ModelError(f"{type(self.layer).__name__} takes position_embeddings but the model has no "
                                 "rotary embedding module (no inv_freq buffer)")
            rotary_args: tuple[object, ...] = (hidden, position_ids)
            if "layer_type" in inspect.signature(self.rotary.forward).parameters:
                rotary_args += (self.layer_type,)
            kwargs["position_embeddings"] = self.rotary(*rotary_args)
        return kwargs

    def example_inputs(self, seed: int = 0, position: int | None = None) -> list[torch.Tensor]:
        """Seeded random activations (and cache), followed by the layer's real weights."""
        gen = torch.Generator().manual_seed(seed)
        s = self.spec
        hidden = torch.randn(1, self.seq_len, s.hidden_size, generator=gen)
        weights = [p.detach().clone() for _, p in self.layer.named_parameters()]
        if self.kv_scales is not None:
            weights += self.kv_scales.tensors()
        tokens = [torch.randn(1, self.seq_len, *shape, generator=gen) for shape in self.token_inputs.values()]
        if self.mode == "prefill":
            return [hidden, *tokens, *weights]
        pos = torch.tensor([position if position is not None else self.max_len // 2], dtype=torch.int64)
        shapes = [(1, s.num_kv_heads, self.max_len, d) for d in (s.head_dim, s.value_head_dim)]
        if self.kv_scales is None:
            key_cache, value_cache = (torch.randn(shape, generator=gen) for shape in shapes)
        else:  # int8 codes over their whole range: the dequantized values span the calibrated one
            key_cache, value_cache = (torch.randint(-127, 128, shape, generator=gen, dtype=torch.int8)
                                      for shape in shapes)
        return [hidden, pos, key_cache, value_cache, *tokens, *weights]


def _arg_name(param_name: str) -> str:
    return param_name.replace(".", "_")
