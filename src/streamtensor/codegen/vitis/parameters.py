"""Packed files of a project: one file per tensor the kernel reads, in its argument's packed layout, listed with
checksums in ``params/manifest.json``, and the expected outputs the testbench compares with (``check/expected``)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamtensor._version import GENERATOR
from streamtensor.errors import StreamTensorError
from streamtensor.ir.dataflow import DataflowGraph
from streamtensor.ir.itensor import gather_tiles
from streamtensor.kernel_interface import (
    EXPECTED_DIR,
    PARAMS_DIR,
    HbmPlan,
    MemoryArgument,
    layout_json,
    pack_arguments,
    view_json,
)
from streamtensor.packing import WORD_BITS, host_dtype, pack

MANIFEST_FILE = f"{PARAMS_DIR}/manifest.json"


@dataclass(frozen=True)
class ParameterFile:
    """One packed file: the buffer of one read argument, i.e. ``view(tensor)`` in the DMA's packed layout.
    ``offset`` is always 0: every argument has a file of its own (one XRT buffer per argument, so a file maps
    1:1 onto a buffer and a checksum onto what the DMA streams)."""

    name: str  # the tensor
    arg: str
    dma: str
    shape: list[int]  # of the tensor
    dtype: str
    role: str
    view: list[dict[str, Any]]  # tensor -> streamed tensor (the layout's tensor shape)
    layout: dict[str, Any]
    bank: str
    channels: list[int]
    file: str  # relative to the project
    offset: int
    size: int
    sha256: str


@dataclass(frozen=True)
class ParameterManifest:
    kernel: str
    tensors: list[ParameterFile] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "generator": GENERATOR,
            "kernel": self.kernel,
            "word_bits": WORD_BITS,
            "tensors": [asdict(t) for t in self.tensors],
        }


def write_packed_parameters(
    outdir: str | Path,
    graph: DataflowGraph,
    tensors: Mapping[str, np.ndarray],
    plan: HbmPlan,
) -> ParameterManifest:
    """Pack the graph's constants and ``tensors`` into ``outdir/params/<arg>.bin``, one file per read argument,
    and write ``params/manifest.json`` listing exactly these files.

    ``tensors`` maps a tensor name (every DMA reading it gets its file, packed from its view of the array) or an
    argument identifier (that DMA alone) to the whole tensor. Any tensor the kernel reads may be given: weights
    (the parameter set) and, for a self-contained ``make csim``, sample inputs. ``plan`` places the graph's
    arguments (``hbm.plan_hbm``)."""
    # Scalars too: their files hold the packed value the host writes into the control register.
    banks = {a.argument.arg: (a.bank, list(a.channels)) for a in plan.assignments}
    reading = [a for a in plan.arguments if a.reads]
    chosen: dict[str, tuple[MemoryArgument, np.ndarray]] = {}
    given = {name: array for name, array in graph.constants.items() if any(a.name == name for a in reading)}
    for key, array in {**given, **tensors}.items():
        matches = [a for a in reading if key in (a.name, a.arg)]
        if not matches:
            names = ", ".join(sorted({a.name for a in reading}))
            raise StreamTensorError(f"{key!r} is not a tensor the kernel reads (those are: {names})")
        chosen.update({a.arg: (a, array) for a in matches})
    params = Path(outdir) / PARAMS_DIR
    params.mkdir(parents=True, exist_ok=True)
    entries: list[ParameterFile] = []
    for (arg, _), data in zip(chosen.values(), pack_arguments(chosen.values()), strict=True):
        bank, channels = banks.get(arg.arg, ("s_axilite", []))
        relative = f"{PARAMS_DIR}/{arg.arg}.bin"
        (Path(outdir) / relative).write_bytes(data)
        entries.append(
            ParameterFile(
                name=arg.name,
                arg=arg.arg,
                dma=arg.dma,
                shape=list(arg.tensor_shape),
                dtype=arg.itype.dtype,
                role=arg.role,
                view=view_json(arg.view),
                layout=layout_json(arg.layout),
                bank=bank,
                channels=channels,
                file=relative,
                offset=0,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
    manifest = ParameterManifest(plan.kernel_name, entries)
    (Path(outdir) / MANIFEST_FILE).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    return manifest


def _streamed_expected(arg: MemoryArgument, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The stream tensor whose view (``arg.view``) is ``tensor``, and which of its elements the view keeps (only
    those are compared): the view applied to the stream's element indices says where each one goes."""
    shape = arg.itype.tensor_shape
    if arg.reads:  # a buffer updated in place (a KV cache): its view maps the tensor to the stream, all of it kept
        if tensor.shape != arg.tensor_shape:
            raise StreamTensorError(f"output {arg.name} has shape {arg.tensor_shape}, got an array of shape "
                                    f"{tensor.shape}")
        for step in arg.view:
            tensor = step.apply(tensor)
        return tensor.astype(host_dtype(arg.itype.dtype)).reshape(shape), np.ones(shape, dtype=np.uint8)
    index = np.arange(math.prod(shape), dtype=np.int64).reshape(shape)
    for step in arg.view:
        index = step.apply(index)
    if index.shape != tensor.shape:
        raise StreamTensorError(f"output {arg.name} has shape {arg.tensor_shape}, got an array of shape {tensor.shape}")
    streamed = np.zeros(math.prod(shape), dtype=host_dtype(arg.itype.dtype))
    covered = np.zeros(math.prod(shape), dtype=np.uint8)
    streamed[index.ravel()] = tensor.ravel()
    covered[index.ravel()] = 1
    return streamed.reshape(shape), covered.reshape(shape)


