"""Tile sizes of every kernel: divisors of its loops, agreed along kernel-to-kernel edges and capped per token.

**Tile sizes.** Loop of range ``n``: a divisor of ``n`` that is ``<= default_tile_size`` (tiles must cover a
loop exactly: kernels, itensor types and converters all assume uniform tiles, so a prime range larger than the
default gets tile 1; the tile is the range itself when it fits), the one with the largest power-of-two factor,
then the largest: unroll factors are powers of two dividing the tile, so a tile's power-of-two factor is the
most lanes it can take (Llama's 5,632-wide MLP in groups of 128 is 44 groups: a tile of 11 would run them one
after the other, a tile of 4 takes four lanes). Two refinements, both of which only
shrink tiles to divisors (``fit_tiles``):

- ``agree_tiles``: along every kernel-to-kernel edge (a result read by an operand, through reshapes, slices
  and at most one concat) producer and consumer tiles are shrunk to their common divisor, seen through the
  data movement: a slice needs tiles that divide its bounds; a reshape maps a tile to the largest tile of the
  other shape whose elements form, in every reassociation group, a row-major run inside it (a 16-column tile of
  a 1024 hidden dim is 1 head x 16 of a 16 x 64 view). Different tiles of one tensor always need a converter
  (element sizes must match for a converter to share a loop), so agreeing removes converters whose only cause
  is the tiling.
- ``max_token_rank``: every token a kernel exchanges on chip (an input from another kernel, an init, a result)
  holds at most ``default_tile_size ** max_token_rank`` elements, i.e. the tile of a rank-``max_token_rank``
  tensor at the default size (0: no cap). FIFOs, input tiles and accumulators hold whole tokens, so a 16x16x16
  f32 tile would cost 16 KiB per FIFO slot. Operands read from external memory (weights, block inputs, KV
  caches) are exempt: their tokens wait only in a DMA's FIFO and the kernel's input tile, and a weight tile cut
  to the cap would cut the reduction tile of every matmul with it (``max_token_rank=1`` would leave a decode
  matmul one 16-element weight column per firing). A kernel over the cap shrinks one of the offending
  operand's loops to its next smaller divisor until it fits: loops that every operand read from external memory
  indexes first (cutting another loop would stream that operand again; among those, the loops whose cut streams
  the fewest bytes again), then a dim held whole in one tile (a small dim clipped to its size, such as heads),
  then the smallest tile, then the operand's outermost dim.
  Kernels are capped in program order with the agreement re-run after each one, so later kernels inherit the
  tiles earlier ones chose.
- ``token_tile_size`` (0: off): the loops over the token dim of the block's activations (dim -2 of the first
  input) in every kernel that reads them get a tile dividing it, before agreement carries it
  downstream. A prefill block otherwise holds ``default_tile_size`` rows wherever a kernel needs a whole row
  first (two-pass norms, matmuls re-reading their input per column tile, the residual across the MLP):
  64 KiB per hold at GPT-2 paper size. Smaller token tiles re-stream the weights once per row tile instead.
  ``tile_graph`` picks the tile when the option is None (``compile``'s default).
- ``wide_feature_tiles`` (``feature_tile_bound``): with a token tile ``t`` below ``default_tile_size`` (and on-
  chip tokens of several rows, ``max_token_rank >= 2``), every loop's initial tile may reach ``default_tile_size
  x default_tile_size / t``: the rows the token tile gives up go to the feature dims, and the token cap then
  cuts each kernel back to the same number of elements per token. A contraction can then put its lanes on the
  output features of its weight rather than on its tokens: a prologue fused into it (a norm, an activation
  quantized to int8) is built once per token and reduction lane, not per output lane, so lanes on the tokens
  multiply it; wider output tiles also re-read its input (and re-stream a block input it normalises) fewer
  times.
"""

from __future__ import annotations

import math
from dataclasses import replace

from streamtensor.ir.dataflow import LoopTiling
from streamtensor.ir.linalg import GenericOp, Graph
from streamtensor.transforms.tiling.edges import (
    KernelEdge,
    MovementStep,
    external_operands,
    kernel_edges,
    trace_movement,
)
from streamtensor.transforms.tiling.plan import OpTiling, TilingOptions
from streamtensor.transforms.tiling.tile_order import default_orders


def tile_size(size: int, default: int) -> int:
    """The divisor of ``size`` at most ``default`` with the largest power-of-two factor, then the largest
    (module docstring)."""
    return max((t for t in range(1, min(size, default) + 1) if size % t == 0), key=lambda t: (t & -t, t))


