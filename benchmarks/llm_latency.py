"""End-to-end latency, TTFT and decode tokens/s of whole paper-size models, ours (modelled) next to the paper's.

    .venv/bin/python benchmarks/llm_latency.py [--configs 32:32,64:64,128:128,256:256] [--others qwen2,llama,gemma]
        [--quant w4a8] [--kv-quant auto] [--target u55c]

GPT-2 medium at each [prompt:answer] configuration, then Qwen2.5-0.5B, TinyLlama and Gemma-3-1B geometries at the
first configuration. Each is ``streamtensor.llm.estimate.estimate_run``: the prefill block at the prompt length and
the decode block with a KV cache of prompt + answer rows compiled (random weights, ``--quant``), one per layer
group, their timing simulations at the target clock; the output head compiled at the model's real vocabulary
(quantized and padded as the build's); plus the host program's terms (``llm.perf``: launches, buffer syncs, PCIe
from the board description, activations handed from kernel to kernel on the device, the KV cache resident and
updated in place, embedding and sampling measured here). The KV cache is int8 under ``--kv-quant auto`` and a
quantized ``--quant`` (one byte per element: its HBM bytes per token and fill bytes follow). The whole model's
weights are never built. A layer block that does not fit the device at the default lane budget is compiled at half
of it, down to 128, and one that fits is compiled at twice it while that fits and is faster
(``llm.estimate.compile_layer_block``, as the build does; the budgets tried and refused are printed); a design
that exceeds the device even then is compiled anyway (``allow_unfit``) and flagged. The
other rows are measured on boards by their authors
(../shared/spec/performance.md): the paper's U55C W4A8 design, Allo (U280 W4A8), DFX (U280 FP16), an A100 (W8A8).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from streamtensor.llm.estimate import estimate_run, refusals
from streamtensor.report.paper import PAPER_GPT2_MEDIUM

# Measured on boards by their authors (latency ms, TTFT ms, decode tokens/s), GPT-2 medium.
PAPER_ROWS = PAPER_GPT2_MEDIUM
# The real vocabularies of the paper's models (the built-in geometries otherwise use 256 tokens).
VOCAB = {"gpt2": 50257, "qwen2": 151936, "llama": 32000, "gemma": 262144}
NAMES = {"gpt2": "GPT-2 medium", "qwen2": "Qwen2.5-0.5B", "llama": "TinyLlama-1.1B", "gemma": "Gemma-3-1B"}
TARGET_TOKENS_PER_S = 460.0  # 2x the paper's best decode speed
TARGET_TTFT_MS = 17.3  # 2x better than the paper's TTFT at [32:32]


def _row(model: str, config: str, who: str, figures: tuple[float, float, float], kind: str) -> str:
    latency, ttft, speed = figures
    return f"| {model} | [{config}] | {who} | {latency:.2f} | {ttft:.2f} | {speed:.2f} | {kind} |"


def _handoffs(found: dict[str, list[str]]) -> str:
    return "; ".join(f"{k}: {', '.join(v)}" for k, v in found.items())


def _lane_budget(lanes: dict[str, Any] | None) -> str:
    """A layer block's lane budget, the budgets tried (cycles) and those refused; nothing for the head."""
    if lanes is None:
        return ""
    tried = lanes["cycles"]
    shown = f" (tried: {', '.join(f'{b} -> {c:,}' for b, c in tried.items())})" if len(tried) > 1 else ""
    return f" at lane budget {lanes['lane_budget']}{shown}{refusals(lanes, 'budget')}"


