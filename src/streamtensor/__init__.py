"""streamtensor: PyTorch LLM blocks -> stream-based dataflow accelerators."""

__version__ = "0.1.0"
