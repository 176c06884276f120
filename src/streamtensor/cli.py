"""Command line: a thin layer over the Python API. Errors print as one line and exit with status 2 (``--debug``
also prints the traceback)."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from streamtensor.codegen.vitis.boards import DEFAULT_TARGET, TARGETS, get_target
from streamtensor.driver import CompileOptions, compile_llm_block
from streamtensor.errors import OUT_OF_MEMORY_HINT, OptionError, StreamTensorError
from streamtensor.frontend.block_cache import CachedBlock
from streamtensor.frontend.quant_scheme import KV_SCHEMES, QUANT_SCHEMES
from streamtensor.host import CLI_MEMORY_SHARE, memory_cap, use_small_pages
from streamtensor.llm.options import LlmOptions
from streamtensor.passes import PASSES, parse_ir, print_ir, run_passes
from streamtensor.transforms.tiling.plan import ORDER_OBJECTIVES

_DEFAULTS = CompileOptions()  # the CLI's defaults are the API's
_TILING = _DEFAULTS.tiling
_LLM = LlmOptions()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse's usage dump is noise for a bad option: one line naming the problem.
        print(f"streamtensor: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="streamtensor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    comp = sub.add_parser("compile", help="compile one decoder block of an LLM")
    comp.add_argument("model", help="gpt2, llama, qwen2, gemma, or a local Hugging Face checkpoint directory")
    comp.add_argument("-o", "--output", required=True, help="output directory")
    comp.add_argument("--mode", choices=["prefill", "decode"], default=_DEFAULTS.mode)
    comp.add_argument("--seq-len", type=_positive_int, default=_DEFAULTS.seq_len, help="prompt tokens (prefill)")
    comp.add_argument("--max-len", type=_positive_int, default=_DEFAULTS.max_len, help="KV-cache capacity (decode)")
    comp.add_argument("--size", choices=["tiny", "paper"], default=_DEFAULTS.size, help="built-in model geometry")
    comp.add_argument("--target", choices=list(TARGETS), default=DEFAULT_TARGET,
                      help="the board to build for (its resources, HBM, clock, part and platform)")
    comp.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="seed of random weights and example inputs")
    comp.add_argument("--layer", type=int, default=_DEFAULTS.layer, help="index of the decoder layer to compile")
    comp.add_argument("--quant", choices=list(QUANT_SCHEMES), default=_DEFAULTS.quant,
                      help="linear layers with int8 activations (static calibrated per-tensor scales) and int8 "
                           "(w8a8) or int4 (w4a8) weights, int32 accumulation; the rest stays fp32")
    comp.add_argument("--quant-group", type=int, default=_DEFAULTS.quant_group,
                      help="weight elements per scale along the reduction dimension (default: 128 for w4a8, one "
                           "group per output channel for w8a8; 0: per channel; capped at the row length)")
    comp.add_argument("--kv-quant", choices=list(KV_SCHEMES), default=_DEFAULTS.kv_quant,
                      help="KV cache element type: int8 with static per-(head, channel) scales, or fp32 (auto: "
                           "int8 when --quant is not fp32)")
    comp.add_argument("--no-fuse-into-contractions", action="store_true",
                      help="keep a multi-use elementwise kernel (a norm before Q/K/V) a kernel of its own, its "
                           "result forked (default: fused into each contraction that reads it)")
    comp.add_argument("--default-tile-size", type=_positive_int, default=_TILING.default_tile_size,
                      help="tile of every loop: its largest divisor up to this size")
    comp.add_argument("--overall-unroll-size", type=_positive_int,
                      default=_TILING.overall_unroll_size,
                      help="budget of parallel lanes summed over all kernels, in f32 multiply-accumulate lanes "
                           "(an int8 MAC lane counts its cost relative to one)")
    comp.add_argument("--no-permute", action="store_true",
                      help="keep reduction loops innermost inside a tile (default: move them outward)")
    comp.add_argument("--uniform-unroll", action="store_true",
                      help="same unroll factor for every kernel (default: intensity-aware)")
    comp.add_argument("--max-token-rank", type=int, default=_TILING.max_token_rank,
                      help="on-chip tokens hold at most default-tile-size ** N elements (0: no cap; "
                           "operands read from external memory keep their tiles)")
    comp.add_argument("--token-tile-size", type=int, default=_TILING.token_tile_size,
                      help="tile of the loops over the sequence (tokens) of the block input, carried downstream "
                           "by tile agreement (0: default-tile-size; default: the candidate whose slowest kernel "
                           "is fastest); smaller tiles hold fewer rows on chip and give them to the feature tiles")
    comp.add_argument("--wide-feature-tiles", action="store_true",
                      help="with --token-tile-size N, the rows a token tile gives up widen the other tiles "
                           "(up to default-tile-size ** 2 / N; the default token tile choice always does)")
    comp.add_argument("--no-agree-tiles", action="store_true",
                      help="keep each kernel's own tiles (default: producer and consumer tiles agree)")
    comp.add_argument("--no-layout-order", action="store_true",
                      help="output-stationary tile orders (default: orders minimizing converter + accumulator bytes)")
    comp.add_argument("--order-search-restarts", type=int, default=_TILING.order_search_restarts,
                      help="random restarts of the tile-order search (seeded: deterministic)")
    comp.add_argument("--order-objective", choices=list(ORDER_OBJECTIVES), default=_TILING.order_objective,
                      help="what the tile-order search minimizes: converter + accumulator bytes (memory), an "
                           "estimate of the makespan then the bytes (latency), or auto (latency for one-token "
                           "decode blocks, memory otherwise)")
    comp.add_argument("--fifo-strategy", choices=["normal", "conservative"], default=_DEFAULTS.fifo_strategy,
                      help="FIFO sizing LP: kernels at their own II, or all paced to the slowest (smaller FIFOs)")
    comp.add_argument("--fifo-latency-slack", type=float, default=_DEFAULTS.fifo_latency_slack,
                      help="fraction of the unbounded-FIFO makespan the FIFO LP may give up for smaller FIFOs "
                           "(default 0: keep it)")
    comp.add_argument("--max-fifo-depth", type=int, default=_DEFAULTS.max_fifo_depth,
                      help="every FIFO holds at most N tokens (0: the LP's depths); the timing simulation checks "
                           "the result")
    comp.add_argument("--max-stream-tokens", type=int, default=_DEFAULTS.max_stream_tokens,
                      help="refuse a design whose streams carry more tokens a run than N before its FIFO sizing and "
                           "timing simulation, whose work grows with them (default %(default)s; 0: no limit)")
    comp.add_argument("--allow-deadlock", action="store_true",
                      help="write the design although the compile's timing simulation deadlocks (recorded in the "
                           "report's overrides; default: an error naming the wait-for cycle)")
    comp.add_argument("--allow-unfit", action="store_true",
                      help="write the design although it does not fit the device or no SLR assignment fits the "
                           "per-die budgets (recorded in the report's overrides; default: an error)")
    comp.add_argument("--stop-after-dataflow", action="store_true",
                      help="write linalg.mlir, dataflow.mlir and report.json after fusion, with unsized FIFOs; no "
                           "FIFO sizing, simulation, resources or Vitis project")
    comp.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    comp.add_argument("--debug", action="store_true", help="print the traceback of an error")
    bld = sub.add_parser("build", help="build a whole model: prefill, decode and head kernels, per-layer weights, "
                                       "host tables and program, and the modelled run (report['llm'])")
    bld.add_argument("model", help="gpt2, llama, qwen2, gemma, or a local Hugging Face checkpoint directory")
    bld.add_argument("-o", "--output", required=True, help="output directory")
    bld.add_argument("--size", choices=["tiny", "paper"], default=_DEFAULTS.size, help="built-in model geometry")
    bld.add_argument("--prompt-len", type=_positive_int, default=_LLM.prompt_len,
                     help="tokens of the prefill kernel and of the modelled prompt")
    bld.add_argument("--max-new-tokens", type=_positive_int, default=_LLM.max_new_tokens,
                     help="tokens of the modelled answer (and generate's default)")
    bld.add_argument("--max-len", type=_positive_int, default=None,
                     help="KV-cache rows of the decode kernel (default: prompt-len + max-new-tokens)")
    bld.add_argument("--decode-positions", type=_positive_int, default=_LLM.decode_positions,
                     help="capacities the decode kernel's timing is simulated at to model the position (1: none)")
    bld.add_argument("--target", choices=list(TARGETS), default=DEFAULT_TARGET, help="the board to build for")
    bld.add_argument("--quant", choices=list(QUANT_SCHEMES), default=_DEFAULTS.quant,
                     help="quantize every linear layer of the model (decoder layers and LM head), static activation "
                          "scales calibrated on seeded token sequences; generate --check then compares with that "
                          "quantized PyTorch model")
    bld.add_argument("--quant-group", type=int, default=_DEFAULTS.quant_group,
                     help="reduction elements per weight scale (default: 128 for w4a8, a row for w8a8)")
    bld.add_argument("--kv-quant", choices=list(KV_SCHEMES), default=_DEFAULTS.kv_quant,
                     help="KV cache element type: int8 with static per-(head, channel) scales of every layer "
                          "calibrated on the whole model, or fp32 (auto: int8 when --quant is not fp32)")
    bld.add_argument("--max-stream-tokens", type=int, default=0,
                     help="refuse a kernel whose streams carry more tokens a run than N (default 0 here: none, a "
                          "build compiles each kernel once; compile's default bounds a search's trials)")
    bld.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="seed of random weights and example inputs")
    bld.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    bld.add_argument("--debug", action="store_true", help="print the traceback of an error")
    gen = sub.add_parser("generate", help="generate tokens with a build (emulated accelerator or a card)")
    gen.add_argument("outdir", help="output directory of 'streamtensor build'")
    prompt = gen.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt-ids", help="prompt as comma-separated token ids, e.g. 1,2,3")
    prompt.add_argument("--prompt", help="prompt text (needs the checkpoint's tokenizer)")
    gen.add_argument("--max-new-tokens", type=_positive_int, default=None, help="default: the build's")
    gen.add_argument("--backend", choices=["emulation", "xrt"], default="emulation",
                     help="emulation: every layer's block in its C simulation; xrt: a card")
    gen.add_argument("--check", action="store_true",
                     help="compare token by token with Hugging Face generate(do_sample=False) on the same weights")
    gen.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (0: all)")
    gen.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    gen.add_argument("--seed", type=int, default=0, help="seed of sampling")
    gen.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    gen.add_argument("--debug", action="store_true", help="print the traceback of an error")
    dse = sub.add_parser("dse", help="design-space search of one decoder block: an Optuna study of compiles")
    dse.add_argument("model", help="gpt2, llama, qwen2, gemma, or a local Hugging Face checkpoint directory")
    dse.add_argument("-o", "--output", required=True,
                     help="output directory: the study (default storage), summary.md, best.json, best design")
    dse.add_argument("--trials", type=_positive_int, required=True,
                     help="trials of the study, counted in its storage (a rerun resumes it)")
    dse.add_argument("--objective", default="tokens_per_s",
                     help="one or more (comma-separated, a Pareto front) of tokens_per_s, ttft, cycles, memory, "
                          "onchip_bytes (all modelled)")
    dse.add_argument("--storage", help="Optuna storage: a journal file path or an RDB URL (sqlite:///..., "
                                       "postgresql://...) shared by several machines (default: OUTPUT/study.journal)")
    dse.add_argument("--study-name", help="study name in the storage (default: model-mode-size-objectives)")
    dse.add_argument("--workers", type=_positive_int, default=1, help="worker processes on this machine")
    dse.add_argument("--timeout", type=float, help="seconds after which no new trial starts")
    dse.add_argument("--mode", choices=["prefill", "decode"], default=_DEFAULTS.mode)
    dse.add_argument("--seq-len", type=_positive_int, default=_DEFAULTS.seq_len, help="prompt tokens (prefill)")
    dse.add_argument("--max-len", type=_positive_int, default=_DEFAULTS.max_len, help="KV-cache capacity (decode)")
    dse.add_argument("--size", choices=["tiny", "paper"], default=_DEFAULTS.size, help="built-in model geometry")
    dse.add_argument("--target", choices=list(TARGETS), default=DEFAULT_TARGET, help="the board to build for")
    dse.add_argument("--quant", choices=["fp32", "w8a8", "w4a8"],
                     help="fix the quantization of the linear layers (default: searched)")
    dse.add_argument("--seed", type=int, default=0, help="seed of the sampler (worker k: seed + k)")
    dse.add_argument("--debug", action="store_true", help="print the traceback of an error")
    ver = sub.add_parser("verify", help="C-simulate a compiled design (bounded FIFOs) and compare it with PyTorch")
    ver.add_argument("outdir", help="output directory of 'streamtensor compile'")
    ver.add_argument("--runs", type=_positive_int, default=2, help="simulation runs (outputs must be identical)")
    opt = sub.add_parser("opt", help="parse and verify linalg.mlir or dataflow.mlir, run passes on it, print it")
    opt.add_argument("file", help="IR text as the compiler writes it (linalg.mlir or dataflow.mlir)")
    opt.add_argument("--pass", dest="passes", action="append", default=[], choices=list(PASSES), metavar="NAME",
                     help=f"a pass to run, in the order given (repeatable): {', '.join(PASSES)}")
    opt.add_argument("-o", "--output", help="output file (default: standard output)")
    opt.add_argument("--target", choices=list(TARGETS), default=DEFAULT_TARGET,
                     help="the board whose costs the passes weigh (tiling, fusion, FIFO sizing)")
    opt.add_argument("--debug", action="store_true", help="print the traceback of an error")
    ver.add_argument("--debug", action="store_true", help="print the traceback of an error")
    rep = sub.add_parser("report", help="rewrite OUTDIR/report.html and OUTDIR/trace.json from what OUTDIR holds")
    rep.add_argument("outdir", help="output directory of 'streamtensor compile', 'build' or 'dse'")
    rep.add_argument("--debug", action="store_true", help="print the traceback of an error")
    return parser


def _compile(args: argparse.Namespace) -> None:
    design, block = compile_llm_block(args.model, mode=args.mode, seq_len=args.seq_len, max_len=args.max_len,
                                      size=args.size, target=args.target, seed=args.seed, layer=args.layer,
                                      verbose=not args.quiet, quant=args.quant, quant_group=args.quant_group,
                                      kv_quant=args.kv_quant, fuse_into_contractions=not args.no_fuse_into_contractions,
                                      default_tile_size=args.default_tile_size,
                                      overall_unroll_size=args.overall_unroll_size,
                                      permute_reductions_outward=not args.no_permute,
                                      intensity_aware_unroll=not args.uniform_unroll,
                                      max_token_rank=args.max_token_rank, token_tile_size=args.token_tile_size,
                                      wide_feature_tiles=args.wide_feature_tiles,
                                      agree_tiles=not args.no_agree_tiles,
                                      layout_aware_order=not args.no_layout_order,
                                      order_search_restarts=args.order_search_restarts,
                                      order_objective=args.order_objective,
                                      fifo_strategy=args.fifo_strategy,
                                      fifo_latency_slack=args.fifo_latency_slack,
                                      max_fifo_depth=args.max_fifo_depth,
                                      max_stream_tokens=args.max_stream_tokens, allow_deadlock=args.allow_deadlock,
                                      allow_unfit=args.allow_unfit, size_fifos=not args.stop_after_dataflow)
    if design.allocation is not None:  # before save: its stages are reported
        # A cached frontend's inputs as arrays: the project needs no PyTorch then (issue 21).
        inputs = block.example_arrays(args.seed) if isinstance(block, CachedBlock) else block.example_inputs(args.seed)
        design.write_project(args.output, *inputs)
    out = design.save(args.output)
    report = design.report
    print(f"compiled {report['model']} ({report['mode']}) for {report['target']['board']} -> {out}")
    quant = report["quantization"]
    if quant["scheme"] != "fp32":
        print(f"  quantization: {quant['scheme']} ({len(quant['layers'])} linear layers, weight scales per "
              f"{quant['group_size'] or 'row'} elements, {quant['activation_scale']} int8 activations, "
              f"{quant['accumulator']} accumulation)")
    print("  ops: " + ", ".join(f"{k}={v}" for k, v in report["op_counts"].items() if not k.startswith("generic.")))
    nodes, tiling = report["dataflow"]["nodes"], report["tiling"]
    conv_bytes = sum(c["bytes"] for c in report["converters"])
    print(f"  dataflow: {nodes.get('kernel', 0)} kernels, {len(report['converters'])} converters "
          f"({conv_bytes / 1024:.1f} KiB), {nodes.get('itensor_fork', 0)} forks, "
          f"{report['dataflow']['streams']} streams, {len(report['fusion']['groups'])} fusion group(s); "
          f"max kernel latency {tiling['max_kernel_latency']} cycles with {tiling['total_lanes']} lanes")
    mem = report["memory"]
    ratio = "n/a" if mem["fused_to_unfused"] is None else f"{mem['fused_to_unfused']:.4f}"
    print(f"  intermediate results on chip: unfused {mem['intermediate_unfused_bytes'] / 1024:.1f} KiB, fused "
          f"{mem['intermediate_fused_bytes'] / 1024:.1f} KiB (converters {mem['converter_bytes'] / 1024:.1f}, "
          f"kernel-local {mem['kernel_local_bytes'] / 1024:.1f}, FIFOs {mem['fifo_bytes'] / 1024:.1f}), "
          f"fused/unfused {ratio}; input streams {mem['input_stream_bytes'] / 1024:.1f} KiB, "
          f"DMA buffers {mem['dma_bytes'] / 1024:.1f} KiB")
    if design.allocation is not None:
        sim, res = report["simulation"], report.get("resources", {})
        print(f"  FIFOs: {len(report['fifos'])}, {report['fifo_total_bits'] / 8192:.1f} KiB "
              f"({report['fifo_lp']['strategy']}); makespan {sim['makespan_cycles']} cycles "
              f"(unbounded FIFOs: {sim['unbounded_makespan_cycles']}), "
              f"deadlock: {'yes' if sim['deadlock'] else 'no'}; resources fit: {res.get('fits')}")
        for option, errors in report["overrides"].items():
            print("\n".join(f"  OVERRIDDEN by --{option.replace('_', '-')}: {e}" for e in errors))
    print("  stages: " + ", ".join(f"{k} {v:.2f}s" for k, v in report["stages"].items()))
    if design.allocation is None:
        print(f"  stopped after the dataflow graph (FIFOs unsized, at the 2-token default): {out}/dataflow.mlir")
        return
    print(f"  report: {out}/report.html (open in a browser), {out}/trace.json (Perfetto, chrome://tracing)")
    print(f"  Vitis project: {out}/Makefile (csim | csim-tb | vitis-csim | hls | cosim | hw_emu | hw | run; "
          f"README.md); check it with: streamtensor verify {out}")


def _build(args: argparse.Namespace) -> None:
    from streamtensor.llm.build import build

    design = build(args.model, args.output, size=args.size, prompt_len=args.prompt_len,
                   max_new_tokens=args.max_new_tokens, max_len=args.max_len or 0,
                   decode_positions=args.decode_positions, target=args.target, seed=args.seed,
                   quant=args.quant, quant_group=args.quant_group, kv_quant=args.kv_quant,
                   max_stream_tokens=args.max_stream_tokens, verbose=not args.quiet)
    llm = design.report["llm"]
    print(f"built {args.model} ({design.quant}, {design.kv_cache} KV cache): {len(design.prefill)} layers, kernels "
          f"{', '.join(design.kernels)} -> {args.output}")
    print(f"  host decomposition (PyTorch eager) vs the model: max relative logit error "
          f"{llm['decomposition_check']['max_relative_logit_error']:.2g}")
    print(_modelled_line(llm))
    step = llm["overheads"]["per_decode_step_s"]
    print("  decode step (modelled, ms): " + ", ".join(f"{k} {v * 1e3:.4f}" for k, v in step.items()))
    roof = llm["rooflines"]
    print(f"  rooflines: HBM {roof['hbm_tokens_per_s']:.0f} tokens/s ({llm['hbm_bytes_per_token']:.0f} B/token, "
          "mean over the run), "
          f"compute {roof['compute_tokens_per_s']:.0f} tokens/s; kernels alone {roof['kernel_only_tokens_per_s']:.0f}")
    print(f"  energy: <= {llm['energy']['joules_per_token_upper_bound'] * 1e3:.3f} mJ/token at "
          f"{llm['energy']['board_power_w']:.0f} W (card maximum)")
    print(f"  report: {args.output}/report.json (report['llm']), {args.output}/report.html; run it: "
          f"streamtensor generate {args.output} --prompt-ids 1,2,3 --check")


def _modelled_line(llm: dict) -> str:
    return (f"  modelled on {llm['target']} at {llm['clock_mhz']:.0f} MHz, [{llm['prompt_len']}:{llm['new_tokens']}]: "
            f"TTFT {llm['ttft_ms']:.3f} ms, decode {llm['decode_tokens_per_s']:.1f} tokens/s, "
            f"latency {llm['latency_ms']:.3f} ms")


def _generate(args: argparse.Namespace) -> int:
    import numpy as np

    from streamtensor.llm.generate import LlmRunner, print_progress, reference_generation, tokenizer_of

    if args.check and args.temperature != 0:
        raise OptionError("--check compares with greedy generation: drop --temperature")
    tokenizer = None
    if args.prompt is not None:
        tokenizer = tokenizer_of(args.outdir)
        prompt = [int(t) for t in tokenizer(args.prompt)["input_ids"]]
    else:
        try:
            prompt = [int(t) for t in args.prompt_ids.split(",") if t.strip()]
        except ValueError:
            raise OptionError(f"bad --prompt-ids '{args.prompt_ids}': expected comma-separated integers") from None
    runner = LlmRunner(args.outdir, args.backend, None if args.quiet else print_progress)
    new = args.max_new_tokens or runner.manifest["max_new_tokens"]
    result = runner.generate(prompt, new, args.top_k, args.temperature, args.seed)
    where = ("the emulated accelerator (every layer's block in its C simulation)" if args.backend == "emulation"
             else "the card (XRT)")
    print(f"generated {len(result.tokens)} tokens after a {len(prompt)}-token prompt on {where}; "
          f"stopped: {result.stopped}")
    reference: tuple[list[int], list[np.ndarray]] | None = None
    if args.check:
        reference = reference_generation(args.outdir, prompt, new)
    header = "  step  position  token  wall s (measured)  kernel s  host<->card bytes"
    print(header + ("  HF token  max |logit diff|" if reference else ""))
    for i, step in enumerate(result.steps):
        moved = step.transfers.to_device_bytes + step.transfers.from_device_bytes
        line = (f"  {i + 1:>4}  {step.position:>8}  {step.token:>5}  {step.seconds:>17.3f}  "
                f"{step.kernel_seconds:>8.3f}  {moved:>17}")
        if reference is not None and i < len(reference[0]):
            diff = float(np.max(np.abs(step.logits - reference[1][i])))
            line += f"  {reference[0][i]:>8}  {diff:.3g}"
        print(line)
    print("tokens: " + " ".join(str(t) for t in result.tokens))
    if tokenizer is not None:
        print("text: " + tokenizer.decode(result.tokens))
    print(_modelled_line(runner.modelled(result)).replace("  modelled", "modelled board run:", 1))
    if reference is None:
        return 0
    same = result.tokens == reference[0]
    quant, kv = runner.manifest.get("quant", "fp32"), runner.manifest.get("kv_cache_dtype", "fp32")
    what = "" if quant == "fp32" else f" on the {quant} quantized PyTorch model (frontend.quant.QuantLinear)"
    what += "" if kv == "fp32" else " with its int8 KV cache (llm.host_model.QuantizedKvCache)"
    print(f"check: {'PASS' if same else 'FAIL'}: {len(result.tokens)} tokens here, {len(reference[0])} from Hugging "
          f"Face generate(do_sample=False){what}; " + ("identical" if same else "they differ"))
    return 0 if same else 1


def _verify(args: argparse.Namespace) -> int:
    from streamtensor.verify.simulate import verify_project

    report = verify_project(args.outdir, runs=args.runs)
    print(report.describe())
    return 0 if report.ok else 1


def _opt(args: argparse.Namespace) -> None:
    try:
        text = Path(args.file).read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise OptionError(f"cannot read {args.file}: {getattr(err, 'strerror', None) or err}") from None
    result = print_ir(run_passes(parse_ir(text, args.file), args.passes, get_target(args.target)))
    if args.output is None:
        sys.stdout.write(result)
        return
    try:
        Path(args.output).write_text(result)
    except OSError as err:
        raise OptionError(f"cannot write {args.output}: {err.strerror}") from None


def _dse(args: argparse.Namespace) -> None:
    from optuna.trial import TrialState

    from streamtensor.search import OBJECTIVES, dse

    result = dse(args.model, args.output, trials=args.trials, objective=args.objective, storage=args.storage,
                 workers=args.workers, timeout=args.timeout, study_name=args.study_name, seed=args.seed,
                 mode=args.mode, seq_len=args.seq_len, max_len=args.max_len, size=args.size, target=args.target,
                 **({"quant": args.quant} if args.quant else {}))
    print(f"study {result.study_name} ({result.storage}): {len(result.trials)} trials, "
          f"{result.count(TrialState.COMPLETE)} complete, {result.count(TrialState.PRUNED)} infeasible, "
          f"{result.count(TrialState.FAIL)} failed; {result.seconds:.1f} s")
    for t in result.best:
        values = ", ".join(f"{n} {v:.6g} {OBJECTIVES[n].unit}" for n, v in zip(result.objectives, t.values or [],
                                                                                  strict=False))
        print(f"  best trial {t.number}: {values}; {t.params}")
    where = "best" if len(result.objectives) == 1 else "front"
    print(f"  summary: {args.output}/summary.md; best: {args.output}/best.json" +
          (f", projects under {args.output}/{where}" if result.best else " (no feasible trial)"))


def _report(args: argparse.Namespace) -> None:
    from streamtensor.report import write_report

    print("wrote " + ", ".join(str(p) for p in write_report(args.outdir)))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    use_small_pages()
    try:
        with memory_cap(CLI_MEMORY_SHARE):
            if args.command == "compile":
                _compile(args)
            elif args.command == "build":
                _build(args)
            elif args.command == "generate":
                return _generate(args)
            elif args.command == "verify":
                return _verify(args)
            elif args.command == "opt":
                _opt(args)
            elif args.command == "dse":
                _dse(args)
            elif args.command == "report":
                _report(args)
    except Exception as exc:  # one line for the user; the traceback only on request
        if getattr(args, "debug", False):
            traceback.print_exc()
        if isinstance(exc, StreamTensorError):
            print(f"streamtensor: error: {exc}", file=sys.stderr)
        elif isinstance(exc, MemoryError):  # the design point, not a bug: the same hint as inside a stage
            print(f"streamtensor: error: {args.command} ran out of memory -- {OUT_OF_MEMORY_HINT}", file=sys.stderr)
        else:  # outside any compile stage (those raise StageError): a bug
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "(no message)"
            print(f"streamtensor: error: {args.command} failed: {type(exc).__name__}: {first} -- rerun with "
                  "--debug for the traceback and report it", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
