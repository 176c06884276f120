"""Fused / unfused on-chip memory of the paper-size blocks at the design points a search found, against the paper.

Run: ``.venv/bin/python benchmarks/paper_ratios.py [--families gemma] [--modes prefill] [--search TRIALS]
[--timeout S]``. For every model family and mode (decode with a 128-token KV cache, prefill with 32 prompt tokens)
the design point is the best trial of the ``streamtensor dse --objective memory`` study of that block, stored in
``benchmarks/studies/FAMILY-MODE-paper-memory.journal`` (an Optuna journal: the study itself, every trial and
its parameters; no per-model constants here). ``--search TRIALS`` first runs (or resumes) that study until it
holds TRIALS trials (``streamtensor.search.dse``, the same search for every block: it starts from the compiler's
default point, then TPE); without it the stored study is read as it is. The block is then compiled again at that
point with this checkout's sources and one row printed with

- the study: trials in it, the best trial, and the search's wall time in this run (``-`` when not searched);
- the fusion groups (the whole block must be one), unfused and fused intermediate bytes and their ratio, next to
  the paper's 0.148 (its best ratio, 0.148 to 0.168);
- what the fused bytes are: converter buffers, kernel-local buffers (accumulators, input tiles), FIFOs;
- converters, and how many change nothing but the spelling of a stream's type (must be 0);
- the simulated makespan (modelled cycles), whether it deadlocked, and the compile's seconds.

Each compile takes seconds: the search prunes a point whose streams carry more tokens than a compile simulates
(``--max-stream-tokens``), as it does one that does not fit. Not a unit test (the slow tests in
``tests/test_tile_order.py`` compile the same stored design points).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
from paper_figures import PAPER_FUSED_TO_UNFUSED

from streamtensor.driver import compile_llm_block
from streamtensor.search import default_point, dse, open_storage, stored_best, trial_options

FAMILIES = ("gpt2", "llama", "qwen2", "gemma")
MODES = ("decode", "prefill")
STUDIES = Path(__file__).resolve().parent / "studies"
BLOCK = {"seq_len": 32, "max_len": 128, "size": "paper"}


def study_of(family: str, mode: str, studies: Path = STUDIES) -> tuple[str, str]:
    """(storage, study name) of the memory study of one paper-size block."""
    name = f"{family}-{mode}-paper-memory"
    return str(studies / f"{name}.journal"), name


def design_point(family: str, mode: str, studies: Path = STUDIES) -> tuple[dict[str, Any], str]:
    """The options of the stored study's best trial and a note naming it (trial k of n)."""
    storage, name = study_of(family, mode, studies)
    best = stored_best(storage, name)
    return trial_options(best.params), f"trial {best.number}"


def search(family: str, mode: str, trials: int, timeout: float | None, studies: Path) -> str:
    storage, name = study_of(family, mode, studies)
    result = dse(family, studies / "runs" / name, trials=trials, objective="memory", storage=storage,
                 study_name=name, write_best=False, timeout=timeout, mode=mode, **BLOCK)
    return f"{len(result.trials)} trials, {result.seconds:.0f} s"


def study_row(family: str, mode: str, studies: Path) -> str:
    """One row of ``--summary``: the stored study as it is (no compile): its trials, the default point's ratio and
    the best one, what the best changed from the default, and the study's wall time (first trial start to last
    trial end, over every run that added to it) and summed compile seconds."""
    storage, name = study_of(family, mode, studies)
    if not Path(storage).exists():
        return f"| {family} | {mode} | no stored study | | | | | | |"
    trials = optuna.load_study(study_name=name, storage=open_storage(storage)).get_trials(deepcopy=False)
    states = Counter(t.state.name.lower() for t in trials)
    default = default_point(mode)
    # The enqueued default point (its options then: ``trial_options``).
    first = next((t for t in trials if t.user_attrs.get("enqueued") == "compiler default" and t.value is not None),
                 None)
    best = stored_best(storage, name)
    changed = " ".join(f"{k}={v}" for k, v in sorted(trial_options(best.params).items())
                       if default.get(k) != v) or "(default)"
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    wall = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
    compile_s = sum(float(t.user_attrs.get("compile_seconds", 0)) for t in trials)
    return (f"| {family} | {mode} | {len(trials)} ({', '.join(f'{n} {k}' for k, n in sorted(states.items()))}) | "
            f"{first.value if first else float('nan'):.3f} | {best.value:.3f} (trial {best.number}) | "
            f"{'yes' if best.value < PAPER_FUSED_TO_UNFUSED else 'NO'} | {changed} | {wall:.0f} | {compile_s:.0f} |")


def row(family: str, mode: str, searched: str, studies: Path) -> str:
    options, note = design_point(family, mode, studies)
    start = time.perf_counter()
    design, _ = compile_llm_block(family, mode=mode, **BLOCK, **options)
    seconds = time.perf_counter() - start
    report = design.report
    memory, converters = report["memory"], report["converters"]
    respelled = sum(c["source_type"] == c["result_type"] for c in converters)
    shown = " ".join(f"{k}={v}" for k, v in sorted(options.items()))
    return (f"| {family} | {mode} | {note} | {searched} | {shown} | {len(report['fusion']['groups'])} | "
            f"{memory['intermediate_unfused_bytes']} | {memory['intermediate_fused_bytes']} | "
            f"{memory['fused_to_unfused']:.3f} | {PAPER_FUSED_TO_UNFUSED:.3f} | {memory['converter_bytes']} | "
            f"{memory['kernel_local_bytes']} | {memory['fifo_bytes']} | {len(converters)} | {respelled} | "
            f"{report['simulation']['makespan_cycles']} | {report['simulation']['deadlock']} | {seconds:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--search", type=int, metavar="TRIALS",
                        help="run (or resume) each block's memory study until it holds this many trials first")
    parser.add_argument("--timeout", type=float, help="seconds per search after which no new trial starts")
    parser.add_argument("--studies", type=Path, default=STUDIES, help="directory of the study journals")
    parser.add_argument("--summary", action="store_true",
                        help="only print the stored studies (trials, default and best ratio, wall time); no compile")
    args = parser.parse_args()
    if args.summary:
        print("| model | mode | trials | default ratio | best ratio | < 0.148 | best: options changed from default | "
              "study wall s | compile s (sum) |")
        print("|" + "---|" * 9)
        for mode in args.modes:
            for family in args.families:
                print(study_row(family, mode, args.studies))
        return
    print("| model | mode | best | search | design point | groups | unfused B | fused B | ratio | paper | conv B | "
          "local B | FIFO B | convs | respelled | cycles (modelled) | deadlock | compile s |")
    print("|" + "---|" * 18)
    for mode in args.modes:
        for family in args.families:
            searched = search(family, mode, args.search, args.timeout, args.studies) if args.search else "-"
            print(row(family, mode, searched, args.studies), flush=True)


if __name__ == "__main__":
    main()
