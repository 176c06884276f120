"""Compile speed of the paper-size blocks: seconds per family x mode x design point, stage by stage.

Run: ``.venv/bin/python benchmarks/compile_speed.py [--families gpt2,llama] [--modes decode,prefill]
[--points default,rank1,tile2,tile4] [--json OUT.json]``. Every row is one ``streamtensor compile MODEL --size paper``
(prefill: ``--seq-len 32``; decode: ``--max-len 128``) to a Vitis project, in a fresh process, one at a time, and
prints

- wall and CPU seconds of the whole process (imports, frontend, allocation, codegen, the PyTorch reference; CPU
  from ``wait4``'s rusage: the figure to compare on a shared machine, next to the load average when it started),
- CPU seconds of the frontend stages (``frontend.*``), of the tiling (``tiling``: the token tile's choice and the
  tile-order searches), of FIFO sizing (``allocation.fifo_lp``) and of the rest of the allocation (simulation,
  resources, SLR plan), from the report's ``stage_cpu_seconds``,
- FIFO bits, the simulated makespan and its unbounded-FIFO baseline (modelled cycles), and whether it deadlocked;
- whether the Linalg graph came from the on-disk cache (``frontend.linalg_cache``: ``miss`` exports and stores,
  ``hit`` skips torch-mlir); the benchmark uses a fresh cache directory, so with ``--runs 2`` the first run of a
  point misses and the second hits;
- ``memo``: which costly decisions came from the memo beside that cache (``analysis.solve_memo``): the token tile's
  scores (``hit``, ``miss``, ``none``: no choice), and of the fusion groups' FIFO LPs and SLR ILPs how many
  (``--new-points`` empties the memo before every compile: a design point compiled for the first time with the
  Linalg cache warm, which is what a search trial costs);
- ``design``: a digest of the design (the report without the compile's timings, and the dataflow IR): equal
  digests of two sources' compiles of a point are the same design;
- ``issue_s``: the seconds issue 21 measured for the block before this work (wall seconds of the whole compile,
  default point; ``-`` where it gave none).

Design points: ``default``, ``rank1`` (``--max-token-rank 1``), ``tile2`` / ``tile4`` (``--token-tile-size 2 / 4``,
prefill only), ``best``: the best trial of the block's stored memory study
(``benchmarks/studies/FAMILY-MODE-paper-memory.journal``, ``paper_ratios.study_of``), its parameters passed as the
CLI's flags (``cli_flags``; a block without a stored study prints so), and ``largest``: the tiling point whose
streams carry the most tokens within ``--max-stream-tokens`` (``largest_point``: the slowest a search may visit to
simulate; ``rank1`` points carry more and are refused in one line).
Not a unit test: timings are noisy.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))  # this checkout's streamtensor (the stored studies' parameters, its errors)

from streamtensor.errors import OptionError  # noqa: E402

FAMILIES = ("gpt2", "llama", "qwen2", "gemma")
MODES = ("decode", "prefill")
POINTS: dict[str, list[str]] = {
    "default": [],
    "rank1": ["--max-token-rank", "1"],
    "tile2": ["--token-tile-size", "2"],
    "tile4": ["--token-tile-size", "4"],
}
# Issue 21's figures (default point, whole compile, wall seconds on this 2-core machine) to print next to ours.
ISSUE_SECONDS: dict[tuple[str, str], float] = {
    ("gpt2", "decode"): 32.5, ("llama", "decode"): 92.4, ("qwen2", "decode"): 42.2, ("gemma", "decode"): 36.5,
    ("gpt2", "prefill"): 112.5,
}


# A search parameter (``search.SPACE``) -> the CLI flags that set it.
_FLAGS: dict[str, Callable[[Any], list[str]]] = {
    "default_tile_size": lambda v: ["--default-tile-size", str(v)],
    "overall_unroll_size": lambda v: ["--overall-unroll-size", str(v)],
    "max_token_rank": lambda v: ["--max-token-rank", str(v)],
    "token_tile_size": lambda v: ["--token-tile-size", str(v)],
    "permute_reductions_outward": lambda v: [] if v else ["--no-permute"],
    "agree_tiles": lambda v: [] if v else ["--no-agree-tiles"],
    "layout_aware_order": lambda v: [] if v else ["--no-layout-order"],
    "order_objective": lambda v: ["--order-objective", str(v)],
    "fuse_into_contractions": lambda v: [] if v else ["--no-fuse-into-contractions"],
    "fifo_strategy": lambda v: ["--fifo-strategy", str(v)],
    "fifo_latency_slack": lambda v: ["--fifo-latency-slack", str(v)],
    "quant": lambda v: ["--quant", str(v)],
}


def cli_flags(params: dict[str, Any]) -> list[str]:
    """``streamtensor compile`` flags of a search trial's parameters (a KeyError names one this table lacks)."""
    return [flag for name, value in sorted(params.items()) for flag in _FLAGS[name](value)]


