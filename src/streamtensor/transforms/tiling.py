"""Linalg tiling (spec §4.1): tile sizes, loop orders and intensity-aware unroll factors of every kernel.

**Which generics become kernels.** Every ``linalg.generic`` whose result must be streamed, except constant
fills whose only uses are accumulator inits: such an init is folded into the consuming kernel as a constant
(``KernelNode.init_constants``). Liveness starts at the block outputs (looking through the reshapes between an
output and the value that produces it, since a write DMA addresses external memory in any order).

**Tile sizes.** Loop of range ``n``: the largest divisor of ``n`` that is ``<= default_tile_size``. Tiles
must cover a loop exactly (no partial edge tiles: kernels, itensor types and converters all assume uniform
tiles), so a prime range larger than the default gets tile 1; the tile is the range itself when it fits.

**Loop orders.** Tile loops: parallel loops outermost, in the order of the (first) output's dims, then any
other parallel loop, then the reduction loops in dim order, innermost, so one output tile is live at a time.
Point loops (inside a tile): with ``permute_reductions_outward`` the reduction loops go outward and the
parallel ones innermost (the pipelined loop then carries no accumulator dependence: lower II, see
``analysis.timing_model``); without it the point order is the tile order.

**Unrolling.** Unroll factors are powers of two dividing the tile. ``overall_unroll_size`` is the budget of
*parallel lanes of the whole design*: ``sum over kernels of prod over loops of unroll`` (body instances that
issue per cycle; a kernel without unrolling has one lane). Every kernel always has at least one lane, so a
budget below the number of kernels leaves every kernel at one lane.

- Intensity-aware (spec §4.1): a max-heap of kernel latencies (``kernel_timing``). Pop the slowest kernel and
  double the unroll of one of its loops: candidates are the loops whose doubled unroll still divides the tile,
  in preference order innermost parallel point loop first, then outer parallel ones, then reduction loops
  innermost first; the candidate giving the lowest latency wins (ties: preference order). Push it back and
  repeat while the doubling fits the budget (it adds the kernel's current lane count). Stop when the slowest
  kernel cannot be doubled within the budget or no doubling lowers its latency: the maximum latency (the
  throughput bound of the pipeline) can then no longer drop, and more lanes elsewhere would only cost area.
- Uniform: the same lane count ``f`` (a power of two) for every kernel, each reaching it by doubling loops in
  preference order (capped where its tile is fully unrolled), with the largest ``f`` whose total fits the
  budget.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field, replace

import numpy as np

from streamtensor.analysis.timing_model import KernelTiming, kernel_timing
from streamtensor.errors import OptionError
from streamtensor.interp.linalg_interpreter import eval_body
from streamtensor.ir.dataflow import LoopTiling, kernel_operand_type, pending_tiles, reads_init
from streamtensor.ir.dtypes import DTYPE_BITS
from streamtensor.ir.itensor import ITensorType
from streamtensor.ir.layout import chunk_type, reassociate_type, reassociation_error
from streamtensor.ir.linalg import EmptyOp, GenericOp, Graph, Op, ReshapeOp, SliceOp
from streamtensor.transforms.converter_buffer import infer_converter_buffer


@dataclass(frozen=True)
class TilingOptions:
    """The Linalg tiling design space (module docstring)."""

    default_tile_size: int = 16
    overall_unroll_size: int = 1024
    permute_reductions_outward: bool = True
    intensity_aware_unroll: bool = True
    max_token_rank: int = 2
    agree_tiles: bool = True
    layout_aware_order: bool = True

    def __post_init__(self) -> None:
        for name, least in (("default_tile_size", 1), ("overall_unroll_size", 1), ("max_token_rank", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise OptionError(f"bad {name.replace('_', '-')} {value!r}: must be an integer of at least {least}")
        for name in ("permute_reductions_outward", "intensity_aware_unroll", "agree_tiles", "layout_aware_order"):
            if not isinstance(getattr(self, name), bool):
                raise OptionError(f"bad {name.replace('_', '-')} {getattr(self, name)!r}: "
                                  "must be true or false")


@dataclass
class OpTiling:
    """Tiling of one kernel: ``loops`` indexed by loop dim, orders outermost first."""

    loops: list[LoopTiling]
    tile_order: list[int]
    point_order: list[int]

    @property
    def lanes(self) -> int:
        return math.prod(lt.unroll for lt in self.loops)


@dataclass
class Tiling:
    """The tiling of a graph: one ``OpTiling`` per kernel (by op label) and each kernel's timing."""

    options: TilingOptions
    ops: dict[str, OpTiling]
    timings: dict[str, KernelTiming] = field(default_factory=dict)

    @property
    def total_lanes(self) -> int:
        return sum(t.lanes for t in self.ops.values())

    @property
    def max_latency(self) -> int:
        return max((t.latency for t in self.timings.values()), default=0)


