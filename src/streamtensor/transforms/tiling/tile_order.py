"""Loop orders of every kernel: the default (output-stationary) orders and the layout-aware tile-order search.

**Loop orders.** Default tile order: one-trip loops first (they move nothing; outermost they never keep an
operand from being held across the loops inside its last used loop, see ``KernelNode``), then the parallel
loops in the order of the (first) output's dims, then any other parallel loop, then the reduction loops in dim
order (output-stationary: one output tile pending at a time). With ``layout_aware_order`` the tile orders are
chosen to minimize the bytes that depend on them: converter buffers on kernel-to-kernel edges (the producer's
result type carried through reshapes / slices, compared with the consumer's operand type, or with its chunk
at the region of a concat; ``infer_converter_buffer``) plus accumulators (``pending_tiles`` output tiles per
result). Candidates per kernel are the permutations of its loops of more than one trip (<= 5 in LLM blocks).
The search is a coordinate descent, each kernel in turn taking its cheapest order given the others', consumers
first then producers first until nothing changes; a kernel's move takes its all-parallel neighbours along
(such a kernel can walk its tiles in any order, so it re-picks, among the orders cheapest on its edges to the
moved kernel, its cheapest one: the layout is propagated into producers such as a KV-cache update and into
consumers). Where the descent stops, a leap re-orders one kernel and lets every kernel that no longer fits
its re-ordered neighbours re-pick its order, breadth first (a head-major attention turned row-major takes its
projections, norms and softmax along); the first leap that lowers the total is kept and the descent resumes.
The descent runs from the default orders and from ``order_search_restarts`` random orders (seeded, so
deterministic); the cheapest local optimum wins, the default-started one on ties.

**Objectives.** ``memory`` minimizes those bytes. ``latency`` first minimizes an estimate of the block's
makespan in which a kernel runs for its iteration count and a consumer starts once its producer has emitted
its first token (``ir.dataflow.first_output_fraction``: a kernel whose reduction loops are outermost emits
only at its end) and, behind
a converter, filled its first window: a decode block's kernels run one after another unless their orders let
them overlap (a GEMV walking its reduction outermost streams in the output of the GEMV before it as that one
makes it, at the price of one accumulator per output tile), which the bytes alone never favour; then the
bytes. ``auto`` is ``latency`` for a one-token (decode) block, ``memory`` otherwise. Point loops
(inside a tile): with ``permute_reductions_outward`` the reduction loops go outward and the parallel ones
innermost (the pipelined loop then carries no accumulator dependence: lower II, see
``analysis.timing_model``); without it the point order is the tile order.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import deque
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from streamtensor.ir.converter_buffer import LoopEntry, loop_signature, shared_buffer, shared_loop_count
from streamtensor.ir.dataflow import LoopTiling, first_output_fraction, input_loops, kernel_operand_type, pending_tiles
from streamtensor.ir.dtypes import DTYPE_BITS
from streamtensor.ir.itensor import ITensorType
from streamtensor.ir.layout import chunk_type, reassociate_type, reassociation_key, stream_counts
from streamtensor.ir.linalg import GenericOp, Graph
from streamtensor.transforms.tiling.edges import MovementStep, kernel_edges
from streamtensor.transforms.tiling.plan import OpTiling, TilingOptions, block_rows


def default_orders(op: GenericOp, loops: list[LoopTiling], options: TilingOptions) -> tuple[list[int], list[int]]:
    """Tile and point orders before the layout-aware choice (module docstring)."""
    reduction = set(op.reduction_dims)
    out_map = op.indexing_maps[len(op.inputs)]
    parallel = [d for d in (out_map.result_dim(i) for i in range(out_map.num_results))
                if d is not None and d not in reduction]
    parallel += [d for d in range(len(loops)) if d not in reduction and d not in parallel]
    reductions = sorted(reduction)
    once = [d for d in range(len(loops)) if loops[d].trip == 1]
    tile_order = once + [d for d in parallel + reductions if d not in once]
    point_order = reductions + parallel if options.permute_reductions_outward else list(tile_order)
    return tile_order, point_order


def resolve_objective(objective: str, graph: Graph) -> str:
    """``auto``: ``latency`` for a block of one token (decode), ``memory`` otherwise (module docstring)."""
    if objective != "auto":
        return objective
    return "latency" if block_rows(graph) == 1 else "memory"


class _Lazy(dict[int, Any]):
    """A table filled on first look-up of each key by ``make(key)``."""

    def __init__(self, make: Callable[[int], Any]) -> None:
        super().__init__()
        self.make = make

    def __missing__(self, key: int) -> Any:
        value = self[key] = self.make(key)
        return value


def _orders_of(kernels: list[int]) -> Callable[[list[int]], object]:
    """A key of the orders of ``kernels`` (candidate indices), taken in one call: a memo key built per look-up."""
    return itemgetter(*kernels) if kernels else lambda _: ()


class TileOrderSearch:
    """Tile orders minimizing converter bytes between kernels plus accumulator bytes, with the ``latency``
    objective after an estimate of the makespan (module docstring).

    A kernel's order is held as its index among its candidates (``choice``; ``orders`` spells them out), and
    the costs as tables over those indices: per kernel its accumulator bytes and first-output fraction, per edge
    its converter bytes and wait under every pair of its ends' candidates. An edge's table is filled on first use
    from the distinct stream types its ends make and read under their candidates (few: a type reads only some of
    a kernel's loops), each distinct pair of types priced once (``_types_cost``). Issue 21: memos keyed by order
    tuples (hashed afresh at every look-up) and the pair functions asked about every pair of types were most of
    the search; the tables find the same orders in less than half the time."""

    def __init__(self, graph: Graph, ops: list[GenericOp], tilings: list[OpTiling], objective: str = "memory"
                 ) -> None:
        self.ops, self.loops = ops, [t.loops for t in tilings]
        self.latency = objective == "latency"
        self.work = [math.prod(lt.size for lt in loops) for loops in self.loops]
        self.edges = kernel_edges(graph, ops)
        self.ends = [(e.producer, e.consumer) for e in self.edges]
        self.touching: list[list[int]] = [[] for _ in ops]  # edge indices
        for i, e in enumerate(self.edges):
            self.touching[e.producer].append(i)
            if e.consumer != e.producer:
                self.touching[e.consumer].append(i)
        # Each kernel's edges to other kernels, with the kernel at their other end.
        self.others = [[(i, p if c == k else c) for i in self.touching[k] for p, c in [self.ends[i]] if p != c]
                       for k in range(len(ops))]
        self.candidates = [self._candidates(tuple(t.tile_order), t.loops) for t in tilings]
        self._index = [{order: a for a, order in enumerate(c)} for c in self.candidates]
        self.choice = [0] * len(ops)  # the initial orders: every kernel's first candidate
        # All-parallel kernels next to each kernel: they can walk their tiles in any order, so a move of the
        # kernel takes them along (each re-picks its best order for the kernel's new one).
        self.followers: list[list[int]] = [[] for _ in ops]
        for e in self.edges:
            for k, n in ((e.producer, e.consumer), (e.consumer, e.producer)):
                if n != k and not ops[n].reduction_dims and n not in self.followers[k]:
                    self.followers[k].append(n)
        self.group_edges = [sorted({i for m in [k, *self.followers[k]] for i in self.touching[m]})
                            for k in range(len(ops))]
        self.group_ends = [sorted({k, *self.followers[k], *(m for i in self.group_edges[k] for m in self.ends[i])})
                           for k in range(len(ops))]
        self.neighbors = [sorted({m for i in self.touching[k] for m in self.ends[i]} - {k}) for k in range(len(ops))]
        # Memo keys: the orders of a kernel's neighbors, and of the kernels a move of it reads (``_move_kernel``).
        self._neighbor_orders = [_orders_of(m) for m in self.neighbors]
        self._group_orders = [_orders_of(m) for m in self.group_ends]
        self.in_edges = [[(i, self.edges[i].producer) for i in self.touching[k]
                          if self.edges[i].consumer == k and self.edges[i].producer < k] for k in range(len(ops))]
        # Per kernel and candidate, filled on first use (``waits`` alone needs few): accumulator bytes, and the
        # fraction of its run before its first output (``first_output_fraction``).
        self.accumulators: _Lazy = _Lazy(self._accumulators_of)
        self.emissions: _Lazy = _Lazy(lambda k: [first_output_fraction(self.loops[k], list(order))
                                                 for order in self.candidates[k]])
        # Stream types, interned: a number per distinct type (hashing a type walks all of it).
        self._type_ids: dict[ITensorType, int] = {}
        self._type_list: list[ITensorType] = []
        self._operand_types: dict[tuple[int, int, tuple[int, ...]], int] = {}
        self._chains: dict[tuple[MovementStep, ...], int] = {}
        self._chain_ids = [self._intern_chain(e.chain) for e in self.edges]
        self._after_ids = [self._intern_chain(e.after) for e in self.edges]
        self._before_concat: dict[tuple[int, int], int] = {}
        self._carried: dict[tuple[int, int], int] = {}
        self._read: dict[tuple[int, int], int] = {}
        self._type_costs: dict[tuple[int, int, int], tuple[int, float]] = {}
        self._counts: dict[int, tuple[str, int, int, int]] = {}
        self._reassociation_keys: dict[int, tuple[object, ...]] = {}
        self._signatures: dict[int, tuple[LoopEntry, ...]] = {}
        self._windows: dict[tuple[int, int, int], tuple[int, float]] = {}  # by source, shared loops, made
        # Per edge, [producer candidate][consumer candidate]: converter bytes, the same by consumer candidate
        # first, and the fraction of the producer's run the consumer waits for (``waits``).
        self._tables: dict[int, tuple[list[list[int]], list[list[float]]]] = {}
        self.bytes: _Lazy = _Lazy(lambda i: self._table(i)[0])
        self.bytes_by_consumer: _Lazy = _Lazy(lambda i: [list(col) for col in zip(*self.bytes[i], strict=True)])
        self.wait_fractions: _Lazy = _Lazy(lambda i: self._table(i)[1])
        self._bests: dict[tuple[int, object], int] = {}  # ``_follow``'s
        self._makespans: dict[tuple[int, ...], float] = {}
        # The orders of the last makespan computed, and every kernel's start and end under them.
        self._timed: tuple[tuple[int, ...], list[float], list[float]] = ((-1,) * len(ops), [0.0] * len(ops),
                                                                       [0.0] * len(ops))
        self._fittings: dict[tuple[int, tuple[int, ...], tuple[int, ...]], list[int]] = {}
        self._leaps: dict[tuple[int, ...], tuple[int, ...] | None] = {}
        self._moves: dict[tuple[int, object], list[int]] = {}

    @property
    def orders(self) -> list[tuple[int, ...]]:
        """Every kernel's current tile order."""
        return [c[a] for c, a in zip(self.candidates, self.choice, strict=True)]

    @orders.setter
    def orders(self, orders: list[tuple[int, ...]]) -> None:
        self.choice = [index[tuple(order)] for index, order in zip(self._index, orders, strict=True)]

    @staticmethod
    def _candidates(order: tuple[int, ...], loops: list[LoopTiling]) -> list[tuple[int, ...]]:
        """Permutations of the loops of more than one trip in their slots of the initial order (one-trip loops
        move nothing and stay outermost, see ``default_orders``); the initial order first."""
        slots = [i for i, d in enumerate(order) if loops[d].trip > 1]
        out = []
        for perm in itertools.permutations([order[i] for i in slots]):
            candidate = list(order)
            for i, d in zip(slots, perm, strict=True):
                candidate[i] = d
            out.append(tuple(candidate))
        return out

    def _accumulators_of(self, k: int) -> list[int]:
        """Accumulator bytes of kernel ``k`` under each of its candidates: its pending output tiles of every
        result."""
        op, loops = self.ops[k], self.loops[k]
        if not op.reduction_dims:
            return [0] * len(self.candidates[k])
        bits = 0
        for r, value in enumerate(op.results):
            amap = op.indexing_maps[len(op.inputs) + r]
            dims = [amap.result_dim(i) for i in range(amap.num_results)]
            bits += math.prod(1 if d is None else loops[d].tile for d in dims) * DTYPE_BITS[value.type.dtype]
        return [pending_tiles(loops, list(order)) * -(-bits // 8) for order in self.candidates[k]]

    def _intern(self, t: ITensorType | None) -> int:
        """A number per distinct stream type (-1: None)."""
        if t is None:
            return -1
        found = self._type_ids.get(t)
        if found is None:
            found = self._type_ids[t] = len(self._type_list)
            self._type_list.append(t)
        return found

    def _intern_chain(self, chain: tuple[MovementStep, ...]) -> int:
        return self._chains.setdefault(chain, len(self._chains))

    def _operand_type(self, k: int, a: int, operand: int) -> int:
        """The stream type of operand ``operand`` of kernel ``k`` under its candidate ``a``: its ``_intern``
        number. ``kernel_operand_type`` reads the order only through the loops of more than one trip that the
        operand's stream walks (an input's ``input_loops``, an init's or result's parallel loops), so the type
        is built once per distinct such loop list."""
        order, op, loops = self.candidates[k][a], self.ops[k], self.loops[k]
        walked = input_loops(op, list(order), operand) if operand < len(op.inputs) else \
            [d for d in order if not loops[d].reduction]
        key = (k, operand, tuple([d for d in walked if loops[d].trip > 1]))
        found = self._operand_types.get(key)
        if found is None:
            found = self._operand_types[key] = self._intern(kernel_operand_type(op, loops, list(order), operand))
        return found

    def _move(self, t: ITensorType | None, chain: tuple[MovementStep, ...], backward: bool = False
              ) -> ITensorType | None:
        """A stream type carried along the reshapes / slices of ``chain`` (``backward``: from the end of the
        chain to its start, reshapes only), None when some step needs a converter to stream at all."""
        moved = t
        for step in reversed(chain) if backward else chain:
            if moved is None:
                break
            if backward:
                moved = reassociate_type(moved, step.source) if step.offsets is None else None
            elif step.offsets is not None and step.sizes is not None:
                moved = chunk_type(moved, step.offsets, step.sizes)
                if moved is not None and step.sizes != step.result:
                    moved = reassociate_type(moved, step.result)
            else:
                moved = reassociate_type(moved, step.result)
        return moved

    def _made(self, i: int, a: int) -> tuple[int, int]:
        """Edge ``i``'s stream as its producer makes it under its candidate ``a`` and as carried to the consumer
        (``_move`` along the chain): their ``_intern`` numbers."""
        e = self.edges[i]
        made = self._operand_type(e.producer, a, len(self.ops[e.producer].inputs) + e.result)
        key = (made, self._chain_ids[i])
        source = self._carried.get(key)
        if source is None:
            source = self._carried[key] = self._intern(self._move(self._type_list[made], e.chain))
        return made, source

    def _wanted(self, i: int, b: int) -> int:
        """Edge ``i``'s stream as its consumer reads it under its candidate ``b`` (at its region of a concat):
        its ``_intern`` number. The read carried back through the reshapes after the concat is the same for
        every input of the concat: it is kept by the chain, and only the chunk taken per region."""
        e = self.edges[i]
        read = self._operand_type(e.consumer, b, e.operand)
        if e.region is None:
            return read
        key = (read, i)
        found = self._read.get(key)
        if found is None:
            before_key = (read, self._after_ids[i])
            before = self._before_concat.get(before_key)
            if before is None:
                before = self._before_concat[before_key] = self._intern(
                    self._move(self._type_list[read], e.after, backward=True))
            found = self._read[key] = -1 if before < 0 else self._intern(chunk_type(self._type_list[before],
                                                                                   *e.region))
        return found

    def _types_cost(self, made: int, source: int, result: int) -> tuple[int, float]:
        """Converter bytes on an edge whose producer makes type ``made``, carried to the consumer as ``source`` (None:
        it cannot be) where the consumer reads ``result``, and the fraction of the tensor the consumer waits for
        before its first read (a converter's window); (0, 0) for the same tokens. A stream that cannot
        be carried to the consumer costs the worst case, the whole tensor. Through a concat, the producer must
        stream the chunk of the consumer's layout at its region (what ``build_dataflow`` wires when it can).
        Every converter is priced as two windows: one with a single window has one bank, but its consumer then
        starts only after the producer has filled the whole window, and data forked around it waits in FIFOs
        for as long (orders priced by the bank count gave paper-size GPT-2 prefill a 131 KB converter and 35%
        more fused memory). The types are ``_intern`` numbers: the cost is memoized on them, and each type's
        ``stream_counts``, ``reassociation_key`` and ``loop_signature`` are computed once (issue 21: asking
        ``reassociation_error`` and ``infer_converter_buffer`` about each pair was half of a paper-size prefill
        block's search)."""
        key = (made, source, result)
        cost = self._type_costs.get(key)
        if cost is None:
            tensor = self._type_list[made]
            if source < 0 or result < 0:
                cost = (2 * -(-tensor.tensor_elements * DTYPE_BITS[tensor.dtype] // 8), 1.0)
            elif (self._stream_counts(source) == self._stream_counts(result)
                  and self._reassociation_key(source) == self._reassociation_key(result)):
                cost = (0, 0.0)
            else:
                signature = self._signature(source)
                window = (source, shared_loop_count(signature, self._signature(result)), made)
                cost = self._windows.get(window)
                if cost is None:
                    buffer = shared_buffer(self._type_list[source], signature, window[1])
                    cost = self._windows[window] = (2 * buffer.bytes // buffer.banks,
                                                    buffer.window_elements / tensor.tensor_elements)
            self._type_costs[key] = cost
        return cost

    def _stream_counts(self, t: int) -> tuple[str, int, int, int]:
        found = self._counts.get(t)
        if found is None:
            found = self._counts[t] = stream_counts(self._type_list[t])
        return found

    def _reassociation_key(self, t: int) -> tuple[object, ...]:
        found = self._reassociation_keys.get(t)
        if found is None:
            found = self._reassociation_keys[t] = reassociation_key(self._type_list[t])
        return found

    def _signature(self, t: int) -> tuple[LoopEntry, ...]:
        found = self._signatures.get(t)
        if found is None:
            found = self._signatures[t] = loop_signature(self._type_list[t])
        return found

    def _table(self, i: int) -> tuple[list[list[int]], list[list[float]]]:
        """Edge ``i``'s converter bytes and waits under every pair of its ends' candidates."""
        table = self._tables.get(i)
        if table is None:
            producer, consumer = self.ends[i]
            made = [self._made(i, a) for a in range(len(self.candidates[producer]))]
            wanted = [self._wanted(i, b) for b in range(len(self.candidates[consumer]))]
            columns = list(dict.fromkeys(wanted))
            rows: dict[tuple[int, int], tuple[list[int], list[float]]] = {}
            for pair in dict.fromkeys(made):
                costs = {w: self._types_cost(*pair, w) for w in columns}
                rows[pair] = ([costs[w][0] for w in wanted], [costs[w][1] for w in wanted])
            table = self._tables[i] = ([rows[pair][0] for pair in made], [rows[pair][1] for pair in made])
        return table

    def makespan(self) -> float:
        """Estimated makespan in iterations (module docstring): kernels in program order, each starting when
        every producer has emitted its first token and filled its consumer's first converter window, and ending
        no earlier than its producers. A kernel's start and end read only the kernels before it: those before
        the first kernel whose order differs from the last makespan's keep their times (a move re-orders a few
        kernels; issue 21: the latency objective's makespans were a sixth of a prefill block's search)."""
        key = tuple(self.choice)
        found = self._makespans.get(key)
        if found is None:
            choice, emissions, waits, work = self.choice, self.emissions, self.wait_fractions, self.work
            last, start, end = self._timed
            first = next((c for c, (a, b) in enumerate(zip(key, last, strict=True)) if a != b), len(key))
            for c in range(first, len(key)):
                begin = latest = 0.0
                for i, p in self.in_edges[c]:
                    emitted, window = emissions[p][choice[p]], waits[i][choice[p]][choice[c]]
                    wait = window if window > emitted else emitted
                    ready = start[p] + wait * (end[p] - start[p])
                    begin = ready if ready > begin else begin
                    latest = end[p] if end[p] > latest else latest
                finish = begin + work[c]
                start[c], end[c] = begin, finish if finish > latest else latest
            self._timed = (key, start, end)
            found = self._makespans[key] = max(end, default=0.0)
        return found

    def waits(self) -> list[list[tuple[int, float]]]:
        """Per kernel, each producer before it with the fraction of its run the kernel waits for under the
        current orders (the terms of ``makespan``): the later of the producer's first output and the first
        window of the converter between their orders. Priced for these orders alone, without the tables."""
        choice = self.choice
        return [[(p, max(self.emissions[p][choice[p]],
                         self._types_cost(*self._made(i, choice[p]), self._wanted(i, choice[c]))[1]))
                 for i, p in inputs] for c, inputs in enumerate(self.in_edges)]

    def _edges_cost(self, edges: list[int]) -> int:
        """Converter bytes on ``edges`` under the current orders (inlined: it runs a million times in a
        paper-size search)."""
        choice, table, ends, total = self.choice, self.bytes, self.ends, 0
        for i in edges:
            producer, consumer = ends[i]
            total += table[i][choice[producer]][choice[consumer]]
        return total

    def _vector(self, i: int, n: int) -> list[int]:
        """Edge ``i``'s converter bytes for each candidate of its end ``n``, the other end's order as it is."""
        producer, consumer = self.ends[i]
        if producer == consumer:
            return [row[a] for a, row in enumerate(self.bytes[i])]
        if n == producer:
            return self.bytes_by_consumer[i][self.choice[consumer]]
        return self.bytes[i][self.choice[producer]]

    def total(self) -> int:
        return (sum(self.accumulators[k][a] for k, a in enumerate(self.choice))
                + self._edges_cost(list(range(len(self.edges)))))

    def _estimate(self) -> float:
        """The latency term of the score: the estimated makespan with the latency objective, else 0."""
        return self.makespan() if self.latency else 0.0

    def score(self) -> tuple[float, int]:
        """What the search minimizes: (estimated makespan, bytes) with the latency objective, else bytes."""
        return (self._estimate(), self.total())

    def _fitting(self, n: int, shared: list[int]) -> list[int]:
        """Kernel ``n``'s candidates cheapest on the edges ``shared``, in candidate order. A function of the
        orders of the edges' other ends only: memoized on them (the leaps ask the same question many times)."""
        choice = self.choice
        key = (n, tuple(shared), tuple([choice[m] for i in shared for m in self.ends[i] if m != n]))
        found = self._fittings.get(key)
        if found is None:
            vectors = [self._vector(i, n) for i in shared]
            costs = vectors[0] if len(vectors) == 1 else [sum(c) for c in zip([0] * len(self.candidates[n]), *vectors,
                                                                               strict=True)]
            least = min(costs)
            found = self._fittings[key] = [a for a, cost in enumerate(costs) if cost == least]
        return found

    def _cheapest_of(self, n: int, candidates: list[int]) -> int:
        """The first of ``candidates`` with the fewest bytes depending on kernel ``n``'s order: its accumulators
        and the converters on its edges."""
        if len(candidates) == 1:
            return candidates[0]
        accumulators = self.accumulators[n]
        vectors = [self._vector(i, n) for i in self.touching[n]]
        return min(candidates, key=lambda a: accumulators[a] + sum([v[a] for v in vectors]))

    def _follow(self, n: int, k: int) -> int:
        """Follower ``n``'s order for kernel ``k``'s current one: among the orders cheapest on the edges between
        the two (the layout propagated into ``n``), the cheapest overall given its neighbors (first on ties)."""
        choice = self.choice
        key = (n, self._neighbor_orders[n](choice))
        found = self._bests.get(key)
        if found is None:
            shared = [i for i in self.touching[n] if k in self.ends[i]]
            found = self._bests[key] = self._cheapest_of(n, self._fitting(n, shared))
        return found

    def _move_kernel(self, k: int) -> bool:
        """Give kernel ``k`` its cheapest order, each follower re-picking its own best order for it; whether the
        total dropped (strictly). The move is memoized on the orders it reads: those of the kernels on the
        edges of ``k`` and its followers (their bytes; the followers' picks read no others), all orders with
        the latency objective (the makespan estimate). Descents revisit most moves (a sweep that changes
        nothing, restarts that settle in the same optimum: 60% of a paper-size Llama prefill block's)."""
        choice = self.choice
        members = [k, *self.followers[k]]
        start = [choice[m] for m in members]
        key = (k, tuple(choice) if self.latency else self._group_orders[k](choice))
        found = self._moves.get(key)
        if found is None:
            found = self._moves[key] = self._best_move(k, members, start)
        for m, a in zip(members, found, strict=True):
            choice[m] = a
        return found != start

    def _best_move(self, k: int, members: list[int], start: list[int]) -> list[int]:
        """The orders of ``members`` (kernel ``k`` and its followers) after ``_move_kernel``'s move: the first
        candidate of ``k`` (with its followers' picks) whose cost is the least and below the current one, else
        the current orders. The bytes of ``k``'s accumulators and of its edges to kernels other than its
        followers are one vector over its candidates; the followers' are priced per candidate (with the latency
        objective, the makespan estimate too)."""
        choice, moving = self.choice, set(self.followers[k])
        alone = [i for i in self.group_edges[k] if not moving & set(self.ends[i])]
        fixed = [sum(c) for c in zip(self.accumulators[k], *[self._vector(i, k) for i in alone], strict=True)]
        if not moving and not self.latency:
            least = min(fixed)
            return [fixed.index(least)] if least < fixed[start[0]] else start
        accumulators = [(self.accumulators[n], n) for n in self.followers[k]]
        tables = [(self.bytes[i], p, c) for i in self.group_edges[k] if moving & set(self.ends[i])
                  for p, c in [self.ends[i]]]

        def cost() -> tuple[float, int]:  # the other kernels' bytes do not change
            return (self._estimate(), fixed[choice[k]] + sum([acc[choice[n]] for acc, n in accumulators])
                    + sum([table[choice[p]][choice[c]] for table, p, c in tables]))
        best = (cost(), start)
        # ``_follow`` with its memo looked up here (a call per follower and candidate: the bulk of a move).
        bests, follow = self._bests, [(n, self._neighbor_orders[n]) for n in self.followers[k]]
        for a in range(len(self.candidates[k])):
            choice[k] = a
            for n, neighbor_orders in follow:
                found = bests.get((n, neighbor_orders(choice)))
                choice[n] = self._follow(n, k) if found is None else found
            if (c := cost()) < best[0]:
                best = (c, [choice[m] for m in members])
        return best[1]

    def descend(self) -> None:
        """Coordinate descent: each kernel in turn takes its cheapest order (with its followers) given the
        others, consumers first (reverse program order) then producers first, until a sweep changes nothing. A
        change must lower the total strictly, so the descent ends."""
        forward = list(range(len(self.ops)))
        changed, sweep = True, 0
        while changed:
            changed = False
            for k in reversed(forward) if sweep % 2 == 0 else forward:
                changed |= self._move_kernel(k)
            sweep += 1

    def _propagate(self, k: int, a: int) -> set[int]:
        """Kernel ``k`` takes its candidate ``a``; breadth first from it, each kernel next to a re-ordered one
        whose order no longer fits the re-ordered ones as well as another would re-picks, among the orders
        cheapest on its edges to them, its cheapest one given all others. A layout change travels as far as it
        must: through the projection, norm and attention kernels of a head-major stream together. The kernels
        re-ordered (the others keep their orders)."""
        choice, neighbors, others, fittings = self.choice, self.neighbors, self.others, self._fittings
        choice[k] = a
        placed, queue = {k}, deque([k])
        while queue:
            m = queue.popleft()
            for n in neighbors[m]:
                if n in placed:
                    continue
                edges, ends = [], []  # the edges to re-ordered kernels, and those kernels' orders
                for i, other in others[n]:
                    if other in placed:
                        edges.append(i)
                        ends.append(choice[other])
                # ``_fitting``'s memo looked up here (most look-ups hit).
                fitting = fittings.get((n, tuple(edges), tuple(ends)))
                if fitting is None:
                    fitting = self._fitting(n, edges)
                if choice[n] in fitting:
                    continue
                choice[n] = self._cheapest_of(n, fitting)
                placed.add(n)
                queue.append(n)
        return placed

    def leap(self) -> bool:
        """From the current orders, the first propagated move (``_propagate``, kernels and their orders in
        program order) that lowers the total, followed by a descent; whether one did. A move's total is the
        current one updated on the kernels it re-ordered and their edges (issue 21: rescoring every kernel and
        edge per move was a third of a paper-size prefill block's order search). The move found from given
        orders, or that none is, is memoized on them: restarts often settle in the same local optimum, and the
        scan (pure functions of the orders) would only find the same again."""
        key = tuple(self.choice)
        if key not in self._leaps:
            self._leaps[key] = self._leap_move()
        moved = self._leaps[key]
        if moved is None:
            return False
        self.choice = list(moved)
        self.descend()
        return True

    def _leap_move(self) -> tuple[int, ...] | None:
        """The orders (candidate indices) after the first propagated move that lowers the score (``leap``), None
        if none does; the orders are left as they were (a move changes only the kernels it re-orders)."""
        score = self.score()
        choice, start, ends, tables, touching = self.choice, list(self.choice), self.ends, self.bytes, self.touching
        accumulators = [self.accumulators[k][a] for k, a in enumerate(start)]
        edges = [tables[i][start[p]][start[c]] for i, (p, c) in enumerate(ends)]
        for k in range(len(self.ops)):
            for a in range(len(self.candidates[k])):
                if a == start[k]:
                    continue
                placed = self._propagate(k, a)
                total = (score[1] + sum([self.accumulators[m][choice[m]] - accumulators[m] for m in placed])
                         + sum([tables[i][choice[p]][choice[c]] - edges[i]
                                for i in {i for m in placed for i in touching[m]} for p, c in [ends[i]]]))
                if (self._estimate(), total) < score:
                    moved = tuple(choice)
                    for m in placed:
                        choice[m] = start[m]
                    return moved
                for m in placed:
                    choice[m] = start[m]
        return None

    def settle(self) -> None:
        """Descend, then leap and descend again while that lowers the total."""
        self.descend()
        while self.leap():
            pass

    def run(self, restarts: int) -> list[list[int]]:
        """The best local optimum of a descent from the default orders and of ``restarts`` descents from
        random orders (a fixed seed: the result is deterministic); ties keep the earliest."""
        self.settle()
        best = (self.score(), list(self.choice))
        rng = random.Random(0)
        for _ in range(restarts):
            self.choice = [rng.choice(range(len(c))) for c in self.candidates]
            self.settle()
            if self.score() < best[0]:
                best = (self.score(), list(self.choice))
        return [list(c[a]) for c, a in zip(self.candidates, best[1], strict=True)]
