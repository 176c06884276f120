"""``streamtensor generate OUTDIR``: the host token loop of a build, over the C simulation ("emulation": every
layer's block runs in its compiled C simulation, each kernel's executable built once and run per layer with that
layer's weights) or over XRT (a card).

The loop (the C++ host, ``host/llm_host.cpp``, does the same): embed the prompt on the host and write it once to
the first prefill layer's input buffer, run each layer's prefill kernel (the prompt padded to the compiled length;
prompt tokens beyond it go through decode steps), which writes its keys and values straight into that layer's
resident KV-cache buffers on the device where the build found the packings agree (``RunModel.cache_in_place``: its
output buffer a sub-buffer at offset 0 of the cache buffer), else the host reads them back once all layers are done
and writes them once into those buffers (every layer's buffer of one kernel argument a slice of one pool,
``runtime.host.pool_buffers``: one sync per pool; after the first token where no prompt token goes through the
decode kernels, ``RunModel.fill_deferred``), run the head kernel on the last prompt row, sample (greedy, top-k,
temperature), then one decode step per new token until EOS or ``max_new_tokens``: the embedded token goes in once,
every layer runs with the position as a register, and the logits come back; the decode kernels update their layer's
cache in place. Activations stay on the device: a layer reads the previous layer's output buffer and the head the
last layer's (the prompt row of the last prefill layer's at its offset), wherever the build found their packings
equal (``RunModel.chained``, ``head_row_offsets``: per input buffer, as a kernel's input may be several buffers,
one per DMA packing); for the others the host reads the output back once and writes them. ``Transfers`` counts what
the host moved, which the run model predicts (``RunModel.ttft_transfers``, ``second_token_transfers``,
``step_transfers``). An int8 KV cache holds the int8 codes the kernels write (the prefill kernel returns its keys
and values quantized).
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
from streamtensor.llm.build import KV_SCALES_FILE, LAYERS_DIR, LLM_FILE, MODEL_DIR, QUANT_FILE
from streamtensor.llm.host_model import EmbeddingTables, QuantizedKvCache, sample
from streamtensor.llm.perf import RunModel, Transfers, chain_key
from streamtensor.runtime.host import BufferPool, Runtime, SyncDirection, pool_buffers
from streamtensor.runtime.simulation import SimulationBackend
from streamtensor.runtime.xrt import XrtBackend
from streamtensor.verify.simulate import build_simulation

BACKENDS = ("emulation", "xrt")
XCLBIN = "host/llm.hw.xclbin"
HIDDEN = "hidden"  # every kernel's activation input
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


class KernelRunner:
    """One kernel of the build with one runtime per layer it runs, as the card holds them: that layer's weights
    (constants, and a decode kernel's KV cache) stay in the runtime's device buffers, written once; a run moves
    only the activations, the scalar position and the results the host reads."""

    def __init__(self, root: Path, backend: str, outputs: dict[str, str], layers: list[int]) -> None:
        self.root = root
        self.outputs = outputs  # output name -> argument
        if backend == "emulation":
            build_simulation(root)  # from the cache when these sources were built before
        self.runtimes: dict[int | None, Runtime] = {}
        for layer in layers or [None]:
            # XRT: every kernel of the build in one xclbin (host/Makefile's link target); loading it again is a
            # no-op, and each runtime allocates its own buffers (the per-layer resident weights and caches).
            runtime = SimulationBackend() if backend == "emulation" else XrtBackend(xclbin=root.parent / XCLBIN)
            runtime.load(root)
            for arg in runtime.arguments:
                if arg.reads and arg.role in ("constant", "weight"):
                    folder = PARAMS_DIR if layer is None or arg.role == "constant" else f"{LAYERS_DIR}/{layer}"
                    runtime.write_packed(arg.arg, (root / folder / f"{arg.arg}.bin").read_bytes())
                    runtime.sync(arg.arg, "to_device")
            for arg in runtime.arguments:
                runtime.allocate(arg.arg)
            self.runtimes[layer] = runtime
        # Per layer: the input buffers read in place in another kernel's output buffer (``read_from``).
        self.bound: dict[int | None, set[str]] = {layer: set() for layer in self.runtimes}
        self.pools: dict[str, BufferPool] = {}  # argument -> its buffers of every layer, synced at once

    def pool(self, arg: str) -> None:
        """Argument ``arg``'s buffers of every layer become slices of one (``pool_buffers``), synced at once."""
        if arg not in self.pools:
            self.pools[arg] = pool_buffers(list(self.runtimes.values()), arg)

    def sync_pools(self, direction: SyncDirection) -> Transfers:
        """Sync every pool of this kernel (its layers' keys and values, or caches) in ``direction``: one buffer
        sync each."""
        moved = Transfers()
        for pool in self.pools.values():
            pool.sync(direction)
            if direction == "to_device":
                moved.to_device_bytes += pool.total_bytes
            else:
                moved.from_device_bytes += pool.total_bytes
            moved.buffer_syncs += 1
        return moved

    def write(self, inputs: dict[str, np.ndarray], layer: int | None) -> Transfers:
        """Pack and sync ``inputs`` (tensor name -> whole array) into ``layer``'s device buffers, but those read
        in place in another kernel's output; a scalar is a register of the launch."""
        runtime = self.runtimes[layer]
        moved = Transfers()
        for name, array in inputs.items():
            for arg in runtime.arguments_named(name):
                if arg.scalar:  # a register on the card (XrtBackend._sync skips it); the simulation reads a file
                    runtime.write(arg.arg, array)
                    runtime.sync(arg.arg, "to_device")
                    moved.scalar_registers += 1
                elif arg.reads and arg.shares is None and arg.arg not in self.bound[layer]:
                    # one buffer per packing: a DMA reading another's buffer is written and synced with it
                    runtime.write(arg.arg, array)
                    runtime.sync(arg.arg, "to_device")
                    moved.to_device_bytes += arg.layout.total_bytes
                    moved.buffer_syncs += 1
        return moved

    def input_buffers(self) -> list[str]:
        """The buffers of the activation input (``perf.input_owners``)."""
        return [a.arg for a in next(iter(self.runtimes.values())).arguments if a.role == "input" and a.shares is None]

    @property
    def primary(self) -> str:
        """The argument of the kernel's first output (a block's hidden state, the head's logits)."""
        return next(iter(self.outputs.values()))

    def launch(self, inputs: dict[str, np.ndarray], layer: int | None = None, queued: bool = False
               ) -> tuple[float, Transfers]:
        """Write ``inputs`` into ``layer``'s buffers (None: the head's) and run the kernel on them (``queued``: on
        the card, started behind the previous run of this compute unit; here the runs are in order anyway); the
        kernel's wall time here and what the host moved."""
        moved = self.write(inputs, layer)
        result = self.runtimes[layer].run()
        if queued:
            moved.queued_launches += 1
        else:
            moved.launches += 1
        return result.seconds, moved

    def read(self, names: list[str], layer: int | None = None) -> tuple[dict[str, np.ndarray], Transfers]:
        """Sync back and unpack the outputs ``names`` of ``layer``'s last run."""
        runtime = self.runtimes[layer]
        moved = Transfers()
        outputs = {}
        for name in names:
            arg = self.outputs[name]
            runtime.sync(arg, "from_device")
            outputs[name] = runtime.read(arg)
            moved.from_device_bytes += runtime.arguments_named(arg)[0].layout.total_bytes
            moved.buffer_syncs += 1
        return outputs, moved

    def read_primary(self, layer: int | None = None) -> tuple[np.ndarray, Transfers]:
        out, moved = self.read([next(iter(self.outputs))], layer)
        return next(iter(out.values())), moved

    def write_into(self, layer: int, caches: list[list[str]], target: KernelRunner) -> None:
        """``layer``'s runs write the outputs of ``caches`` (``[output, cache]`` pairs) into ``target``'s resident
        cache buffers of that layer, from their first byte on (``RunModel.cache_in_place``)."""
        for output, cache in caches:
            self.runtimes[layer].bind(self.outputs[output], target.runtimes[layer], cache)

    def read_from(self, layer: int | None, source: KernelRunner, source_layer: int | None,
                  offsets: dict[str, int]) -> None:
        """``layer``'s runs read their input buffers ``offsets`` (argument -> byte offset) where ``source``'s run
        of ``source_layer`` wrote its first output: the same device buffer; the host writes the others."""
        runtime = self.runtimes[layer]
        for arg in self.bound[layer] - set(offsets):
            runtime.unbind(arg)
        for arg, offset in offsets.items():
            runtime.bind(arg, source.runtimes[source_layer], source.primary, offset)
        self.bound[layer] = set(offsets)


class DeviceKvCache:
    """The KV cache as the decode kernel keeps it: one resident buffer per cache and layer (in that layer's
    runtime; every layer's buffer of one decode kernel a slice of one pool), which the kernel reads up to the
    position and writes one row of in place. Once per generation the prefill kernel writes it in place, or the
    host writes it from the prefill kernel's keys and values (int8 codes under an int8 KV cache: the prefill
    kernel quantizes them, and the buffers hold one byte per element), one sync per pool; no cache byte moves per
    token."""

    def __init__(self, prefill: list[KernelRunner], decode: list[KernelRunner], caches: list[list[list[str]]],
                 max_len: int) -> None:
        self.prefill = prefill  # per layer
        self.decode = decode
        self.caches = caches  # per layer: the [prefill output, decode cache tensor] pairs the host copies
        self.max_len = max_len

    def fill(self, count: int) -> Transfers:
        """Every layer's caches the host copies hold the first ``count`` rows of its prefill kernel's keys and
        values: read back with one sync per pool of the prefill kernels, written with one per pool of the decode
        kernels."""
        moved = Transfers()
        for kernel in dict.fromkeys(self.prefill):
            moved.add(kernel.sync_pools("from_device"))
        for layer, pairs in enumerate(self.caches):
            prefill, decode = self.prefill[layer].runtimes[layer], self.decode[layer].runtimes[layer]
            for output, cache in pairs:
                rows = prefill.read(self.prefill[layer].outputs[output])
                full = np.zeros((*rows.shape[:2], self.max_len, *rows.shape[3:]), dtype=rows.dtype)
                full[:, :, :count] = rows[:, :, :count]
                decode.write(cache, full)
        for kernel in dict.fromkeys(self.decode):
            moved.add(kernel.sync_pools("to_device"))
        return moved


@dataclass
class Step:
    token: int
    position: int  # of the token fed in (prefill: the last prompt token's)
    logits: np.ndarray
    seconds: float  # wall time of the step here (emulation: mostly the C simulations)
    kernel_seconds: float  # of which inside kernel runs
    transfers: Transfers  # what the host moved to and from the device for this token


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
                self.kernels[name] = KernelRunner(self.root / k["dir"], self.backend, k["outputs"], k["layers"])
        self._pool_caches()
        self._bind_layers()

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

    def _in_place(self, producer: str, consumer: str) -> list[str]:
        """The input buffers of ``consumer`` that are ``producer``'s output buffer (``RunModel.chained``)."""
        return self.run_model.chained.get(chain_key(producer, consumer), [])

    def _bind_layers(self) -> None:
        """Each layer reads the previous layer's output buffer as those of its input buffers the build found
        packed the same, and each prefill layer writes the keys and values the build found packed as the decode
        kernel's cache into that layer's cache buffers (the same binding every run)."""
        for names in (self.manifest["prefill"], self.manifest["decode"]):
            for layer in range(1, len(names)):
                self.kernels[names[layer]].read_from(layer, self.kernels[names[layer - 1]], layer - 1, dict.fromkeys(
                    self._in_place(names[layer - 1], names[layer]), 0))
        for layer, (prefill, decode) in enumerate(zip(self.manifest["prefill"], self.manifest["decode"],
                                                      strict=True)):
            self.kernels[prefill].write_into(layer, self.run_model.kv_in_place(layer), self.kernels[decode])

    def _host_caches(self) -> list[list[list[str]]]:
        """Per layer: the ``[prefill output, decode cache]`` pairs the host copies (not written in place)."""
        return [[pair for pair in self.run_model.kv_caches if pair not in self.run_model.kv_in_place(layer)]
                for layer in range(len(self.manifest["prefill"]))]

    def _pool_caches(self) -> None:
        """Per kernel, the keys and values outputs the host copies and the caches it writes: every layer's buffer
        a slice of one pool (``RunModel.kv_read_back``, ``cache_fill``)."""
        for name, outputs in self.run_model.kv_copied(self.manifest["prefill"], 0).items():
            for output in outputs:
                self.kernels[name].pool(self.kernels[name].outputs[output])
        for name, caches in self.run_model.kv_copied(self.manifest["decode"], 1).items():
            kernel = self.kernels[name]
            for cache in caches:
                for arg in next(iter(kernel.runtimes.values())).arguments:
                    if arg.name == cache and arg.role == "kv_cache" and arg.reads and arg.shares is None:
                        kernel.pool(arg.arg)

    def _layers(self, names: list[str], hidden: np.ndarray, position: int | None, moved: Transfers) -> float:
        """Run the kernels ``names`` (one per layer) on the activation ``hidden``, written once; ``position``:
        the decode position register. The hidden state stays on the device where the next layer reads it in place
        (where a buffer of the next layer's input is packed otherwise, the host reads it back once and writes that
        buffer)."""
        total = 0.0
        for layer, name in enumerate(names):
            kernel = self.kernels[name]
            inputs = {} if position is None else {"position": np.array([position], dtype=np.int64)}
            if layer == 0:
                inputs[HIDDEN] = hidden
            elif set(kernel.input_buffers()) - kernel.bound[layer]:
                inputs[HIDDEN], step = self.kernels[names[layer - 1]].read_primary(layer - 1)
                moved.add(step)
            seconds, step = kernel.launch(inputs, layer, self.run_model.queued_at(names, layer))
            moved.add(step)
            total += seconds
        return total

    def _head(self, producer: str, layer: int, row: int | None, moved: Transfers) -> tuple[np.ndarray, float]:
        """The head on the output of kernel ``producer``'s run of ``layer`` (``row``: that row of a prefill
        output), read in place where the build found its input buffers packed the same (a prefill row at its
        offset); its logits read back."""
        head = self.kernels[self.manifest["head"]]
        source = self.kernels[producer]
        if row is None:
            offsets = dict.fromkeys(self._in_place(producer, self.manifest["head"]), 0)
        else:
            offsets = {arg: rows[row] for arg, rows in self.run_model.head_row_offsets.items()
                       if row < len(rows) and rows[row] is not None}
        head.read_from(None, source, layer, offsets)
        inputs = {}
        if set(head.input_buffers()) - set(offsets):
            hidden, step = source.read_primary(layer)
            moved.add(step)
            inputs[HIDDEN] = hidden if row is None else hidden[:, row:row + 1]
        seconds, step = head.launch(inputs)
        moved.add(step)
        logits, step = head.read_primary()
        moved.add(step)
        # The head kernel's logits past the vocabulary are its zero padding rows (host_model.OutputHead).
        return logits.reshape(-1)[:self.manifest["vocab_size"]], seconds

    def _decode(self, token: int, position: int, moved: Transfers) -> float:
        """Every decode layer on the embedded ``token`` at ``position``; the hidden state stays on the device."""
        return self._layers(self.manifest["decode"], self.tables.embed([token], position), position, moved)

    def generate(self, prompt: list[int], max_new_tokens: int, top_k: int = 0, temperature: float = 0.0,
                 seed: int = 0) -> Generation:
        self._check_prompt(prompt, max_new_tokens)
        self._load_kernels()
        m = self.manifest
        rng = np.random.default_rng(seed)
        eos = set(m["eos_token_ids"])
        cache = DeviceKvCache([self.kernels[n] for n in m["prefill"]], [self.kernels[n] for n in m["decode"]],
                              self._host_caches(), m["max_len"])
        result = Generation(list(prompt), backend=self.backend)
        start = time.perf_counter()
        moved = Transfers()
        prefilled = min(len(prompt), m["prompt_len"])
        hidden = np.zeros((1, m["prompt_len"], m["hidden_size"]), dtype=np.float32)
        hidden[:, :prefilled] = self.tables.embed(prompt[:prefilled], 0)
        kernel_s = self._layers(m["prefill"], hidden, None, moved)
        deferred = self.run_model.fill_deferred(len(prompt))  # the caches filled after the first token
        if not deferred:
            moved.add(cache.fill(prefilled))
        producer, layer, row = m["prefill"][-1], len(m["prefill"]) - 1, prefilled - 1
        for position in range(prefilled, len(prompt)):  # prompt tokens beyond the prefill length
            kernel_s += self._decode(prompt[position], position, moved)
            producer, row = m["decode"][-1], None
        position = len(prompt) - 1
        while True:
            logits, seconds = self._head(producer, layer, row, moved)
            kernel_s += seconds
            token = sample(logits, top_k, temperature, rng)
            result.tokens.append(token)
            result.steps.append(Step(token, position, logits, time.perf_counter() - start, kernel_s, moved))
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
            moved = Transfers()
            if deferred:
                moved.add(cache.fill(prefilled))
                deferred = False
            kernel_s = self._decode(token, position, moved)
            producer, row = m["decode"][-1], None
        return result

    def modelled(self, generation: Generation) -> dict[str, Any]:
        """The run model (``llm.perf``) for this generation's prompt and token count: modelled board figures."""
        return self.run_model.model(len(generation.prompt), len(generation.tokens))


def reference_model(outdir: str | Path) -> tuple[Any, QuantizedKvCache | None]:
    """The build's reference: its checkpoint in Hugging Face transformers (eager attention, fp32), with the
    quantized linear layers of a ``--quant`` build put back (``frontend.quant.QuantLinear``, the tensors the
    build saved): the quantized PyTorch model the kernels were compiled from; and, for an int8 KV cache, a
    fresh cache quantizing with every layer's saved scales (``host_model.QuantizedKvCache``), else None."""
    import torch
    import transformers

    from streamtensor.frontend.quant import KvScales, QuantLinear

    model_dir = Path(outdir) / MODEL_DIR
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True,
                                                              attn_implementation="eager", dtype=torch.float32).eval()
    quant_file = model_dir / QUANT_FILE
    if quant_file.is_file():
        for name, q in torch.load(quant_file, weights_only=True).items():
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, QuantLinear(q["weight_q"], q["weight_scale"], q["act_mult"], q["act_scale"],
                                               q["bias"], q["group"]))
    cache = None
    scales_file = model_dir / KV_SCALES_FILE
    int8 = json.loads((Path(outdir) / LLM_FILE).read_text()).get("kv_cache_dtype") == "int8"
    if int8 != scales_file.is_file():
        raise StreamTensorError(f"{outdir}: the build's KV cache is {'int8' if int8 else 'fp32'} but {scales_file} "
                                f"{'is missing' if int8 else 'exists'}: rebuild it")
    if int8:
        scales = [KvScales(s["key_scale"], s["value_scale"]) for s in torch.load(scales_file, weights_only=True)]
        cache = QuantizedKvCache(model.config, scales)
    return model, cache


def reference_generation(outdir: str | Path, prompt: list[int], max_new_tokens: int
                         ) -> tuple[list[int], list[np.ndarray]]:
    """Hugging Face ``generate(do_sample=False)`` on the build's reference model (``reference_model``): the new
    tokens and each step's logits."""
    import torch

    model, cache = reference_model(outdir)
    ids = torch.tensor([prompt])
    eos = model.generation_config.eos_token_id
    pad = eos[0] if isinstance(eos, list) else eos
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             past_key_values=cache,
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
