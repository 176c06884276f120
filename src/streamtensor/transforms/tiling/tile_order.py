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

from streamtensor.ir.converter_buffer import infer_converter_buffer
from streamtensor.ir.dataflow import LoopTiling, first_output_fraction, kernel_operand_type, pending_tiles
from streamtensor.ir.dtypes import DTYPE_BITS
from streamtensor.ir.itensor import ITensorType
from streamtensor.ir.layout import chunk_type, reassociate_type, reassociation_error
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


class TileOrderSearch:
    """Tile orders minimizing converter bytes between kernels plus accumulator bytes, with the ``latency``
    objective after an estimate of the makespan (module docstring)."""

    def __init__(self, graph: Graph, ops: list[GenericOp], tilings: list[OpTiling], objective: str = "memory"
                 ) -> None:
        self.ops, self.loops = ops, [t.loops for t in tilings]
        self.latency = objective == "latency"
        self.work = [math.prod(lt.size for lt in loops) for loops in self.loops]
        self.orders = [tuple(t.tile_order) for t in tilings]
        self.edges = kernel_edges(graph, ops)
        self.ends = [(e.producer, e.consumer) for e in self.edges]
        self.touching: list[list[int]] = [[] for _ in ops]  # edge indices
        for i, e in enumerate(self.edges):
            self.touching[e.producer].append(i)
            if e.consumer != e.producer:
                self.touching[e.consumer].append(i)
        self.candidates = [self._candidates(k) for k in range(len(ops))]
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
        self.neighbors = [sorted({m for i in self.touching[k] for m in (self.edges[i].producer,
                                                                        self.edges[i].consumer)} - {k})
                          for k in range(len(ops))]
        self._bests: dict[tuple[int, tuple[tuple[int, ...], ...]], tuple[int, ...]] = {}
        self._types: dict[tuple[int, tuple[int, ...], int], ITensorType] = {}
        self._moved: dict[tuple[ITensorType | None, tuple[MovementStep, ...], bool], ITensorType | None] = {}
        self._edge_costs: dict[tuple[int, tuple[int, ...], tuple[int, ...]], tuple[int, float]] = {}
        self._type_ids: dict[ITensorType, int] = {}
        self._type_list: list[ITensorType] = []
        self._sources: dict[tuple[int, tuple[int, ...]], tuple[int, int]] = {}
        self._results: dict[tuple[int, tuple[int, ...]], int] = {}
        self._type_costs: dict[tuple[int, int, int], tuple[int, float]] = {}
        self._accumulators: dict[tuple[int, tuple[int, ...]], int] = {}
        self._emissions: dict[tuple[int, tuple[int, ...]], float] = {}
        self.in_edges = [[(i, self.edges[i].producer) for i in self.touching[k]
                          if self.edges[i].consumer == k and self.edges[i].producer < k] for k in range(len(ops))]
        self._makespans: dict[tuple[tuple[int, ...], ...], float] = {}
        self._fittings: dict[tuple[int, tuple[int, ...], tuple[tuple[int, ...], ...]], list[tuple[int, ...]]] = {}
        self._leaps: dict[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...] | None] = {}
        self._moves: dict[tuple[int, tuple[tuple[int, ...], ...]], list[tuple[int, ...]]] = {}

    def _candidates(self, k: int) -> list[tuple[int, ...]]:
        """Permutations of the loops of more than one trip in their slots of the initial order (one-trip loops
        move nothing and stay outermost, see ``default_orders``); the initial order first."""
        order, loops = self.orders[k], self.loops[k]
        slots = [i for i, d in enumerate(order) if loops[d].trip > 1]
        out = []
        for perm in itertools.permutations([order[i] for i in slots]):
            candidate = list(order)
            for i, d in zip(slots, perm, strict=True):
                candidate[i] = d
            out.append(tuple(candidate))
        return out

    def _type(self, k: int, order: tuple[int, ...], operand: int) -> ITensorType:
        key = (k, order, operand)
        if key not in self._types:
            self._types[key] = kernel_operand_type(self.ops[k], self.loops[k], list(order), operand)
        return self._types[key]

    def _move(self, t: ITensorType | None, chain: tuple[MovementStep, ...], backward: bool = False
              ) -> ITensorType | None:
        """A stream type carried along the reshapes / slices of ``chain`` (``backward``: from the end of the
        chain to its start, reshapes only), None when some step needs a converter to stream at all."""
        key = (t, chain, backward)
        if key not in self._moved:
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
            self._moved[key] = moved
        return self._moved[key]

    def _edge_cost(self, i: int) -> int:
        return self._edge(i)[0]

    def _edge(self, i: int) -> tuple[int, float]:
        """``_edge_of`` memoized on the orders of the edge's two ends (the search's innermost question)."""
        producer, consumer = self.ends[i]
        key = (i, self.orders[producer], self.orders[consumer])
        cost = self._edge_costs.get(key)
        if cost is None:
            cost = self._edge_costs[key] = self._edge_of(i, key[1], key[2])
        return cost

    def _edges_cost(self, edges: list[int]) -> int:
        """``_edge_cost`` summed over ``edges`` (inlined: it runs a million times in a paper-size search)."""
        orders, costs, ends, total = self.orders, self._edge_costs, self.ends, 0
        for i in edges:
            producer, consumer = ends[i]
            cost = costs.get((i, orders[producer], orders[consumer]))
            total += (cost or self._edge(i))[0]
        return total

    def _intern(self, t: ITensorType | None) -> int:
        """A number per distinct stream type (-1: None), so that costs are memoized on numbers: hashing a type
        walks all of it."""
        if t is None:
            return -1
        found = self._type_ids.get(t)
        if found is None:
            found = self._type_ids[t] = len(self._type_list)
            self._type_list.append(t)
        return found

    def _made(self, i: int, producer: tuple[int, ...]) -> tuple[int, int]:
        """Edge ``i``'s stream as its producer makes it under order ``producer`` and as carried to the consumer
        (``_move`` along the chain): their ``_intern`` numbers."""
        key = (i, producer)
        found = self._sources.get(key)
        if found is None:
            e = self.edges[i]
            made = self._type(e.producer, producer, len(self.ops[e.producer].inputs) + e.result)
            found = self._sources[key] = (self._intern(made), self._intern(self._move(made, e.chain)))
        return found

    def _wanted(self, i: int, consumer: tuple[int, ...]) -> int:
        """Edge ``i``'s stream as its consumer reads it under order ``consumer`` (at its region of a concat): its
        ``_intern`` number."""
        key = (i, consumer)
        found = self._results.get(key)
        if found is None:
            e = self.edges[i]
            result: ITensorType | None = self._type(e.consumer, consumer, e.operand)
            if e.region is not None:
                result = self._move(result, e.after, backward=True)
                result = chunk_type(result, *e.region) if result is not None else None
            found = self._results[key] = self._intern(result)
        return found

    def _edge_of(self, i: int, producer: tuple[int, ...], consumer: tuple[int, ...]) -> tuple[int, float]:
        """``_edge_of_types`` of the edge's stream types under these orders, memoized on the types."""
        key = (*self._made(i, producer), self._wanted(i, consumer))
        cost = self._type_costs.get(key)
        if cost is None:
            made, source, result = (None if n < 0 else self._type_list[n] for n in key)
            assert made is not None  # a kernel's result type
            cost = self._type_costs[key] = self._edge_of_types(made, source, result)
        return cost

    @staticmethod
    def _edge_of_types(made: ITensorType, source: ITensorType | None, result: ITensorType | None
                       ) -> tuple[int, float]:
        """Converter bytes on an edge whose producer makes ``made``, carried to the consumer as ``source`` (None:
        it cannot be) where the consumer reads ``result``, and the fraction of the tensor the consumer waits for
        before its first read (a converter's window); (0, 0) for the same tokens. A stream that cannot
        be carried to the consumer costs the worst case, the whole tensor. Through a concat, the producer must
        stream the chunk of the consumer's layout at its region (what ``build_dataflow`` wires when it can).
        Every converter is priced as two windows: one with a single window has one bank, but its consumer then
        starts only after the producer has filled the whole window, and data forked around it waits in FIFOs
        for as long (orders priced by the bank count gave paper-size GPT-2 prefill a 131 KB converter and 35%
        more fused memory)."""
        if source is None or result is None:
            return (2 * -(-made.tensor_elements * DTYPE_BITS[made.dtype] // 8), 1.0)
        if source == result or reassociation_error(source, result) is None:
            return (0, 0.0)
        buffer = infer_converter_buffer(source, result, checked=False)
        return (2 * buffer.bytes // buffer.banks, buffer.window_elements / made.tensor_elements)

    def _emission(self, k: int) -> float:
        key = (k, self.orders[k])
        if key not in self._emissions:
            self._emissions[key] = first_output_fraction(self.loops[k], list(key[1]))
        return self._emissions[key]

    def makespan(self) -> float:
        """Estimated makespan in iterations (module docstring): kernels in program order, each starting when
        every producer has emitted its first token and filled its consumer's first converter window, and ending
        no earlier than its producers."""
        key = tuple(self.orders)
        if key not in self._makespans:
            start, end = [0.0] * len(self.ops), [0.0] * len(self.ops)
            for c, inputs in enumerate(self.in_edges):
                first = last = 0.0
                for i, p in inputs:
                    wait = self._wait(i, p)
                    first = max(first, start[p] + wait * (end[p] - start[p]))
                    last = max(last, end[p])
                start[c], end[c] = first, max(last, first + self.work[c])
            self._makespans[key] = max(end, default=0.0)
        return self._makespans[key]

    def _wait(self, i: int, p: int) -> float:
        """The fraction of producer ``p``'s run its consumer on edge ``i`` waits for before it starts: the later of
        ``p``'s first output and the first window of the converter between their orders."""
        return max(self._emission(p), self._edge(i)[1])

    def waits(self) -> list[list[tuple[int, float]]]:
        """Per kernel, each producer before it with the fraction of its run the kernel waits for (``_wait``),
        under the current orders (the terms of ``makespan``)."""
        return [[(p, self._wait(i, p)) for i, p in inputs] for inputs in self.in_edges]

    def _accumulator(self, k: int) -> int:
        key = (k, self.orders[k])
        if key not in self._accumulators:
            op, loops = self.ops[k], self.loops[k]
            bits = 0
            for r, value in enumerate(op.results):
                amap = op.indexing_maps[len(op.inputs) + r]
                dims = [amap.result_dim(i) for i in range(amap.num_results)]
                bits += math.prod(1 if d is None else loops[d].tile for d in dims) * DTYPE_BITS[value.type.dtype]
            pending = pending_tiles(loops, list(key[1])) if op.reduction_dims else 0
            self._accumulators[key] = pending * -(-bits // 8)
        return self._accumulators[key]

    def _cost(self, k: int) -> int:
        """Every byte that depends on kernel ``k``'s order: its accumulators and the converters on its edges."""
        return self._accumulator(k) + self._edges_cost(self.touching[k])

    def _group_cost(self, k: int) -> int:
        """Every byte that depends on the orders of kernel ``k`` and its followers."""
        return (self._accumulator(k) + sum(self._accumulator(n) for n in self.followers[k])
                + self._edges_cost(self.group_edges[k]))

    def total(self) -> int:
        return sum(self._accumulator(k) for k in range(len(self.ops))) + sum(map(self._edge_cost,
                                                                               range(len(self.edges))))

    def _estimate(self) -> float:
        """The latency term of the score: the estimated makespan with the latency objective, else 0."""
        return self.makespan() if self.latency else 0.0

    def score(self) -> tuple[float, int]:
        """What the search minimizes: (estimated makespan, bytes) with the latency objective, else bytes."""
        return (self._estimate(), self.total())

    def _fitting(self, n: int, shared: list[int]) -> list[tuple[int, ...]]:
        """Kernel ``n``'s orders cheapest on the edges ``shared``, in candidate order. A function of the orders
        of the edges' other ends only: memoized on them (the leaps ask the same question many times)."""
        orders = self.orders
        key = (n, tuple(shared), tuple([orders[m] for i in shared for m in self.ends[i] if m != n]))
        found = self._fittings.get(key)
        if found is None:
            costs = []
            for order in self.candidates[n]:
                self.orders[n] = order
                costs.append(self._edges_cost(shared))
            least = min(costs)
            found = self._fittings[key] = [order for order, cost in zip(self.candidates[n], costs, strict=True)
                                           if cost == least]
        return found

    def _cheapest_of(self, n: int, orders: list[tuple[int, ...]]) -> tuple[int, ...]:
        """The first of ``orders`` with the fewest bytes depending on kernel ``n``'s order."""
        def cost(order: tuple[int, ...]) -> int:
            self.orders[n] = order
            return self._cost(n)
        return min(orders, key=cost)

    def _follow(self, n: int, k: int) -> tuple[int, ...]:
        """Follower ``n``'s order for kernel ``k``'s current one: among the orders cheapest on the edges between
        the two (the layout propagated into ``n``), the cheapest overall given its neighbors (first on ties)."""
        orders = self.orders
        key = (n, tuple([orders[m] for m in self.neighbors[n]]))
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
        members = [k, *self.followers[k]]
        start = [self.orders[m] for m in members]
        key = (k, tuple(self.orders) if self.latency else tuple([self.orders[m] for m in self.group_ends[k]]))
        found = self._moves.get(key)
        if found is None:
            def cost() -> tuple[float, int]:  # the other kernels' bytes do not change
                return (self._estimate(), self._group_cost(k))
            best = (cost(), start)
            for order in self.candidates[k]:
                self.orders[k] = order
                for n in self.followers[k]:
                    self.orders[n] = self._follow(n, k)
                if (c := cost()) < best[0]:
                    best = (c, [self.orders[m] for m in members])
            found = self._moves[key] = best[1]
        for m, order in zip(members, found, strict=True):
            self.orders[m] = order
        return found != start

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

    def _propagate(self, k: int, order: tuple[int, ...]) -> set[int]:
        """Kernel ``k`` takes ``order``; breadth first from it, each kernel next to a re-ordered one whose order
        no longer fits the re-ordered ones as well as another would re-picks, among the orders cheapest on its
        edges to them, its cheapest one given all others. A layout change travels as far as it must: through
        the projection, norm and attention kernels of a head-major stream together. The kernels re-ordered
        (the others keep their orders)."""
        self.orders[k] = order
        placed, queue = {k}, deque([k])
        while queue:
            m = queue.popleft()
            for n in self.neighbors[m]:
                if n in placed:
                    continue
                shared = [i for i in self.touching[n]
                          if ({self.edges[i].producer, self.edges[i].consumer} - {n}) & placed]
                current = self.orders[n]
                fitting = self._fitting(n, shared)
                if current in fitting:
                    self.orders[n] = current
                    continue
                self.orders[n] = self._cheapest_of(n, fitting)
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
        key = tuple(self.orders)
        if key not in self._leaps:
            self._leaps[key] = self._leap_move()
        moved = self._leaps[key]
        if moved is None:
            return False
        self.orders = list(moved)
        self.descend()
        return True

    def _leap_move(self) -> tuple[tuple[int, ...], ...] | None:
        """The orders after the first propagated move that lowers the score (``leap``), None if none does; the
        orders are left as they were."""
        score = self.score()
        accumulators = [self._accumulator(k) for k in range(len(self.ops))]
        edges = [self._edge_cost(i) for i in range(len(self.edges))]
        start = list(self.orders)
        for k in range(len(self.ops)):
            for order in self.candidates[k]:
                if order == start[k]:
                    continue
                placed = self._propagate(k, order)
                touched = {i for m in placed for i in self.touching[m]}
                total = (score[1] + sum(self._accumulator(m) - accumulators[m] for m in placed)
                         + sum(self._edge_cost(i) - edges[i] for i in touched))
                moved, estimate = tuple(self.orders), self._estimate()
                self.orders = list(start)
                if (estimate, total) < score:
                    return moved
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
        best = (self.score(), list(self.orders))
        rng = random.Random(0)
        for _ in range(restarts):
            self.orders = [rng.choice(c) for c in self.candidates]
            self.settle()
            if self.score() < best[0]:
                best = (self.score(), list(self.orders))
        return [list(o) for o in best[1]]
