"""The run model of a large built-in model without building it: one prefill and one decode block per layer group
compiled (timing simulation), and the output head compiled at the real vocabulary.

``streamtensor build`` compiles the same kernels but also holds the whole model's weights (a paper-size GPT-2 with
its 50,257-token head nearly exhausts this machine's memory); the performance model needs only the kernels'
cycles, transfers and HBM bytes (``llm.perf``). The blocks are layer ``i`` of a random model of the family's
geometry built with only ``i + 1`` layers (the first layer of each group); the head is that of a one-layer model
with the real vocabulary, quantized and padded as the build's (``OutputHead``). An earlier version extrapolated
the head from heads compiled at 512 and 1024 tokens: the line missed that the tiler tiles a loop only by a divisor
of its trip count, so an unpadded 50,257-row head (29 x 1733) runs one logit per firing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from streamtensor.codegen.vitis.hbm import graph_hbm_plan, memory_arguments
from streamtensor.driver import Design, Progress, compile, compile_model_block
from streamtensor.errors import ResourceBudgetError, StreamTensorError
from streamtensor.frontend.block import DecoderBlock
from streamtensor.frontend.models import LoadedModel, build_random_model, builtin_config
from streamtensor.frontend.quant import quant_scheme
from streamtensor.kernel_interface import MemoryArgument
from streamtensor.llm.host_model import HEAD_VOCAB_MULTIPLE, OutputHead, host_token_seconds, quantize_model
from streamtensor.llm.perf import (
    Invocation,
    RunModel,
    cache_handoffs,
    chain_handoffs,
    input_owners,
    output_argument,
    queued_handoffs,
)
from streamtensor.target import Target
from streamtensor.transforms.tiling.plan import TilingOptions

T = TypeVar("T")


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


def design_ports(design: Design) -> tuple[MemoryArgument, list[MemoryArgument]]:
    """A compiled kernel's first output argument and all its arguments (``perf.chain_handoffs``)."""
    assert design.dataflow is not None
    arguments = memory_arguments(design.dataflow)
    return output_argument(arguments, design.dataflow), arguments


def _channels(first_last: tuple[int, int]) -> str:
    first, last = first_last
    return f"HBM[{first}]" if first == last else f"HBM[{first}:{last}]"


def kv_cache_pairs(prefill: DecoderBlock, decode: DecoderBlock) -> list[tuple[str, str]]:
    """Which prefill output fills which resident cache of the decode kernel (keys, then values)."""
    return [(out, update[1]) for out, update in zip(prefill.spec.output_names[1:], decode.spec.cache_updates,
                                                     strict=True)]


