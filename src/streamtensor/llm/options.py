"""The options of a whole-model build (``streamtensor build``), apart from the build so that the command line can
offer them without importing it (the build's host model imports ``transformers``: seconds a ``compile`` does not
need, issue 21)."""

from __future__ import annotations

from dataclasses import dataclass

from streamtensor.errors import OptionError
from streamtensor.frontend.models import SIZES


@dataclass(frozen=True)
class LlmOptions:
    prompt_len: int = 32  # the prefill block's tokens; the performance model's prompt
    max_new_tokens: int = 32
    max_len: int = 0  # KV-cache rows of the decode block (0: prompt_len + max_new_tokens)
    size: str = "tiny"
    seed: int = 0
    decode_positions: int = 2  # capacities the decode block's timing is simulated at (1: only max_len)
    vocab_size: int = 0  # built-in models: this vocabulary instead of the small built-in one (0)
    verbose: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.vocab_size, int) or self.vocab_size < 0:
            raise OptionError(f"bad vocab-size {self.vocab_size!r}: must be a non-negative integer")
        for name in ("prompt_len", "max_new_tokens", "decode_positions"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise OptionError(f"bad {name.replace('_', '-')} {getattr(self, name)!r}: must be at least 1")
        if self.size not in SIZES:
            raise OptionError(f"bad size '{self.size}': expected one of {', '.join(SIZES)}")
        if self.max_len and self.max_len < self.prompt_len + 1:
            raise OptionError(f"bad max-len {self.max_len}: the KV cache must hold the prompt ({self.prompt_len}) "
                              "and at least one new token")

    @property
    def cache_len(self) -> int:
        return self.max_len or self.prompt_len + self.max_new_tokens