def write_expected_outputs(outdir: str | Path, plan: HbmPlan, outputs: Mapping[str, np.ndarray], tolerance: float
                           ) -> list[str]:
    """The reference outputs of the self-checking testbench and ``check_outputs`` (``host_cpp``): for every write
    argument (``outputs`` maps its identifier to the whole tensor, e.g. PyTorch's output) ``EXPECTED_DIR/<arg>.bin``
    in the argument's packed layout, ``<arg>.mask`` (one byte per element slot, tile-major: 1 where compared) and
    one line of ``manifest.txt``; an output written into another argument's buffer is expected there. Returns
    the written files, relative to ``outdir``."""
    # A write into another argument's buffer (a KV cache's row, in place) is checked as that buffer's contents.
    owners = {a.arg: a.buffer for a in plan.arguments}
    outputs = {owners.get(arg, arg): array for arg, array in outputs.items()}
    writes = [a for a in plan.arguments if a.writes and a.shares is None]
    if sorted(outputs) != sorted(a.arg for a in writes):
        raise StreamTensorError(f"expected outputs for {sorted(outputs)}, but the kernel writes "
                                f"{sorted(a.arg for a in writes)}")
    root = Path(outdir) / EXPECTED_DIR
    root.mkdir(parents=True, exist_ok=True)
    lines = [f"# Generated by {GENERATOR}: outputs of kernel {plan.kernel_name} to compare with",
             "# output ARG DTYPE NUM_TILES WORDS_PER_TILE TILE_ELEMENTS TOLERANCE"]
    files = []
    for arg in writes:
        streamed, covered = _streamed_expected(arg, np.asarray(outputs[arg.arg]))
        layout = arg.layout
        mask = gather_tiles(covered, arg.itype.element_shape, layout.unique_tiles_type().offsets())
        (root / f"{arg.arg}.bin").write_bytes(pack(arg.itype, streamed))
        (root / f"{arg.arg}.mask").write_bytes(mask.astype(np.uint8).tobytes())
        files += [f"{EXPECTED_DIR}/{arg.arg}.bin", f"{EXPECTED_DIR}/{arg.arg}.mask"]
        lines.append(f"output {arg.arg} {arg.itype.dtype} {layout.num_tiles} {layout.words_per_tile} "
                     f"{arg.itype.token_elements} {tolerance!r}")
    (root / "manifest.txt").write_text("\n".join(lines) + "\n")
    return [*files, f"{EXPECTED_DIR}/manifest.txt"]
