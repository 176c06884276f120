"""End-to-end latency, TTFT and decode tokens/s of whole paper-size models, ours (modelled) next to the paper's.

    .venv/bin/python benchmarks/llm_latency.py [--configs 32:32,64:64,128:128,256:256] [--others qwen2,llama,gemma]

GPT-2 medium at each [prompt:answer] configuration, then Qwen2.5-0.5B, TinyLlama and Gemma-3-1B geometries at the
first configuration: each is ``streamtensor.llm.compile_llm`` (prefill block at the prompt length, decode block with
a KV cache of prompt + answer rows, the output head at the model's real vocabulary, random weights) and its
``report["llm"]`` (``llm.perf``: the blocks' timing simulations at the target clock plus the host-link figures).
Precision: fp32 (the compiler's only datapath today; W4A8 comes later). The other rows are measured on boards by
their authors (../shared/spec/performance.md): the paper's U55C W4A8 design, Allo (U280 W4A8), DFX (U280 FP16)
and an A100 (W8A8). Expect tens of minutes: every configuration compiles and FIFO-sizes paper-size blocks.
"""

from __future__ import annotations

import argparse
import sys
import time

from streamtensor.llm import compile_llm
from streamtensor.report.paper import PAPER_GPT2_MEDIUM

# Measured on boards by their authors (latency ms, TTFT ms, decode tokens/s), GPT-2 medium.
PAPER_ROWS = PAPER_GPT2_MEDIUM
# The real vocabularies of the paper's models (the built-in paper geometries otherwise use 256 tokens).
VOCAB = {"gpt2": 50257, "qwen2": 151936, "llama": 32000, "gemma": 262144}
NAMES = {"gpt2": "GPT-2 medium", "qwen2": "Qwen2.5-0.5B", "llama": "TinyLlama-1.1B", "gemma": "Gemma-3-1B"}


def _row(model: str, config: str, who: str, figures: tuple[float, float, float], kind: str) -> str:
    latency, ttft, speed = figures
    return f"| {model} | [{config}] | {who} | {latency:.2f} | {ttft:.2f} | {speed:.2f} | {kind} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="32:32,64:64,128:128,256:256", help="GPT-2 [prompt:answer] list")
    parser.add_argument("--others", default="qwen2,llama,gemma", help="other models, at the first configuration")
    parser.add_argument("--target", default="u55c")
    parser.add_argument("--builtin-vocab", action="store_true",
                        help="keep the built-in 256-token vocabulary (the LM head then costs next to nothing: a "
                             "lower bound; the real vocabulary's head takes far more memory to compile)")
    args = parser.parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    runs = [("gpt2", c) for c in configs] + [(m, configs[0]) for m in args.others.split(",") if m.strip()]
    lines = ["| model | [in:out] | design | latency ms | TTFT ms | decode tokens/s | figures |",
             "|---|---|---|---|---|---|---|"]
    details = []
    for model, config in runs:
        prompt, answer = (int(x) for x in config.split(":"))
        start = time.perf_counter()
        print(f"[llm_latency] {model} [{config}] ...", file=sys.stderr, flush=True)
        llm = compile_llm(model, size="paper", prompt_len=prompt, max_new_tokens=answer, decode_positions=1,
                          vocab_size=0 if args.builtin_vocab else VOCAB[model], target=args.target).report["llm"]
        seconds = time.perf_counter() - start
        print(f"[llm_latency] {model} [{config}] done in {seconds:.0f} s", file=sys.stderr, flush=True)
        vocab = "256-token vocabulary" if args.builtin_vocab else f"{VOCAB[model]}-token vocabulary"
        lines.append(_row(NAMES[model], config, f"ours, fp32, {llm['target']} {llm['clock_mhz']:.0f} MHz, {vocab}",
                          (llm["latency_ms"], llm["ttft_ms"], llm["decode_tokens_per_s"]), "modelled"))
        if model == "gpt2":
            lines.extend(_row(NAMES[model], config, who, rows[config], "measured on board (authors)")
                         for who, rows in PAPER_ROWS.items() if config in rows)
        step = llm["overheads"]["per_decode_step_s"]
        details.append(
            f"- {NAMES[model]} [{config}]: decode step {llm['decode_step_ms']:.3f} ms = kernels "
            f"{step['kernels'] * 1e3:.3f} + launches {step['launch'] * 1e3:.3f} + buffer syncs {step['sync'] * 1e3:.3f}"
            f" + PCIe {step['pcie'] * 1e3:.3f} (KV cache {step['pcie_kv_cache'] * 1e3:.3f}) + host "
            f"{step['host_embedding_and_sampling_measured_here'] * 1e3:.4f}; LM head "
            f"{llm['lm_head']['seconds_per_token'] * 1e3:.3f} ms/token; HBM {llm['hbm_bytes_per_token'] / 1e6:.1f} "
            f"MB/token; rooflines: HBM {llm['rooflines']['hbm_tokens_per_s']:.0f}, compute "
            f"{llm['rooflines']['compute_tokens_per_s']:.0f} tokens/s; <= "
            f"{llm['energy']['joules_per_token_upper_bound']:.3f} J/token at {llm['energy']['board_power_w']:.0f} W "
            f"(compile {seconds:.0f} s)")
    print("\n".join(lines))
    print()
    print("\n".join(details))
    print("\nmodelled: timing simulation of the compiled blocks at the target clock plus assumed host-link figures "
          "(20 us per launch, 10 us per buffer sync, 12 GB/s PCIe; report['llm']['overheads']['source']); the KV "
          "cache is host-held until the in-place cache lands. measured on board: the authors' own figures.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
