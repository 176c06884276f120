"""``streamtensor build MODEL -o OUTDIR``: everything a board needs to run a whole model, and its performance model.

``compile_llm`` compiles, for every group of layers that share a structure (``host_model.layer_groups``), a prefill
block (``--prompt-len`` tokens) and a decode block (KV cache of ``--max-len`` rows), plus the output head (final
norm + LM head) as a device GEMV; checks on PyTorch eager that embedding tables + those blocks with each layer's
weights + head reproduce the model's logits; and models the run (``llm.perf``). ``LlmDesign.write`` lays out::

    OUTDIR/llm.json            manifest: geometry, kernels, which kernel runs which layer, EOS, the run model
    OUTDIR/report.json         report["llm"] (llm.perf) and each kernel's compile report under "kernels"
    OUTDIR/<kernel>/           the kernel's Vitis project (``streamtensor verify OUTDIR/<kernel>`` checks it)
    OUTDIR/<kernel>/layers/<i>/<arg>.bin   layer i's weights packed for that kernel's HBM arguments
    OUTDIR/host/embed_tokens.bin, embed_positions.bin   float32 tables of the host's embedding
    OUTDIR/host/llm_host.cpp, Makefile                 the C++ host program against XRT (codegen.vitis.llm_host)
    OUTDIR/model/              the weights as a Hugging Face checkpoint (the reference of ``generate --check``),
                               with the quantized linear layers and the per-layer KV-cache scales of a quantized build

With an int8 KV cache (``--kv-quant``; ``auto``: whenever ``--quant`` is not fp32) every layer gets its own cache
scales, calibrated on the whole model (``host_model.calibrate_kv_scales``) and set on the layer
(``KV_SCALES_ATTRIBUTE``) before any block is compiled: the prefill and decode blocks of a group are compiled with
its first layer's, and every layer's kernel arguments carry its own four scale tensors (``layer_weights``).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from streamtensor._version import GENERATOR
from streamtensor.codegen.vitis.hbm import memory_arguments
from streamtensor.codegen.vitis.llm_host import write_llm_host
from streamtensor.driver import KV_SCALES_ATTRIBUTE, Design, Progress, compile_model_block
from streamtensor.errors import OptionError, StreamTensorError, UnsupportedModelError
from streamtensor.frontend.block import DecoderBlock
from streamtensor.frontend.models import LoadedModel, load_full_model
from streamtensor.frontend.quant import (
    KvScales,
    QuantLinear,
    kv_cache_dtype,
    quant_scheme,
)
from streamtensor.kernel_interface import load_kernel_interface
from streamtensor.llm.estimate import (
    compile_head,
    compile_layer_block,
    design_invocation,
    handoff_fields,
    kv_cache_pairs,
)
from streamtensor.llm.host_model import (
    CALIBRATION_PROMPTS,
    EmbeddingTables,
    OutputHead,
    QuantizedKvCache,
    calibrate_kv_scales,
    decoder_layers,
    embedding_tables,
    eos_token_ids,
    host_token_seconds,
    layer_groups,
    quantize_model,
)
from streamtensor.llm.options import LlmOptions
from streamtensor.llm.perf import Invocation, RunModel
from streamtensor.report import write_report
from streamtensor.verify.simulate import eager_reference, kernel_name

LLM_FILE = "llm.json"
HOST_DIR = "host"
MODEL_DIR = "model"
LAYERS_DIR = "layers"
QUANT_FILE = "quantization.pt"  # in MODEL_DIR: the QuantLinear tensors the quantized reference is rebuilt from
KV_SCALES_FILE = "kv_scales.pt"  # in MODEL_DIR: per layer, the int8 KV cache's key and value scales
DECOMPOSITION_TOLERANCE = 1e-4  # relative to the largest logit: eager blocks vs the whole model, both PyTorch


@dataclass
class Kernel:
    """One compiled kernel of the model and the layers it runs."""

    name: str
    mode: str  # prefill | decode | head
    group: str
    layers: list[int]
    design: Design
    module: nn.Module  # DecoderBlock or OutputHead: the eager reference
    example: list[torch.Tensor]
    lanes: dict[str, Any] = field(default_factory=dict)  # a layer block's lane budget and refused ones

    @property
    def output_args(self) -> dict[str, str]:
        """Output name -> the C identifier of the argument that returns it to the host. A KV cache updated in
        place is no such output: it stays in its device buffer."""
        assert self.design.dataflow is not None
        writes = {a.dma: a for a in memory_arguments(self.design.dataflow) if a.writes}
        found = {n: writes[d] for n, d in zip(self.design.output_names, self.design.dataflow.outputs, strict=True)}
        return {n: a.arg for n, a in found.items() if a.role != "kv_cache"}

    def invocation(self) -> Invocation:
        return design_invocation(self.design)


@dataclass
class LlmDesign:
    """What ``compile_llm`` returns: the kernels, the host's tables, the checked decomposition, the run model."""

    model: str
    loaded: LoadedModel
    options: LlmOptions
    kernels: dict[str, Kernel]
    prefill: list[str]  # per layer: kernel name
    decode: list[str]
    head: str
    tables: EmbeddingTables
    run_model: RunModel
    decomposition_error: float
    stages: dict[str, float] = field(default_factory=dict)
    # The fp32 weights as a Hugging Face checkpoint holds them (the model's own state before quantization)
    checkpoint_state: dict[str, torch.Tensor] = field(default_factory=dict)
    quant: str = "fp32"
    kv_cache: str = "fp32"  # the KV cache's element type: fp32 or int8 (per-layer scales)
    head_tiling: dict[str, Any] = field(default_factory=dict)  # the head's tile and refused ones (compile_head)

    @property
    def report(self) -> dict[str, Any]:
        llm = self.run_model.model(self.options.prompt_len, self.options.max_new_tokens)
        llm["decomposition_check"] = {"max_relative_logit_error": self.decomposition_error,
                                      "what": "PyTorch eager: host embedding tables + the compiled blocks' modules "
                                              "with each layer's weights + head, against the whole model"}
        llm["kv_cache"] = self.kv_cache_summary()
        llm["lm_head"]["tiling"] = self.head_tiling
        llm["layer_lane_budgets"] = {n: k.lanes for n, k in self.kernels.items() if k.mode != "head"}
        return {"tool": GENERATOR, "model": self.model, "llm": llm, "stages": dict(self.stages),
                "kernels": {name: k.design.report for name, k in self.kernels.items()}}

    def kv_cache_summary(self) -> dict[str, Any]:
        """The resident KV cache: element type, bytes per layer and in all (the decode kernels' cache buffers)."""
        per_layer = [self.run_model.invocations[n].cache_fill_bytes for n in self.decode]
        out: dict[str, Any] = {"dtype": self.kv_cache, "bytes_per_element": 1 if self.kv_cache == "int8" else 4,
                               "rows": self.options.cache_len, "resident_bytes_per_layer": per_layer,
                               "resident_bytes": sum(per_layer)}
        if self.kv_cache == "int8":
            out["scales"] = ("static per (KV head, channel), per layer, calibrated on the whole model over "
                             f"{CALIBRATION_PROMPTS} seeded sequences of {self.options.cache_len} tokens")
        return out

    def layer_weights(self, layer: int) -> list[torch.Tensor]:
        return layer_weights(self.loaded, layer, self.kv_cache)

    def write(self, outdir: str | Path) -> Path:
        out = Path(outdir)
        out.mkdir(parents=True, exist_ok=True)
        for kernel in self.kernels.values():
            root = out / kernel.name
            kernel.design.write_project(root, *kernel.example)
            kernel.design.save(root)
            if kernel.mode != "head":
                self._write_layer_weights(kernel, root)
        host = out / HOST_DIR
        host.mkdir(exist_ok=True)
        (host / "embed_tokens.bin").write_bytes(self.tables.tokens.astype("<f4").tobytes())
        if self.tables.positions is not None:
            (host / "embed_positions.bin").write_bytes(self.tables.positions.astype("<f4").tobytes())
        model_dir = out / MODEL_DIR
        if model_dir.exists():
            shutil.rmtree(model_dir)
        # Parameters only: block extraction made the rotary buffers persistent, which the checkpoint must not hold.
        self.loaded.model.save_pretrained(model_dir, state_dict=self.checkpoint_state)
        quantized = {name: {"weight_q": m.weight_q.detach(), "weight_scale": m.weight_scale.detach(),
                            "act_mult": m.act_mult.detach(), "act_scale": m.act_scale, "group": m.group,
                            "bias": None if m.bias is None else m.bias.detach()}
                     for name, m in self.loaded.model.named_modules() if isinstance(m, QuantLinear)}
        if quantized:
            torch.save(quantized, model_dir / QUANT_FILE)
        if self.kv_cache == "int8":
            scales = [_layer_kv_scales(self.loaded, i) for i in range(len(self.prefill))]
            torch.save([{"key_scale": s.key_scale, "value_scale": s.value_scale} for s in scales],
                       model_dir / KV_SCALES_FILE)
        _copy_tokenizer(self.loaded.source, model_dir)
        manifest = self.manifest()
        (out / LLM_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        target = self.kernels[self.head].design.target
        write_llm_host(host, manifest, {name: load_kernel_interface(out / name) for name in self.kernels},
                       target.platform, target.clock_mhz)
        (out / "report.json").write_text(json.dumps(self.report, indent=2, default=str) + "\n")
        return out

    def _write_layer_weights(self, kernel: Kernel, root: Path) -> None:
        assert isinstance(kernel.module, DecoderBlock)
        names = kernel.module.spec.weight_names
        weight_args = [a for a in load_kernel_interface(root).plan.arguments if a.role == "weight"]
        for layer in kernel.layers:
            weights = self.layer_weights(layer)
            if len(weights) != len(names):
                raise StreamTensorError(f"layer {layer} has {len(weights)} weight tensors; kernel {kernel.name} "
                                        f"takes {len(names)}")
            tensors = dict(zip(names, weights, strict=True))
            folder = root / LAYERS_DIR / str(layer)
            folder.mkdir(parents=True, exist_ok=True)
            for arg in weight_args:
                (folder / f"{arg.arg}.bin").write_bytes(arg.pack_tensor(tensors[arg.name].numpy()))

    def _kv_geometry(self) -> dict[str, Any]:
        block, prefill = self.kernels[self.decode[0]].module, self.kernels[self.prefill[0]].module
        assert isinstance(block, DecoderBlock) and isinstance(prefill, DecoderBlock)
        caches = [list(pair) for pair in kv_cache_pairs(prefill, block)]
        return {"num_kv_heads": block.spec.num_kv_heads, "head_dim": block.spec.head_dim,
                "value_head_dim": block.spec.value_head_dim, "kv_caches": caches}

    def manifest(self) -> dict[str, Any]:
        cfg = self.loaded.config
        return {
            "generator": GENERATOR,
            "model": self.model,
            "weights": self.loaded.source,
            "model_type": str(cfg.model_type),
            "num_layers": len(self.prefill),
            "hidden_size": self.tables.tokens.shape[1],
            "vocab_size": self.tables.tokens.shape[0],
            **self._kv_geometry(),
            "kv_cache_dtype": self.kv_cache,
            "prompt_len": self.options.prompt_len,
            "max_len": self.options.cache_len,
            "max_new_tokens": self.options.max_new_tokens,
            "quant": self.quant,
            "eos_token_ids": eos_token_ids(self.loaded),
            "embedding": {"tokens": f"{HOST_DIR}/embed_tokens.bin",
                          "positions": None if self.tables.positions is None else f"{HOST_DIR}/embed_positions.bin",
                          "position_rows": 0 if self.tables.positions is None else len(self.tables.positions)},
            "kernels": {name: {"mode": k.mode, "group": k.group, "dir": name, "layers": k.layers,
                               "kernel": kernel_name(k.design), "outputs": k.output_args}
                        for name, k in self.kernels.items()},
            "prefill": self.prefill,
            "decode": self.decode,
            "head": self.head,
            "options": asdict(self.options),
            "run_model": self.run_model.to_json(),
        }


def _copy_tokenizer(source: str, model_dir: Path) -> None:
    """A checkpoint's tokenizer goes with the build (``generate --prompt`` needs it); built-in models have none."""
    directory = Path(source)
    if not directory.is_dir():
        return
    import transformers

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError):
        return  # no tokenizer: --prompt-ids only
    tokenizer.save_pretrained(model_dir)


