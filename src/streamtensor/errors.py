"""The error types every stage raises. The command line prints them as one line, never a traceback."""

from __future__ import annotations


class StreamTensorError(Exception):
    """Base class: a problem with the user's input or the compiler's ability to handle it."""


class OptionError(StreamTensorError):
    """A bad option value (name, range, combination)."""


class ModelError(StreamTensorError):
    """Unknown model name, unreadable checkpoint, no decoder layers found."""


class UnsupportedOpError(StreamTensorError):
    """An op the compiler cannot handle; names the op, its dialect and the PyTorch source location."""

    def __init__(self, op: str, dialect: str, reason: str, location: str | None = None) -> None:
        where = f" (from {location})" if location else ""
        super().__init__(f"unsupported op '{op}' of dialect '{dialect}'{where}: {reason}")
        self.op = op
        self.dialect = dialect
        self.location = location


class ShapeError(StreamTensorError):
    """Inputs whose shapes do not match what the block expects."""


class VerificationError(StreamTensorError):
    """An IR verifier or a numerical check failed."""


class ParseError(StreamTensorError):
    """IR text that does not parse: names file:line:col and what was expected there."""


class DeadlockError(StreamTensorError):
    """The compile's own timing simulation deadlocks with the sized FIFOs; names the wait-for cycle."""


class ResourceBudgetError(StreamTensorError):
    """The design does not fit its device, or no SLR assignment fits the per-die budgets."""


class SimulationSizeError(StreamTensorError):
    """The design's streams carry more tokens a run than its compile's simulations are given
    (``analysis.allocation.check_stream_tokens``); ``tokens``: how many they carry."""

    def __init__(self, message: str, tokens: int) -> None:
        super().__init__(message)
        self.tokens = tokens


OUT_OF_MEMORY_HINT = ("the design point needs more memory than this machine has (finer tiles mean more firings for "
                      "the timing simulation to hold)")


class StageError(StreamTensorError):
    """An unexpected exception inside a compile stage, as one line: the stage, the model construct, what to do.
    The original exception is its ``__cause__`` (the command line's ``--debug`` prints its traceback)."""

    def __init__(self, stage: str, construct: str, exc: BaseException) -> None:
        self.out_of_memory = isinstance(exc, MemoryError)
        text = str(exc).strip()
        first_line = text.splitlines()[0] if text else "(no message)"
        # Running out of memory says nothing about the construct: it is the design point that is too large.
        hint = (OUT_OF_MEMORY_HINT if isinstance(exc, MemoryError) else
                "the construct is likely unsupported; rerun with --debug for the traceback and report it with the "
                "model")
        super().__init__(f"stage {stage} failed on {construct}: {type(exc).__name__}: {first_line} -- {hint}")
        self.stage = stage
        self.construct = construct


class UnsupportedModelError(StreamTensorError):
    """A model construct outside what the compiler handles (expert routing, recurrent state, cross-attention, ...),
    refused before export: names the model type, the construct and what supporting it would need."""

    def __init__(self, model_type: str, construct: str, needed: str) -> None:
        super().__init__(f"model type '{model_type}' is not supported: {construct}; {needed}")
        self.model_type = model_type
        self.construct = construct
