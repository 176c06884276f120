"""The boards the Vitis backend builds for, by ``--target`` name."""

from __future__ import annotations

from streamtensor.errors import OptionError
from streamtensor.target import Target

from .u55c import U55C
from .u280 import U280

TARGETS: dict[str, Target] = {t.name: t for t in (U55C, U280)}
DEFAULT_TARGET = U55C.name


def get_target(name: str | Target) -> Target:
    """The board named ``name`` (a :class:`Target` passes through)."""
    if isinstance(name, Target):
        return name
    if name not in TARGETS:
        raise OptionError(f"unknown target {name!r} (known: {', '.join(TARGETS)})")
    return TARGETS[name]
