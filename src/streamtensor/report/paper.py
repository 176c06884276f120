"""The figures the whole-model page shows next to ours: measured on boards by their authors (spec
performance.md), GPT-2 medium, batch 1. ``[in:out]`` -> (latency ms, TTFT ms, decode tokens/s). The benchmarks
print them too (benchmarks/llm_latency.py)."""

from __future__ import annotations

PAPER_GPT2_MEDIUM: dict[str, dict[str, tuple[float, float, float]]] = {
    "StreamTensor U55C W4A8 250 MHz (paper)": {
        "32:32": (194.99, 34.59, 199.51), "64:64": (358.24, 61.27, 215.51),
        "128:128": (696.65, 125.35, 224.05), "256:256": (1387.76, 272.85, 229.61)},
    "Allo U280 W4A8 250 MHz": {
        "32:32": (238.32, 81.50, 204.05), "64:64": (476.64, 162.99, 204.05),
        "128:128": (953.28, 325.98, 204.05), "256:256": (1906.56, 651.96, 204.05)},
    "DFX U280 FP16 200 MHz": {
        "32:32": (350.00, 177.20, 185.19), "64:64": (694.70, 349.10, 185.19),
        "128:128": (1384.00, 692.80, 185.19), "256:256": (2800.00, 1417.60, 185.19)},
    "A100 W8A8": {
        "32:32": (291.16, 8.72, 113.30), "64:64": (567.41, 8.76, 114.56),
        "128:128": (1118.28, 8.65, 115.35), "256:256": (2227.79, 8.53, 115.35)},
}
