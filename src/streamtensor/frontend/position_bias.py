"""Position biases a model computes outside its decoder layers (ALiBi), rebuilt inside the block from positions.

Some layers take a tensor the model builds once for all layers: BLOOM's ``alibi``, MPT's ``position_bias``,
Falcon's ``alibi`` (and its attention mask with the bias folded in). ALiBi is a per-head slope times the key
position, plus a per-head offset. Found generically: the whole model runs once on a short prompt and a hook on the
layer records what the model passes; each such tensor must be affine in its last (key) index. The block then
computes ``offset + slope * key_position`` itself (the only constants are one slope and one offset per head, as
small as the mask's), so it stays a function of the block's positions in prefill and decode. Anything else a
model passes (relative-position buckets, per-layer inputs) is refused by ``support.check_layer`` as before.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from streamtensor.errors import UnsupportedModelError

PROBE_LEN = 7  # tokens of the probe prompt: odd and prime, so no head count or width is mistaken for it


class _Captured(Exception):
    """Raised by the hook once the layer's inputs are recorded: the rest of the model need not run."""


@dataclass
class AffineBias:
    """``offset + slope * j`` along the last dim, ``j = 0..length-1``; ``length`` None: the block's key length
    (the model built it over the keys), else the fixed size the model built it with (the layer slices it)."""

    offset: torch.Tensor  # the tensor's shape with the last dim 1
    slope: torch.Tensor
    length: int | None

    def tensor(self, key_len: int) -> torch.Tensor:
        j = torch.arange(self.length or key_len, dtype=torch.float32)
        return self.offset + self.slope * j


def capture_layer_inputs(model: nn.Module, layer: nn.Module, vocab_size: int) -> dict[str, object]:
    """The arguments the model passes ``layer`` on a ``PROBE_LEN``-token prompt (eager, no grad), by name."""
    seen: dict[str, object] = {}

    def hook(_: nn.Module, args: tuple[object, ...], kwargs: dict[str, object]) -> None:
        try:  # positional arguments under their names (Gemma 4 passes its per-layer input positionally)
            seen.update(inspect.signature(layer.forward).bind_partial(*args, **kwargs).arguments)
        except TypeError:
            seen.update(kwargs)
        raise _Captured

    handle = layer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            model(input_ids=torch.arange(PROBE_LEN).view(1, -1) % vocab_size, use_cache=True)
    except _Captured:
        pass
    finally:
        handle.remove()
    return seen


def fit_affine(value: torch.Tensor) -> AffineBias | None:
    """``value`` as an affine function of its last index, or None when it is not one (or depends on the query
    position: another dim of the probe's length)."""
    if value.dim() < 1 or value.shape[-1] < 3 or PROBE_LEN in value.shape[:-1] or not value.is_floating_point():
        return None
    offset = value[..., :1]
    slope = value[..., 1:2] - offset
    bias = AffineBias(offset.clone(), slope.clone(), None if value.shape[-1] == PROBE_LEN else value.shape[-1])
    rebuilt = bias.tensor(PROBE_LEN)
    scale = float(value.abs().max()) or 1.0
    return bias if torch.allclose(rebuilt, value, rtol=0, atol=1e-6 * scale) else None


@dataclass
class MaskForm:
    """How the model's attention mask differs from the block's additive causal mask: a boolean mask (True where
    masked, or True where allowed), or an additive mask with an affine key-position bias on the allowed entries
    (Falcon folds ALiBi into its mask)."""

    boolean: str | None = None  # "masked" | "allowed" | None
    bias: AffineBias | None = None


def fit_mask(model_type: str, mask: object, allowed: torch.Tensor) -> MaskForm:
    """The form of the model's ``mask`` for the probe prompt given the block's own ``allowed`` [q, k] (causal)."""
    if mask is None or not isinstance(mask, torch.Tensor):
        return MaskForm()
    if mask.dtype == torch.bool:
        full = mask.expand(*mask.shape[:-2], *allowed.shape)
        for form, want in (("masked", ~allowed), ("allowed", allowed)):
            if bool((full == want).all()):
                return MaskForm(boolean=form)
    elif mask.is_floating_point() and mask.dim() >= 2 and tuple(mask.shape[-2:]) == tuple(allowed.shape):
        blocked = mask.masked_select(~allowed.expand(mask.shape)) if bool((~allowed).any()) else mask.new_zeros(0)
        if bool((blocked <= torch.finfo(mask.dtype).min / 2).all()):
            last_row = mask[..., -1:, :]  # the last query sees every key (a causal mask without a window)
            if bool((last_row == 0).all()):
                return MaskForm()
            bias = fit_affine(last_row)  # [..., 1, k]: one row, broadcast over the queries
            if bias is not None and bias.length is None:
                rebuilt = bias.tensor(allowed.shape[-1])
                if torch.allclose(torch.where(allowed, mask, 0.0), torch.where(allowed, rebuilt, 0.0),
                                  rtol=0, atol=1e-6 * (float(rebuilt.abs().max()) or 1.0)):
                    return MaskForm(bias=bias)
    raise UnsupportedModelError(
        model_type, f"the attention mask the model builds ({mask.dtype}, {list(mask.shape)}) is neither a causal "
        "mask nor one plus a bias linear in the key position", "it would need that mask computed inside the block")
