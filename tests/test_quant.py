"""Quantization (``--quant``): the integer scalar ops against numpy in the interpreter and the generated C++, the
quantized PyTorch reference (``frontend.quant``), its export to integer Linalg, and compiled quantized modules
and blocks reproducing it exactly (interpreter, stream execution, C simulation)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from streamtensor import compile as compile_module
from streamtensor.cli import main
from streamtensor.codegen.vitis.hls.cpp import c_type
from streamtensor.codegen.vitis.hls.kernel import KernelWriter
from streamtensor.driver import compile_llm_block
from streamtensor.errors import OptionError
from streamtensor.frontend import quant
from streamtensor.frontend.quant import (
    QuantLinear,
    grouped_int_matmul,
    kv_cache_dtype,
    quant_scheme,
    quantize_kv,
    quantized_copy,
)
from streamtensor.ir.linalg import ScalarOp
from streamtensor.ir.scalar_eval import eval_scalar_op

# (op, operand dtype, result dtype, operands, numpy reference): ties of roundeven, the int8 range, i32 products
# and sums at the extremes an int8 x int8 accumulation reaches (no overflow: C++ leaves it undefined), an i64
# that truncates.
_TIES = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 126.5, -127.5, 3.2, -3.7, 0.0], np.float32)
_I8 = np.array([-128, -127, -1, 0, 1, 7, -8, 127], np.int8)
_I32 = np.array([2**30 - 1, -(2**30), 123456, -98765, 16384, -16384, 0, 7], np.int32)
_I64 = np.array([2**40 + 5, -(2**33) - 3, 2**31, -1, 0, 17], np.int64)
_CASES = [
    ("math.roundeven", "f32", "f32", [_TIES], lambda x: np.round(x)),  # numpy rounds half to even
    ("arith.fptosi", "f32", "i8", [np.array([-128.0, -3.0, 0.0, 5.0, 127.0], np.float32)],
     lambda x: np.array([int(v) for v in x], np.int8)),
    ("arith.extsi", "i8", "i32", [_I8], lambda x: x.astype(np.int64).astype(np.int32)),
    ("arith.sitofp", "i32", "f32", [_I32], lambda x: x.astype(np.float64).astype(np.float32)),
    ("arith.trunci", "i64", "i32", [_I64], lambda x: ((x + 2**31) % 2**32 - 2**31).astype(np.int32)),
    ("arith.muli", "i32", "i32", [_I32[4:], _I32[4:][::-1]], lambda a, b: (a.astype(np.int64) * b).astype(np.int32)),
    ("arith.addi", "i32", "i32", [_I32, _I32[::-1]], lambda a, b: (a.astype(np.int64) + b).astype(np.int32)),
]


@pytest.mark.parametrize("case", _CASES, ids=[c[0] for c in _CASES])
def test_interpreter_integer_ops_match_numpy(case) -> None:  # noqa: ANN001
    name, _, result, operands, reference = case
    names = [f"x{i}" for i in range(len(operands))]
    got = eval_scalar_op(ScalarOp("r", name, tuple(names), result), dict(zip(names, operands, strict=True)), [])
    want = reference(*operands)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_cpp_integer_ops_match_numpy(tmp_path: Path) -> None:
    """Each op's C++ translation, built with the C simulation's flags, on the same operands."""
    writer = KernelWriter.__new__(KernelWriter)  # scalar() of these ops reads no kernel state
    writer.helpers = set()
    lines = ["#include <cmath>", "#include <cstdint>", "#include <cstdio>", "int main() {"]
    for c, (name, operand, result, operands, _) in enumerate(_CASES):
        suffix = "f" if operand == "f32" else "LL"
        for i, values in enumerate(operands):
            literals = ", ".join(f"{v.item()!r}{suffix}" for v in values)
            lines.append(f"  const {c_type(operand)} c{c}_{i}[] = {{{literals}}};")
        names = {f"x{i}": f"c{c}_{i}[i]" for i in range(len(operands))}
        body = writer.scalar(ScalarOp("r", name, tuple(names), result), names, dict.fromkeys(names, operand))
        fmt, cast = ('"%.9g "', "double") if result == "f32" else ('"%lld "', "long long")
        lines.append(f"  for (unsigned i = 0; i < {len(operands[0])}; ++i) std::printf({fmt}, "
                     f"static_cast<{cast}>({body}));")
        lines.append('  std::printf("\\n");')
    lines += ["  return 0;", "}"]
    source = tmp_path / "ops.cpp"
    source.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "ops"
    subprocess.run(["g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", str(source), "-o",
                    str(exe)], check=True, capture_output=True, text=True)
    rows = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines()
    for (name, _, result, operands, reference), row in zip(_CASES, rows, strict=True):
        want = reference(*operands)
        got = np.array([float(v) for v in row.split()], np.float64 if result == "f32" else np.int64)
        np.testing.assert_array_equal(got.astype(want.dtype), want, err_msg=name)


def test_grouped_int_matmul_export_and_eager_forms_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(0)
    xq = torch.randint(-128, 128, (3, 5, 256), generator=gen, dtype=torch.int8)
    wq = torch.randint(-8, 8, (24, 256), generator=gen, dtype=torch.int8)
    eager = grouped_int_matmul(xq, wq, 64)
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    exported = grouped_int_matmul(xq, wq, 64)
    assert eager.dtype == exported.dtype == torch.int32 and torch.equal(eager, exported)
    want = (xq.long().view(3, 5, 1, 4, 64) * wq.long().view(24, 4, 64)).sum(-1)
    assert torch.equal(eager.long(), want)


def test_weight_quantization_follows_the_symmetric_rule() -> None:
    w = torch.tensor([[7.5, -3.0, 0.25, 0.9375], [0.0, 0.0, 0.0, 0.0]])
    q, scales = quant.quantize_weight(w, 4, 2)
    assert torch.equal(scales, torch.tensor([[1.0, 0.125], [1.0, 1.0]]))  # max / 7.5; zero groups get 1
    assert torch.equal(q, torch.tensor([[7, -3, 2, 7], [0, 0, 0, 0]], dtype=torch.int8))  # 7.5 -> 8 saturates


def test_schemes_and_their_errors() -> None:
    assert quant_scheme("fp32") is None
    w4, w8 = quant_scheme("w4a8"), quant_scheme("w8a8")
    assert w4 is not None and (w4.weight_bits, w4.group_size) == (4, 128)
    assert w8 is not None and (w8.weight_bits, w8.group_for(96)) == (8, 96)
    assert w4.group_for(64) == 64 and w4.group_for(512) == 128
    with pytest.raises(OptionError, match="does not divide"):
        w4.group_for(192)
    with pytest.raises(OptionError, match="bad quant 'int3'"):
        quant_scheme("int3")
    with pytest.raises(OptionError, match="has no linear layer"):
        compile_module(torch.nn.ReLU(), [torch.randn(4, 8)], quant="w4a8", size_fifos=False)


def test_cli_refuses_an_unknown_scheme(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["compile", "gpt2", "-o", "unused", "--quant", "w2a2"])
    assert exc.value.code == 2 and "invalid choice: 'w2a2'" in capsys.readouterr().err


class _Mlp(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        self.up = torch.nn.Linear(64, 128)
        self.down = torch.nn.Linear(128, 32, bias=False)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=gen) * 0.2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(x)))


class _IntegerProducts(torch.nn.Module):
    """A quantized layer's int8 activations and int32 group sums as the outputs (integers end to end)."""

    def __init__(self, layer: QuantLinear) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xq, _ = self.layer.quantize_input(x)
        return xq, grouped_int_matmul(xq, self.layer.weight_q, self.layer.group)


