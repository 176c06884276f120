"""On-disk memo of the compiler's costly deterministic decisions (issue 21: a second compile of a block spent
seconds re-solving the SLR ILP and re-tiling every candidate token tile only to make the same choices).

An entry is a decision keyed by a SHA-256 of everything that decides it: the caller's parts (the solver's whole
model, or the keys of the compile's inputs and options), streamtensor's version and all its sources, and the
HiGHS version. Any change of those misses, so a hit returns what the computation would return. Entries are
pickled and written atomically (``frontend.linalg_cache.write_atomically``); one that cannot be read is a miss
and is overwritten. The directory is the caller's (the driver: ``memo/`` in the Linalg cache directory); None
turns the memo off.
"""

from __future__ import annotations

import functools
import hashlib
import pickle
from importlib import metadata
from pathlib import Path

from streamtensor._version import __version__
from streamtensor.frontend.linalg_cache import write_atomically

_FORMAT = 1  # bump when an entry's layout changes


@functools.cache
def _fingerprint() -> str:
    """streamtensor's version and sources, and the HiGHS version (its answers depend on the release)."""
    h = hashlib.sha256(f"memo format {_FORMAT} streamtensor {__version__} highspy {metadata.version('highspy')}"
                       .encode())
    root = Path(__file__).resolve().parents[1]
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def memo_key(kind: str, *parts: bytes | memoryview | str) -> str:
    """The key of a ``kind`` of decision made from ``parts`` (each hashed with its length in bytes: no two part
    lists collide by concatenation)."""
    h = hashlib.sha256(f"{_fingerprint()} {kind}".encode())
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(f" {memoryview(data).nbytes}:".encode())
        h.update(data)
    return h.hexdigest()


def load(root: Path | None, key: str) -> object | None:
    """The entry of ``key`` (None: a miss, an unreadable entry, or the memo off)."""
    if root is None:
        return None
    try:
        with (root / f"{key}.pickle").open("rb") as f:
            return pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, TypeError):
        return None


def store(root: Path | None, key: str, entry: object) -> None:
    """Write the entry of ``key`` atomically (nothing when the memo is off)."""
    if root is not None:
        write_atomically(root / f"{key}.pickle", entry)
