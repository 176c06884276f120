"""Quantized tiny blocks end to end: the four families x prefill/decode under --quant w4a8 and w8a8.

For each block: compile; the Linalg interpreter and the stream execution against the quantized PyTorch reference
(``frontend.quant``); the Vitis project's C simulation run twice (``streamtensor verify``: asserted against the
quantized reference, the fp32 model's error reported); and Vitis's synthesis front-end check of the generated
code (``verify.frontend_check``; the 4,096-bit stream-width rule is issue 18's and is listed apart). One table.

    .venv/bin/python benchmarks/quant_blocks.py [--schemes w4a8,w8a8] [--families gpt2,llama,...] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from streamtensor import compile_llm_block
from streamtensor.codegen.vitis.boards import U55C
from streamtensor.verify.frontend_check import frontend_check
from streamtensor.verify.simulate import verify_project

warnings.filterwarnings("ignore", category=FutureWarning)
FAMILIES = ("gpt2", "llama", "qwen2", "gemma")
MODES = ("prefill", "decode")


def max_error(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64)))) for g, w in zip(got, want,
                                                                                                    strict=True))


def run_one(family: str, mode: str, scheme: str, out: Path) -> dict[str, object]:
    start = time.perf_counter()
    design, block = compile_llm_block(family, mode=mode, seq_len=8, max_len=16, size="tiny", quant=scheme)
    args = block.example_inputs(0)
    with torch.no_grad():
        reference = [o.numpy() for o in block(*args)]
    interp = design.run_reference(*args)
    streams = design.simulate_streams(*args)
    project = out / f"{family}_{mode}_{scheme}"
    design.write_project(project, *args)
    verified = verify_project(project, runs=2)
    front = frontend_check(project, U55C)
    other = [v for v in front.violations if " bits, over the " not in v]
    int_inputs = sum(1 for v in design.graph.inputs if v.type.dtype == "i8")
    return {
        "block": f"{family} {mode}", "scheme": scheme, "i8 inputs": int_inputs,
        "interp": max_error(interp, reference), "streams": max_error(streams, reference),
        "csim": max(c.max_abs_error for c in verified.checks) if verified.checks else float("nan"),
        "vs fp32": max(c.max_abs_error for c in verified.float_checks) if verified.float_checks else float("nan"),
        "2 runs identical": verified.deterministic, "verify": verified.verdict(),
        "front end": "pass" if not front.diagnostics and not other else f"FAIL {front.diagnostics[:1]} {other[:1]}",
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schemes", default="w4a8,w8a8")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--out", help="where the projects go (default: a temporary directory)")
    args = parser.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="quant_blocks."))
    rows = []
    for scheme in args.schemes.split(","):
        for family in args.families.split(","):
            for mode in args.modes.split(","):
                row = run_one(family, mode, scheme, out)
                rows.append(row)
                print(" | ".join(f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}" for k, v in row.items()),
                      flush=True)
    header = list(rows[0])
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{row[k]:.3g}" if isinstance(row[k], float) else str(row[k]) for k in header)
              + " |")
    ok = all(r["verify"] == "PASS" and r["front end"] == "pass" and r["2 runs identical"] for r in rows)
    print("\nall blocks: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
