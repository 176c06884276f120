"""The quantization schemes and their options, without PyTorch (``frontend.quant`` quantizes with them): a
compile whose frontend is cached reads only these (issue 21: ``import torch`` costs seconds of CPU)."""

from __future__ import annotations

from dataclasses import dataclass

from streamtensor.errors import OptionError

QUANT_SCHEMES = ("fp32", "w8a8", "w4a8")
KV_SCHEMES = ("auto", "fp32", "int8")
DEFAULT_GROUP = 128  # compressed-tensors' W4A8 preset
ACT_BITS = 8


@dataclass(frozen=True)
class QuantScheme:
    """A weight/activation quantization scheme (``name`` one of ``QUANT_SCHEMES`` other than fp32)."""

    name: str
    weight_bits: int
    group_size: int  # reduction elements per weight scale; 0: one group per row (per output channel)
    smooth_alpha: float = 0.0  # SmoothQuant migration strength; 0: none
    gptq: bool = False  # GPTQ error-compensating rounding of the weights (needs calibration Hessians)
    dynamic: bool = False  # per-token dynamic activation scales (quality comparison only; not compiled)

    def group_for(self, k: int) -> int:
        """The group size of a layer with reduction length ``k``: the option, or the whole row when shorter."""
        g = k if self.group_size == 0 or self.group_size >= k else self.group_size
        if k % g:
            raise OptionError(f"bad quant group size {self.group_size}: it does not divide a linear layer's "
                              f"reduction length {k}")
        return g


def quant_scheme(name: str, group_size: int | None = None) -> QuantScheme | None:
    """The scheme of ``--quant NAME`` (None for fp32); W4A8 groups 128 elements by default, W8A8 is per channel."""
    if name not in QUANT_SCHEMES:
        raise OptionError(f"bad quant '{name}': expected one of {', '.join(QUANT_SCHEMES)}")
    if group_size is not None and group_size < 0:
        raise OptionError(f"bad quant group size {group_size}: must be positive (0: one group per row)")
    if name == "fp32":
        return None
    if name == "w8a8":
        return QuantScheme(name, 8, 0 if group_size is None else group_size)
    return QuantScheme(name, 4, DEFAULT_GROUP if group_size is None else group_size)


def kv_cache_dtype(kv_quant: str, quant: str) -> str:
    """The KV cache's element type under ``--kv-quant`` (``auto``: int8 when the linear layers are quantized)."""
    if kv_quant not in KV_SCHEMES:
        raise OptionError(f"bad kv-quant '{kv_quant}': expected one of {', '.join(KV_SCHEMES)}")
    if kv_quant == "auto":
        return "fp32" if quant == "fp32" else "int8"
    return kv_quant
