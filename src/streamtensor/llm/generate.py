"""``streamtensor generate OUTDIR``: the host token loop of a build, over the C simulation ("emulation": every
layer's block runs in its compiled C simulation, each kernel's executable built once and run per layer with that
layer's weights) or over XRT (a card).

The loop (the C++ host, ``host/llm_host.cpp``, does the same): embed the prompt on the host, run each layer's
prefill kernel (the prompt padded to the compiled length; prompt tokens beyond it go through decode steps), keep
each layer's keys and values in the host's KV cache, run the head kernel on the last hidden row, sample (greedy,
top-k, temperature), then one decode step per new token until EOS or ``max_new_tokens``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamtensor.errors import OptionError, StreamTensorError
from streamtensor.kernel_interface import PARAMS_DIR
from streamtensor.llm.build import LAYERS_DIR, LLM_FILE, MODEL_DIR
from streamtensor.llm.host_model import EmbeddingTables, sample
from streamtensor.llm.perf import RunModel
from streamtensor.runtime.host import Runtime
from streamtensor.runtime.simulation import SimulationBackend
from streamtensor.runtime.xrt import XrtBackend
from streamtensor.verify.simulate import build_simulation

BACKENDS = ("emulation", "xrt")
XCLBIN = "host/llm.hw.xclbin"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


class KernelRunner:
    """One kernel of the build on a runtime: constants loaded once, a layer's weights and the activations per run."""

    def __init__(self, root: Path, backend: str, outputs: dict[str, str]) -> None:
        self.root = root
        self.outputs = outputs  # output name -> argument
        self.runtime: Runtime
        if backend == "emulation":
            build_simulation(root)  # from the cache when these sources were built before
            self.runtime = SimulationBackend()
        else:  # every kernel of the build in one xclbin (host/Makefile's link target); loading it again is a no-op
            self.runtime = XrtBackend(xclbin=root.parent / XCLBIN)
        self.runtime.load(root)
        self._weights: dict[int, dict[str, bytes]] = {}
        for arg in self.runtime.arguments:
            if arg.reads and arg.role in ("constant", "weight"):
                self._load(arg.arg, (root / PARAMS_DIR / f"{arg.arg}.bin").read_bytes())
        for arg in self.runtime.arguments:
            self.runtime.allocate(arg.arg)

    def _load(self, arg: str, data: bytes) -> None:
        self.runtime.write_packed(arg, data)
        self.runtime.sync(arg, "to_device")

    def _layer_weights(self, layer: int) -> dict[str, bytes]:
        if layer not in self._weights:
            folder = self.root / LAYERS_DIR / str(layer)
            self._weights[layer] = {p.stem: p.read_bytes() for p in sorted(folder.glob("*.bin"))}
        return self._weights[layer]

    def run(self, inputs: dict[str, np.ndarray], layer: int | None = None) -> tuple[dict[str, np.ndarray], float]:
        """The kernel on ``inputs`` (tensor name -> array) with ``layer``'s weights (None: those in params/)."""
        if layer is not None:
            for arg, data in self._layer_weights(layer).items():
                self._load(arg, data)
        for name, array in inputs.items():
            self.runtime.write(name, array)
            self.runtime.sync(name, "to_device")
        result = self.runtime.run()
        outputs = {}
        for name, arg in self.outputs.items():
            self.runtime.sync(arg, "from_device")
            outputs[name] = self.runtime.read(arg)
        return outputs, result.seconds


