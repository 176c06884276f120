"""PyTorch -> linalg-on-tensors (torch-mlir) -> optimized Linalg (upstream passes via the MLIR Python bindings).

This is the only module that talks to torch.export and torch-mlir: the frontend is pinned and isolated here.
"""

from __future__ import annotations

import io
import logging
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stderr

import torch
from torch._decomp import get_decompositions
from torch_mlir import fx, ir, passmanager
from torch_mlir.compiler_utils import TorchMlirCompilerError
from torch_mlir.extras.fx_decomp_util import get_decomposition_table

from streamtensor.errors import UnsupportedOpError

# Linalg optimization of the paper's step 2. Elementwise fusion runs before unit-dim folding so that producer
# chains collapse into one generic; canonicalize + cse fold fills and duplicate constants.
LINALG_PIPELINE = (
    "builtin.module(func.func(linalg-generalize-named-ops, linalg-fuse-elementwise-ops, "
    "linalg-fold-unit-extent-dims, canonicalize, cse, linalg-fuse-elementwise-ops, canonicalize, cse))"
)


def _one_hot_gather(table: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    """``table`` read at ``index`` along ``dim`` as a reduction: the sum over the table's rows ``n`` of
    ``where(index == n, row n, 0)``, exact (one term is non-zero). A gather lowers to a ``tensor.extract`` at a
    computed index inside a kernel body, which a stream cannot do; the reduction streams the table past every
    output element instead (GPT-J's and CodeGen's sin/cos tables looked up by position, a few rows each)."""
    dim = dim % table.dim()
    rows = table.shape[dim]
    # table[n, ...] with the looked-up dim moved first and kept as a size-1 dim at its place, broadcast over index
    moved = table.movedim(dim, 0).unsqueeze(dim + 1)
    hit = index.unsqueeze(0) == torch.arange(rows, device=index.device).view(rows, *[1] * index.dim())
    return torch.where(hit, moved, torch.zeros((), dtype=table.dtype)).sum(0)


def _gather(table: torch.Tensor, dim: int, index: torch.Tensor, sparse_grad: bool = False) -> torch.Tensor:
    dim = dim % table.dim()
    for d in range(table.dim()):  # gather reads only the leading index.size(d) entries of the other dims
        if d != dim and table.shape[d] != index.shape[d]:
            table = table.narrow(d, 0, index.shape[d])
    return _one_hot_gather(table, dim, index)


def _index(table: torch.Tensor, indices: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """``table[..., index, ...]``: one integer index tensor on one dim, full slices on the others (a row lookup;
    Falcon's ``fused_qkv[..., [-2], :]``); other forms as before. Negative indices count from the end."""
    given = [d for d, i in enumerate(indices) if i is not None]
    if len(given) != 1 or indices[given[0]].dtype in (torch.bool, torch.uint8):  # type: ignore[union-attr]
        return NotImplemented
    dim = given[0]
    index = indices[dim]
    assert index is not None
    rows = table.shape[dim]
    index = torch.where(index < 0, index + rows, index)
    rest = table.movedim(dim, 0)
    # out[*I, ...] = sum_n where(index[*I] == n, table[n, ...], 0)
    hit = (index.unsqueeze(-1) == torch.arange(rows, device=index.device)).view(
        *index.shape, rows, *[1] * (rest.dim() - 1))
    out = torch.where(hit, rest, torch.zeros((), dtype=table.dtype)).sum(index.dim())
    # the index's dims stand where the indexed dim stood
    return out.movedim(list(range(index.dim())), list(range(dim, dim + index.dim())))


def _decomposition_table() -> dict:
    """torch-mlir's table plus PyTorch's own GELU decomposition and streamable lookups.

    torch-mlir 20261001 lowers ``gelu(approximate="tanh")`` with sqrt(2/pi) computed from pi = 22/7
    (0.797724 instead of 0.797885), which shifts Gemma/GPT-2-style MLP outputs by ~1e-4. Decomposing GELU
    with PyTorch's reference decomposition first keeps the IR equal to what PyTorch computes. Gathers and row
    lookups become one-hot reductions (``_one_hot_gather``).
    """
    table = dict(get_decomposition_table())
    table.update(get_decompositions([torch.ops.aten.gelu]))
    table[torch.ops.aten.gather.default] = _gather
    table[torch.ops.aten.index.Tensor] = _index
    return table


_LOC = re.compile(r'loc\("([^"]+)":(\d+):\d+\)')
_FAILED_OP = re.compile(r"failed to legalize operation '([\w.]+)'")


def short_location(loc_text: str) -> str | None:
    """``loc("/x/modeling_llama.py":123:4)`` -> ``modeling_llama.py:123`` (first file location found)."""
    m = _LOC.search(loc_text)
    if not m or m.group(1) == "-":
        return None
    return f"{m.group(1).rsplit('/', 1)[-1]}:{m.group(2)}"


def _aten_ops_at(program: torch.export.ExportedProgram, file: str, line: int) -> list[str]:
    """ATen ops of the exported graph whose stack trace points at ``file:line``."""
    found: list[str] = []
    for node in program.graph.nodes:
        trace = node.meta.get("stack_trace") or ""
        if node.op == "call_function" and f'{file}", line {line}' in trace:
            found.append(str(node.target).removeprefix("aten."))
    return found


def _explain_failure(exc: TorchMlirCompilerError, module: torch.nn.Module, args: Sequence[torch.Tensor]) -> None:
    text = str(exc)
    loc = _LOC.search(text)
    failed = _FAILED_OP.search(text)
    op_name = failed.group(1) if failed else "unknown"
    location = f"{loc.group(1)}:{loc.group(2)}" if loc else None
    if loc and not op_name.startswith("torch.aten."):
        # torch-mlir often blames a constant feeding the real culprit: find the ATen op on that source line.
        program = torch.export.export(module, tuple(args), strict=False).run_decompositions()
        culprits = _aten_ops_at(program, loc.group(1), int(loc.group(2)))
        if culprits:
            op_name = culprits[-1]
    op_name = op_name.removeprefix("torch.aten.")
    raise UnsupportedOpError(op_name, "aten", "torch-mlir cannot lower it to linalg-on-tensors",
                             short_location(f'loc("{location}":0)') if location else None) from exc


@contextmanager
def _quiet_failed_export() -> Iterator[None]:
    """torch.export logs a failed trace and prints the graph so far (many lines on stderr) before it raises; the
    compile reports the failure in one line (``driver.in_stage``). So torch's log records are held back and
    stderr is captured meanwhile: given back when the export succeeds, dropped when it raises."""
    loggers = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)
               if n == "torch" or n.startswith("torch.")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    captured = io.StringIO()
    try:
        with redirect_stderr(captured):
            yield
        sys.stderr.write(captured.getvalue())
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def torch_to_linalg(module: torch.nn.Module, args: Sequence[torch.Tensor], func_name: str = "block") -> ir.Module:
    """Export ``module`` on ``args`` and lower it to optimized linalg-on-tensors, weights staying arguments."""
    with warnings.catch_warnings(), _quiet_failed_export():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            mlir_module = fx.export_and_import(module, *args, output_type="linalg-on-tensors", func_name=func_name,
                                                     decomposition_table=_decomposition_table())
        except TorchMlirCompilerError as exc:
            _explain_failure(exc, module, args)
            raise  # unreachable: _explain_failure always raises
    with mlir_module.context:
        passmanager.PassManager.parse(LINALG_PIPELINE).run(mlir_module.operation)
    return mlir_module