def largest_point(family: str, mode: str) -> tuple[list[str], str]:
    """The flags of the tiling point whose design's streams carry the most tokens within the compile's limit
    (``analysis.allocation.MAX_STREAM_TOKENS``): the heaviest of the points a search may visit to simulate. Over
    ``default_tile_size`` x ``max_token_rank`` x ``token_tile_size`` (prefill) x ``fuse_into_contractions`` of
    ``search.SPACE``, the other options at their defaults, each built to its dataflow graph here (no FIFO sizing; a
    design over the limit is refused before its converter banks are simulated); tiles from the coarsest, a
    combination dropped at the first tile over the limit (finer tiles carry more)."""
    from streamtensor.analysis.allocation import stream_tokens
    from streamtensor.driver import compile_llm_block
    from streamtensor.errors import SimulationSizeError
    from streamtensor.search import PREFILL_SPACE, SPACE

    best: tuple[int, dict[str, Any]] = (0, {})
    token_tiles = PREFILL_SPACE["token_tile_size"] if mode == "prefill" else [None]
    for rank, tt, fuse in itertools.product(SPACE["max_token_rank"], token_tiles, SPACE["fuse_into_contractions"]):
        for tile in sorted(SPACE["default_tile_size"], reverse=True):
            params = {"default_tile_size": tile, "max_token_rank": rank, "fuse_into_contractions": fuse,
                      **({} if tt is None else {"token_tile_size": tt})}
            try:
                design, _ = compile_llm_block(family, mode=mode, size="paper", seq_len=32, max_len=128,
                                              size_fifos=False, **params)
            except SimulationSizeError:
                break
            assert design.dataflow is not None
            best = max(best, (stream_tokens(design.dataflow), params), key=lambda b: b[0])
    return cli_flags(best[1]), f"{best[0]:,} tokens"


def point_flags(family: str, mode: str, point: str) -> tuple[list[str], str]:
    """The flags of a design point and a note ("trial k" for ``best``, the tokens for ``largest``); an OptionError
    where the block has no stored study."""
    if point == "largest":
        return largest_point(family, mode)
    if point != "best":
        return POINTS[point], ""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from paper_ratios import study_of

    from streamtensor.search import stored_best, trial_options

    storage, name = study_of(family, mode)
    if not Path(storage).exists():
        raise OptionError(f"no stored study {name}")
    best = stored_best(storage, name)
    return cli_flags(trial_options(best.params)), f"trial {best.number}"