# --- kernels, fills, liveness ------------------------------------------------------------------------------


def _fill_scalar(op: GenericOp) -> float | int | bool | None:
    """The constant a pure fill writes: no inputs, a body of constants (and casts of them) only."""
    if op.inputs or any(s.name == "linalg.index" for s in op.body.ops):
        return None
    args = {name for name, _ in op.body.args}
    if any(a in s.operands for s in op.body.ops for a in args) or any(y in args for y in op.body.yields):
        return None
    (value,) = eval_body(op.body, [np.zeros(()) for _ in op.body.args], [])
    return np.asarray(value).item()


def fill_value(graph: Graph, name: str, producers: dict[str, Op] | None = None) -> float | int | bool | None:
    """The scalar every element of ``name`` holds when it is (a reshape/slice of) a constant fill or a
    ``tensor.empty`` (zeros, as the reference interpreter reads it), else None."""
    producers = producers if producers is not None else graph.producers()
    op = producers.get(name)
    while isinstance(op, ReshapeOp | SliceOp):
        op = producers.get(op.source.name)
    if isinstance(op, EmptyOp):
        return 0
    return _fill_scalar(op) if isinstance(op, GenericOp) else None


def output_root(name: str, producers: dict[str, Op]) -> tuple[str, list[ReshapeOp]]:
    """The value a block output is a reshape chain of, and that chain in program order."""
    chain: list[ReshapeOp] = []
    op = producers.get(name)
    while isinstance(op, ReshapeOp):
        chain.insert(0, op)
        name = op.source.name
        op = producers.get(name)
    return name, chain


def streamed_uses(op: Op, graph: Graph, producers: dict[str, Op]) -> list[str]:
    """Operand values ``op`` needs as data (not folded inits, not unread inits)."""
    if not isinstance(op, GenericOp):
        return [v.name for v in op.operands]
    out = [v.name for v in op.inputs]
    for r, v in enumerate(op.inits):
        if reads_init(op, r) and fill_value(graph, v.name, producers) is None:
            out.append(v.name)
    return out


def live_values(graph: Graph) -> set[str]:
    """Values whose data must exist on chip or be read from memory (module docstring)."""
    producers = graph.producers()
    live = {output_root(v.name, producers)[0] for v in graph.outputs}
    for op in reversed(graph.ops):
        if any(r.name in live for r in op.results):
            live.update(streamed_uses(op, graph, producers))
    return live


def kernel_ops(graph: Graph) -> list[GenericOp]:
    """The generics that become kernels, in program order."""
    live = live_values(graph)
    return [op for op in graph.ops if isinstance(op, GenericOp) and any(r.name in live for r in op.results)]


# --- tile sizes and orders ---------------------------------------------------------------------------------


def tile_size(size: int, default: int) -> int:
    """Largest divisor of ``size`` that is at most ``default``."""
    return max(t for t in range(1, min(size, default) + 1) if size % t == 0)


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


