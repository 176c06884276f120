"""Linalg constructs of other architectures, imported into streamable ops (IR in, IR out, same numbers):

- a strided ``extract_slice`` (interleaved rotary, ``x[..., ::2]``) becomes ``expand_shape`` + a unit-stride slice;
- ``insert_slice`` chains that overwrite their destination (MLA's rope/pass-through concatenation) become one
  ``tensor.concat``; one that leaves part of it unwritten is refused in one line;
- a reshape chain after a concat (collapse then expand, as in interleaved rotary's decode) builds its dataflow;
- a KV cache updated with an interleaved-rotary key (fused over the key's ``[.., d/2, 2]`` domain) is read and
  written over the cache's own dims, as stored;
- a table looked up by a runtime position (GPT-J's ``gather``, CodeGen's ``table[position_ids]``) becomes an exact
  one-hot reduction: no ``tensor.extract`` in a kernel body, every op streams.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_mlir import ir

from streamtensor import compile
from streamtensor.errors import UnsupportedOpError
from streamtensor.frontend.lowering import torch_to_linalg
from streamtensor.frontend.mlir_import import import_linalg, unit_stride_slices
from streamtensor.interp.linalg_interpreter import run_graph
from streamtensor.ir.linalg import ConcatOp, GenericOp, Graph, ReshapeOp, SliceOp, TensorType, Value


@pytest.mark.parametrize(("shape", "offsets", "sizes", "strides", "result"), [
    ((2, 16), (0, 0), (2, 8), (1, 2), (2, 8)),  # even features
    ((2, 16), (0, 1), (2, 8), (1, 2), (2, 8)),  # odd features: the window starts one element early
    ((1, 3, 10), (0, 1, 2), (1, 2, 3), (1, 1, 3), (2, 3)),  # a window of 3 x 3 elements from 1, rank-reducing
    ((1, 3, 10), (0, 1, 0), (1, 2, 2), (1, 1, 3), (2, 2)),  # a window of 2 x 3 elements from 0
    ((9, 4), (1, 0), (3, 4), (3, 1), (3, 4)),  # a strided leading dim
])
def test_strided_slice_becomes_unit_stride(shape: tuple[int, ...], offsets: tuple[int, ...],
                                           sizes: tuple[int, ...], strides: tuple[int, ...],
                                           result: tuple[int, ...]) -> None:
    source = Value("x", TensorType(shape, "f32"))
    out = Value("y", TensorType(result, "f32"))
    names = iter(f"t{i}" for i in range(10))
    ops = unit_stride_slices(source, offsets, sizes, strides, out, lambda: next(names))
    assert all(set(op.strides) == {1} for op in ops if isinstance(op, SliceOp))
    graph = Graph("slice", [source], [out], ops)
    graph.verify()
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    want = x[tuple(slice(o, o + n * s, s) for o, n, s in zip(offsets, sizes, strides, strict=True))]
    np.testing.assert_array_equal(run_graph(graph, [x])[0], want.reshape(result))


def test_strided_slice_that_cannot_be_regrouped_is_refused() -> None:
    source, out = Value("x", TensorType((7,), "f32")), Value("y", TensorType((3,), "f32"))
    with pytest.raises(UnsupportedOpError, match="stride 3 over a dim of 7 elements"):
        unit_stride_slices(source, (0,), (3,), (3,), out, lambda: "t")  # 0, 3, 6: no 3 x 3 window in 7


class _InterleavedRotary(torch.nn.Module):
    """GPT-J/Cohere ``rotate_every_two``: pairs of features rotated, interleaved again."""

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x1, x2 = x[..., ::2], x[..., 1::2]
        rotated = torch.stack((-x2, x1), dim=-1).flatten(-2)
        return x * cos + rotated * sin


def test_interleaved_rotary_streams() -> None:
    args = [torch.randn(1, 2, 4, 16, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    graph = import_linalg(torch_to_linalg(_InterleavedRotary(), args))
    assert all(set(op.strides) == {1} for op in graph.ops if isinstance(op, SliceOp))
    design = compile(_InterleavedRotary(), args, size_fifos=False)  # to the dataflow graph: every op streams
    assert design.dataflow is not None
    np.testing.assert_allclose(design.run_reference(*args)[0], _InterleavedRotary()(*args).numpy(), atol=1e-6)


_INSERTS = """
func.func @block(%a: tensor<4x8x16xf32>, %b: tensor<4x8x16xf32>) -> tensor<1x4x8x32xf32> {{
  %e = tensor.empty() : tensor<1x4x8x32xf32>
  %0 = tensor.insert_slice %a into %e[0, 0, 0, {first}] [1, 4, 8, 16] [1, 1, 1, 1]
      : tensor<4x8x16xf32> into tensor<1x4x8x32xf32>
  %1 = tensor.insert_slice %b into %0[0, 0, 0, {second}] [1, 4, 8, 16] [1, 1, 1, 1]
      : tensor<4x8x16xf32> into tensor<1x4x8x32xf32>
  return %1 : tensor<1x4x8x32xf32>
}}
"""


@pytest.mark.parametrize(("first", "second"), [(0, 16), (16, 0)])
def test_inserts_covering_the_destination_become_a_concat(first: int, second: int) -> None:
    with ir.Context():
        graph = import_linalg(ir.Module.parse(_INSERTS.format(first=first, second=second)))
    assert [type(op) for op in graph.ops] == [ReshapeOp, ReshapeOp, ConcatOp]
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((4, 8, 16)).astype(np.float32) for _ in range(2))
    want = np.zeros((1, 4, 8, 32), np.float32)
    want[0, :, :, first:first + 16], want[0, :, :, second:second + 16] = a, b
    np.testing.assert_array_equal(run_graph(graph, [a, b])[0], want)


def test_inserts_leaving_part_unwritten_are_refused() -> None:
    only_first = _INSERTS.format(first=0, second=16).replace("return %1", "return %0")
    with ir.Context(), pytest.raises(UnsupportedOpError, match="only part of it is written"):
        import_linalg(ir.Module.parse(only_first))


class _PositionTable(torch.nn.Module):
    """GPT-J's and CodeGen's sin/cos lookup: a constant table read at the runtime positions, two ways."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("table", torch.randn(32, 8, generator=torch.Generator().manual_seed(1)))

    def forward(self, x: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        ids = position.view(1, -1)
        gathered = torch.gather(self.table.unsqueeze(0), 1, ids.unsqueeze(-1).repeat(1, 1, 8))
        return x * gathered + self.table[ids]


def test_position_table_lookup_becomes_a_one_hot_reduction() -> None:
    args = [torch.randn(1, 3, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([5, 0, 31])]
    module = _PositionTable()
    text = str(torch_to_linalg(module, args))
    assert "tensor.extract " not in text and "linalg.generic" in text
    design = compile(module, args, size_fifos=False)
    assert design.dataflow is not None
    np.testing.assert_array_equal(design.run_reference(*args)[0], module(*args).numpy())


class _InterleavedCacheUpdate(torch.nn.Module):
    """Cohere's decode: the interleaved-rotary key written into the KV cache at the position."""

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: torch.Tensor,
                position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = _InterleavedRotary()(x, cos, sin)
        slot = torch.arange(cache.shape[2]).view(1, 1, -1, 1) == position.view(1, 1, 1, 1)
        updated = torch.where(slot, key, cache)
        return updated, (updated * 2.0).sum(-1)  # the cache out, and a reader of the updated cache


def test_interleaved_key_updates_the_cache_as_stored() -> None:
    gen = torch.Generator().manual_seed(0)
    args = [torch.randn(1, 2, 1, 16, generator=gen), torch.randn(1, 1, 1, 16, generator=gen),
            torch.randn(1, 1, 1, 16, generator=gen), torch.randn(1, 2, 8, 16, generator=gen), torch.tensor([3])]
    module = _InterleavedCacheUpdate()
    graph = import_linalg(torch_to_linalg(module, args))
    producers = graph.producers()
    update = producers[graph.outputs[0].name]
    assert isinstance(update, GenericOp) and graph.inputs[3] in update.inputs  # the cache, not a reshape of it
    assert not any(isinstance(op, ReshapeOp) and op.source == graph.inputs[3] for op in graph.ops)
    got = run_graph(graph, [a.numpy() for a in args])
    for g, w in zip(got, module(*args), strict=True):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-6)