def _layer_kv_scales(loaded: LoadedModel, layer: int) -> KvScales:
    scales = getattr(decoder_layers(loaded)[layer], KV_SCALES_ATTRIBUTE, None)
    if not isinstance(scales, KvScales):
        raise StreamTensorError(f"layer {layer} has no int8 KV-cache scales: the build calibrates them first")
    return scales


def layer_weights(loaded: LoadedModel, layer: int, kv_cache: str) -> list[torch.Tensor]:
    """Layer ``layer``'s block weights in the block's order: its parameters, then under an int8 KV cache its
    own four cache-scale tensors (``frontend.quant.KV_SCALE_NAMES``)."""
    params = [p.detach() for _, p in decoder_layers(loaded)[layer].named_parameters()]
    return params + (_layer_kv_scales(loaded, layer).tensors() if kv_cache == "int8" else [])


def reference_cache(loaded: LoadedModel, kv_cache: str) -> QuantizedKvCache | None:
    """The KV cache of the quantized PyTorch reference: int8 with every layer's scales, or None (Hugging Face's)."""
    if kv_cache != "int8":
        return None
    return QuantizedKvCache(loaded.config, [_layer_kv_scales(loaded, i) for i in range(len(decoder_layers(loaded)))])


def decomposition_error(loaded: LoadedModel, tables: EmbeddingTables, blocks: list[nn.Module], head: OutputHead,
                        prompt_len: int, kv_cache: str) -> float:
    """Max |logit error| (relative to the largest logit, at least 1) of the host decomposition (``blocks``: each
    layer's prefill block, run with that layer's weights) against the whole model, both PyTorch eager (a prompt
    of up to 8 tokens, padded to the prefill length as the host pads it; an int8 KV cache in both)."""
    n = min(8, prompt_len)
    ids = [(5 * i + 1) % tables.tokens.shape[0] for i in range(n)]
    hidden = np.zeros((1, prompt_len, tables.tokens.shape[1]), dtype=np.float32)
    hidden[:, :n] = tables.embed(ids, 0)
    state = torch.from_numpy(hidden)
    with torch.no_grad():
        for i, block in enumerate(blocks):
            state = block(state, *layer_weights(loaded, i, kv_cache))[0]
        ours = head(state[:, n - 1:n], *head.weights()).reshape(-1)[:head.vocab_size]  # padding dropped
        cache = reference_cache(loaded, kv_cache)
        reference = loaded.model(torch.tensor([ids]), past_key_values=cache,
                                 use_cache=cache is not None).logits[0, -1]
    return float((ours - reference).abs().max() / max(1.0, float(reference.abs().max())))