def initial_tiling(op: GenericOp, options: TilingOptions) -> OpTiling:
    """Tiles and orders of one op, every unroll factor 1."""
    reduction = set(op.reduction_dims)
    loops = [LoopTiling(n, tile_size(n, options.default_tile_size), 1, d in reduction)
             for d, n in enumerate(op.domain)]
    return OpTiling(loops, *default_orders(op, loops, options))


def _candidates(t: OpTiling) -> list[int]:
    """Loops whose unroll can double, in preference order (module docstring)."""
    inner_first = list(reversed(t.point_order))
    ordered = ([d for d in inner_first if not t.loops[d].reduction]
               + [d for d in inner_first if t.loops[d].reduction])
    return [d for d in ordered if t.loops[d].tile % (2 * t.loops[d].unroll) == 0]


def _doubled(t: OpTiling, d: int) -> OpTiling:
    loops = list(t.loops)
    loops[d] = replace(loops[d], unroll=loops[d].unroll * 2)
    return OpTiling(loops, t.tile_order, t.point_order)


def _timing(op: GenericOp, t: OpTiling) -> KernelTiming:
    return kernel_timing(op, t.loops, t.tile_order, t.point_order)


def _intensity_aware(ops: list[GenericOp], tilings: list[OpTiling], budget: int) -> None:
    total = len(ops)
    heap = [(-_timing(op, t).latency, i) for i, (op, t) in enumerate(zip(ops, tilings, strict=True))]
    heapq.heapify(heap)
    while heap:
        neg_latency, i = heapq.heappop(heap)
        lanes = tilings[i].lanes
        if total + lanes > budget:
            break
        best: tuple[int, OpTiling] | None = None
        for d in _candidates(tilings[i]):
            trial = _doubled(tilings[i], d)
            latency = _timing(ops[i], trial).latency
            if best is None or latency < best[0]:
                best = (latency, trial)
        if best is None or best[0] >= -neg_latency:
            break
        tilings[i] = best[1]
        total += lanes
        heapq.heappush(heap, (-best[0], i))


def _grown_to(t: OpTiling, lanes: int) -> OpTiling:
    while t.lanes < lanes and (cands := _candidates(t)):
        t = _doubled(t, cands[0])
    return t


def _uniform(tilings: list[OpTiling], budget: int) -> None:
    best = list(tilings)
    lanes = 2
    while True:
        trial = [_grown_to(t, lanes) for t in tilings]
        if sum(t.lanes for t in trial) > budget or [t.lanes for t in trial] == [t.lanes for t in best]:
            break
        best = trial
        lanes *= 2
    tilings[:] = best


# --- layout-aware tile orders --------------------------------------------------------------------------------

# One step of the Linalg data movement between two kernels: ("reshape", result shape) or
# ("slice", offsets, sizes, result shape).
_Step = tuple


@dataclass(frozen=True)
class _Edge:
    """A kernel result read by a kernel operand, through the reshapes / slices of ``chain`` (program order)."""

    producer: int  # index into the kernel list
    result: int
    chain: tuple[_Step, ...]
    consumer: int
    operand: int


def _kernel_edges(graph: Graph, ops: list[GenericOp]) -> list[_Edge]:
    """Every streamed operand of a kernel whose data comes from another kernel through reshapes and slices
    only (values from external memory arrive through DMAs, which stream any order; concats are not followed)."""
    producers = graph.producers()
    index = {op.name: i for i, op in enumerate(ops)}
    edges = []
    for c, op in enumerate(ops):
        n_in = len(op.inputs)
        for j, v in enumerate(op.operands):
            if j >= n_in and (not reads_init(op, j - n_in) or fill_value(graph, v.name, producers) is not None):
                continue  # an unread or folded init has no stream
            chain: list[_Step] = []
            name, source = v.name, producers.get(v.name)
            while isinstance(source, ReshapeOp | SliceOp):
                shape = source.results[0].type.shape
                chain.insert(0, ("reshape", shape) if isinstance(source, ReshapeOp)
                             else ("slice", tuple(source.offsets), tuple(source.sizes), shape))
                name, source = source.source.name, producers.get(source.source.name)
            if isinstance(source, GenericOp) and source.name in index:
                result = next(r for r, value in enumerate(source.results) if value.name == name)
                edges.append(_Edge(index[source.name], result, tuple(chain), c, j))
    return edges


