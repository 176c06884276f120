"""streamtensor: PyTorch LLM blocks -> stream-based dataflow accelerators."""

from streamtensor._version import __version__
from streamtensor.driver import CompileOptions, Design, compile, compile_llm_block
from streamtensor.llm import build
from streamtensor.search import dse

__all__ = ["CompileOptions", "Design", "__version__", "build", "compile", "compile_llm_block", "dse"]
