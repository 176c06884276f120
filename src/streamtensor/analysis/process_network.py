"""Abstract process network: the interface between the compiler's dataflow graph and its timing analyses.

A *process* is one pipelined loop (a kernel, converter or DMA) that issues ``num_firings`` iterations
("firings"), one every ``ii`` cycles at best; a firing's reads happen at its issue cycle and its writes
``depth`` cycles later (the pipeline depth). A *stream* is a FIFO with exactly one producer and one consumer
(Vitis dataflow canonical form) that carries ``tokens`` tokens of ``width_bits`` bits per run. Which firing
moves which token is given per stream by a sorted index array, so bursty kernels (a reduction that writes
once at the end, a converter that writes after a whole buffer fills) are described exactly.

The timing simulator (:mod:`.timing_sim`) and the FIFO-sizing LP (:mod:`.fifo_lp`) both consume this form.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class Stream:
    """A FIFO from process ``source`` to process ``target`` carrying ``tokens`` tokens per run."""

    name: str
    source: str
    target: str
    width_bits: int
    tokens: int

    def __post_init__(self) -> None:
        if self.width_bits < 1:
            raise ValueError(f"stream {self.name!r}: width_bits must be >= 1, got {self.width_bits}")
        if self.tokens < 1:
            raise ValueError(f"stream {self.name!r}: tokens must be >= 1, got {self.tokens}")
        if self.source == self.target:
            # A process streaming to itself is outside the dataflow canonical form.
            raise ValueError(f"stream {self.name!r}: source and target are both {self.source!r}")


def _as_index_array(process: str, stream: str, role: str, values: object, num_firings: int) -> np.ndarray:
    """Validate one token -> firing map and return it as a read-only, contiguous int32 array (int64 for a process
    of 2**31 firings or more): half the memory of int64 where a fine tiling's maps hold hundreds of millions of
    tokens (issue 21)."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"process {process!r} {role} {stream!r}: index array must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"process {process!r} {role} {stream!r}: firing indices must be integers ({arr.dtype})")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr.size:
        if np.any(arr[1:] < arr[:-1]):
            bad = int(np.argmax(arr[1:] < arr[:-1]))
            raise ValueError(
                f"process {process!r} {role} {stream!r}: firing indices must be sorted (non-decreasing), "
                f"token {bad + 1} has firing {arr[bad + 1]} after token {bad} at firing {arr[bad]}"
            )
        if arr[0] < 0 or arr[-1] >= num_firings:
            raise ValueError(
                f"process {process!r} {role} {stream!r}: firing indices must lie in [0, {num_firings}), "
                f"got [{arr[0]}, {arr[-1]}]"
            )
    if num_firings <= np.iinfo(np.int32).max:
        arr = arr.astype(np.int32)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)  # eq=False: compared by identity (numpy arrays have no scalar ==)
class Process:
    """A pipelined loop of ``num_firings`` firings.

    ``reads[s][k]`` is the firing that consumes token ``k`` of stream ``s`` (at its issue cycle);
    ``writes[s][k]`` the firing that produces it (``depth`` cycles after its issue). Both are sorted.
    """

    name: str
    ii: int
    depth: int
    num_firings: int
    reads: Mapping[str, np.ndarray] = field(default_factory=dict)
    writes: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ii < 1:
            raise ValueError(f"process {self.name!r}: ii must be >= 1, got {self.ii}")
        if self.depth < 0:
            raise ValueError(f"process {self.name!r}: depth must be >= 0, got {self.depth}")
        if self.num_firings < 1:
            raise ValueError(f"process {self.name!r}: num_firings must be >= 1, got {self.num_firings}")
        for attr, role in (("reads", "reading"), ("writes", "writing")):
            arrays = {
                s: _as_index_array(self.name, s, role, v, self.num_firings) for s, v in getattr(self, attr).items()
            }
            object.__setattr__(self, attr, arrays)

    @property
    def latency(self) -> int:
        """Total latency with no stalls: L = (num_firings - 1) * ii + depth (last firing's completion)."""
        return (self.num_firings - 1) * self.ii + self.depth

    @property
    def first_write_firing(self) -> int | None:
        """Index of the first firing that writes any stream (None for a sink, e.g. a DMA writer)."""
        firsts = [int(w[0]) for w in self.writes.values()]
        return min(firsts) if firsts else None

    @property
    def initial_delay(self) -> int:
        """Initial delay with no stalls: D = first_write_firing * ii + depth (cycles to the first output token).

        A sink has no output token; its D is its total latency L (its "result" is its completion).
        """
        first = self.first_write_firing
        return self.latency if first is None else first * self.ii + self.depth