def _details(name: str, config: str, llm: dict[str, Any], estimate: Any) -> list[str]:
    """Every term of the modelled figures, stated."""
    step = llm["overheads"]["per_decode_step_s"]
    ttft = llm["overheads"]["ttft_s"]
    moved = llm["overheads"]["per_decode_step_transfers"]
    roof = llm["rooflines"]
    hbm = llm["hbm_bytes_per_token_detail"]
    per_design = ", ".join(f"{k} {v['cycles']:,} cycles" + _lane_budget(v.get("lanes"))
                           for k, v in estimate.designs.items())
    unfit = sorted({k for k, v in estimate.designs.items() if v["overrides"]})
    layers = len(llm["layers"])
    fill = sum(estimate.run_model.invocations[n].cache_fill_bytes for n in estimate.run_model.decode)
    deferred = estimate.run_model.fill_deferred(llm["prompt_len"])
    fill_syncs = 0 if deferred else estimate.run_model.cache_fill().buffer_syncs
    after_first = (f" The keys and values are read back and copied into the caches after the first token "
                   f"({estimate.run_model.kv_copy().buffer_syncs} syncs, "
                   f"{llm['overheads']['kv_cache_fill_after_first_token_s'] * 1e3:.3f} ms: in the latency, not the "
                   "TTFT)." if deferred else "")
    moved_ttft = llm["overheads"]["ttft_transfers"]
    on_device = llm["overheads"]["activations_on_device"]
    lines = [
        f"- **{name} [{config}]** ({layers} layers; compiled in {estimate.seconds:.0f} s): {per_design} "
        f"(decode at its worst-case position {llm['max_len'] - 1}: attention over all {llm['max_len']} rows).",
        f"  - TTFT {llm['ttft_ms']:.3f} ms = prefill kernels {ttft['prefill_kernels'] * 1e3:.3f} + head kernel "
        f"{ttft['head_kernel'] * 1e3:.3f} + launches {ttft['host_launch'] * 1e3:.3f} ({moved_ttft['launches']} x "
        f"{llm['overheads']['kernel_launch_s_each'] * 1e6:.0f} us + {moved_ttft['queued_launches']} queued x "
        f"{llm['overheads']['queued_run_s_each'] * 1e6:.2f} us) + syncs {ttft['host_sync'] * 1e3:.3f} "
        f"({moved_ttft['buffer_syncs'] - fill_syncs} x {llm['overheads']['buffer_sync_s_each'] * 1e6:.0f} us) + "
        f"PCIe {ttft['host_pcie'] * 1e3:.3f} + "
        + ("" if deferred else f"KV-cache fill {ttft['kv_cache_fill'] * 1e3:.3f} ({fill_syncs} syncs) + ")
        + f"host {ttft['host_embedding_and_sampling_measured_here'] * 1e3:.4f}.{after_first}",
        f"  - activations on the device (input buffers that are the previous kernel's output buffer): "
        f"{_handoffs(on_device['read_in_place']) or 'none'}; written by the host (packed otherwise): "
        f"{_handoffs(on_device['written_by_the_host']) or 'none'}; the head reads the prompt row in place as "
        f"{', '.join(on_device['head_reads_the_prompt_row_in_place']) or 'none of its buffers'}; arguments on "
        f"other pseudo-channels than the buffer they read in place (XRT copies it into their bank, not counted): "
        f"{_handoffs(on_device['on_other_pseudo_channels_than_the_producer']) or 'none'}.",
        f"  - KV cache {estimate.kv_cache} ({'1 byte' if estimate.kv_cache == 'i8' else '4 bytes'} per element), "
        f"resident on the device: {fill / 1e6:.2f} MB for {layers} layers x {llm['max_len']} rows, written once "
        f"per generation: in place by the prefill kernel: "
        f"{_handoffs(on_device['kv_cache_written_in_place_by_the_prefill']) or 'none'}; by the host from the "
        "prefill's keys and values read back: " + ("; ".join(
            f"{k}: " + ", ".join(f"{c} ({why})" for c, why in v.items())
            for k, v in on_device["kv_cache_written_by_the_host"].items()) or "none") + ".",
        f"  - decode step {llm['decode_step_ms']:.3f} ms = kernels {step['kernels'] * 1e3:.3f} ({layers} layers + "
        f"head) + launches {step['launch'] * 1e3:.3f} ({moved['kernel_launches']} x "
        f"{llm['overheads']['kernel_launch_s_each'] * 1e6:.0f} us + {moved['queued_kernel_launches']} queued x "
        f"{llm['overheads']['queued_run_s_each'] * 1e6:.2f} us) + buffer syncs {step['sync'] * 1e3:.3f} "
        f"({moved['buffer_syncs']} x {llm['overheads']['buffer_sync_s_each'] * 1e6:.0f} us) + PCIe "
        f"{step['pcie'] * 1e3:.4f} ({moved['to_device_bytes'] + moved['from_device_bytes']:,} B at "
        f"{llm['overheads']['pcie_bytes_per_s'] / 1e9:.0f} GB/s; KV cache {moved['kv_cache_bytes']} B: resident) + "
        f"host embedding and sampling {step['host_embedding_and_sampling_measured_here'] * 1e3:.4f} (measured "
        "here).",
        f"  - LM head {llm['lm_head']['cycles']:,} cycles, {llm['lm_head']['seconds_per_token'] * 1e3:.3f} ms/token "
        f"with its launch and logits transfer (its input read in place); {estimate.head}.",
        f"  - HBM {hbm['mean_over_this_run'] / 1e6:.2f} MB/token over this run (first step "
        f"{hbm['first_step'] / 1e6:.2f}, last {hbm['last_step'] / 1e6:.2f}, worst-case position "
        f"{hbm['worst_case_position'] / 1e6:.2f}, of which KV cache {hbm['kv_cache_share_at_worst_case'] / 1e6:.2f})."
        f" Rooflines: HBM {roof['hbm_tokens_per_s']:.0f} tokens/s at {roof['hbm_bytes_per_s'] / 1e9:.0f} GB/s, "
        f"compute {roof['compute_tokens_per_s']:.0f} tokens/s ({roof['compute']}); kernels alone "
        f"{roof['kernel_only_tokens_per_s']:.1f} tokens/s (within rooflines: {roof['within_rooflines']}).",
        f"  - energy <= {llm['energy']['joules_per_token_upper_bound']:.3f} J/token, >= "
        f"{llm['energy']['tokens_per_joule_lower_bound']:.2f} tokens/J at {llm['energy']['board_power_w']:.0f} W "
        "(the card's maximum power: an upper bound on energy).",
    ]
    if unfit:
        lines.append(f"  - does not fit the device as compiled (allow_unfit): {', '.join(unfit)}: "
                     + "; ".join(str(v) for k in unfit for v in estimate.designs[k]["overrides"].values())[:400])
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="32:32,64:64,128:128,256:256", help="GPT-2 [prompt:answer] list")
    parser.add_argument("--others", default="qwen2,llama,gemma", help="other models, at the first configuration")
    parser.add_argument("--quant", default="w4a8", help="fp32 | w8a8 | w4a8")
    parser.add_argument("--kv-quant", default="auto", help="auto | fp32 | int8 (auto: int8 when --quant is not fp32)")
    parser.add_argument("--target", default="u55c")
    args = parser.parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    runs = [("gpt2", c) for c in configs] + [(m, configs[0]) for m in args.others.split(",") if m.strip()]
    lines = ["| model | [in:out] | design | latency ms | TTFT ms | decode tokens/s | figures |",
             "|---|---|---|---|---|---|---|"]
    details: list[str] = []
    for model, config in runs:
        prompt, answer = (int(x) for x in config.split(":"))
        start = time.perf_counter()
        print(f"[llm_latency] {model} [{config}] ...", file=sys.stderr, flush=True)
        estimate = estimate_run(model, prompt, answer, vocab_size=VOCAB[model], quant=args.quant,
                                kv_quant=args.kv_quant, target=args.target, allow_unfit=True)
        llm = estimate.run_model.model(prompt, answer)
        print(f"[llm_latency] {model} [{config}] done in {time.perf_counter() - start:.0f} s: "
              f"{llm['decode_tokens_per_s']:.1f} tokens/s", file=sys.stderr, flush=True)
        unfit = " (exceeds the device)" if any(v["overrides"] for v in estimate.designs.values()) else ""
        kv = "int8" if estimate.kv_cache == "i8" else "fp32"
        lines.append(_row(NAMES[model], config, f"ours, {args.quant}, {kv} KV, {llm['target']} "
                          f"{llm['clock_mhz']:.0f} MHz, "
                          f"{VOCAB[model]}-token head{unfit}",
                          (llm["latency_ms"], llm["ttft_ms"], llm["decode_tokens_per_s"]), "modelled"))
        if model == "gpt2":
            lines.extend(_row(NAMES[model], config, who, rows[config], "measured on board (authors)")
                         for who, rows in PAPER_ROWS.items() if config in rows)
            if config == "32:32":
                speed_met = "met" if llm["decode_tokens_per_s"] >= TARGET_TOKENS_PER_S else "not met"
                ttft_met = "met" if llm["ttft_ms"] <= TARGET_TTFT_MS else "not met"
                details.append(f"- target at [32:32]: decode >= {TARGET_TOKENS_PER_S:.0f} tokens/s: "
                               f"{llm['decode_tokens_per_s']:.1f} ({speed_met}); TTFT <= {TARGET_TTFT_MS} ms: "
                               f"{llm['ttft_ms']:.2f} ({ttft_met}) (modelled)")
        details.extend(_details(NAMES[model], config, llm, estimate))
    print("\n".join(lines))
    print()
    print("\n".join(details))
    print("\nmodelled: timing simulation of the compiled blocks at the target clock, the LM head compiled at "
          "its real vocabulary, plus the board description's host-link figures (report['llm']['overheads']['source'])."
          " measured on board: the authors' own figures.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
