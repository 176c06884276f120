"""The run model of a large built-in model without building it: one prefill and one decode block per layer group
compiled (timing simulation), and the LM head extrapolated from heads compiled at two small vocabularies.

``streamtensor build`` compiles the same kernels but also holds the whole model's weights (a paper-size GPT-2 with
its 50,257-token head nearly exhausts this machine's memory); the performance model needs only the kernels'
cycles, transfers and HBM bytes (``llm.perf``). The blocks are layer ``i`` of a random model of the family's
geometry built with only ``i + 1`` layers (the first layer of each group); the head's figures (cycles, logits and
weight bytes, work) are affine in the vocabulary, so the line through heads compiled at ``head_vocabs`` gives them
at the real vocabulary (stated in the result).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from streamtensor.codegen.vitis.hbm import memory_arguments
from streamtensor.driver import Design, compile, compile_model_block
from streamtensor.errors import StreamTensorError
from streamtensor.frontend.models import build_random_model, builtin_config
from streamtensor.llm.host_model import OutputHead, host_token_seconds
from streamtensor.llm.perf import Invocation, RunModel

HEAD_VOCABS = (512, 1024)


@dataclass
class Estimate:
    run_model: RunModel
    designs: dict[str, dict[str, Any]]  # kernel -> what compiled it (mode, layer, cycles, overrides)
    head: str  # how the head's figures were obtained
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def kv_cache(self) -> str:
        """The decode blocks' KV-cache element type (``i8`` or ``f32``, as their reports state it)."""
        found = {d["kv_cache"] for d in self.designs.values() if d["mode"] == "decode"}
        if len(found) != 1:
            raise StreamTensorError(f"the decode blocks disagree on the KV cache's element type: {sorted(found)}")
        return found.pop()


def design_invocation(design: Design) -> Invocation:
    """A compiled kernel's invocation as the host program performs it (``llm.perf``)."""
    assert design.dataflow is not None
    sim = design.report.get("simulation")
    if sim is None:
        raise StreamTensorError(f"kernel {design.name} has no timing simulation (compiled without FIFO sizing)")
    return Invocation.of(int(sim["makespan_cycles"]), memory_arguments(design.dataflow), design.dataflow)


def estimate_run(model: str, prompt_len: int, max_new_tokens: int, *, size: str = "paper", vocab_size: int,
                 seed: int = 0, head_vocabs: tuple[int, int] = HEAD_VOCABS, **options: Any) -> Estimate:
    """The run model of built-in ``model`` at ``size`` with a ``vocab_size``-token head, its prefill block at
    ``prompt_len`` tokens and its decode block with ``prompt_len + max_new_tokens`` cache rows; ``options``: those
    of ``streamtensor.compile`` (quant, target, tiling, allow_unfit, ...), given to every kernel."""
    start = time.perf_counter()
    cfg = builtin_config(model, size)
    count = cfg.n_layer if model == "gpt2" else cfg.num_hidden_layers
    types = getattr(cfg, "layer_types", None)
    groups = [str(types[i]) if types else "all" for i in range(count)]
    first = {g: groups.index(g) for g in dict.fromkeys(groups)}
    loaded = build_random_model(model, size, seed, num_layers=max(first.values()) + 1)
    max_len = prompt_len + max_new_tokens
    invocations: dict[str, Invocation] = {}
    designs: dict[str, dict[str, Any]] = {}
    per_mode: dict[str, list[str]] = {}
    for mode in ("prefill", "decode"):
        names = {}
        for group, layer in first.items():
            name = mode if len(first) == 1 else f"{mode}_{group}"
            design, _ = compile_model_block(loaded, model, mode=mode, seq_len=prompt_len, max_len=max_len,
                                            layer=layer, seed=seed, size=size, **options)
            invocations[name] = design_invocation(design)
            designs[name] = {"mode": mode, "layer": layer, "cycles": invocations[name].cycles,
                             "overrides": design.report.get("overrides", {}),
                             "kv_cache": design.report["quantization"]["kv_cache"]["dtype"]}
            names[group] = name
        per_mode[mode] = [names[g] for g in groups]
    points = []
    for vocab in head_vocabs:
        head_model = build_random_model(model, size, seed, num_layers=1, vocab_size=vocab)
        head = OutputHead(head_model).eval()
        design = compile(head, head.example_inputs(seed), input_names=head.input_names, output_names=["logits"],
                         weight_names=head.weight_names, seed=seed, **options)
        points.append((vocab, design_invocation(design)))
        designs[f"head@{vocab}"] = {"mode": "head", "vocab": vocab, "cycles": points[-1][1].cycles,
                                    "overrides": design.report.get("overrides", {})}
    invocations["head"] = Invocation.extrapolate(points, vocab_size)
    target = design.target
    run_model = RunModel(**RunModel.device_figures(target), prefill_len=prompt_len, max_len=max_len,
                         prefill=per_mode["prefill"], decode=per_mode["decode"], head="head",
                         invocations=invocations, host_token_s=host_token_seconds(vocab_size, head.hidden_size),
                         host_head_s=None)
    how = (f"head (final norm + LM head) at {vocab_size} tokens: cycles, bytes and work on the line through heads "
           f"compiled at {head_vocabs[0]} and {head_vocabs[1]} tokens "
           f"({points[0][1].cycles} and {points[1][1].cycles} cycles)")
    return Estimate(run_model, designs, how, time.perf_counter() - start)