@dataclass
class ProcessNetwork:
    """Processes and the streams between them; validated on construction and immutable afterwards.
    ``srl_max_bits``: FIFOs of at most this many bits are shift registers (the target's; 1-cycle reads)."""

    processes: Sequence[Process]
    streams: Sequence[Stream]
    srl_max_bits: int
    _proc: dict[str, Process] = field(init=False, repr=False)
    _stream: dict[str, Stream] = field(init=False, repr=False)
    _derived: dict[str, Any] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.processes = tuple(self.processes)
        self.streams = tuple(self.streams)
        self._proc = {}
        for p in self.processes:
            if p.name in self._proc:
                raise ValueError(f"duplicate process name {p.name!r}")
            self._proc[p.name] = p
        self._stream = {}
        for s in self.streams:
            if s.name in self._stream:
                raise ValueError(f"duplicate stream name {s.name!r}")
            self._stream[s.name] = s
        for s in self.streams:
            self._check_stream(s)
        for p in self.processes:
            for role, names, end in (("reads", p.reads, "target"), ("writes", p.writes, "source")):
                for name in names:
                    s = self._stream.get(name)
                    if s is None:
                        raise ValueError(f"process {p.name!r} {role} unknown stream {name!r}")
                    if getattr(s, end) != p.name:
                        raise ValueError(
                            f"process {p.name!r} {role} stream {name!r} but the stream's {end} is {getattr(s, end)!r}"
                        )

    def _check_stream(self, s: Stream) -> None:
        for end in ("source", "target"):
            if getattr(s, end) not in self._proc:
                raise ValueError(f"stream {s.name!r}: {end} process {getattr(s, end)!r} does not exist")
        src, tgt = self._proc[s.source], self._proc[s.target]
        if s.name not in src.writes:
            raise ValueError(f"stream {s.name!r}: source process {src.name!r} does not write it")
        if s.name not in tgt.reads:
            raise ValueError(f"stream {s.name!r}: target process {tgt.name!r} does not read it")
        n_w, n_r = len(src.writes[s.name]), len(tgt.reads[s.name])
        if n_w != s.tokens or n_r != s.tokens:
            # Class-4 deadlock (target-and-verification §3): hangs even with unbounded FIFOs.
            raise ValueError(
                f"stream {s.name!r}: token-count mismatch: the stream carries {s.tokens} tokens per run, "
                f"producer {src.name!r} writes {n_w} and consumer {tgt.name!r} reads {n_r}"
            )

    def with_processes(self, replaced: Mapping[str, Process]) -> ProcessNetwork:
        """This network with the processes of ``replaced`` (by name) in place of its own, the streams unchanged."""
        return ProcessNetwork([replaced.get(p.name, p) for p in self.processes], self.streams, self.srl_max_bits)

    def process(self, name: str) -> Process:
        return self._proc[name]

    def derived(self, key: str, build: Callable[[], T]) -> T:
        """``build()``, computed on first use and kept with the (immutable) network: tables that analyses
        derive from it once and reuse in every run (a FIFO-sizing search simulates one network dozens of
        times)."""
        if key not in self._derived:
            self._derived[key] = build()
        return self._derived[key]

    def forget(self, key: str) -> None:
        """Drop the tables ``derived`` keeps under ``key`` (rebuilt on the next use): for an analysis that will
        not use them again and whose tables are large (linear in the firings: gigabytes at a paper-size block's
        finest tilings)."""
        self._derived.pop(key, None)

    def stream(self, name: str) -> Stream:
        return self._stream[name]

    def digest(self) -> str:
        """A SHA-256 of everything the network holds, for memo keys (``solve_memo``): the streams, and per process
        its numbers and token -> firing maps (their buffers as they are: the finest tilings' maps are hundreds
        of MB). Kept with the network: the allocation keys several decisions by one network."""
        return self.derived("digest", self._digest)

    def _digest(self) -> str:
        h = hashlib.sha256()
        parts: list[str | memoryview] = [repr((self.srl_max_bits, self.streams))]
        for p in self.processes:
            parts.append(repr((p.name, p.ii, p.depth, p.num_firings, list(p.reads), list(p.writes))))
            parts += [memoryview(a) for a in (*p.reads.values(), *p.writes.values())]  # contiguous
        for part in parts:
            data = part.encode() if isinstance(part, str) else part
            h.update(f" {memoryview(data).nbytes}:".encode())  # no two part lists collide by concatenation
            h.update(data)
        return h.hexdigest()

    def inputs(self, process: str) -> list[Stream]:
        """Streams read by ``process``, in the order of its ``reads`` mapping."""
        return [self._stream[s] for s in self._proc[process].reads]

    def outputs(self, process: str) -> list[Stream]:
        """Streams written by ``process``, in the order of its ``writes`` mapping."""
        return [self._stream[s] for s in self._proc[process].writes]

    @property
    def total_firings(self) -> int:
        return sum(p.num_firings for p in self.processes)

    def topological_order(self) -> list[str]:
        """Process names with every stream's source before its target; ValueError naming a cycle if cyclic."""
        indeg = {p.name: 0 for p in self.processes}
        for s in self.streams:
            indeg[s.target] += 1
        ready = [p.name for p in self.processes if indeg[p.name] == 0]
        order: list[str] = []
        while ready:
            name = ready.pop()
            order.append(name)
            for s in self.outputs(name):
                indeg[s.target] -= 1
                if indeg[s.target] == 0:
                    ready.append(s.target)
        if len(order) < len(self.processes):
            stuck = sorted(n for n, d in indeg.items() if d > 0)
            raise ValueError(f"process network has a feedback cycle through {stuck}")
        return order


def even_firings(tokens: int, first: int, last: int) -> np.ndarray:
    """Token -> firing map spreading ``tokens`` tokens evenly over firings ``first..last`` (inclusive).

    Token k goes to firing ``first + floor(k * (last - first + 1) / tokens)``: one token per firing when the
    counts match, several per firing when there are more tokens than firings, gaps otherwise.
    """
    if tokens < 1 or last < first:
        raise ValueError(f"even_firings: need tokens >= 1 and last >= first, got {tokens}, [{first}, {last}]")
    return first + (np.arange(tokens, dtype=np.int64) * (last - first + 1)) // tokens