class HostKvCache:
    """The decode block's KV-cache interface as built today, in one place: the host keeps every layer's cache
    ``[1, kv_heads, max_len, head_dim]``, passes it whole to the decode kernel (``key_cache``, ``value_cache``)
    and takes the updated cache back (``key_cache_out``, ``value_cache_out``). An in-place device cache changes
    only this class."""

    def __init__(self, layers: int) -> None:
        self.keys: list[np.ndarray | None] = [None] * layers
        self.values: list[np.ndarray | None] = [None] * layers

    def store_prefill(self, layer: int, outputs: dict[str, np.ndarray], count: int, max_len: int) -> None:
        """The first ``count`` rows of a prefill kernel's ``keys``/``values`` become the layer's cache."""
        for store, name in ((self.keys, "keys"), (self.values, "values")):
            rows = outputs[name]
            cache = np.zeros((*rows.shape[:2], max_len, rows.shape[3]), dtype=rows.dtype)
            cache[:, :, :count] = rows[:, :, :count]
            store[layer] = cache

    def decode_inputs(self, layer: int) -> dict[str, np.ndarray]:
        keys, values = self.keys[layer], self.values[layer]
        assert keys is not None and values is not None, "prefill fills the cache first"
        return {"key_cache": keys, "value_cache": values}

    def absorb_decode_outputs(self, layer: int, outputs: dict[str, np.ndarray]) -> None:
        self.keys[layer] = outputs["key_cache_out"]
        self.values[layer] = outputs["value_cache_out"]


@dataclass
class Step:
    token: int
    position: int  # of the token fed in (prefill: the last prompt token's)
    logits: np.ndarray
    seconds: float  # wall time of the step here (emulation: mostly the C simulations)
    kernel_seconds: float  # of which inside kernel runs


@dataclass
class Generation:
    prompt: list[int]
    tokens: list[int] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    stopped: str = ""  # "eos" or "max_new_tokens"
    backend: str = "emulation"


