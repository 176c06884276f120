"""The whole model: ``build`` (kernels, packed weights, host tables, run model) and ``generate`` (the host token
loop over the C simulation or a card).

The names below are imported on first use (PEP 562): the build and the runner import ``transformers`` (seconds),
which ``streamtensor compile`` does not need (issue 21). ``streamtensor.llm.build`` is the submodule; its
function is ``streamtensor.build`` (a package attribute lazily bound to a function would be rebound to the
submodule by its first import).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from streamtensor.llm.options import LlmOptions

if TYPE_CHECKING:
    from streamtensor.llm.build import LlmDesign, compile_llm
    from streamtensor.llm.estimate import Estimate, estimate_run
    from streamtensor.llm.generate import LlmRunner, reference_generation

_LAZY = {"LlmDesign": "build", "compile_llm": "build", "Estimate": "estimate",
         "estimate_run": "estimate", "LlmRunner": "generate", "reference_generation": "generate"}

__all__ = ["Estimate", "LlmDesign", "LlmOptions", "LlmRunner", "compile_llm", "estimate_run", "reference_generation"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"streamtensor.llm.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'streamtensor.llm' has no attribute {name!r}")
