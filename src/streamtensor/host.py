"""Settings of a process the compiler owns (the CLI's, a search worker's), not of an API caller's."""

from __future__ import annotations

import numpy as np


def use_small_pages() -> None:
    """Stop numpy from asking for transparent huge pages (``madvise``) for its arrays of 4 MB and more.

    A paper-size prefill block's FIFO sizing and simulations allocate GBs of time and index arrays. On the
    virtual machines we compile on (Firecracker guests) a huge-page fault costs about half a millisecond, so
    the memory-lean GPT-2 prefill point's compile spent 3.9-4.0 s of system time faulting them in, against
    1.2-1.6 s with small pages, at the same user time (benchmarks/compile_speed.md)."""
    np._core.multiarray._set_madvise_hugepage(False)