def feature_tile_bound(options: TilingOptions) -> int:
    """The largest initial tile of a loop (module docstring): ``default_tile_size``, or with
    ``wide_feature_tiles`` and a token tile of ``t < default_tile_size`` rows that times ``default_tile_size /
    t``, the rows the token tile gives up."""
    t, default = options.token_tile_size or 0, options.default_tile_size
    wide = options.wide_feature_tiles and 0 < t < default and options.max_token_rank >= 2
    return default * (default // t) if wide else default


def initial_tiling(op: GenericOp, options: TilingOptions, bound: int | None = None) -> OpTiling:
    """Tiles and orders of one op (each loop's tile the largest divisor of at most ``bound``, by default
    ``default_tile_size``), every unroll factor 1."""
    reduction = set(op.reduction_dims)
    bound = bound or options.default_tile_size
    loops = [LoopTiling(n, tile_size(n, bound), 1, d in reduction) for d, n in enumerate(op.domain)]
    return OpTiling(loops, *default_orders(op, loops, options))


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


def _cap_tokens(op: GenericOp, loops: list[LoopTiling], cap: int, external: set[int]) -> bool:
    """Shrink ``op``'s tiles until every token it exchanges on chip (inputs from kernels, inits, results) holds
    at most ``cap`` elements (module docstring); ``external`` are the operands read from external memory, which
    are exempt. Whether anything changed."""
    changed = False
    for operand in (j for j in range(len(op.operands)) if j not in external):
        amap = op.indexing_maps[operand]
        dims = [d for d in (amap.result_dim(i) for i in range(amap.num_results)) if d is not None]

        def rank(d: int) -> tuple[int, bool, int]:
            # Cutting a loop that some external operand does not index makes that operand's tiles reused by
            # fewer firings, i.e. streamed again from external memory: loops give way in the order of the bytes
            # they would stream again (a weight before a block input read alongside it). Then a dim held whole
            # in one tile (a small dim clipped to its size, e.g. heads) goes first, then the smallest tile,
            # then the outermost dim of the operand (min keeps the first).
            rereads = sum(op.inputs[j].type.bytes for j in external if d not in op.indexing_maps[j].used_dims())
            return rereads, loops[d].trip > 1, loops[d].tile

        while math.prod(loops[d].tile for d in dims) > cap:
            d = min((d for d in dims if loops[d].tile > 1), key=rank)
            tile = loops[d].tile
            loops[d] = replace(loops[d], tile=max(t for t in range(1, tile) if tile % t == 0))
            changed = True
    return changed


def _tile_forward(tile: tuple[int, ...], step: MovementStep) -> tuple[int, ...]:
    if step.offsets is not None and step.sizes is not None:
        return _reshape_tile(_slice_tile(tile, step.offsets, step.sizes), step.sizes, step.result)
    return _reshape_tile(tile, step.source, step.result)


def _tile_backward(tile: tuple[int, ...], step: MovementStep) -> tuple[int, ...]:
    if step.offsets is not None and step.sizes is not None:
        return _slice_tile(_reshape_tile(tile, step.result, step.sizes), step.offsets, step.sizes)
    return _reshape_tile(tile, step.result, step.source)


def _agree(e: KernelEdge, ops: list[GenericOp], tilings: list[OpTiling]) -> bool:
    """Shrink both ends of edge ``e`` to the common divisor of their tiles (seen through the data movement
    between them); whether anything changed."""
    producer, consumer = ops[e.producer], ops[e.consumer]
    p_loops, c_loops = tilings[e.producer].loops, tilings[e.consumer].loops
    result = len(producer.inputs) + e.result
    made = _operand_tile(producer, p_loops, result)
    for step in e.chain:
        made = _tile_forward(made, step)
    wanted = _operand_tile(consumer, c_loops, e.operand)
    for step in reversed(e.after):
        wanted = _tile_backward(wanted, step)
    if e.region is not None:
        wanted = _slice_tile(wanted, *e.region)
    tile = tuple(map(math.gcd, made, wanted))
    pushed = tile
    for step in e.after:
        pushed = _tile_forward(pushed, step)
    changed = _impose(consumer, c_loops, e.operand, pushed)
    for step in reversed(e.chain):
        tile = _tile_backward(tile, step)
    return _impose(producer, p_loops, result, tile) or changed


def impose_token_tile(graph: Graph, ops: list[GenericOp], tilings: list[OpTiling], token_tile: int) -> None:
    """Shrink the loops that walk the token dim of the block's activations (dim -2 of the first input: the
    ``[..., tokens, features]`` of a transformer block), in every kernel that reads them (through reshapes and
    slices), to divide ``token_tile``; tile agreement carries the tile on to the kernels downstream."""
    if not graph.inputs or len(graph.inputs[0].type.shape) < 2:
        return
    activations = graph.inputs[0]
    shape = activations.type.shape
    token_dim = len(shape) - 2
    tile = tuple(math.gcd(token_tile, n) if k == token_dim else n for k, n in enumerate(shape))
    producers = graph.producers()
    for op, t in zip(ops, tilings, strict=True):
        for j, v in enumerate(op.inputs):
            root, _, chain = trace_movement(v.name, producers)
            if root == activations.name:
                operand_tile = tile
                for step in chain:
                    operand_tile = _tile_forward(operand_tile, step)
                _impose(op, t.loops, j, operand_tile)


def fit_tiles(graph: Graph, ops: list[GenericOp], tilings: list[OpTiling], cap: int | None, agree: bool) -> None:
    """With ``agree``, make producer and consumer tiles agree along every kernel-to-kernel edge; then cap the
    tokens of each kernel in program order at ``cap`` elements (None: no cap), agreeing again after every
    kernel that shrank, so that later kernels see the tiles earlier ones chose (module docstring). In place;
    tiles only shrink, to divisors, so a capped kernel stays within the cap."""
    edges = kernel_edges(graph, ops) if agree else []

    def settle() -> None:
        while any([_agree(e, ops, tilings) for e in edges]):
            pass

    settle()
    if cap is not None:
        producers = graph.producers()
        for op, t in zip(ops, tilings, strict=True):
            if _cap_tokens(op, t.loops, cap, external_operands(op, producers)):
                settle()
