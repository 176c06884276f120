"""streamtensor: PyTorch LLM blocks -> stream-based dataflow accelerators."""

__version__ = "0.1.0"

from streamtensor.driver import CompileOptions, Design, compile, compile_llm_block  # noqa: E402

__all__ = ["CompileOptions", "Design", "__version__", "compile", "compile_llm_block"]
