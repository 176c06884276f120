"""The whole model: ``streamtensor build`` then ``streamtensor generate --check`` on the emulated accelerator
(every layer's block in its C simulation) gives Hugging Face's greedy tokens; the run model's terms add up; the
C++ host's slot maps pack exactly as the runtime does; sampling follows its rules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers
from conftest import TINY_MAX_LEN, TINY_SEQ_LEN, tiny_block

from streamtensor.cli import main
from streamtensor.codegen.vitis.hbm import memory_arguments
from streamtensor.codegen.vitis.llm_host import host_moved, slot_map, write_llm_host
from streamtensor.driver import KV_SCALES_ATTRIBUTE, compile_model_block
from streamtensor.errors import OptionError, ResourceBudgetError
from streamtensor.frontend.block import DecoderBlock
from streamtensor.frontend.models import load_full_model, randomize_params
from streamtensor.frontend.quant import KV_SCALE_NAMES, quant_scheme
from streamtensor.ir.itensor import parse_itensor_type
from streamtensor.kernel_interface import load_kernel_interface
from streamtensor.llm import build as llm_build
from streamtensor.llm import estimate
from streamtensor.llm.build import build, decomposition_error, layer_weights, quantize_kv_cache, quantize_model
from streamtensor.llm.estimate import HEAD_RESTREAM_SHARE, compile_head, design_invocation, estimate_run, head_tile_size
from streamtensor.llm.generate import LlmRunner, reference_model
from streamtensor.llm.host_model import OutputHead, QuantizedKvCache, decoder_layers, embedding_tables, sample
from streamtensor.llm.perf import RunModel, cache_prefix, input_owners, row_offsets, same_buffer

PROMPT = "3,1,4,1,5,9,2,6"


def _build_and_check(model: str, out: Path, capsys: pytest.CaptureFixture, prompt: str, prompt_len: int,
                     new_tokens: int, quant: str = "fp32", kv_quant: str = "auto") -> tuple[str, dict]:
    assert main(["build", model, "-o", str(out), "--prompt-len", str(prompt_len), "--max-new-tokens",
                 str(new_tokens), "--decode-positions", "1", "--quant", quant, "--kv-quant", kv_quant, "-q"]) == 0
    capsys.readouterr()
    code = main(["generate", str(out), "--prompt-ids", prompt, "--max-new-tokens", str(new_tokens), "--check", "-q"])
    text = capsys.readouterr().out
    assert code == 0, text
    return text, json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def gpt2_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("llm") / "gpt2"
    # The blocks of conftest's tiny_block (8 tokens, 16 cache rows): their C simulations are cached already.
    assert main(["build", "gpt2", "-o", str(out), "--prompt-len", str(TINY_SEQ_LEN), "--max-new-tokens",
                 str(TINY_MAX_LEN - TINY_SEQ_LEN), "--decode-positions", "2", "-q"]) == 0
    return out


def test_tiny_gpt2_generates_hugging_face_tokens(gpt2_build: Path, capsys: pytest.CaptureFixture) -> None:
    # 9 prompt tokens for an 8-token prefill kernel: the ninth goes through a decode step.
    capsys.readouterr()
    code = main(["generate", str(gpt2_build), "--prompt-ids", "3,1,4,1,5,9,2,6,5", "--max-new-tokens", "3", "--check",
                 "-q"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "check: PASS: 3 tokens here, 3 from Hugging Face generate(do_sample=False); identical" in text
    rows = [line.split() for line in text.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 3 and all(r[2] == r[6] for r in rows)  # our token, Hugging Face's
    assert all(float(r[7]) < 1e-4 for r in rows)  # and the logits agree, not just their argmax
    assert "modelled board run: on u55c at 250 MHz, [9:3]" in text
    # Per decode step the host moved what the run model charges: activations only, no KV-cache bytes.
    transfers = json.loads((gpt2_build / "report.json").read_text())["llm"]["overheads"]["per_decode_step_transfers"]
    assert transfers["kv_cache_bytes"] == 0
    assert [int(r[5]) for r in rows[1:]] == [transfers["to_device_bytes"] + transfers["from_device_bytes"]] * 2


def test_decode_updates_the_device_cache_in_place(gpt2_build: Path) -> None:
    """After a generation each layer's resident cache holds Hugging Face's keys and values of every position fed
    (prefill rows and the rows the decode kernel wrote in place) and nothing past them; per decode step the
    host moved no cache byte."""
    runner = LlmRunner(gpt2_build)
    prompt = [3, 1, 4, 1, 5]
    result = runner.generate(prompt, 4)
    fed = prompt + result.tokens[:-1]
    model = transformers.AutoModelForCausalLM.from_pretrained(gpt2_build / "model", attn_implementation="eager").eval()
    with torch.no_grad():
        cache = model(torch.tensor([fed]), use_cache=True).past_key_values
    for layer in range(2):
        runtime = runner.kernels["decode"].runtimes[layer]
        for name, expected in (("key_cache", cache.layers[layer].keys), ("value_cache", cache.layers[layer].values)):
            runtime.sync(name, "from_device")
            held = runtime.read(name)
            assert np.abs(held[:, :, :len(fed)] - expected.numpy()).max() < 1e-4
            assert not held[:, :, len(fed):].any()
    # Per decode step: the embedded row in and the logits out, as the run model charges them; before the second
    # token's step the host also copied the prefill's keys and values into the caches (after the first token).
    modelled = runner.run_model.step_transfers()
    assert modelled.to_device_bytes + modelled.from_device_bytes < 4096
    assert result.steps[1].transfers == runner.run_model.second_token_transfers(len(prompt))
    assert all(s.transfers == modelled for s in result.steps[2:])


@pytest.mark.parametrize("prompt", [[3, 1, 4, 1, 5], [3, 1, 4, 1, 5, 9, 2, 6, 5]], ids=["prefill", "past-prefill"])
def test_host_moves_what_the_run_model_counts(gpt2_build: Path, prompt: list[int]) -> None:
    """Activations stay on the device: each layer reads the previous layer's output buffer and the head the last
    layer's (the prompt row at its offset in the last prefill layer's), so a decode step syncs the embedded row in
    and the logits out, nothing else. The emulated host moves exactly what the run model counts, and handing
    the activations over through the host instead (what it does where packings differ) gives the same logits."""
    runner = LlmRunner(gpt2_build)
    model = runner.run_model
    assert all(model.chained.values())
    assert set(model.other_banks) <= set(model.chained)  # pseudo-channels: reported where they differ
    # This fp32 prefill writes tiles of 8 rows x 16 columns: a row lies in 4 pieces, so the host hands it over.
    assert model.head_row_offsets == {"hidden_0": [None] * TINY_SEQ_LEN}
    chained = runner.generate(prompt, 3)
    assert chained.steps[0].transfers == model.ttft_transfers(len(prompt))
    step = model.step_transfers()
    hidden_row = model.invocations["decode"].to_device_bytes
    # The second decode layer's run queued behind the first's (one compute unit, its input in place on the same
    # banks). The tiny prefill's reads of the hidden state would be its slowest DMAs on the output's channel (its
    # weights are small), so they keep channels of their own: XRT copies that input, and the run is not queued.
    assert model.queued == ["decode->decode"]
    assert model.other_banks.get("prefill->prefill") and not model.other_banks.get("decode->decode")
    assert (step.buffer_syncs, step.to_device_bytes, step.launches, step.queued_launches) == (2, hidden_row, 2, 1)
    assert step.from_device_bytes == model.invocations["head"].out_bytes  # the logits only
    assert chained.steps[1].transfers == model.second_token_transfers(len(prompt))
    assert all(s.transfers == step for s in chained.steps[2:])
    # The keys and values are copied into the caches after the first token when the prompt fits the prefill,
    # before it otherwise (the decode kernels then run the prompt's last tokens).
    fill = model.kv_copy()
    assert fill.buffer_syncs > 0
    assert model.fill_deferred(len(prompt)) is (len(prompt) <= model.prefill_len)
    second = model.second_token_transfers(len(prompt))
    assert second.buffer_syncs - step.buffer_syncs == (fill.buffer_syncs if model.fill_deferred(len(prompt)) else 0)
    model.chained = {k: [] for k in model.chained}
    model.head_row_offsets = {}
    model.queued = []
    through_host = LlmRunner.__new__(LlmRunner)
    through_host.__dict__.update({**runner.__dict__, "kernels": {}, "run_model": model})
    result = through_host.generate(prompt, 3)
    assert result.tokens == chained.tokens
    assert all(np.array_equal(a.logits, b.logits) for a, b in zip(result.steps, chained.steps, strict=True))
    assert result.steps[0].transfers == model.ttft_transfers(len(prompt))
    assert result.steps[1].transfers == model.second_token_transfers(len(prompt))
    assert all(s.transfers == model.step_transfers() for s in result.steps[2:])
    assert model.step_transfers().buffer_syncs == 2 + 2 * 2  # each layer's output read back, the next one written


def test_handoffs_follow_the_packed_layouts(gpt2_build: Path) -> None:
    """A kernel reads another's output buffer in place only where both pack the tensor the same, slot for slot;
    the head finds a prompt row of the prefill output only where that row is contiguous and word-aligned."""
    args = {n: load_kernel_interface(gpt2_build / n).plan.arguments for n in ("prefill", "decode", "head")}
    out = {n: next(a for a in args[n] if a.arg == ("logits" if n == "head" else "hidden_out")) for n in args}
    decode_in = input_owners(args["decode"])
    assert same_buffer(out["decode"], decode_in[0]) and same_buffer(out["decode"], input_owners(args["head"])[0])
    assert not same_buffer(out["prefill"], decode_in[0])  # 8 rows against 1
    # The same row streamed in tiles of 8 (each padded to a 512-bit word) is another buffer.
    other = replace(decode_in[0], itype=parse_itensor_type("itensor<8xf32, tensor 64, [8] * [8], (d0) -> (d0)>"))
    assert not same_buffer(out["decode"], other)
    head_in = input_owners(args["head"])[0]
    assert row_offsets(out["prefill"], head_in, 64) == [None] * TINY_SEQ_LEN  # tiles of 8 rows x 16 columns
    rows = replace(out["prefill"], view=(), itype=parse_itensor_type(
        "itensor<1x2x64xf32, tensor 1x8x64, [4] * [2], (d0) -> (0, d0, 0)>"))  # tiles of 2 whole rows
    assert row_offsets(rows, head_in, 64) == [r * 64 * 4 for r in range(TINY_SEQ_LEN)]
    assert row_offsets(rows, head_in, 512) == [0, None, 512, None, 1024, None, 1536, None]


def test_prefill_writes_a_cache_in_place_only_where_packed_alike(gpt2_build: Path) -> None:
    """A prefill output fills the decode kernel's cache in place only where its packing is the cache's over the
    prompt rows, slot for slot: not when the cache is tiled per head (each head's rows lie 16 rows apart in the
    cache, 8 in the prefill's keys), nor when its tiles split the columns (a tile of the cache holds more rows)."""
    prefill = {a.name: a for a in load_kernel_interface(gpt2_build / "prefill").plan.arguments}
    decode = {a.arg: a for a in load_kernel_interface(gpt2_build / "decode").plan.arguments}
    keys, cache = prefill["keys"], decode["key_cache"]
    assert keys.tensor_shape == (1, 4, 8, 16) and cache.tensor_shape == (1, 4, 16, 16)
    assert not cache_prefix(keys, cache)
    model = RunModel.from_json(json.loads((gpt2_build / "llm.json").read_text())["run_model"])
    assert model.cache_in_place == {"prefill->decode": []}
    assert set(model.cache_copied["prefill->decode"]) == {"key_cache", "value_cache"}
    # The host copies them: the keys (values) of both layers read back in one sync, written in one.
    read, fill = model.kv_read_back(), model.cache_fill()
    assert (read.buffer_syncs, read.from_device_bytes) == (2, 2 * (keys.layout.total_bytes
                                                                   + prefill["values"].layout.total_bytes))
    assert (fill.buffer_syncs, fill.to_device_bytes) == (2, 2 * (cache.layout.total_bytes
                                                                 + decode["value_cache"].layout.total_bytes))

    def packed(arg: Any, itype: str) -> Any:
        parsed = parse_itensor_type(itype)
        return replace(arg, view=(), itype=parsed, tensor_shape=parsed.tensor_shape)

    cols = "(d0) -> (0, 0, 0, d0)>"  # one head: one tile of it, or tiles of 8 columns over all its rows
    assert cache_prefix(packed(keys, "itensor<1x1x8x16xf32, tensor 1x1x8x16, [1] * [1], " + cols),
                        packed(cache, "itensor<1x1x16x16xf32, tensor 1x1x16x16, [1] * [1], " + cols))
    assert not cache_prefix(packed(keys, "itensor<1x1x8x8xf32, tensor 1x1x8x16, [2] * [8], " + cols),
                            packed(cache, "itensor<1x1x16x8xf32, tensor 1x1x16x16, [2] * [8], " + cols))
    assert not cache_prefix(packed(cache, "itensor<1x1x16x16xf32, tensor 1x1x16x16, [1] * [1], " + cols),
                            packed(keys, "itensor<1x1x8x16xf32, tensor 1x1x8x16, [1] * [1], " + cols))


def test_run_model_terms_add_up(gpt2_build: Path) -> None:
    llm = json.loads((gpt2_build / "report.json").read_text())["llm"]
    step = llm["overheads"]["per_decode_step_s"]
    parts = step["kernels"] + step["launch"] + step["sync"] + step["pcie"] + step[
        "host_embedding_and_sampling_measured_here"]
    assert llm["decode_step_ms"] == pytest.approx(parts * 1e3)
    assert llm["ttft_ms"] == pytest.approx(sum(llm["overheads"]["ttft_s"].values()) * 1e3)
    # The resident caches are written once per generation: after the first token (the prompt fits the prefill).
    assert llm["prompt_len"] <= llm["prefill_len"] and llm["overheads"]["ttft_s"]["kv_cache_fill"] == 0
    after_first = llm["overheads"]["kv_cache_fill_after_first_token_s"]
    assert after_first > 0
    # The cache DMAs' HBM bytes follow the position: the run's mean lies between its first and last step.
    detail = llm["hbm_bytes_per_token_detail"]
    assert detail["first_step"] <= detail["mean_over_this_run"] <= detail["last_step"] <= detail[
        "worst_case_position"]
    assert detail["kv_cache_share_at_worst_case"] > 0
    assert llm["decode_tokens_per_s"] == pytest.approx(1e3 / llm["decode_step_ms"])
    assert llm["latency_ms"] == pytest.approx(llm["ttft_ms"] + 7 * llm["decode_step_ms"] + after_first * 1e3)
    # The first layer and the head, 20 us each, and the second layer queued behind the first (the board's figures).
    assert step["launch"] == pytest.approx(2 * 20e-6 + 1 / 206_313)
    assert "assumed, not measured" in llm["overheads"]["source"]
    assert llm["rooflines"]["within_rooflines"]
    assert llm["rooflines"]["kernel_only_tokens_per_s"] <= llm["rooflines"]["hbm_tokens_per_s"]
    assert [layer["decode_cycles"] for layer in llm["layers"]] == [llm["layers"][0]["decode_cycles"]] * 2
    assert llm["energy"]["joules_per_token_upper_bound"] == pytest.approx(150.0 * llm["decode_step_ms"] / 1e3)
    points = llm["decode_position_model"]["decode"]["capacities_and_cycles"]
    # The what-if of attention over rows 0..position: a block compiled at each smaller capacity (its own
    # tiling, so not necessarily cheaper at this tiny size) and the built one at full capacity.
    assert [c for c, _ in points] == [8, 16] and points[1][1] == llm["layers"][0]["decode_cycles"]


def test_cpp_host_slot_maps_pack_like_the_runtime(gpt2_build: Path) -> None:
    rng = np.random.default_rng(0)
    for name in ("prefill", "decode", "head"):
        for arg in load_kernel_interface(gpt2_build / name).plan.arguments:
            if not host_moved(arg):
                assert not (gpt2_build / "host" / "maps" / name / f"{arg.arg}.map").exists()
                continue
            mapping = slot_map(arg)
            stored = np.fromfile(gpt2_build / "host" / "maps" / name / f"{arg.arg}.map", dtype="<i4")
            assert np.array_equal(mapping, stored)
            dtype = np.int64 if arg.itype.dtype.startswith("i") else np.float32
            if arg.reads:
                tensor = rng.integers(0, 100, arg.tensor_shape).astype(dtype)
                packed = np.zeros(arg.layout.total_bytes // np.dtype(dtype).itemsize, dtype=dtype)
                packed[mapping > 0] = tensor.reshape(-1)[mapping[mapping > 0] - 1]
                assert packed.tobytes() == arg.pack_tensor(tensor)
            else:
                buffer = rng.standard_normal(arg.layout.total_bytes // 4).astype(np.float32)
                expected = arg.unpack_tensor(buffer.tobytes()).reshape(-1)
                assert np.array_equal(buffer[mapping - 1], expected)


def test_cpp_host_compiles_against_xrt_and_fails_without_a_card(gpt2_build: Path, tmp_path: Path) -> None:
    include, lib = Path("/usr/include/xrt/xrt/xrt_kernel.h"), Path("/usr/lib/x86_64-linux-gnu")
    if not include.is_file() or shutil.which("g++") is None:
        pytest.skip("needs Debian's libxrt-dev (XRT 2.13) and g++")
    tree = tmp_path / "xrt"
    (tree / "lib").mkdir(parents=True)
    (tree / "include").symlink_to("/usr/include/xrt")
    for name in ("libxrt_coreutil.so", "libxrt_core.so.2", "libxrt_coreutil.so.2"):
        (tree / "lib" / name).symlink_to(lib / name)
    host = tmp_path / "host"
    shutil.copytree(gpt2_build / "host", host)
    build = subprocess.run(["make", "-C", str(host), f"XILINX_XRT={tree}"], capture_output=True, text=True)
    assert build.returncode == 0 and "warning" not in build.stderr, build.stderr
    run = subprocess.run([str(host / "llm_host"), "none.xclbin", str(gpt2_build), "3,1,4", "2"], capture_output=True,
                         text=True, env={**os.environ, "XILINX_XRT": str(tree)})
    assert (run.returncode, run.stderr) == (1, "llm_host: Could not open device with index '0'\n")
    bad = subprocess.run([str(host / "llm_host"), "none.xclbin", str(gpt2_build), "3,999"], capture_output=True,
                         text=True)
    assert (bad.returncode, bad.stderr) == (2, "llm_host: bad prompt id '999' (expected 0..255)\n")


FAKE_XRT = Path(__file__).parent / "fake_xrt"


def _xrt_events(lines: list[str]) -> tuple[int, int, int, int, int]:
    """Buffer syncs, bytes to and from the device, kernel starts waited for before the next start and those
    started behind a run not yet waited for (queued), among the stand-in XRT's printed events."""
    syncs = [line.split() for line in lines if line.startswith("xrt-sync ")]
    runs = [line for line in lines if line in ("xrt-start", "xrt-wait")]
    queued = sum(1 for a, b in pairwise(runs) if a == b == "xrt-start")
    return (len(syncs), sum(int(s[2]) for s in syncs if s[1] == "to"), sum(int(s[2]) for s in syncs if s[1] == "from"),
            runs.count("xrt-start") - queued, queued)


@pytest.fixture(scope="module", params=["in-place", "through-the-host"])
def fake_xrt_host(gpt2_build: Path, tmp_path_factory: pytest.TempPathFactory,
                  request: pytest.FixtureRequest) -> tuple[Path, RunModel]:
    """The build's C++ host compiled against the stand-in XRT of ``tests/fake_xrt``, and the run model it follows:
    as built, or generated from a run model in which no kernel reads another's output in place (the host hands
    every activation over, as it does where packings differ)."""
    if shutil.which("g++") is None:
        pytest.skip("needs g++")
    folder = tmp_path_factory.mktemp("fake_xrt")
    manifest = json.loads((gpt2_build / "llm.json").read_text())
    source = gpt2_build / "host" / "llm_host.cpp"
    if request.param == "through-the-host":
        run_model = manifest["run_model"]
        run_model.update(chained={k: [] for k in run_model["chained"]}, head_row_offsets={}, other_banks={},
                         queued=[])
        write_llm_host(folder, manifest, {n: load_kernel_interface(gpt2_build / n) for n in manifest["kernels"]},
                       "platform", 250)
        source = folder / "llm_host.cpp"
    exe = folder / "llm_host"
    build = subprocess.run(["g++", "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{FAKE_XRT}", str(source),
                            "-o", str(exe)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    return exe, RunModel.from_json(manifest["run_model"])


@pytest.mark.parametrize("prompt", ["3,1,4,1,5", "3,1,4,1,5,9,2,6,5"], ids=["prefill", "past-prefill"])
def test_cpp_host_moves_what_the_run_model_counts(gpt2_build: Path, fake_xrt_host: tuple[Path, RunModel],
                                                  prompt: str) -> None:
    """The generated C++ host, built against a stand-in XRT that prints every buffer sync and kernel start and
    computes nothing (``tests/fake_xrt``), moves per decode step exactly what the run model counts (as built here
    one sync in, one out: the activations stay on the device), and before the first token what it counts for the
    TTFT plus loading the resident weights, constants and zeroed caches once."""
    exe, model = fake_xrt_host
    _check_cpp_host_events(exe, gpt2_build, model, prompt, 3)
    assert model.step_transfers().buffer_syncs == (2 if model.chained["decode->decode"] else 2 + 2 * 2)


def _check_cpp_host_events(exe: Path, build_dir: Path, model: RunModel, prompt: str, tokens: int) -> None:
    """``exe`` (a C++ host against the stand-in XRT) moves per decode step what ``model`` counts, and before the
    first token what it counts for the TTFT plus loading the resident weights, constants and zeroed caches once."""
    run = subprocess.run([str(exe), "none.xclbin", str(build_dir), prompt, str(tokens)], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    phases: list[list[str]] = [[]]
    for line in run.stdout.splitlines():
        if line.startswith("xrt-"):
            phases[-1].append(line)
        elif line[:1].isdigit():  # "step position token seconds": a token came out
            phases.append([])
    assert len(phases) == tokens + 1 and not phases[-1]
    step = model.step_transfers()
    second = model.second_token_transfers(len(prompt.split(",")))
    assert _xrt_events(phases[1]) == (second.buffer_syncs, second.to_device_bytes, second.from_device_bytes,
                                      second.launches, second.queued_launches)
    for events in phases[2:-1]:
        assert _xrt_events(events) == (step.buffer_syncs, step.to_device_bytes, step.from_device_bytes, step.launches,
                                       step.queued_launches)
    # Loading: one buffer per layer for weights, one for constants and the head's weights, and per cache one
    # (zeroed) holding every layer's: (syncs, bytes).
    manifest = json.loads((build_dir / "llm.json").read_text())
    load = [(1 if a.role == "kv_cache" else len(layers), len(layers) * a.layout.total_bytes)
            for k in manifest["kernels"].values() for a in load_kernel_interface(build_dir / k["dir"]).plan.arguments
            if a.role in ("weight", "constant", "kv_cache") and a.shares is None
            for layers in [k["layers"] if a.role in ("weight", "kv_cache") and k["layers"] else [None]]]
    ttft = model.ttft_transfers(len(prompt.split(",")))
    assert _xrt_events(phases[0]) == (ttft.buffer_syncs + sum(n for n, _ in load),
                                      ttft.to_device_bytes + sum(b for _, b in load), ttft.from_device_bytes,
                                      ttft.launches, ttft.queued_launches)


def test_a_cache_written_in_place_by_the_prefill_generates_alike(tmp_path: Path) -> None:
    """Gemma's tiny layer (one KV head): its prefill's values are packed as the decode kernel's value cache over
    the prompt rows (its keys are not: tiles of 8 columns, over 8 rows against 16), but on another pseudo-channel,
    so the build copies both through the host. Written in place (as a build placing both on one pseudo-channel
    would; the emulation and the stand-in XRT have no banks), the prefill kernel fills the cache itself: the same
    logits bit for bit, also in a second generation over the first one's rows, two buffer syncs fewer (the values
    of both layers read back in one, written in one: after the first token when the prompt fits the prefill, before
    it otherwise), and both hosts move what the run model counts."""
    out = tmp_path / "gemma"
    assert main(["build", "gemma", "-o", str(out), "--prompt-len", "8", "--max-new-tokens", "8", "--decode-positions",
                 "1", "-q"]) == 0
    copied = LlmRunner(out)
    assert copied.run_model.cache_in_place == {"prefill->decode": []}
    why = copied.run_model.cache_copied["prefill->decode"]
    assert why["key_cache"].startswith("packed otherwise") and why["value_cache"].startswith("on HBM[")
    placed = LlmRunner(out)
    placed.run_model.cache_in_place = {"prefill->decode": [["values", "value_cache"]]}
    for prompt in ([3, 1, 4, 1, 5], [2, 7, 1, 8, 2, 8, 1, 8, 2]):  # the second one past the prefill length
        ours, theirs = placed.generate(prompt, 3), copied.generate(prompt, 3)
        assert ours.tokens == theirs.tokens
        assert all(np.array_equal(a.logits, b.logits) for a, b in zip(ours.steps, theirs.steps, strict=True))
        assert ours.steps[0].transfers == placed.run_model.ttft_transfers(len(prompt))
        assert ours.steps[1].transfers == placed.run_model.second_token_transfers(len(prompt))
        filled = 1 if placed.run_model.fill_deferred(len(prompt)) else 0  # the step whose host copied the caches
        assert theirs.steps[filled].transfers.buffer_syncs - ours.steps[filled].transfers.buffer_syncs == 2
        fed = len(prompt) + 2
        for layer in range(2):
            held = []
            for runner in (placed, copied):
                runtime = runner.kernels["decode"].runtimes[layer]
                runtime.sync("value_cache", "from_device")
                held.append(runtime.read("value_cache")[:, :, :fed])
            assert np.array_equal(*held)
    if shutil.which("g++") is None:
        return
    manifest = json.loads((out / "llm.json").read_text())
    manifest["run_model"]["cache_in_place"] = placed.run_model.cache_in_place
    host = tmp_path / "host"
    write_llm_host(host, manifest, {n: load_kernel_interface(out / n) for n in manifest["kernels"]}, "platform", 250)
    build_cpp = subprocess.run(["g++", "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{FAKE_XRT}",
                                str(host / "llm_host.cpp"), "-o", str(host / "llm_host")], capture_output=True,
                               text=True)
    assert build_cpp.returncode == 0, build_cpp.stderr
    _check_cpp_host_events(host / "llm_host", out, placed.run_model, "3,1,4,1,5", 3)


def test_generate_refuses_bad_requests_in_one_line(gpt2_build: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    cases = [
        (["generate", str(gpt2_build), "--prompt-ids", "1,2,300"], "prompt token(s) [300] outside the vocabulary"),
        (["generate", str(gpt2_build), "--prompt-ids", "1,2,3", "--max-new-tokens", "14"], "need 17 KV-cache rows"),
        (["generate", str(gpt2_build), "--prompt", "hello"], "has no tokenizer"),
        (["generate", str(tmp_path), "--prompt-ids", "1"], "llm.json not found: build the model first"),
        (["generate", str(gpt2_build), "--prompt-ids", "1", "--check", "--temperature", "1"], "--check compares"),
        (["generate", str(gpt2_build), "--prompt-ids", "1,x"], "bad --prompt-ids '1,x'"),
        (["generate", str(gpt2_build), "--prompt-ids", "1", "--backend", "xrt"], "needs the Python module 'pyxrt'"),
    ]
    for argv, message in cases:
        assert main([*argv, "-q"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("streamtensor: error: ") and message in err and err.count("\n") == 1, err


def test_sampling_rules() -> None:
    rng = np.random.default_rng(0)
    logits = np.array([0.5, 3.0, 3.0, -1.0], dtype=np.float32)
    assert sample(logits, 0, 0.0, rng) == 1  # greedy: the first maximum, as torch.argmax
    draws = {sample(logits, 2, 1.0, rng) for _ in range(200)}
    assert draws == {1, 2}  # top-2: only the two largest
    assert len({sample(logits, 0, 100.0, rng) for _ in range(400)}) == 4  # hot: everything
    with pytest.raises(OptionError, match="must be non-negative"):
        sample(logits, -1, 1.0, rng)


def test_emulation_runs_sampled_generation_reproducibly(gpt2_build: Path) -> None:
    runner = LlmRunner(gpt2_build)
    first = runner.generate([1, 2, 3], 3, top_k=5, temperature=1.5, seed=7)
    again = runner.generate([1, 2, 3], 3, top_k=5, temperature=1.5, seed=7)
    assert first.tokens == again.tokens and first.stopped == "max_new_tokens" and len(first.steps) == 3


@pytest.mark.parametrize("quant", ["fp32", "w4a8"])
def test_output_head_pads_an_awkward_vocabulary_with_zero_logits(quant: str) -> None:
    """A vocabulary the tiler could tile only by 1 (GPT-2's 50,257 = 29 x 1733; here 300 = 2^2 x 3 x 5^2) gets
    zero rows up to a multiple of 128: the first ``V`` logits are the model's own, the padding's are 0."""
    loaded = load_full_model("gpt2", "tiny", 0, vocab_size=300)
    if quant != "fp32":
        quantize_model(loaded, quant_scheme(quant), TINY_SEQ_LEN, 0)
    head = OutputHead(loaded).eval()
    assert (head.vocab_size, head.padded_vocab) == (300, 384)
    hidden = torch.randn(1, 1, head.hidden_size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = head(hidden, *head.weights()).reshape(-1)
        expected = loaded.model.lm_head(loaded.model.transformer.ln_f(hidden)).reshape(-1)
    assert logits.shape == (384,) and not logits[300:].any()
    # Equal up to float rounding: BLAS may sum a 384-row product in another order than a 300-row one (it does on
    # some CPUs: about 1e-7 apart on an AVX-512 Xeon).
    torch.testing.assert_close(logits[:300], expected, rtol=1e-6, atol=1e-6)


def test_head_tile_follows_its_shape_and_cuts_the_vectors_it_streams_again() -> None:
    """The head's tile comes from its shape: an int4 head (its weight bytes per logit an eighth of an fp32 one's)
    gets a larger vocabulary tile than an fp32 head; compiled there (as the build and the estimate both compile
    it), the hidden-sized vectors it streams again per vocabulary tile stay within the share of its weight bytes,
    and it is faster than at the tiling's default tile."""
    fp32 = OutputHead(load_full_model("gpt2", "tiny", 0, vocab_size=300)).eval()
    assert head_tile_size(fp32, 32, 16) == 16  # 3 fp32 vectors against 16 fp32 weight columns: within 1/4
    loaded = load_full_model("gpt2", "tiny", 0, vocab_size=300)
    quantize_model(loaded, quant_scheme("w4a8"), TINY_SEQ_LEN, 0)
    head = OutputHead(loaded).eval()
    tile = head_tile_size(head, 4, 16)
    vectors = 4  # hidden row, final norm weight and bias, activation multiplier
    assert tile == 128 and vectors * 32 <= HEAD_RESTREAM_SHARE * tile * 4 < vectors * 32 * 2
    design, record = compile_head(head, 0, quant="w4a8")
    assert record == {"tile": 128, "refused": {}}
    assert design.options.tiling.default_tile_size == 128
    chosen = design_invocation(design)
    default, given = compile_head(head, 0, quant="w4a8", default_tile_size=16)
    assert given == {"tile": None, "refused": {}}  # a tile the caller gives is kept
    at_default = design_invocation(default)
    assert chosen.cycles < at_default.cycles
    # The final norm + quantize prologue is a kernel of its own (hoist-prologues) at either tile: the vectors
    # are streamed once, whatever the vocabulary tile.
    for d in (design, default):
        vectors = [x for g in d.report["hbm"] for x in g["dmas"] if "weight_q" not in x["dma"]]
        assert vectors and all(x["streamed_bytes"] == x["bytes"] for x in vectors)


def test_a_layer_block_that_does_not_fit_is_compiled_at_half_the_lane_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """The build's and the estimate's layer blocks (``compile_layer_block``): a block over the device at the lane
    budget is compiled again at half of it, with ``allow_unfit`` off until the least budget; the refusals are kept.
    A budget the caller gives is kept (the error is theirs). Stand-in compiles: the halving is under test."""
    calls: list[dict[str, Any]] = []

    def fits_at_256(loaded: object, model: str, **options: Any) -> tuple[str, str]:
        calls.append(options)
        if options["overall_unroll_size"] > 256:
            raise ResourceBudgetError(f"does not fit at {options['overall_unroll_size']}")
        return "design", "block"

    monkeypatch.setattr(estimate, "compile_model_block", fits_at_256)
    design, block, record = estimate.compile_layer_block(None, "gpt2", mode="prefill", allow_unfit=True)
    assert (design, block) == ("design", "block")
    assert record == {"lane_budget": 256, "refused": {1024: "does not fit at 1024", 512: "does not fit at 512"},
                      "cycles": {}}
    assert [(c["overall_unroll_size"], c["allow_unfit"]) for c in calls] == [(1024, False), (512, False), (256, False)]
    assert estimate.refusals(record, "budget") == (" (budget 1024 refused: does not fit)"
                                                    " (budget 512 refused: does not fit)")
    with pytest.raises(ResourceBudgetError, match="does not fit at 512"):
        estimate.compile_layer_block(None, "gpt2", mode="prefill", overall_unroll_size=512)

    def never_fits(loaded: object, model: str, **options: Any) -> tuple[str, str]:
        calls.append(options)
        if not options.get("allow_unfit"):
            raise ResourceBudgetError(f"does not fit at {options['overall_unroll_size']}")
        return "unfit design", "block"

    calls.clear()
    monkeypatch.setattr(estimate, "compile_model_block", never_fits)
    design, _, record = estimate.compile_layer_block(None, "gpt2", mode="prefill", allow_unfit=True)
    assert design == "unfit design" and record["lane_budget"] == estimate.LEAST_LANE_BUDGET
    assert calls[-1]["allow_unfit"] is True and len(record["refused"]) == 3  # 1024, 512, 256


def test_a_layer_block_that_fits_is_tried_at_twice_the_lane_budget_while_that_is_faster(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A block that fits at the default lane budget is compiled again at twice it while that fits and takes fewer
    cycles; the fastest is kept, every budget tried is in the record, a budget over the device is refused, and a
    budget that gains nothing ends the search. Stand-in compiles: the search is under test."""
    @dataclass
    class Compiled:
        budget: int
        report: dict[str, Any]

    def with_cycles(table: dict[int, int | None]) -> Any:
        def compile_at(loaded: object, model: str, **options: Any) -> tuple[Compiled, str]:
            budget = options["overall_unroll_size"]
            if table[budget] is None:
                raise ResourceBudgetError(f"does not fit at {budget}")
            return Compiled(budget, {"simulation": {"makespan_cycles": table[budget]}}), "block"
        return compile_at

    cases = [({1024: 300, 2048: 200, 4096: 200}, 2048, {1024: 300, 2048: 200, 4096: 200}, {}),
             ({1024: 300, 2048: 200, 4096: None}, 2048, {1024: 300, 2048: 200}, {4096: "does not fit at 4096"}),
             ({1024: 300, 2048: 310}, 1024, {1024: 300, 2048: 310}, {})]
    for table, chosen, cycles, refused in cases:
        monkeypatch.setattr(estimate, "compile_model_block", with_cycles(table))
        design, _, record = estimate.compile_layer_block(None, "gpt2", mode="prefill")
        assert design.budget == chosen
        assert record == {"lane_budget": chosen, "refused": refused, "cycles": cycles}
    # Each doubling faster: the search stops at MOST_LANE_BUDGET_FACTOR times the default.
    factor = estimate.MOST_LANE_BUDGET_FACTOR
    monkeypatch.setattr(estimate, "compile_model_block", with_cycles({1024 << k: 1000 - k for k in range(8)}))
    design, _, record = estimate.compile_layer_block(None, "gpt2", mode="prefill")
    assert design.budget == 1024 * factor and max(record["cycles"]) == 1024 * factor


def test_a_build_compiles_its_kernels_with_no_stream_token_limit_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """A build compiles each kernel once, at the prompt the user asked for (the W4A8 GPT-2 prefill block carries
    27.3 M stream tokens at 1024 prompt tokens): no limit unless one is given, which reaches every kernel."""
    seen: list[object] = []

    class Stop(Exception):
        pass

    def record(loaded: object, model: str, progress: object = None, **options: Any) -> None:
        seen.append(options.get("max_stream_tokens"))
        raise Stop

    monkeypatch.setattr(llm_build, "compile_layer_block", record)
    for given in ({}, {"max_stream_tokens": 1000}):
        with pytest.raises(Stop):
            llm_build.compile_llm("gpt2", **given)
    assert seen == [0, 1000]


@pytest.mark.parametrize("mode", ["prefill", "decode"])
def test_dmas_of_a_block_input_holding_the_same_bytes_share_one_buffer(mode: str) -> None:
    """The hidden state is read by several DMAs; those whose buffers would hold the same bytes (the same stripe of
    the same packing, whatever their views) address the first one's buffer, which the host writes and syncs once
    per run: the run model counts one sync per buffer the host writes."""
    design, _ = tiny_block("gpt2", mode)
    hidden = [a for a in memory_arguments(design.dataflow) if a.name == "hidden"]
    array = np.random.default_rng(0).standard_normal(hidden[0].tensor_shape).astype(np.float32)
    owners = [a for a in hidden if a.shares is None]
    for a in hidden:
        same = [o.arg for o in owners if (o.stripe, o.pack_tensor(array)) == (a.stripe, a.pack_tensor(array))]
        assert same[:1] == [a.shares or a.arg]  # shares the first buffer of the same bytes, if any
    assert len(owners) < len(hidden)
    assert design_invocation(design).to_device_buffers == len(owners)


def test_int8_kv_cache_scales_are_per_layer_and_travel_as_kernel_arguments() -> None:
    """A W4A8 whole model: every layer's int8 KV-cache scales are its own (calibrated on the whole model), its
    kernel arguments end with them, the compiled decode kernel takes them as weights next to an int8 cache, the
    C++ host's slot maps pack the int8 cache like the runtime, and the reference's quantizing cache is exactly
    what the blocks compute (without it the logits differ)."""
    loaded = load_full_model("gpt2", "tiny", 0, 0)
    quantize_model(loaded, quant_scheme("w4a8"), TINY_SEQ_LEN, 0)
    quantize_kv_cache(loaded, TINY_MAX_LEN, 0)
    scales = [getattr(layer, KV_SCALES_ATTRIBUTE) for layer in decoder_layers(loaded)]
    assert len(scales) == 2
    assert not torch.equal(scales[0].key_scale, scales[1].key_scale)
    assert not torch.equal(scales[0].value_scale, scales[1].value_scale)
    for layer, own in enumerate(scales):
        weights = layer_weights(loaded, layer, "int8")
        assert len(weights) == len(layer_weights(loaded, layer, "fp32")) + 4
        assert all(torch.equal(a, b) for a, b in zip(weights[-4:], own.tensors(), strict=True))
    design, block = compile_model_block(loaded, "gpt2", mode="decode", seq_len=TINY_SEQ_LEN, max_len=TINY_MAX_LEN,
                                       layer=1, quant="w4a8", size_fifos=False)
    assert block.kv_scales is scales[1]  # the layer's own, set before the block was compiled
    assert block.spec.weight_names[-4:] == list(KV_SCALE_NAMES)
    assert design.report["quantization"]["kv_cache"]["dtype"] == "i8"
    args = memory_arguments(design.dataflow)
    assert set(KV_SCALE_NAMES) <= {a.name for a in args if a.role == "weight"}
    cache_args = [a for a in args if a.role == "kv_cache" and host_moved(a)]
    assert len(cache_args) == 2 and {a.itype.dtype for a in cache_args} == {"i8"}
    rng = np.random.default_rng(0)
    for arg in cache_args:  # the C++ host packs int8 codes, one byte per element, with its slot map
        mapping = slot_map(arg)
        assert mapping.size == arg.layout.total_bytes
        codes = rng.integers(-128, 128, arg.tensor_shape).astype(np.int8)
        packed = np.zeros(arg.layout.total_bytes, dtype=np.int8)
        packed[mapping > 0] = codes.reshape(-1)[mapping[mapping > 0] - 1]
        assert packed.tobytes() == arg.pack_tensor(codes)
    tables = embedding_tables(loaded)
    blocks = [DecoderBlock(loaded, "prefill", TINY_SEQ_LEN, TINY_SEQ_LEN, i, scales[i]).eval() for i in range(2)]
    head = OutputHead(loaded).eval()
    assert decomposition_error(loaded, tables, blocks, head, TINY_SEQ_LEN, "int8") < 1e-6
    fp32_blocks = [DecoderBlock(loaded, "prefill", TINY_SEQ_LEN, TINY_SEQ_LEN, i).eval() for i in range(2)]
    assert decomposition_error(loaded, tables, fp32_blocks, head, TINY_SEQ_LEN, "fp32") < 1e-6
    # The int8 blocks against the model with Hugging Face's fp32 cache: the quantized cache is no no-op.
    with torch.no_grad():
        ids = torch.tensor([[1, 6, 11, 16, 21, 26, 31, 36]])
        int8 = loaded.model(ids, past_key_values=QuantizedKvCache(loaded.config, scales), use_cache=True).logits
        fp32 = loaded.model(ids, use_cache=False).logits
    assert float((int8 - fp32).abs().max()) > 1e-4


@pytest.mark.slow
def test_int8_kv_cache_on_the_device_holds_the_reference_codes(tmp_path: Path) -> None:
    """A W4A8 build's resident caches (emulation) hold, after a generation, exactly the int8 codes of the
    reference's quantizing cache for every position fed, one byte per element, and nothing past them."""
    out = tmp_path / "gpt2"
    assert main(["build", "gpt2", "-o", str(out), "--prompt-len", "8", "--max-new-tokens", "8", "--decode-positions",
                 "1", "--quant", "w4a8", "-q"]) == 0
    runner = LlmRunner(out)
    assert runner.manifest["kv_cache_dtype"] == "int8"
    prompt = [3, 1, 4, 1, 5]
    result = runner.generate(prompt, 4)
    fed = prompt + result.tokens[:-1]
    model, cache = reference_model(out)
    with torch.no_grad():
        model(torch.tensor([fed]), past_key_values=cache, use_cache=True)
    for layer in range(2):
        runtime = runner.kernels["decode"].runtimes[layer]
        for name, expected in (("key_cache", cache.layers[layer].keys), ("value_cache", cache.layers[layer].values)):
            runtime.sync(name, "from_device")
            held = runtime.read(name)
            assert held.dtype == np.int8 and expected.dtype == torch.int8
            assert np.array_equal(held[:, :, :len(fed)], expected.numpy())
            assert not held[:, :, len(fed):].any()
            assert runtime.arguments_named(name)[0].layout.total_bytes == held.size  # one byte per element


@pytest.mark.slow
def test_padded_head_generates_the_quantized_reference_tokens(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A 300-token vocabulary: the head kernel computes 384 logits (zero rows past 300); the host samples from the
    first 300 and generates the quantized reference's greedy tokens."""
    out = tmp_path / "gpt2"
    build("gpt2", out, prompt_len=8, max_new_tokens=8, decode_positions=1, vocab_size=300, quant="w4a8")
    logits = [a for a in load_kernel_interface(out / "head").plan.arguments if a.name == "logits"]
    assert [a.tensor_shape[-1] for a in logits] == [384]
    capsys.readouterr()
    code = main(["generate", str(out), "--prompt-ids", PROMPT, "--max-new-tokens", "8", "--check", "-q"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "check: PASS: 8 tokens here, 8 from Hugging Face generate(do_sample=False)" in text
    # The estimate (no whole-model weights) models the head the build compiled: quantized and padded alike.
    built = json.loads((out / "llm.json").read_text())["run_model"]["invocations"]["head"]
    estimated = estimate_run("gpt2", 8, 8, size="tiny", vocab_size=300, quant="w4a8").run_model.invocations["head"]
    assert (estimated.cycles, estimated.hbm_bytes, estimated.from_device_bytes) == (
        built["cycles"], built["hbm_bytes"], built["from_device_bytes"])


def _mistral_checkpoint(directory: Path) -> Path:
    cfg = transformers.MistralConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    torch.manual_seed(0)
    model = transformers.MistralForCausalLM(cfg)
    randomize_params(model, torch.Generator().manual_seed(1))
    model.save_pretrained(directory)
    return directory


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gpt2", "llama", "qwen2", "gemma", "mistral"])
def test_tiny_models_generate_hugging_face_greedy_tokens(model: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    """The acceptance: 16 new tokens after an 8-token prompt, every layer through the C simulation."""
    name = str(_mistral_checkpoint(tmp_path / "mistral_ckpt")) if model == "mistral" else model
    text, report = _build_and_check(name, tmp_path / "out", capsys, PROMPT, 8, 16)
    assert "check: PASS: 16 tokens here, 16 from Hugging Face generate(do_sample=False); identical" in text
    assert report["llm"]["new_tokens"] == 16 and report["llm"]["rooflines"]["within_rooflines"]


@pytest.mark.slow
@pytest.mark.parametrize(("model", "kv_quant"), [("gpt2", "auto"), ("llama", "auto"), ("qwen2", "auto"),
                                                 ("gemma", "auto"), ("mistral", "auto"), ("gpt2", "fp32")])
def test_tiny_w4a8_models_generate_the_quantized_reference_tokens(model: str, kv_quant: str, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    """W4A8: every linear layer (decoder layers and LM head) quantized and (``auto``) an int8 KV cache with each
    layer's own scales; the emulated accelerator's 16 greedy tokens are those of the quantized PyTorch model's
    Hugging Face generate with the same quantizing cache. ``--kv-quant fp32`` keeps an fp32 cache."""
    name = str(_mistral_checkpoint(tmp_path / "mistral_ckpt")) if model == "mistral" else model
    text, report = _build_and_check(name, tmp_path / "out", capsys, PROMPT, 8, 16, quant="w4a8", kv_quant=kv_quant)
    int8 = kv_quant == "auto"
    assert ("check: PASS: 16 tokens here, 16 from Hugging Face generate(do_sample=False) on the w4a8 quantized "
            "PyTorch model") in text
    assert ("with its int8 KV cache" in text) == int8
    rows = [line.split() for line in text.splitlines() if line.strip()[:1].isdigit()]
    assert all(float(r[7]) < 1e-3 for r in rows)  # the logits agree, not just their argmax
    assert {k["quantization"]["scheme"] for k in report["kernels"].values()} == {"w4a8"}
    assert {k["quantization"]["kv_cache"]["dtype"] for n, k in report["kernels"].items() if n != "head"} == {
        "i8" if int8 else "f32"}
    kv = report["llm"]["kv_cache"]
    assert (kv["dtype"], kv["bytes_per_element"]) == (("int8", 1) if int8 else ("fp32", 4))
    manifest = json.loads((tmp_path / "out" / "llm.json").read_text())
    elements = manifest["num_kv_heads"] * 24 * (manifest["head_dim"] + manifest["value_head_dim"])
    # The resident caches hold one byte (int8) or four per element, padded to whole 64-byte words at most.
    assert all(elements * kv["bytes_per_element"] <= b < elements * kv["bytes_per_element"] + 4096
               for b in kv["resident_bytes_per_layer"])
    assert (tmp_path / "out" / "model" / "quantization.pt").is_file()
    assert (tmp_path / "out" / "model" / "kv_scales.pt").is_file() == int8
