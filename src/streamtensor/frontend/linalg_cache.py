"""On-disk cache of the imported Linalg graph of a module (issue 21: a design-space search compiles one block
many times at different tilings, and its export through torch-mlir costs seconds each time).

The key is a SHA-256 of everything the export and the import read: the versions of streamtensor, torch,
torch-mlir and transformers; the source of ``streamtensor.frontend`` and ``streamtensor.ir`` (the lowering,
the importer and the graph they build); the module's structure (``repr``), every submodule's plain attributes
(epsilons, scalings, the block's mode and lengths), the names, shapes, dtypes and bytes of its parameters and
buffers; the example arguments' shapes, dtypes and bytes; the input and weight names. Any change of those
misses. An entry is the pickled ``Graph`` written atomically; an entry that cannot be read is a miss and is
overwritten.

Where: ``$STREAMTENSOR_LINALG_CACHE/KEY.pickle`` if set, else ``linalg/`` in the cache directory the C
simulation's builds use (``$STREAMTENSOR_CACHE_DIR``, ``$XDG_CACHE_HOME/streamtensor`` or
``~/.cache/streamtensor``); ``STREAMTENSOR_LINALG_CACHE=off`` turns it off. The compile report says whether the
graph came from the cache (``frontend_cache``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from streamtensor._version import __version__
from streamtensor.ir.linalg import Graph

if TYPE_CHECKING:
    import torch

_FORMAT = 1  # bump when the entry layout changes
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")  # object reprs carry addresses: not part of what a module computes


@dataclass(frozen=True)
class CacheInfo:
    """How the graph of one compile was obtained (the report's ``frontend_cache``)."""

    state: str  # "hit" | "miss" (exported, then stored) | "off"
    key: str  # "" when off
    path: str

    def report(self) -> dict[str, str]:
        return {"linalg": self.state, "key": self.key[:16], "path": self.path}


def cache_dir() -> Path | None:
    """The directory of the entries, or None when ``STREAMTENSOR_LINALG_CACHE=off``."""
    own = os.environ.get("STREAMTENSOR_LINALG_CACHE", "")
    if own.lower() == "off":
        return None
    if own:
        return Path(own)
    if os.environ.get("STREAMTENSOR_CACHE_DIR"):
        return Path(os.environ["STREAMTENSOR_CACHE_DIR"]) / "linalg"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "streamtensor" / "linalg"


@functools.cache
def code_fingerprint() -> str:
    """Versions of the packages the export runs through and a hash of the sources that build the graph."""
    h = hashlib.sha256(f"format {_FORMAT} streamtensor {__version__}".encode())
    for pkg in ("torch", "torch-mlir", "transformers"):
        try:
            h.update(f"{pkg} {metadata.version(pkg)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{pkg} none".encode())
    root = Path(__file__).resolve().parents[1]
    for sub in ("frontend", "ir"):
        for path in sorted((root / sub).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def _tensor_digest(h: hashlib._Hash, name: str, t: torch.Tensor) -> None:
    import torch

    t = t.detach()
    h.update(f"{name} {tuple(t.shape)} {t.dtype}".encode())
    h.update(t.contiguous().cpu().view(-1).view(torch.uint8).numpy().tobytes()
             if t.numel() else b"")


def cache_key(module: torch.nn.Module, args: Sequence[torch.Tensor], input_names: Sequence[str] | None,
              weight_names: Sequence[str]) -> str:
    """The key of ``module`` exported on ``args`` (module docstring)."""
    import torch  # here: loading a cached entry needs no PyTorch (issue 21: seconds of imports)

    h = hashlib.sha256(code_fingerprint().encode())
    h.update(_ADDRESS.sub("", repr(module)).encode())
    for name, sub in module.named_modules():
        attrs = sorted((k, _ADDRESS.sub("", repr(v))) for k, v in vars(sub).items()
                       if not k.startswith("_") and not isinstance(v, torch.Tensor | torch.nn.Module))
        h.update(f"{name} {type(sub).__module__}.{type(sub).__qualname__} {attrs}".encode())
    for name, t in module.state_dict(keep_vars=False).items():
        _tensor_digest(h, name, t)
    for name, t in module.named_buffers():  # non-persistent buffers (rotary tables) are not in the state dict
        _tensor_digest(h, f"buffer {name}", t)
    for i, a in enumerate(args):
        _tensor_digest(h, f"arg {i}", a)
    h.update(f"inputs {list(input_names) if input_names is not None else None} weights {sorted(weight_names)}"
             .encode())
    return h.hexdigest()


def load(key: str) -> tuple[Graph | None, Path | None]:
    """The cached graph of ``key`` (None on a miss) and the entry's path (None when the cache is off)."""
    root = cache_dir()
    if root is None:
        return None, None
    path = root / f"{key}.pickle"
    try:
        with path.open("rb") as f:
            graph = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, TypeError):
        return None, path  # absent or unreadable (a layout of other sources): a miss, rewritten below
    return (graph, path) if isinstance(graph, Graph) else (None, path)


def store(path: Path, graph: Graph) -> None:
    """Write ``graph`` to ``path`` atomically (another process may read or write the same key)."""
    write_atomically(path, graph)


def write_atomically(path: Path, entry: object) -> None:
    """Pickle ``entry`` to ``path`` through a temporary file and a rename: a reader sees all of it or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(entry, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
