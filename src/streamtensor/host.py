"""Settings of a process the compiler owns (the CLI's, a search worker's), not of an API caller's."""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Iterator

import numpy as np

# The share of this machine's memory one command of the CLI may take: what is left keeps the machine usable.
CLI_MEMORY_SHARE = 0.9


def use_small_pages() -> None:
    """Stop numpy from asking for transparent huge pages (``madvise``) for its arrays of 4 MB and more.

    A paper-size prefill block's FIFO sizing and simulations allocate GBs of time and index arrays. On the
    virtual machines we compile on (Firecracker guests) a huge-page fault costs about half a millisecond, so
    the memory-lean GPT-2 prefill point's compile spent 3.9-4.0 s of system time faulting them in, against
    1.2-1.6 s with small pages, at the same user time (benchmarks/compile_speed.md)."""
    np._core.multiarray._set_madvise_hugepage(False)


@contextlib.contextmanager
def memory_cap(share: float) -> Iterator[None]:
    """Cap this process's address space at ``share`` of the machine's memory for the block's duration: a design
    point too large to compile here (a paper-size Gemma prefill at 4-element tiles simulated 24 GB of firings)
    then fails its allocation with a MemoryError (one line naming the stage, ``errors.StageError``; a pruned
    trial in a search) instead of waking the kernel's OOM killer, which kills the process without a word (and
    a whole study, and whatever else runs). The previous limit is restored after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = int(share * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