def compile_llm(model: str, **options: Any) -> LlmDesign:
    """Compile the kernels of a whole model (module docstring); ``options``: ``LlmOptions`` fields and those of
    ``streamtensor.compile`` (target, tiling, FIFO sizing), passed to every kernel."""
    own = {k: options.pop(k) for k in list(options) if k in LlmOptions.__dataclass_fields__}
    opts = LlmOptions(**own)
    # Its kernels are compiled once, at the prompt and cache the user asked for, not visited by a search: no limit
    # on their stream tokens unless given (the W4A8 GPT-2 prefill block carries 2.1 M at 256 prompt tokens, 27.3 M
    # at 1024).
    options.setdefault("max_stream_tokens", 0)
    for forbidden in ("mode", "seq_len", "max_len", "layer", "size_fifos"):
        if forbidden in options:
            raise OptionError(f"option {forbidden} is set per kernel by the build; it cannot be given")
    progress = Progress(opts.verbose, f"model {model}")
    loaded = progress.run("llm.load_model", lambda: load_full_model(model, opts.size, opts.seed, opts.vocab_size))
    params = {n for n, _ in loaded.model.named_parameters(remove_duplicate=False)}
    checkpoint_state = {k: v for k, v in loaded.model.state_dict().items() if k in params}
    scheme = quant_scheme(options.get("quant", "fp32"), options.get("quant_group"))
    kv_cache = kv_cache_dtype(options.get("kv_quant", "auto"), options.get("quant", "fp32"))
    if scheme is not None:
        progress.run("llm.quantize", lambda: quantize_model(loaded, scheme, opts.prompt_len, opts.seed))
    if kv_cache == "int8":
        progress.run("llm.calibrate_kv_cache", lambda: quantize_kv_cache(loaded, opts.cache_len, opts.seed))
    groups = layer_groups(loaded)
    distinct = list(dict.fromkeys(groups))
    kernels: dict[str, Kernel] = {}
    per_mode: dict[str, list[str]] = {}
    common = {"seed": opts.seed, "size": opts.size, "verbose": opts.verbose, **options}
    for mode in ("prefill", "decode"):
        names = {}
        for group in distinct:
            name = mode if len(distinct) == 1 else f"{mode}_{group}"
            layers = [i for i, g in enumerate(groups) if g == group]
            design, block, lanes = progress.apart(partial(
                compile_layer_block, loaded, model, mode=mode, seq_len=opts.prompt_len, max_len=opts.cache_len,
                layer=layers[0], **common))
            if block.spec.token_inputs:
                raise UnsupportedModelError(
                    loaded.model.config.model_type, f"its layers take per-token inputs the model computes outside "
                    f"them ({', '.join(block.spec.token_inputs)}, e.g. Gemma 4's per-layer embeddings)",
                    "the whole-model runner passes a layer only its hidden state (`streamtensor compile` builds "
                    "such a block alone)")
            design.name = f"{Path(model).name}_{name}"
            kernels[name] = Kernel(name, mode, group, layers, design, block, block.example_inputs(opts.seed), lanes)
            names[group] = name
        per_mode[mode] = [names[g] for g in groups]
    head_module = OutputHead(loaded).eval()
    head_args = head_module.example_inputs(opts.seed)
    head_design, head_tiling = progress.apart(lambda own: compile_head(
        head_module, opts.seed, own, **{k: v for k, v in common.items() if k != "seed"}))
    head_design.name = f"{Path(model).name}_head"
    kernels["head"] = Kernel("head", "head", "all", [], head_design, head_module, head_args)
    tables = progress.run("llm.embedding_tables", lambda: embedding_tables(loaded))
    error = progress.run("llm.decomposition_check", lambda: decomposition_error(
        loaded, tables, [kernels[n].module for n in per_mode["prefill"]], head_module, opts.prompt_len, kv_cache))
    if not error <= DECOMPOSITION_TOLERANCE:
        raise StreamTensorError(f"model {model}: embedding tables + blocks + head (PyTorch eager) differ from the "
                                f"whole model by {error:.3g} in the logits: the host decomposition is wrong")
    points = progress.run("llm.decode_positions", lambda: _position_points(
        loaded, model, kernels, opts, common))
    first_prefill, first_decode = (kernels[per_mode[mode][0]].module for mode in ("prefill", "decode"))
    assert isinstance(first_prefill, DecoderBlock) and isinstance(first_decode, DecoderBlock)
    run_model = RunModel(**RunModel.device_figures(head_design.target), prefill_len=opts.prompt_len,
                         max_len=opts.cache_len, prefill=per_mode["prefill"], decode=per_mode["decode"], head="head",
                         invocations={n: k.invocation() for n, k in kernels.items()},
                         host_token_s=host_token_seconds(*tables.tokens.shape),
                         host_head_s=eager_reference(head_module, head_args, budget_s=0.5)[1], position_points=points,
                         **handoff_fields({n: k.design for n, k in kernels.items()}, per_mode["prefill"],
                                          per_mode["decode"], "head", head_design.target,
                                          kv_cache_pairs(first_prefill, first_decode)))
    return LlmDesign(model, loaded, opts, kernels, per_mode["prefill"], per_mode["decode"], "head", tables,
                     run_model, error, dict(progress.seconds), checkpoint_state,
                     "fp32" if scheme is None else scheme.name, kv_cache, head_tiling)