def test_quantized_linear_lowers_to_integer_linalg_and_runs_exactly() -> None:
    x = torch.randn(1, 16, 64, generator=torch.Generator().manual_seed(1))
    design = compile_module(_Mlp(), [x], quant="w4a8", quant_group=32, size_fifos=False)
    text = " ".join(op.name for g in design.graph.ops if hasattr(g, "body") for op in g.body.ops)
    for op in ("math.roundeven", "arith.fptosi", "arith.extsi", "arith.muli", "arith.addi", "arith.sitofp"):
        assert op in text
    assert design.report["quantization"]["layers"]["up"]["group"] == 32
    with torch.no_grad():
        want = design.module(x).numpy()
        fp32 = _Mlp()(x).numpy()
    # Float parts (the f32 dequantization's group sum) may round differently in the last place.
    np.testing.assert_allclose(design.run_reference(x)[0], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(design.simulate_streams(x)[0], want, rtol=1e-5, atol=1e-6)
    # Quantized (not fp32), and close to fp32: int4 weights in groups of 32 err by about 10% RMS.
    assert 0 < np.sqrt(np.mean((want - fp32) ** 2)) < 0.2 * np.sqrt(np.mean(fp32**2))


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_integer_results_are_bit_identical_in_the_c_simulation() -> None:
    x = torch.randn(1, 16, 64, generator=torch.Generator().manual_seed(2)) * 3
    scheme = quant_scheme("w4a8", 32)
    assert scheme is not None
    layer = quantized_copy(_Mlp(), scheme, [[x]]).up
    module = _IntegerProducts(layer)
    design = compile_module(module, [x])
    with torch.no_grad():
        xq, acc = module(x)
    assert design.report["outputs"]["out0"]["dtype"] == "i8" and design.report["outputs"]["out1"]["dtype"] == "i32"
    assert int(xq.abs().max()) >= 127  # the static scale saturates some of the larger inputs
    report = design.simulate(x, runs=2)
    assert report.ok and report.deterministic, report.describe()
    for got, want in zip(report.outputs, (xq.numpy(), acc.numpy()), strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_a_w4a8_decode_block_verifies_against_the_quantized_reference(tmp_path: Path) -> None:
    design, block = compile_llm_block("gpt2", mode="decode", max_len=16, quant="w4a8")
    quantization = design.report["quantization"]
    assert quantization["scheme"] == "w4a8" and len(quantization["layers"]) == 4
    weights = {v.name: v.type.dtype for v in design.graph.inputs if v.name in design.graph.weight_names}
    # int4 weights are stored as i4, two per byte: half the bytes of their int8 containers.
    assert weights["mlp_c_fc_weight_q"] == "i4" and weights["mlp_c_fc_weight_scale"] == "f32"
    weight_q = [v for v in design.graph.inputs if v.name.endswith("_weight_q")]
    assert len(weight_q) == 4 and all(2 * v.type.bytes == v.type.elements for v in weight_q)
    args = block.example_inputs(0)
    with torch.no_grad():
        want = [o.numpy() for o in block(*args)]
    for got, w in zip(design.run_reference(*args), want, strict=True):
        np.testing.assert_allclose(got, w, rtol=0, atol=1e-5)
    for got, w in zip(design.simulate_streams(*args), want, strict=True):
        np.testing.assert_allclose(got, w, rtol=0, atol=1e-5)
    design.write_project(tmp_path, *args)
    assert (tmp_path / "check" / "expected_fp32.npz").is_file()
    assert main(["verify", str(tmp_path)]) == 0


def test_kv_cache_option_and_its_errors() -> None:
    assert kv_cache_dtype("auto", "fp32") == "fp32" and kv_cache_dtype("auto", "w4a8") == "int8"
    assert kv_cache_dtype("fp32", "w4a8") == "fp32" and kv_cache_dtype("int8", "fp32") == "int8"
    with pytest.raises(OptionError, match="bad kv-quant 'int4'"):
        kv_cache_dtype("int4", "w4a8")
    q = quantize_kv(torch.tensor([0.25, 0.75, -300.0, 1.25]), torch.tensor(2.0))
    assert q.dtype == torch.int8 and q.tolist() == [0, 2, -128, 2]  # half to even, saturated


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
@pytest.mark.parametrize("mode", ["prefill", "decode"])
def test_an_int8_kv_cache_is_written_in_place_and_verifies_exactly(mode: str, tmp_path: Path) -> None:
    design, block = compile_llm_block("gpt2", mode=mode, seq_len=8, max_len=16, quant="w4a8")
    inputs, outputs = design.report["inputs"], design.report["outputs"]
    caches = ("keys", "values") if mode == "prefill" else ("key_cache_out", "value_cache_out")
    assert all(outputs[c]["dtype"] == "i8" for c in caches)
    assert design.report["quantization"]["kv_cache"]["dtype"] == "i8"
    for name in ("key_scale", "value_mult"):  # one scale per (KV head, channel), shaped like a cache row
        assert inputs[name]["weight"] and inputs[name]["shape"] == [1, block.spec.num_kv_heads, 1,
                                                                   block.spec.head_dim]
    args = block.example_inputs(0)
    with torch.no_grad():
        want = [o.numpy() for o in block(*args)]
    if mode == "decode":
        assert inputs["key_cache"]["dtype"] == "i8"
        position = int(args[1])
        # Every row but the position's is the input cache, bit for bit; the row is the quantized new key.
        untouched = np.arange(16) != position
        np.testing.assert_array_equal(want[1][:, :, untouched], args[2].numpy()[:, :, untouched])
        # The cache DMAs move a quarter of the bytes of an fp32 cache.
        fp32, _ = compile_llm_block("gpt2", mode=mode, max_len=16, quant="w4a8", kv_quant="fp32",
                                    size_fifos=False)
        assert fp32.report["inputs"]["key_cache"]["dtype"] == "f32"
        int8_bytes = sum(d["whole_cache_bytes"] for d in design.report["kv_cache"])
        fp32_bytes = sum(d["whole_cache_bytes"] for d in fp32.report["kv_cache"])
        assert 4 * int8_bytes == fp32_bytes
    design.write_project(tmp_path, *args)
    assert main(["verify", str(tmp_path)]) == 0
    sim = design.simulate(*args, runs=1)
    for got, w in zip(sim.outputs[1:], want[1:], strict=True):  # the integer caches: exact
        assert got.dtype == np.int8
        np.testing.assert_array_equal(got, w)