def handoff_fields(designs: dict[str, Design], prefill: list[str], decode: list[str], head: str, target: Target,
                   kv_caches: list[tuple[str, str]]) -> dict[str, Any]:
    """``RunModel``'s ``chained``, ``head_row_offsets``, ``other_banks``, ``queued`` and ``cache_in_place`` for
    these kernels: per handoff read in place, the consumer's arguments on that buffer placed on other
    pseudo-channels than the producer's output (``codegen.vitis.hbm.graph_hbm_plan``), the handoffs whose consumer
    run is queued (``perf.queued_handoffs``), and the prefill keys and values written into the decode kernel's
    cache buffers (``perf.cache_handoffs``) where the prefill's output argument is on the cache argument's
    pseudo-channels.
    XRT gives such an argument a copy of the buffer in its own bank when the run is set up (``xrt::run::set_arg``):
    correct for an input whose producer run is waited for, but a device copy the model does not count, and no
    queued run; an output written into such a copy would never reach the cache, so it is written in place only on
    the cache's banks."""
    ports = {n: design_ports(d) for n, d in designs.items()}
    chained, rows = chain_handoffs(ports, prefill, decode, head, target.axi_word_bits // 8)
    ranges = {}
    for name, design in designs.items():
        assert design.dataflow is not None
        plan = graph_hbm_plan(design.dataflow, name, target.hbm)  # as the project's link.cfg places them
        ranges[name] = {a.argument.arg: (a.first, a.last) for a in plan.assignments}
    other: dict[str, list[str]] = {}
    for key, buffers in chained.items():
        producer, consumer = key.split("->")
        theirs = ranges[producer][ports[producer][0].arg]
        found = [a.arg for a in ports[consumer][1] if a.buffer in buffers and ranges[consumer][a.arg] != theirs]
        if found:
            other[key] = found
    inputs = {n: [b.arg for b in input_owners(arguments)] for n, (_, arguments) in ports.items()}
    placed: dict[str, list[list[str]]] = {}
    copied: dict[str, dict[str, str]] = {}
    for key, pairs in cache_handoffs(ports, prefill, decode, kv_caches).items():
        producer, consumer = key.split("->")
        args = {n: {a.name: a.arg for a in ports[n][1] if a.writes and a.shares is None}
                for n in (producer, consumer)}
        placed[key], copied[key] = [], {}
        for (output, cache), why in pairs.items():
            theirs, ours = ranges[consumer][args[consumer][cache]], ranges[producer][args[producer][output]]
            if why is None and ours != theirs:
                why = f"on {_channels(ours)} against the cache's {_channels(theirs)}"
            if why is None:
                placed[key].append([output, cache])
            else:
                copied[key][cache] = why
    return {"chained": chained, "head_row_offsets": rows, "other_banks": other,
            "queued": queued_handoffs(chained, other, inputs), "cache_in_place": placed, "cache_copied": copied,
            "kv_caches": [list(pair) for pair in kv_caches]}


# The head's vectors re-streamed per vocabulary tile (module docstring of ``head_tile_size``) may cost at most this
# share of the weight bytes of that tile: at 1/4 the head's HBM traffic is within 25% of its weights'.
HEAD_RESTREAM_SHARE = 0.25


def head_tile_size(head: OutputHead, weight_bits: int, least: int) -> int:
    """The tile the head is compiled at (``default_tile_size``), from its shape: the smallest power of two, at least
    ``least`` (the tiling's default) and at most ``HEAD_VOCAB_MULTIPLE`` (so it divides the padded vocabulary), at
    which the hidden-sized vectors the head's GEMV reads alongside its weights (the hidden row, the final norm's
    weight and bias, a quantized head's activation multiplier: fp32, one element per weight column) cost at most
    ``HEAD_RESTREAM_SHARE`` of the weight bytes of one vocabulary tile. The GEMV's vocabulary loop is outermost
    (its weights are read once), so those vectors are streamed again for every vocabulary tile: at the default
    tile of 16 logits, a W4A8 GPT-2 head streamed 2x its weight bytes in vectors (79 MB per token, 18 cycles per
    16 x 128 weights, paced by the hidden row's DMA)."""
    vectors = sum(1 for t in head.example_inputs() if t.numel() == head.hidden_size)
    tile = least
    while tile < HEAD_VOCAB_MULTIPLE and vectors * 32 > HEAD_RESTREAM_SHARE * tile * weight_bits:
        tile *= 2
    return max(least, min(tile, HEAD_VOCAB_MULTIPLE))


def halve_until_fits(compile_at: Callable[[dict[str, Any]], T], options: dict[str, Any], knob: str, start: int,
                     least: int) -> tuple[T, int | None, dict[int, str]]:
    """``compile_at(options with knob = start)``; while the design does not fit the device (``ResourceBudgetError``),
    again at half the value, down to ``least``: there ``options`` decide as for any kernel (``allow_unfit``), above
    it the fit is required. A ``knob`` the caller gives is kept (the error is theirs). Returns the design, the value
    it was compiled at (None: given) and the refusals (value -> why)."""
    if isinstance(options.get("tiling"), TilingOptions) or knob in options:
        return compile_at(options), None, {}
    value, refused = start, {}
    while True:
        strict = {"allow_unfit": False} if value > least else {}
        try:
            return compile_at({**options, knob: value, **strict}), value, refused
        except ResourceBudgetError as err:
            if value <= least:
                raise
            refused[value] = str(err)
            value //= 2


def compile_head(head: OutputHead, seed: int, progress: Progress | None = None, **options: Any
                 ) -> tuple[Design, dict[str, Any]]:
    """The head's kernel as the build compiles it and the estimate models it (one function, so the two agree),
    and how its tile was chosen. ``options``: those of ``streamtensor.compile``. Unless the tile size is given,
    the head is compiled at ``head_tile_size``; a tile at which it does not fit the device is halved (down to the
    tiling's default: ``halve_until_fits``) and the refusal kept in the record."""
    scheme = quant_scheme(options.get("quant", "fp32"), options.get("quant_group"))
    least = TilingOptions().default_tile_size
    design, tile, refused = halve_until_fits(
        lambda opts: compile(head, head.example_inputs(seed), input_names=head.input_names, output_names=["logits"],
                             weight_names=head.weight_names, seed=seed, _progress=progress, **opts),
        options, "default_tile_size", head_tile_size(head, 32 if scheme is None else scheme.weight_bits, least),
        least)
    return design, {"tile": tile, "refused": refused}


# The least lane budget a layer block is refitted at (``compile_layer_block``): below it every kernel is nearly at
# one lane, and a block that does not fit there does not fit at all.
LEAST_LANE_BUDGET = 128
# The most lane budget a layer block is tried at, as a multiple of the tiling's default (``compile_layer_block``):
# each budget tried is a compile of its own (seconds at paper size).
MOST_LANE_BUDGET_FACTOR = 8


def compile_layer_block(loaded: LoadedModel, model: str, progress: Progress | None = None, **options: Any
                        ) -> tuple[Design, DecoderBlock, dict[str, Any]]:
    """One layer block as the build compiles it and the estimate models it (one function, so the two agree), and how
    its lane budget was chosen. Unless the tiling options are given, a block that does not fit the device at the
    tiling's lane budget (``overall_unroll_size``) is compiled again at half the budget, down to
    ``LEAST_LANE_BUDGET`` (``halve_until_fits``), the refusals kept in the record: the whole model needs every block
    on the card (a paper-size W4A8 Llama prefill block needs 1.43 M LUTs of the U55C's 1.30 M at the default
    budget). A block that fits at the default is compiled again at twice the budget while that fits and takes fewer
    cycles (up to ``MOST_LANE_BUDGET_FACTOR`` times the default), the fastest kept; the record's ``cycles`` holds
    the cycles at every budget so tried (none where the budget was given or lowered). The budget counts an integer
    MAC lane at its LUTs' share of an f32 MAC lane's (``transforms.tiling.unroll.budget_units``), so at the default
    a W4A8 block may leave DSPs idle that a larger budget gives its projections: the paper-size W4A8 GPT-2 prefill
    block takes 259,624 cycles at 1024 and 158,532 at 2048 (the same at 4096, bounded by the DSPs); fp32 blocks,
    bounded by the DSPs at the default, gain nothing and keep it."""
    def compile_at(opts: dict[str, Any]) -> tuple[Design, DecoderBlock]:
        return compile_model_block(loaded, model, _progress=progress, **opts)

    default = TilingOptions().overall_unroll_size
    (design, block), budget, refused = halve_until_fits(compile_at, options, "overall_unroll_size", default,
                                                        LEAST_LANE_BUDGET)
    cycles: dict[int, int] = {}
    if budget != default or design.report.get("simulation") is None:  # given or lowered; or nothing to compare
        return design, block, {"lane_budget": budget, "refused": refused, "cycles": cycles}
    cycles[budget] = int(design.report["simulation"]["makespan_cycles"])
    larger = 2 * budget
    while larger <= MOST_LANE_BUDGET_FACTOR * default:
        try:
            trial, trial_block = compile_at({**options, "overall_unroll_size": larger, "allow_unfit": False})
        except ResourceBudgetError as err:
            refused[larger] = str(err)
            break
        cycles[larger] = int(trial.report["simulation"]["makespan_cycles"])
        if cycles[larger] >= cycles[budget]:
            break
        design, block, budget = trial, trial_block, larger
        larger *= 2
    return design, block, {"lane_budget": budget, "refused": refused, "cycles": cycles}


def refusals(record: dict[str, Any], knob: str) -> str:
    """`` (KNOB N refused: does not fit)`` per refusal of a ``compile_head`` / ``compile_layer_block`` record."""
    return "".join(f" ({knob} {value} refused: does not fit)" for value in record["refused"])


def estimate_run(model: str, prompt_len: int, max_new_tokens: int, *, size: str = "paper", vocab_size: int,
                 seed: int = 0, **options: Any) -> Estimate:
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
    compiled: dict[str, Design] = {}
    designs: dict[str, dict[str, Any]] = {}
    per_mode: dict[str, list[str]] = {}
    blocks: dict[str, DecoderBlock] = {}
    for mode in ("prefill", "decode"):
        names = {}
        for group, layer in first.items():
            name = mode if len(first) == 1 else f"{mode}_{group}"
            design, blocks[name], lanes = compile_layer_block(loaded, model, mode=mode, seq_len=prompt_len,
                                                              max_len=max_len, layer=layer, seed=seed, size=size,
                                                              **options)
            invocations[name] = design_invocation(design)
            compiled[name] = design
            designs[name] = {"mode": mode, "layer": layer, "cycles": invocations[name].cycles, "lanes": lanes,
                             "overrides": design.report.get("overrides", {}),
                             "kv_cache": design.report["quantization"]["kv_cache"]["dtype"]}
            names[group] = name
        per_mode[mode] = [names[g] for g in groups]
    scheme = quant_scheme(options.get("quant", "fp32"), options.get("quant_group"))
    # The head as the build compiles it, at the real vocabulary: a one-layer model of that vocabulary, its linear
    # layers quantized as the build quantizes them (``quantize_model``: the LM head a QuantLinear, its activation
    # scale folded into its weight scales; handing ``compile`` the fp32 head with ``quant`` instead would quantize
    # a plain module with the scale kept as a separate multiply, not the kernel the build runs), its rows padded
    # (``OutputHead``).
    head_model = build_random_model(model, size, seed, num_layers=1, vocab_size=vocab_size)
    if scheme is not None:
        quantize_model(head_model, scheme, prompt_len, seed)
    head = OutputHead(head_model).eval()
    design, tiling = compile_head(head, seed, **options)
    invocations["head"] = design_invocation(design)
    compiled["head"] = design
    designs["head"] = {"mode": "head", "vocab": vocab_size, "rows": head.padded_vocab, "tiling": tiling,
                       "cycles": invocations["head"].cycles, "overrides": design.report.get("overrides", {})}
    target = design.target
    run_model = RunModel(**RunModel.device_figures(target), prefill_len=prompt_len, max_len=max_len,
                         prefill=per_mode["prefill"], decode=per_mode["decode"], head="head",
                         invocations=invocations, host_token_s=host_token_seconds(vocab_size, head.hidden_size),
                         host_head_s=None, **handoff_fields(compiled, per_mode["prefill"], per_mode["decode"], "head",
                                                            target, kv_cache_pairs(blocks[per_mode["prefill"][0]],
                                                                                   blocks[per_mode["decode"][0]])))
    how = (f"head (final norm + LM head{', quantized' if scheme is not None else ''}) compiled at {vocab_size} "
           f"tokens ({head.padded_vocab} rows with its zero padding) at tile {tiling['tile'] or 'as given'}"
           + refusals(tiling, "tile")
           + f": {invocations['head'].cycles} cycles")
    return Estimate(run_model, designs, how, time.perf_counter() - start)