def quantize_kv_cache(loaded: LoadedModel, cache_len: int, seed: int) -> None:
    """Calibrate every layer's int8 KV-cache scales on the whole model (``host_model.calibrate_kv_scales``) over
    ``CALIBRATION_PROMPTS`` seeded token sequences as long as the cache (every position it will hold, up to the
    model's learned positions) and set them on the layers (``KV_SCALES_ATTRIBUTE``), where block extraction finds
    them: each layer's blocks and kernel arguments use its own."""
    vocab = loaded.model.get_input_embeddings().num_embeddings
    limit = getattr(loaded.config.get_text_config(), "max_position_embeddings", None) or cache_len
    generator = torch.Generator().manual_seed(seed + 2)
    prompts = [torch.randint(0, vocab, (1, min(cache_len, limit)), generator=generator)
               for _ in range(CALIBRATION_PROMPTS)]
    for layer, scales in zip(decoder_layers(loaded), calibrate_kv_scales(loaded, prompts), strict=True):
        setattr(layer, KV_SCALES_ATTRIBUTE, scales)


def _position_points(loaded: LoadedModel, model: str, kernels: dict[str, Kernel], opts: LlmOptions,
                     common: dict[str, Any]) -> dict[str, list[tuple[int, int]]]:
    """Decode cycles at ``decode_positions`` capacities up to ``max_len`` (the built one included)."""
    points: dict[str, list[tuple[int, int]]] = {}
    if opts.decode_positions < 2:
        return points
    full = opts.cache_len
    capacities = sorted({max(2, full * k // opts.decode_positions) for k in range(1, opts.decode_positions)} - {full})
    for name, kernel in kernels.items():
        if kernel.mode != "decode":
            continue
        found = []
        # The kernel's own lane budget as the build chose it (``compile_layer_block``; None: the caller's).
        budget = ({"overall_unroll_size": kernel.lanes["lane_budget"]} if kernel.lanes["lane_budget"] is not None
                  else {})
        for capacity in capacities:
            design, _ = compile_model_block(loaded, model, mode="decode", max_len=capacity, layer=kernel.layers[0],
                                            **common, **budget)
            found.append((capacity, int(design.report["simulation"]["makespan_cycles"])))
        found.append((full, kernel.invocation().cycles))
        points[name] = found
    return points


def build(model: str, outdir: str | Path, **options: Any) -> LlmDesign:
    """``compile_llm`` and ``LlmDesign.write`` into ``outdir``."""
    start = time.perf_counter()
    design = compile_llm(model, **options)
    write_start = time.perf_counter()
    design.write(outdir)
    design.stages["llm.write"] = round(time.perf_counter() - write_start, 4)
    design.stages["llm.total"] = round(time.perf_counter() - start, 4)
    (Path(outdir) / "report.json").write_text(json.dumps(design.report, indent=2, default=str) + "\n")
    write_report(outdir)
    return design
