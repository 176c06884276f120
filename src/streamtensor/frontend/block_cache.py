"""On-disk cache of a built-in model block's whole frontend (issue 21: a compile whose Linalg graph is cached still
spent 5-8 CPU s importing ``transformers``, building the random model, calibrating and running PyTorch eager).

A block of a built-in family (``frontend.models``) is a function of the family, size, seed, layer, mode, lengths
and quantization options alone: its weights are seeded. The key is a SHA-256 of those options and of the code
fingerprint of the Linalg cache (``linalg_cache.code_fingerprint``: package versions, the frontend and IR
sources), with the source of ``extra_sources`` (the driver's quantization step). An entry holds what a compile
needs of the frontend besides the Linalg graph: the block's spec and report facts, the example inputs of its seed,
PyTorch eager's outputs for them (and the fp32 model's under quantization), and the Linalg cache key of the graph,
which stays in that cache. Checkpoints are never cached here: their weights are read from disk anyway.

Where: ``blocks/`` beside the Linalg entries (``linalg_cache.cache_dir``); off with the Linalg cache.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamtensor.errors import OptionError
from streamtensor.frontend import linalg_cache
from streamtensor.frontend.spec import BlockSpec

if TYPE_CHECKING:
    import torch

# Bump when the entry layout changes. 2: inputs as numpy arrays and BlockSpec from frontend.spec, so that loading
# an entry imports no PyTorch (issue 21).
_FORMAT = 2


@dataclass
class EagerReference:
    """PyTorch eager's outputs of a module for one set of inputs: the Vitis project's check data, and its best
    wall time (``eager_seconds``, measured when the outputs were computed). ``float_outputs``: the fp32 model's,
    under quantization."""

    inputs: list[np.ndarray]
    outputs: list[np.ndarray]
    eager_seconds: float
    float_outputs: list[np.ndarray] | None = None

    def matches(self, args: Sequence[torch.Tensor | np.ndarray]) -> bool:
        """``args`` are the inputs these outputs belong to."""
        return len(args) == len(self.inputs) and all(
            np.array_equal(a.detach().numpy() if hasattr(a, "detach") else np.asarray(a), b)  # a tensor or an array
            for a, b in zip(args, self.inputs, strict=True))


@dataclass
class CachedBlock:
    """A cached block frontend (module docstring). Stands in for the ``DecoderBlock`` a compile returns: callers
    take its ``spec`` and the example inputs of its seed."""

    spec: BlockSpec
    model_info: dict[str, Any]
    quantization: dict[str, Any]  # the report's quantization summary of the block's linear layers
    quant_layers: int  # QuantLinear layers of the quantized block
    linalg_key: str
    seed: int
    reference: EagerReference

    def example_inputs(self, seed: int = 0) -> list[torch.Tensor]:
        import torch

        return [torch.from_numpy(a.copy()) for a in self.example_arrays(seed)]

    def example_arrays(self, seed: int = 0) -> list[np.ndarray]:
        """The example inputs of ``seed`` as arrays (what a Vitis project packs; no PyTorch needed)."""
        if seed != self.seed:
            raise OptionError(f"this cached block holds the example inputs of seed {self.seed}, not {seed}: compile "
                              f"with seed {seed} for those")
        return list(self.reference.inputs)


def block_key(options: dict[str, Any], extra_sources: Sequence[Path]) -> str:
    """The key of a built-in block given by ``options`` (family, size, seed, layer, mode, lengths, quantization)."""
    h = hashlib.sha256(f"block format {_FORMAT} {linalg_cache.code_fingerprint()}".encode())
    h.update(repr(sorted(options.items())).encode())
    for path in extra_sources:
        h.update(path.read_bytes())
    return h.hexdigest()


def _path(key: str) -> Path | None:
    root = linalg_cache.cache_dir()
    return None if root is None else root / "blocks" / f"{key}.pickle"


def load(key: str) -> CachedBlock | None:
    """The entry of ``key``, or None (a miss, the cache off, or an entry that cannot be read)."""
    path = _path(key)
    if path is None:
        return None
    try:
        with path.open("rb") as f:
            entry = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, TypeError):
        return None
    return entry if isinstance(entry, CachedBlock) else None


def store(key: str, entry: CachedBlock) -> None:
    """Write the entry of ``key`` atomically (nothing when the cache is off)."""
    path = _path(key)
    if path is not None:
        linalg_cache.write_atomically(path, entry)
