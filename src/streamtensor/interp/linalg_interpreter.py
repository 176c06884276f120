"""Reference interpreter of the Linalg graph IR (numpy): the numerical oracle for every later stage.

Generic ops are evaluated vectorized over the iteration domain. Reductions whose body is
``yield combine(f(inputs), acc)`` for an associative ``combine`` (addf, maximumf, ...) reduce ``f`` over the
reduction axes at once; any other reduction steps through the reduction points in order, vectorized over the
parallel loops, which is the literal semantics of ``linalg.generic``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import torch

from streamtensor.errors import ShapeError, UnsupportedOpError
from streamtensor.ir.linalg import (
    ConcatOp,
    ConstantOp,
    EmptyOp,
    GenericOp,
    Graph,
    ReshapeOp,
    ScalarBody,
    SliceOp,
)
from streamtensor.ir.scalar_eval import eval_body, eval_scalar_op, input_array, np_dtype

# Associative combiners whose reductions may be evaluated in one numpy reduction.
_REDUCERS: dict[str, Callable[..., np.ndarray]] = {"arith.addf": np.sum, "arith.maximumf": np.max,
                                                   "arith.minimumf": np.min, "arith.mulf": np.prod}


def _gather(array: np.ndarray, amap, domain: tuple[int, ...]) -> np.ndarray:  # noqa: ANN001
    """View of ``array`` broadcast over the iteration domain through a projected-permutation map."""
    dims = [amap.result_dim(i) for i in range(amap.num_results)]
    # Constant-0 results select index 0 of that (unit) array dim.
    selector = tuple(0 if d is None else slice(None) for d in dims)
    sub = array[selector]
    kept = [d for d in dims if d is not None]
    order = np.argsort(kept)
    sub = np.transpose(sub, order) if len(kept) > 1 else sub
    shape = [1] * len(domain)
    for d in sorted(kept):
        shape[d] = domain[d]
    return sub.reshape(shape)


def _index_grids(domain: tuple[int, ...], offset: Sequence[int] | None = None) -> list[np.ndarray]:
    grids = []
    for d, n in enumerate(domain):
        shape = [1] * len(domain)
        shape[d] = n
        start = offset[d] if offset is not None else 0
        grids.append(np.arange(start, start + n, dtype=np.int64).reshape(shape))
    return grids


def _single_combiner(body: ScalarBody, n_inputs: int) -> str | None:
    """The combiner name when the body is ``yield combine(x, acc)`` with the accumulator used once."""
    if len(body.yields) != 1 or not body.ops:
        return None
    last = body.ops[-1]
    acc = body.args[n_inputs][0]
    uses = sum(o.operands.count(acc) for o in body.ops)
    if last.result != body.yields[0] or last.name not in _REDUCERS or acc not in last.operands or uses != 1:
        return None
    return last.name


def run_generic(op: GenericOp, operands: Sequence[np.ndarray], index_offset: Sequence[int] | None = None
                ) -> list[np.ndarray]:
    """Evaluate ``op`` on ``operands``. ``index_offset`` (per loop) shifts what ``linalg.index`` returns: a
    tile of a larger iteration domain evaluated on its own sees the indices of the full domain."""
    domain = op.domain
    for amap in op.indexing_maps:
        if not amap.is_projected_permutation():
            raise UnsupportedOpError("linalg.generic", "linalg", f"{op.name}: indexing map {amap} is not a "
                                     "projected permutation")
    n_in = len(op.inputs)
    red = op.reduction_dims
    index = _index_grids(domain, index_offset)
    ins = [_gather(a, m, domain) for a, m in zip(operands[:n_in], op.indexing_maps[:n_in], strict=True)]
    inits = [np.array(a, dtype=np_dtype(v.type.dtype)) for a, v in zip(operands[n_in:], op.inits, strict=True)]
    out_maps = op.indexing_maps[n_in:]
    if not red:
        acc = [_gather(a, m, domain) for a, m in zip(inits, out_maps, strict=True)]
        results = eval_body(op.body, ins + acc, index)
        return [_scatter(r, m, domain, init) for r, m, init in zip(results, out_maps, inits, strict=True)]
    combiner = _single_combiner(op.body, n_in)
    if combiner is not None:
        # Evaluate f over the whole domain with a neutral accumulator, then reduce over the reduction axes.
        last = op.body.ops[-1]
        acc_name = op.body.args[n_in][0]
        x_name = [o for o in last.operands if o != acc_name][0]
        env_body = ScalarBody(op.body.args, op.body.ops[:-1], (x_name,))
        dummy = [np.zeros((1,) * len(domain), dtype=np_dtype(v.type.dtype)) for v in op.inits]
        (x,) = eval_body(env_body, ins + dummy, index)
        x = np.broadcast_to(x, domain)
        # Sums and products accumulate in float64 and round once: the oracle should be at least as accurate
        # as PyTorch's BLAS, since post-norms (Gemma) amplify the rounding of cancelling sums.
        wide = {"dtype": np.float64} if combiner in ("arith.addf", "arith.mulf") and x.dtype.kind == "f" else {}
        reduced = _REDUCERS[combiner](x, axis=tuple(red), keepdims=True, **wide).astype(x.dtype)
        acc0 = _gather(inits[0], out_maps[0], domain)
        combined = eval_scalar_op(last, {x_name: reduced, acc_name: acc0}, index)
        return [_scatter(combined, out_maps[0], domain, inits[0])]
    # General reduction: walk the reduction points in order, vectorized over the parallel loops.
    par_shape = tuple(1 if d in red else n for d, n in enumerate(domain))
    acc = [np.broadcast_to(_gather(a, m, domain), par_shape).copy() for a, m in zip(inits, out_maps, strict=True)]
    for point in itertools.product(*(range(domain[d]) for d in red)):
        sel = [slice(None)] * len(domain)
        for d, i in zip(red, point, strict=True):
            sel[d] = slice(i, i + 1)
        s = tuple(sel)
        step_in = [_take(a, s) for a in ins]
        step_index = [_take(g, s) for g in index]
        acc = [np.broadcast_to(r, par_shape).copy() for r in eval_body(op.body, step_in + acc, step_index)]
    return [_scatter(r, m, domain, init) for r, m, init in zip(acc, out_maps, inits, strict=True)]


def _take(a: np.ndarray, sel: tuple[slice, ...]) -> np.ndarray:
    """Slice ``a`` on the dims where it is not broadcast."""
    return a[tuple(s if a.shape[d] != 1 else slice(None) for d, s in enumerate(sel))]


def _scatter(result: np.ndarray, amap, domain: tuple[int, ...], init: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """Inverse of ``_gather`` for an output map (a projected permutation of the parallel dims)."""
    dims = [amap.result_dim(i) for i in range(amap.num_results)]
    kept = [d for d in dims if d is not None]
    full = np.broadcast_to(result, tuple(domain[d] if d in kept else 1 for d in range(len(domain))))
    squeezed = full.reshape([domain[d] for d in sorted(kept)]) if kept else full.reshape(())
    perm = [sorted(kept).index(d) for d in kept]
    out = np.transpose(squeezed, perm) if len(kept) > 1 else squeezed
    return np.ascontiguousarray(out).reshape(init.shape).astype(init.dtype, copy=False)


def run_graph(graph: Graph, inputs: Sequence[np.ndarray | torch.Tensor]) -> list[np.ndarray]:
    """Execute the graph; inputs in the graph's input order, outputs in its output order."""
    if len(inputs) != len(graph.inputs):
        raise ShapeError(f"@{graph.name} takes {len(graph.inputs)} inputs, got {len(inputs)}")
    env: dict[str, np.ndarray] = {}
    for value, array in zip(graph.inputs, inputs, strict=True):
        a = array.detach().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
        if tuple(a.shape) != value.type.shape:
            raise ShapeError(f"input %{value.name} has shape {list(a.shape)}, expected {list(value.type.shape)}")
        env[value.name] = input_array(value.name, a, value.type.dtype)
    for op in graph.ops:
        args = [env[v.name] for v in op.operands]
        if isinstance(op, GenericOp):
            outs = run_generic(op, args)
        elif isinstance(op, ReshapeOp):
            outs = [args[0].reshape(op.results[0].type.shape)]
        elif isinstance(op, SliceOp):
            outs = [args[0][tuple(slice(o, o + n * s, s) for o, n, s in
                                  zip(op.offsets, op.sizes, op.strides, strict=True))]
                    .reshape(op.results[0].type.shape)]  # extract_slice may drop unit dims
        elif isinstance(op, ConcatOp):
            outs = [np.concatenate(args, axis=op.dim)]
        elif isinstance(op, ConstantOp):
            outs = [op.value]
        elif isinstance(op, EmptyOp):
            outs = [np.zeros(op.results[0].type.shape, dtype=np_dtype(op.results[0].type.dtype))]
        else:
            raise UnsupportedOpError(op.kind, op.kind.split(".")[0], "not implemented by the reference interpreter")
        for r, a in zip(op.results, outs, strict=True):
            if tuple(a.shape) != r.type.shape:  # an interpreter bug, never the user's
                raise AssertionError(f"{op.kind} produced shape {a.shape} for %{r.name} : {r.type}")
            env[r.name] = a
    return [env[v.name] for v in graph.outputs]
