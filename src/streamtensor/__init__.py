"""streamtensor: PyTorch LLM blocks -> stream-based dataflow accelerators.

``build`` and ``dse`` are imported on first use (PEP 562): the whole-model build imports ``transformers`` and the
search Optuna, which a block compile does not need (issue 21: seconds of imports per compile).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from streamtensor._version import __version__
from streamtensor.driver import CompileOptions, Design, compile, compile_llm_block

if TYPE_CHECKING:
    from streamtensor.llm.build import build
    from streamtensor.search import dse

_LAZY = {"build": "streamtensor.llm.build", "dse": "streamtensor.search"}

__all__ = ["CompileOptions", "Design", "__version__", "build", "compile", "compile_llm_block", "dse"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'streamtensor' has no attribute {name!r}")