def measure(family: str, mode: str, point: str, src: Path, cache: Path, quant: str = "fp32") -> dict[str, object]:
    """One compile in a child process (``streamtensor`` from ``src``); its wall and CPU seconds and what its
    report says."""
    flags, note = point_flags(family, mode, point)
    if quant != "fp32":
        flags = [*flags, "--quant", quant]
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "streamtensor.cli", "compile", family, "--size", "paper", "--mode", mode,
               "--seq-len", "32", "--max-len", "128", "--quiet", "-o", out, *flags]
        env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               "STREAMTENSOR_LINALG_CACHE": str(cache)}
        load = os.getloadavg()[0]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        err = proc.stderr.read() if proc.stderr else ""
        row: dict[str, object] = {"family": family, "mode": mode, "point": f"{point} ({note})" if note else point,
                                  "quant": quant, "flags": " ".join(flags),
                                  "issue_s": ISSUE_SECONDS.get((family, mode), "-") if point == "default" else "-",
                                  "load": round(load, 2),
                                  "wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
                                  "max_rss_mb": usage.ru_maxrss // 1024, "ok": status == 0}
        if status != 0:
            # The CLI's one-line error, not a library's warning before it.
            lines = [line for line in err.splitlines() if line.strip() and not line.startswith("[")]
            row["error"] = lines[-1] if lines else f"exit status {status}"
            return row
        report = json.loads((Path(out) / "report.json").read_text())
        dataflow_ir = (Path(out) / "dataflow.mlir").read_text()
    cpu = report.get("stage_cpu_seconds", {})  # not in reports of older sources (--src)
    sim = report["simulation"]
    row.update({
        "frontend_cpu_s": round(sum(v for k, v in cpu.items() if k.startswith("frontend.")), 2),
        "tiling_cpu_s": cpu.get("tiling"),
        "fifo_lp_cpu_s": cpu.get("allocation.fifo_lp"),
        "fifo_lp_wall_s": report["stages"].get("allocation.fifo_lp"),
        "alloc_rest_cpu_s": round(sum(v for k, v in cpu.items()
                                      if k.startswith("allocation.") and k != "allocation.fifo_lp"), 2),
        "fifo_bits": report["fifo_total_bits"],
        "makespan": sim["makespan_cycles"],
        "unbounded": sim["unbounded_makespan_cycles"],
        "deadlock": sim["deadlock"],
        "linalg_cache": report.get("frontend_cache", {}).get("linalg", "-"),
        "memo": _memo_cell(report.get("frontend_cache", {}).get("memo")),
        "design": design_digest(report, dataflow_ir),
    })
    return row


def _memo_cell(memo: dict[str, str] | None) -> str:
    """The decisions a compile read from the memo (``analysis.solve_memo``): token tile, tile orders, FIFO LP,
    SLR ILP."""
    if memo is None:
        return "-"  # the memo off, or a source without it (--src)
    return (f"tile {memo['token_tile']}, orders {memo.get('tile_orders', '-')}, lp {memo.get('fifo_lp', '-')}, "
            f"slr {memo.get('slr', '-')}")


_SOURCE_LOCATION = re.compile(r"  // (?:[\w/.]+\.py|<eval_with_key>\.\d+):\d+$", re.MULTILINE)
# Report entries that time the compile rather than describe the design.
_TIMING_KEYS = ("stages", "stage_cpu_seconds", "frontend_cache", "allocation_seconds")


def design_digest(report: dict[str, Any], dataflow_ir: str) -> str:
    """A digest of the design a compile made: its report without the compile's timings and its dataflow IR (the
    same digest before and after a change of the compiler's speed: the same design). The IR's source-location
    comments (``// block.py:313``, or ``// <eval_with_key>.42:10`` for torch.fx's generated code, numbered by how
    many graphs the process traced before) name lines of the compiler, not the design, so they are left out."""
    design = {k: v for k, v in report.items() if k not in _TIMING_KEYS}
    design["fifo_lp"] = {k: v for k, v in design.get("fifo_lp", {}).items() if k != "solve_seconds"}
    text = json.dumps(design, sort_keys=True) + _SOURCE_LOCATION.sub("", dataflow_ir)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


COLUMNS = ("family", "mode", "point", "quant", "issue_s", "load", "wall_s", "cpu_s", "linalg_cache", "memo",
           "frontend_cpu_s", "tiling_cpu_s", "fifo_lp_cpu_s", "fifo_lp_wall_s", "alloc_rest_cpu_s", "max_rss_mb",
           "fifo_bits", "makespan", "unbounded", "deadlock", "design")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--points", default="default,best,rank1,tile2,tile4",
                        help="design points (tile2/tile4 apply to prefill only; best: the stored study's)")
    parser.add_argument("--quant", default="fp32",
                        help="comma-separated quantization schemes, each point compiled under each (fp32, w8a8, w4a8)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--runs", type=int, default=1, help="compiles per point (the first misses the Linalg cache)")
    parser.add_argument("--cache", type=Path,
                        help="Linalg cache directory to use and keep (default: a fresh one per invocation, so the "
                             "first compile of each block misses); a warm one times a user's second compile")
    parser.add_argument("--new-points", action="store_true",
                        help="empty the memo of decisions (analysis.solve_memo) before every compile: each compile "
                             "is then of a design point seen for the first time, the Linalg cache still warm (what a "
                             "search trial costs)")
    parser.add_argument("--src", type=Path, default=SRC,
                        help="the streamtensor sources to time (default: this checkout's; another checkout's "
                             "src/ gives the before figures)")
    args = parser.parse_args()
    rows = []
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    with tempfile.TemporaryDirectory() as fresh:
        cache = args.cache or Path(fresh)
        for family in args.families.split(","):
            for mode in args.modes.split(","):
                for point in args.points.split(","):
                    if point.startswith("tile") and mode != "prefill":
                        continue
                    for quant, _ in itertools.product(args.quant.split(","), range(args.runs)):
                        if args.new_points:
                            shutil.rmtree(cache / "memo", ignore_errors=True)
                        try:
                            row = measure(family, mode, point, args.src, cache, quant)
                        except OptionError as err:
                            print(f"| {family} | {mode} | {point} | {err} |", flush=True)
                            break
                        rows.append(row)
                        if row["ok"]:
                            print("| " + " | ".join(str(row.get(c)) for c in COLUMNS) + " |", flush=True)
                        else:
                            print(f"| {family} | {mode} | {point} | FAILED: {row['error']} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
