"""The whole model: ``build`` (kernels, packed weights, host tables, run model) and ``generate`` (the host token
loop over the C simulation or a card)."""

from streamtensor.llm.build import LlmDesign, LlmOptions, build, compile_llm
from streamtensor.llm.estimate import Estimate, estimate_run
from streamtensor.llm.generate import LlmRunner, reference_generation

__all__ = ["Estimate", "LlmDesign", "LlmOptions", "LlmRunner", "build", "compile_llm", "estimate_run",
           "reference_generation"]