class LlmRunner:
    """A build loaded on a backend: the host program's state (tables, kernels, KV cache)."""

    def __init__(self, outdir: str | Path, backend: str = "emulation",
                 progress: Callable[[str], None] | None = None) -> None:
        if backend not in BACKENDS:
            raise OptionError(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        self.root = Path(outdir)
        manifest_file = self.root / LLM_FILE
        if not manifest_file.is_file():
            raise StreamTensorError(f"{manifest_file} not found: build the model first (streamtensor build MODEL "
                                    f"-o {self.root})")
        self.manifest: dict[str, Any] = json.loads(manifest_file.read_text())
        self.backend = backend
        self.progress = progress or (lambda _line: None)
        m = self.manifest
        tokens = np.fromfile(self.root / m["embedding"]["tokens"], dtype="<f4").reshape(m["vocab_size"], -1)
        positions = None
        if m["embedding"]["positions"]:
            positions = np.fromfile(self.root / m["embedding"]["positions"], dtype="<f4").reshape(
                m["embedding"]["position_rows"], -1)
        self.tables = EmbeddingTables(tokens, positions)
        self.kernels: dict[str, KernelRunner] = {}  # loaded by the first generate, after its request is checked
        self.run_model = RunModel.from_json(m["run_model"])

    def _load_kernels(self) -> None:
        for name, k in self.manifest["kernels"].items():
            if name not in self.kernels:
                self.progress(f"loading kernel {name} ({self.backend})")
                self.kernels[name] = KernelRunner(self.root / k["dir"], self.backend, k["outputs"])

    def _check_prompt(self, prompt: list[int], max_new_tokens: int) -> None:
        m = self.manifest
        if not prompt:
            raise OptionError("the prompt is empty")
        bad = [t for t in prompt if not 0 <= t < m["vocab_size"]]
        if bad:
            raise OptionError(f"prompt token(s) {bad[:5]} outside the vocabulary (0..{m['vocab_size'] - 1})")
        if len(prompt) + max_new_tokens > m["max_len"]:
            raise OptionError(f"a prompt of {len(prompt)} tokens and {max_new_tokens} new tokens need "
                              f"{len(prompt) + max_new_tokens} KV-cache rows; the build has {m['max_len']} "
                              "(rebuild with a larger --max-len)")
        rows = m["embedding"]["position_rows"]
        if rows and len(prompt) + max_new_tokens > rows:
            raise OptionError(f"the model has {rows} learned positions; {len(prompt) + max_new_tokens} requested")

    def _head(self, hidden_row: np.ndarray) -> tuple[np.ndarray, float]:
        out, seconds = self.kernels[self.manifest["head"]].run({"hidden": hidden_row})
        return out["logits"].reshape(-1), seconds

    def _decode_layers(self, hidden: np.ndarray, position: int, cache: HostKvCache) -> tuple[np.ndarray, float]:
        total = 0.0
        for layer, name in enumerate(self.manifest["decode"]):
            inputs = {"hidden": hidden, "position": np.array([position], dtype=np.int64),
                      **cache.decode_inputs(layer)}
            out, seconds = self.kernels[name].run(inputs, layer)
            cache.absorb_decode_outputs(layer, out)
            hidden = out["hidden_out"]
            total += seconds
        return hidden, total

    def generate(self, prompt: list[int], max_new_tokens: int, top_k: int = 0, temperature: float = 0.0,
                 seed: int = 0) -> Generation:
        self._check_prompt(prompt, max_new_tokens)
        self._load_kernels()
        m = self.manifest
        rng = np.random.default_rng(seed)
        eos = set(m["eos_token_ids"])
        cache = HostKvCache(m["num_layers"])
        result = Generation(list(prompt), backend=self.backend)
        start = time.perf_counter()
        prefilled = min(len(prompt), m["prompt_len"])
        hidden = np.zeros((1, m["prompt_len"], m["hidden_size"]), dtype=np.float32)
        hidden[:, :prefilled] = self.tables.embed(prompt[:prefilled], 0)
        kernel_s = 0.0
        for layer, name in enumerate(m["prefill"]):
            out, seconds = self.kernels[name].run({"hidden": hidden}, layer)
            cache.store_prefill(layer, out, prefilled, m["max_len"])
            hidden = out["hidden_out"]
            kernel_s += seconds
        last = hidden[:, prefilled - 1:prefilled]
        for position in range(prefilled, len(prompt)):  # prompt tokens beyond the prefill length
            last, seconds = self._decode_layers(self.tables.embed([prompt[position]], position), position, cache)
            kernel_s += seconds
        position = len(prompt) - 1
        while True:
            logits, seconds = self._head(last)
            kernel_s += seconds
            token = sample(logits, top_k, temperature, rng)
            result.tokens.append(token)
            result.steps.append(Step(token, position, logits, time.perf_counter() - start, kernel_s))
            self.progress(f"token {len(result.tokens)}/{max_new_tokens}: {token} "
                          f"({result.steps[-1].seconds:.2f} s)")
            if token in eos:
                result.stopped = "eos"
                break
            if len(result.tokens) == max_new_tokens:
                result.stopped = "max_new_tokens"
                break
            position += 1
            start = time.perf_counter()
            last, kernel_s = self._decode_layers(self.tables.embed([token], position), position, cache)
        return result

    def modelled(self, generation: Generation) -> dict[str, Any]:
        """The run model (``llm.perf``) for this generation's prompt and token count: modelled board figures."""
        return self.run_model.model(len(generation.prompt), len(generation.tokens))


def reference_generation(outdir: str | Path, prompt: list[int], max_new_tokens: int
                         ) -> tuple[list[int], list[np.ndarray]]:
    """Hugging Face ``generate(do_sample=False)`` on the build's checkpoint: the new tokens and each step's
    logits."""
    import torch
    import transformers

    model_dir = Path(outdir) / MODEL_DIR
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True,
                                                              attn_implementation="eager", dtype=torch.float32).eval()
    ids = torch.tensor([prompt])
    eos = model.generation_config.eos_token_id
    pad = eos[0] if isinstance(eos, list) else eos
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=pad if pad is not None else 0, output_logits=True,
                             return_dict_in_generate=True)
    return [int(t) for t in out.sequences[0, len(prompt):]], [s[0].numpy() for s in out.logits]


def tokenizer_of(outdir: str | Path) -> Any:
    """The checkpoint's tokenizer, or a one-line error when the build has none (built-in random models)."""
    import transformers

    model_dir = Path(outdir) / MODEL_DIR
    missing = OptionError(f"the build in {outdir} has no tokenizer (built-in models have none): use --prompt-ids")
    # Without these files AutoTokenizer may still build an empty tokenizer from the config alone.
    if not any((model_dir / f).is_file() for f in _TOKENIZER_FILES):
        raise missing
    try:
        return transformers.AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError):
        raise missing from None


def print_progress(line: str) -> None:
    print(f"[streamtensor] {line}", file=sys.stderr, flush=True)
