"""Weight-and-activation quantization of a model's linear layers: the quantized PyTorch reference.

``QuantLinear`` is what the hardware computes, written as PyTorch ops, and it replaces every ``nn.Linear`` (and
GPT-2's ``Conv1D``) before export, so torch.export -> torch-mlir -> our Linalg import sees the integer ops
(``math.roundeven``, ``arith.fptosi``, ``arith.extsi``, ``arith.muli``/``addi`` in i32, ``arith.sitofp``) and the
interpreter, the stream execution and the C++ reproduce them. The arithmetic, exactly:

- weights ``W[N, K]``: symmetric signed ``b``-bit integers in groups of ``g`` consecutive reduction (``K``)
  elements; per (row, group) ``scale = max|W| / ((qmax - qmin) / 2)`` (7.5 for int4, 127.5 for int8, the rule of
  compressed-tensors and torchao), ``W_q = clamp(roundeven(W / scale), qmin, qmax)``. Held as int8 tensors
  (PyTorch has no int4) with an f32 ``[N, K/g]`` scale tensor next to them (both are block inputs); a compiled
  block reads int4 weights as the IR's ``i4`` (``transforms.narrow_weights``): two per byte in HBM and streams.
- activations: int8, one static per-tensor scale ``s_x`` calibrated on sample inputs (``max|x| / 127.5``):
  ``x_q = clamp(roundeven(x * m), -128, 127)`` with the f32 multiplier vector ``m[K] = 1 / (s_x * smooth)``
  (``smooth`` = 1 unless SmoothQuant migration is on). Static, because a dataflow kernel can then quantize each
  element as it streams; a per-token dynamic scale needs the row's maximum before the row's first element can
  leave (a row buffer and a second pass). ``dynamic=True`` (per-token, for the quality benchmark only) measures
  what that would buy.
- products: ``acc[.., n, g] = sum_k x_q * W_q`` in int32 per group (exact: at most ``K * 128 * 128`` < 2^31).
- dequantization in f32: ``y = (sum_g float(acc[.., n, g]) * scale[n, g]) * s_x + bias`` (round-to-nearest f32
  products, the group sum in f32; no fixed-point requantization is needed because every GEMM output of an LLM
  block goes through an f32 op — bias, rotary, softmax, activation, residual — before the next quantization).

Norms, softmax, rotary, activation functions and residual adds stay f32. Differences to the published schemes:
compressed-tensors W4A8 and torchao's int8-dynamic-activation-int4-weight quantize activations per token and
dynamically (torchao asymmetrically); here they are static per-tensor (above). torchao's default group is 32,
compressed-tensors' 128 (ours: 128, or the whole row when it is shorter). W8A8 weights are per output channel
(one group per row), as in compressed-tensors. Attention's own contractions (QK^T, PV) stay f32 on the
(dequantized) cache: only the linear layers' products are integer.

**KV cache** (``--kv-quant int8``, the default under W4A8 and W8A8): keys and values are stored as int8 with
static scales per (KV head, channel) calibrated like the activations (``max|k| / 127.5`` over the calibration
runs): ``k_q = clamp(roundeven(k * m), -128, 127)`` with the f32 multiplier ``m = 1 / scale``, and attention
reads ``float(k_q) * scale``. Per channel, because keys carry outlier channels (KIVI quantizes keys per channel
for that reason); static, so a row is quantized as it streams into the cache. Both modes attend over the
dequantized values, so prefill and decode compute the same attention. A quarter of the fp32 cache's HBM bytes.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from streamtensor.errors import OptionError
from streamtensor.frontend.quant_scheme import (  # noqa: F401  (re-exported: the scheme and its options)
    ACT_BITS,
    DEFAULT_GROUP,
    KV_SCHEMES,
    QUANT_SCHEMES,
    QuantScheme,
    kv_cache_dtype,
    quant_scheme,
)


def int_range(bits: int) -> tuple[int, int]:
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def symmetric_scale(amax: torch.Tensor, bits: int) -> torch.Tensor:
    """``max|x| / ((qmax - qmin) / 2)`` in f32; an all-zero group gets scale 1 (its values quantize to 0)."""
    lo, hi = int_range(bits)
    scale = amax.to(torch.float32) / ((hi - lo) / 2)
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def quantize_rtn(w: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """Round-to-nearest-even of ``w / scale`` (scale broadcast over the group), saturated to ``bits``."""
    lo, hi = int_range(bits)
    return torch.clamp(torch.round(w / scale), lo, hi)


def grouped_weight_scales(w: torch.Tensor, bits: int, group: int) -> torch.Tensor:
    """Per (row, group) scales ``[N, K/group]`` of ``w[N, K]``."""
    n, k = w.shape
    return symmetric_scale(w.view(n, k // group, group).abs().amax(-1), bits)


def quantize_weight(w: torch.Tensor, bits: int, group: int, hessian: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W_q int8 [N, K], scales f32 [N, K/group])``: round to nearest, or GPTQ when ``hessian`` is given."""
    w = w.detach().to(torch.float32)
    n, k = w.shape
    scales = grouped_weight_scales(w, bits, group)
    if hessian is None:
        q = quantize_rtn(w.view(n, k // group, group), scales.unsqueeze(-1), bits).view(n, k)
    else:
        q = _gptq(w, hessian, scales, bits, group)
    return q.to(torch.int8), scales


def _gptq(w: torch.Tensor, hessian: torch.Tensor, scales: torch.Tensor, bits: int, group: int,
          damp: float = 0.01) -> torch.Tensor:
    """GPTQ (Frantar et al. 2022): quantize columns in order, spreading each column's rounding error over the
    columns not yet quantized through the inverse Hessian's Cholesky factor (scales fixed beforehand)."""
    w = w.clone().double()
    h = hessian.double().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    h += damp * torch.diag(h).mean() * torch.eye(h.shape[0], dtype=h.dtype)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    q = torch.zeros_like(w)
    for j in range(w.shape[1]):
        s = scales[:, j // group].double()
        q[:, j] = quantize_rtn(w[:, j], s, bits)
        err = (w[:, j] - q[:, j] * s) / hinv[j, j]
        w[:, j + 1:] -= err.unsqueeze(1) * hinv[j, j + 1:].unsqueeze(0)
    return q.float()


def grouped_int_matmul(xq: torch.Tensor, wq: torch.Tensor, group: int) -> torch.Tensor:
    """``acc[..., n, g] = sum_{k in group g} xq[..., k] * wq[n, k]`` in int32.

    Exported (the compiled form) as an elementwise int32 product summed in int32, which lowers to one
    ``linalg.generic`` with i32 ``muli``/``addi``; eagerly as a float64 matmul, exact because every partial sum is
    an integer below 2^53, and far faster than PyTorch's integer paths.
    """
    n, k = wq.shape
    lead = xq.shape[:-1]
    groups = k // group
    if torch.compiler.is_exporting():
        xi = xq.to(torch.int32).reshape(*lead, 1, groups, group)
        return (xi * wq.to(torch.int32).view(n, groups, group)).sum(-1, dtype=torch.int32)
    acc = torch.einsum("...gk,ngk->...ng", xq.double().reshape(*lead, groups, group),
                       wq.double().view(n, groups, group))
    return acc.to(torch.int32)


class QuantLinear(nn.Module):
    """``y = x W^T + b`` with int8 activations, ``bits``-bit grouped weights and int32 products (module
    docstring). Its tensors are parameters, so a compiled block receives them as inputs like any weight."""

    def __init__(self, weight_q: torch.Tensor, weight_scale: torch.Tensor, act_mult: torch.Tensor,
                 act_scale: float, bias: torch.Tensor | None, group: int, dynamic: bool = False) -> None:
        super().__init__()
        self.weight_q = nn.Parameter(weight_q, requires_grad=False)
        self.weight_scale = nn.Parameter(weight_scale, requires_grad=False)
        self.act_mult = nn.Parameter(act_mult, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.act_scale = act_scale  # an f32 value: the IR's truncf of the f64 constant is exact
        self.group = group
        self.dynamic = dynamic

    def quantize_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        lo, hi = int_range(ACT_BITS)
        if self.dynamic:
            scale = symmetric_scale((x * self.act_mult).abs().amax(-1, keepdim=True), ACT_BITS)
            # x * act_mult is x in units of the static scale; the row's own scale rescales it to int8.
            return torch.clamp(torch.round(x * self.act_mult / scale), lo, hi).to(torch.int8), scale * self.act_scale
        return torch.clamp(torch.round(x * self.act_mult), lo, hi).to(torch.int8), self.act_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xq, scale = self.quantize_input(x)
        acc = grouped_int_matmul(xq, self.weight_q, self.group)
        y = (acc.to(torch.float32) * self.weight_scale).sum(-1) * scale
        return y if self.bias is None else y + self.bias


# --- calibration and replacement ---------------------------------------------------------------------------------


def _linear_weight(module: nn.Module) -> torch.Tensor | None:
    """``W[N, K]`` of a linear layer (nn.Linear, or GPT-2's Conv1D whose weight is ``[K, N]``)."""
    if isinstance(module, nn.Linear):
        return module.weight.detach()
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
        return module.weight.detach().t()
    return None


@dataclass
class _Stats:
    amax: float = 0.0
    channel_amax: torch.Tensor | None = None
    hessian: torch.Tensor | None = None
    rows: int = 0


def calibrate(model: nn.Module, run: Callable[[], object], names: Iterable[str], hessians: bool = False
              ) -> dict[str, _Stats]:
    """Input statistics of the named linear layers while ``run()`` runs the model on calibration data."""
    stats: dict[str, _Stats] = {}
    handles = []
    modules = dict(model.named_modules())

    def hook(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def record(_: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).float()
            s = stats.setdefault(name, _Stats())
            s.amax = max(s.amax, float(x.abs().max()))
            ch = x.abs().amax(0)
            s.channel_amax = ch if s.channel_amax is None else torch.maximum(s.channel_amax, ch)
            if hessians:
                h = x.double().t() @ x.double()
                s.hessian = h if s.hessian is None else s.hessian + h
                s.rows += x.shape[0]
        return record

    for name in names:
        handles.append(modules[name].register_forward_pre_hook(hook(name)))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return stats


def linear_layer_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if _linear_weight(m) is not None]


def make_quant_linear(module: nn.Module, stats: _Stats, scheme: QuantScheme) -> QuantLinear:
    w = _linear_weight(module)
    assert w is not None and stats.channel_amax is not None
    w = w.float()
    k = w.shape[1]
    group = scheme.group_for(k)
    smooth = torch.ones(k)
    if scheme.smooth_alpha > 0:
        # SmoothQuant: divide input channel j by s_j and multiply W's column j by it, s_j = a_j^α / w_j^(1-α).
        a = stats.channel_amax.clamp(min=1e-5)
        wmax = w.abs().amax(0).clamp(min=1e-5)
        smooth = (a ** scheme.smooth_alpha / wmax ** (1 - scheme.smooth_alpha)).clamp(min=1e-5)
    w_smoothed = w * smooth
    amax = float((stats.channel_amax / smooth).max())
    act_scale = float(symmetric_scale(torch.tensor(amax), ACT_BITS))
    act_mult = (1.0 / (act_scale * smooth.double())).float()
    hessian = None
    if scheme.gptq and stats.hessian is not None:
        # The Hessian of the smoothed inputs x / s: H' = S^-1 H S^-1.
        inv = 1.0 / smooth.double()
        hessian = stats.hessian * inv.unsqueeze(0) * inv.unsqueeze(1) / max(stats.rows, 1)
    weight_q, weight_scale = quantize_weight(w_smoothed, scheme.weight_bits, group, hessian)
    bias = getattr(module, "bias", None)
    return QuantLinear(weight_q, weight_scale, act_mult, act_scale, bias, group, scheme.dynamic)


def quantize_linears(model: nn.Module, scheme: QuantScheme, run: Callable[[], object],
                     names: Sequence[str] | None = None) -> list[str]:
    """Replace the linear layers of ``model`` (or the ``names`` given) with ``QuantLinear``s calibrated while
    ``run()`` feeds the fp32 model sample inputs. Layers are calibrated in order, each on the outputs of the
    already-quantized layers before it (GPTQ's sequential rule), when GPTQ is on; else all at once."""
    targets = list(names) if names is not None else linear_layer_names(model)
    if not targets:
        return []
    order = [[n] for n in targets] if scheme.gptq else [targets]
    for chunk in order:
        stats = calibrate(model, run, chunk, hessians=scheme.gptq)
        for name in chunk:
            if name not in stats:
                raise OptionError(f"quantization: calibration never ran linear layer '{name}'")
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, make_quant_linear(getattr(parent, child), stats[name], scheme))
    return targets


def quantized_copy(module: nn.Module, scheme: QuantScheme, calibration: Sequence[Sequence[torch.Tensor]]
                   ) -> nn.Module:
    """A deep copy of ``module`` with its linear layers quantized, calibrated on the argument tuples given."""
    quantized = copy.deepcopy(module)

    def run() -> None:
        for args in calibration:
            quantized(*args)

    quantize_linears(quantized, scheme, run)
    return quantized


def quant_summary(model: nn.Module, scheme: QuantScheme | None) -> dict[str, object]:
    """``report["quantization"]``: the scheme and each quantized layer's group and activation scale."""
    if scheme is None:
        return {"scheme": "fp32"}
    layers = {n: {"group": m.group, "act_scale": m.act_scale, "shape": list(m.weight_q.shape)}
              for n, m in model.named_modules() if isinstance(m, QuantLinear)}
    weight_bits = sum(math.prod(v["shape"]) for v in layers.values()) * scheme.weight_bits  # type: ignore[arg-type]
    return {"scheme": scheme.name, "weight_bits": scheme.weight_bits, "activation_bits": ACT_BITS,
            "group_size": scheme.group_size, "activation_scale": "static per-tensor (calibrated)",
            "accumulator": "i32", "weight_payload_bytes": weight_bits // 8, "layers": layers}


# --- KV cache ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KvScales:
    """Static int8 scales of one layer's KV cache, per (KV head, channel), shaped ``[1, kv_heads, 1, head_dim]``
    like one cache row, with their f32 reciprocals (the multipliers the quantization uses)."""

    key_scale: torch.Tensor
    value_scale: torch.Tensor

    @property
    def key_mult(self) -> torch.Tensor:
        return (1.0 / self.key_scale.double()).float()

    @property
    def value_mult(self) -> torch.Tensor:
        return (1.0 / self.value_scale.double()).float()

    def tensors(self) -> list[torch.Tensor]:
        """The block inputs, in the order of ``KV_SCALE_NAMES``."""
        return [self.key_mult, self.key_scale, self.value_mult, self.value_scale]


KV_SCALE_NAMES = ("key_mult", "key_scale", "value_mult", "value_scale")


def quantize_kv(x: torch.Tensor, mult: torch.Tensor) -> torch.Tensor:
    """``clamp(roundeven(x * mult), -128, 127)`` as int8."""
    lo, hi = int_range(ACT_BITS)
    return torch.clamp(torch.round(x * mult), lo, hi).to(torch.int8)


def dequantize_kv(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.to(torch.float32) * scale


class KvObserver:
    """Running per-(head, channel) maxima of the keys and values a block writes to its cache (calibration)."""

    def __init__(self) -> None:
        self.key_amax: torch.Tensor | None = None
        self.value_amax: torch.Tensor | None = None

    def record(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        k = keys.detach().abs().amax(dim=2, keepdim=True).float()
        v = values.detach().abs().amax(dim=2, keepdim=True).float()
        self.key_amax = k if self.key_amax is None else torch.maximum(self.key_amax, k)
        self.value_amax = v if self.value_amax is None else torch.maximum(self.value_amax, v)

    def scales(self) -> KvScales:
        if self.key_amax is None or self.value_amax is None:
            raise OptionError("kv-quant int8: calibration never wrote the KV cache")
        return KvScales(symmetric_scale(self.key_amax, ACT_BITS), symmetric_scale(self.value_amax, ACT_BITS))