def _groups(a: tuple[int, ...], b: tuple[int, ...]) -> list[tuple[list[int], list[int]]]:
    """The finest pairs (dims of ``a``, dims of ``b``) of consecutive dims with equal size products, in order:
    the reassociation groups of a reshape between the two shapes (a side may be empty for unit dims)."""
    out: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(a) or j < len(b):
        ga: list[int] = []
        gb: list[int] = []
        pa = pb = 1
        while not (ga and gb and pa == pb):
            if i < len(a) and (pa < pb or (pa == pb and not ga)):
                ga.append(i)
                pa *= a[i]
                i += 1
            elif j < len(b) and (pb < pa or not gb):
                gb.append(j)
                pb *= b[j]
                j += 1
            else:
                break
        out.append((ga, gb))
    return out


def _run(tile: list[int], sizes: list[int]) -> int:
    """Length of the longest row-major contiguous run inside a tile box of a group of dims: the inner dims the
    tile covers whole, times the tile of the next dim out."""
    run = 1
    for t, n in zip(reversed(tile), reversed(sizes), strict=True):
        run *= t
        if t != n:
            break
    return run


def _box(run: int, sizes: list[int]) -> list[int]:
    """The largest tile box of a group of dims whose row-major run divides ``run``."""
    tile = [1] * len(sizes)
    for k in range(len(sizes) - 1, -1, -1):
        tile[k] = math.gcd(run, sizes[k])
        if tile[k] != sizes[k]:
            break
        run //= sizes[k]
    return tile


def _reshape_tile(tile: tuple[int, ...], a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """The largest tile of shape ``b`` whose elements are a contiguous sub-pattern of ``tile`` (a tile of ``a``)
    in every reassociation group."""
    out = [1] * len(b)
    for ga, gb in _groups(a, b):
        run = _run([tile[k] for k in ga], [a[k] for k in ga])
        for k, t in zip(gb, _box(run, [b[k] for k in gb]), strict=True):
            out[k] = t
    return tuple(out)


def _slice_tile(tile: tuple[int, ...], offsets: tuple[int, ...], sizes: tuple[int, ...]) -> tuple[int, ...]:
    """Tile of the source dims that starts and ends tiles on the slice bounds (what a chunk needs)."""
    return tuple(math.gcd(t, o, n) for t, o, n in zip(tile, offsets, sizes, strict=True))


def _operand_tile(op: GenericOp, loops: list[LoopTiling], operand: int) -> tuple[int, ...]:
    amap = op.indexing_maps[operand]
    dims = [amap.result_dim(i) for i in range(amap.num_results)]
    return tuple(1 if d is None else loops[d].tile for d in dims)


def _impose(op: GenericOp, loops: list[LoopTiling], operand: int, tile: tuple[int, ...]) -> bool:
    """Shrink the loops of ``operand``'s dims to divide ``tile``; whether anything changed."""
    amap = op.indexing_maps[operand]
    changed = False
    for i, t in enumerate(tile):
        d = amap.result_dim(i)
        if d is not None and math.gcd(loops[d].tile, t) != loops[d].tile:
            loops[d] = replace(loops[d], tile=math.gcd(loops[d].tile, t))
            changed = True
    return changed


def _cap_tokens(op: GenericOp, loops: list[LoopTiling], cap: int) -> bool:
    """Shrink ``op``'s tiles until every streamed token (inputs, inits, results) holds at most ``cap``
    elements (module docstring); whether anything changed."""
    changed = False
    for operand in range(len(op.operands)):
        amap = op.indexing_maps[operand]
        dims = [d for d in (amap.result_dim(i) for i in range(amap.num_results)) if d is not None]
        while math.prod(loops[d].tile for d in dims) > cap:
            # A dim held whole in one tile gives way first (a small dim clipped to its size, e.g. heads: cutting
            # it adds no reuse problem), then the smallest tile, then the outermost dim of the operand.
            d = min((d for d in dims if loops[d].tile > 1), key=lambda d: (loops[d].trip > 1, loops[d].tile))
            tile = loops[d].tile
            loops[d] = replace(loops[d], tile=max(t for t in range(1, tile) if tile % t == 0))
            changed = True
    return changed


def fit_tiles(graph: Graph, ops: list[GenericOp], tilings: list[OpTiling], cap: int | None, agree: bool) -> None:
    """Cap every token at ``cap`` elements (None: no cap) and, with ``agree``, make producer and consumer tiles
    agree along every kernel-to-kernel edge (module docstring), in place: tiles only shrink, to divisors, until
    nothing changes."""
    edges = _kernel_edges(graph, ops) if agree else []
    changed = True
    while changed:
        changed = False
        if cap is not None:
            for op, t in zip(ops, tilings, strict=True):
                changed |= _cap_tokens(op, t.loops, cap)
        for e in edges:
            producer, consumer = ops[e.producer], ops[e.consumer]
            p_loops, c_loops = tilings[e.producer].loops, tilings[e.consumer].loops
            result = len(producer.inputs) + e.result
            shape = producer.results[e.result].type.shape
            tile = _operand_tile(producer, p_loops, result)
            path = [shape]
            for step in e.chain:
                if step[0] == "slice":
                    tile = _reshape_tile(_slice_tile(tile, step[1], step[2]), step[2], step[3])
                    path.append(step[3])
                else:
                    tile = _reshape_tile(tile, path[-1], step[1])
                    path.append(step[1])
            tile = tuple(map(math.gcd, tile, _operand_tile(consumer, c_loops, e.operand)))
            changed |= _impose(consumer, c_loops, e.operand, tile)
            for step, before in zip(reversed(e.chain), reversed(path[:-1]), strict=True):
                if step[0] == "slice":
                    tile = _slice_tile(_reshape_tile(tile, step[3], step[2]), step[1], step[2])
                else:
                    tile = _reshape_tile(tile, step[1], before)
            changed |= _impose(producer, p_loops, result, tile)


class _OrderSearch:
    """Tile orders minimizing converter bytes between kernels plus accumulator bytes (module docstring)."""

    def __init__(self, graph: Graph, ops: list[GenericOp], tilings: list[OpTiling]) -> None:
        self.ops, self.tilings = ops, tilings
        self.edges = _kernel_edges(graph, ops)
        self.touching: list[list[_Edge]] = [[] for _ in ops]
        for e in self.edges:
            self.touching[e.producer].append(e)
            if e.consumer != e.producer:
                self.touching[e.consumer].append(e)
        self._moved: dict[tuple[ITensorType, tuple[_Step, ...]], ITensorType | None] = {}
        self._converted: dict[tuple[ITensorType, ITensorType], int] = {}

    def _move(self, t: ITensorType, chain: tuple[_Step, ...]) -> ITensorType | None:
        """The producer's stream type seen after the reshapes / slices of ``chain``, None when some step
        needs a converter to stream at all."""
        key = (t, chain)
        if key not in self._moved:
            moved: ITensorType | None = t
            for step in chain:
                if moved is None:
                    break
                if step[0] == "slice":
                    moved = chunk_type(moved, step[1], step[2])
                    if moved is not None and step[2] != step[3]:
                        moved = reassociate_type(moved, step[3])
                else:
                    moved = reassociate_type(moved, step[1])
            self._moved[key] = moved
        return self._moved[key]

    def _conversion(self, source: ITensorType | None, result: ITensorType) -> int:
        """Converter bytes from ``source`` to ``result`` (0 for the same tokens); a source that cannot be
        carried to the consumer costs the worst case, the whole tensor ping-ponged."""
        if source is None:
            return 2 * -(-result.tensor_elements * DTYPE_BITS[result.dtype] // 8)
        key = (source, result)
        if key not in self._converted:
            same = source == result or reassociation_error(source, result) is None
            self._converted[key] = 0 if same else infer_converter_buffer(source, result, checked=False).bytes
        return self._converted[key]

    def _type(self, k: int, order: list[int], operand: int) -> ITensorType:
        return kernel_operand_type(self.ops[k], self.tilings[k].loops, order, operand)

    def _accumulator(self, k: int, order: list[int]) -> int:
        op, loops = self.ops[k], self.tilings[k].loops
        if not op.reduction_dims:
            return 0
        bits = 0
        for r, value in enumerate(op.results):
            amap = op.indexing_maps[len(op.inputs) + r]
            dims = [amap.result_dim(i) for i in range(amap.num_results)]
            bits += math.prod(1 if d is None else loops[d].tile for d in dims) * DTYPE_BITS[value.type.dtype]
        return pending_tiles(loops, order) * -(-bits // 8)

    def cost(self, k: int, order: list[int]) -> int:
        """Every byte that depends on kernel ``k``'s order: its accumulators and the converters on its edges."""
        orders = [t.tile_order for t in self.tilings]
        orders[k] = order
        total = self._accumulator(k, order)
        for e in self.touching[k]:
            made = self._type(e.producer, orders[e.producer], len(self.ops[e.producer].inputs) + e.result)
            total += self._conversion(self._move(made, e.chain),
                                      self._type(e.consumer, orders[e.consumer], e.operand))
        return total

    def candidates(self, k: int) -> list[list[int]]:
        """Permutations of the loops of more than one trip in their slots of the current order (one-trip loops
        stream nothing and stay put); the current order first."""
        order, loops = self.tilings[k].tile_order, self.tilings[k].loops
        slots = [i for i, d in enumerate(order) if loops[d].trip > 1]
        out = []
        for perm in itertools.permutations([order[i] for i in slots]):
            candidate = list(order)
            for i, d in zip(slots, perm, strict=True):
                candidate[i] = d
            out.append(candidate)
        return out

    def run(self, max_sweeps: int = 8) -> None:
        """Coordinate descent: each kernel in turn takes its cheapest order given the others, consumers first
        (reverse program order) then producers first, until a sweep changes nothing. A change must lower the
        total strictly, so the search ends."""
        forward = list(range(len(self.ops)))
        for sweep in range(max_sweeps):
            changed = False
            for k in reversed(forward) if sweep % 2 == 0 else forward:
                current = self.cost(k, self.tilings[k].tile_order)
                best = min(self.candidates(k), key=lambda o, k=k: self.cost(k, o))
                if self.cost(k, best) < current:
                    self.tilings[k] = replace(self.tilings[k], tile_order=best)
                    changed = True
            if not changed:
                return


def tile_graph(graph: Graph, options: TilingOptions | None = None) -> Tiling:
    """Tile every kernel of ``graph`` (module docstring)."""
    options = options or TilingOptions()
    ops = kernel_ops(graph)
    tilings = [initial_tiling(op, options) for op in ops]
    if options.agree_tiles or options.max_token_rank:
        cap = options.default_tile_size ** options.max_token_rank if options.max_token_rank else None
        fit_tiles(graph, ops, tilings, cap, options.agree_tiles)
        tilings = [OpTiling(t.loops, *default_orders(op, t.loops, options)) for op, t in zip(ops, tilings, strict=True)]
    if options.layout_aware_order:
        _OrderSearch(graph, ops, tilings).run()
        if not options.permute_reductions_outward:
            tilings = [replace(t, point_order=list(t.tile_order)) for t in tilings]
    if options.intensity_aware_unroll:
        _intensity_aware(ops, tilings, options.overall_unroll_size)
    else:
        _uniform(tilings, options.overall_unroll_size)
    return Tiling(options, {op.name: t for op, t in zip(ops, tilings, strict=True)},
                  {op.name: _timing(op, t) for op, t in zip(ops, tilings, strict=True)})
