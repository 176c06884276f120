"""Design-space exploration: an Optuna study over the compile options of one decoder block (issue 21).

Outer level: Optuna samples the tiling (``default_tile_size``, ``overall_unroll_size``, ``max_token_rank``,
``token_tile_size`` for prefill, the permutation and ordering switches), the fusion switch, the quantization
(``quant``: fp32, W8A8 or W4A8 linear layers) and the FIFO sizing (strategy, latency slack). An option of the space
that the caller gives (``streamtensor dse --quant w4a8``) is fixed: its choices narrow to that value. HBM striping
is no knob: every DMA's stripes follow from its kernel's rate (``transforms.stripes``), so each trial's tiling
decides them. Inner levels stay the compiler's deterministic heuristics: every trial is one
``compile_llm_block`` (intensity-aware unrolling, fusion, the FIFO LP, the timing simulation, the resource
estimate and the SLR plan). A design that does not fit the device or its SLRs, whose timing simulation
deadlocks, or whose streams carry more tokens than a compile simulates (``max_stream_tokens``), is infeasible:
the trial is pruned (its reason kept in the trial's ``reason`` attribute), which the TPE sampler ranks below every
feasible trial, so it steers away from such points (the paper's feedback).

Objectives (all *modelled*, for the one compiled block, from its report): ``tokens_per_s`` (decode: one token per
block run; prefill: ``seq_len`` tokens per run; clock / simulated makespan), ``ttft`` (seconds of one run),
``cycles`` (simulated makespan), ``memory`` (fused / unfused on-chip intermediate bytes, the paper's ratio) and
``onchip_bytes`` (fused intermediate + input-stream + DMA buffer bytes). Several objectives give a Pareto front.

Storage: the study lives in Optuna storage, ``OUTDIR/study.journal`` (a journal file) by default; ``storage`` may
name another journal file or an RDB URL (``sqlite:///...``, ``postgresql://...``, ``mysql://...``) that several
machines share. ``trials`` counts the trials *in the storage* (complete, pruned and failed, plus those running
elsewhere): a rerun resumes a study, K workers and other machines share the count. Workers that start trials at
the same moment may each take the last one: the study then ends with at most ``workers - 1`` trials more. A trial
left running by a process that died on this machine is marked failed when a worker here starts.

A new study starts with the compiler's default point (``default_point``): the best is never worse than what
the compiler picks without a search, and the summary shows by how much it is better. With one objective, every
next trial is first a neighbour of the current centre (one option changed, in a seeded random order, skipping
points tried already), the centre moving to the best of its neighbourhood once all of it was tried: a
steepest-ascent local search from the default that a paper-size block's few tens of trials afford; at a local
optimum TPE samples (after ``STARTUP_TRIALS``). Several objectives: TPE only.

Outputs in OUTDIR: the storage, ``summary.md`` (one row per trial: state, parameters, objectives, reason),
``best.json`` (the best trial, or the Pareto front) and the Vitis project of the best design (``best/``; with
several objectives, ``front/trial-N/`` per Pareto trial).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, Trial, TrialState

from streamtensor.driver import CompileOptions, Design, compile_llm_block
from streamtensor.errors import (
    DeadlockError,
    OptionError,
    ResourceBudgetError,
    SimulationSizeError,
    StageError,
    StreamTensorError,
)
from streamtensor.host import memory_cap, use_small_pages
from streamtensor.report import write_report


def _clock_hz(report: dict[str, Any]) -> float:
    return float(report["target"]["clock_mhz"]) * 1e6


def _makespan(report: dict[str, Any]) -> int:
    cycles = report["simulation"]["makespan_cycles"]
    assert cycles is not None  # a deadlocked design is pruned before its objectives are read
    return int(cycles)


def _tokens_per_run(report: dict[str, Any]) -> int:
    return 1 if report["mode"] == "decode" else int(report["geometry"]["seq_len"])


@dataclass(frozen=True)
class Objective:
    name: str
    direction: str  # "minimize" | "maximize"
    value: Callable[[dict[str, Any]], float]
    unit: str


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("tokens_per_s", "maximize", lambda r: _tokens_per_run(r) * _clock_hz(r) / _makespan(r),
              "tokens/s (modelled, one block)"),
    Objective("ttft", "minimize", lambda r: _makespan(r) / _clock_hz(r), "s per block run (modelled)"),
    Objective("cycles", "minimize", lambda r: float(_makespan(r)), "cycles (modelled)"),
    Objective("memory", "minimize", lambda r: float(r["memory"]["fused_to_unfused"]),
              "fused / unfused intermediate bytes"),
    Objective("onchip_bytes", "minimize",
              lambda r: float(r["memory"]["intermediate_fused_bytes"] + r["memory"]["input_stream_bytes"]
                              + r["memory"]["dma_bytes"]), "bytes"),
)}

# The search space: option -> choices (categorical: the compiler's options take these few values).
SPACE: dict[str, list[Any]] = {
    "default_tile_size": [4, 8, 16, 32],
    "overall_unroll_size": [256, 512, 1024, 2048],
    "max_token_rank": [1, 2],
    "permute_reductions_outward": [True, False],
    "agree_tiles": [True, False],
    "layout_aware_order": [True, False],
    "order_objective": ["auto", "memory", "latency"],
    "fuse_into_contractions": [True, False],
    "fifo_strategy": ["normal", "conservative"],
    "fifo_latency_slack": [0.0, 0.01, 0.05],
    "quant": ["fp32", "w8a8", "w4a8"],
}
# Options that joined the space after stored studies (benchmarks/studies) ran, with the value that reproduces
# what the compiler did then: a stored trial without the option compiles as it did.
ADDED_OPTIONS: dict[str, Any] = {"order_objective": "memory", "quant": "fp32"}


def trial_options(params: dict[str, Any]) -> dict[str, Any]:
    """The compile options of a (stored) trial's parameters (``ADDED_OPTIONS`` for those it predates)."""
    return {**ADDED_OPTIONS, **params}


PREFILL_SPACE: dict[str, list[Any]] = {"token_tile_size": [0, 2, 4, 8]}  # 0: untiled (16-row tiles)

# Random trials before TPE models the space (Optuna's default is 10). A paper-size compile costs seconds to
# minutes, so a study has tens of trials, and most of them come from the local search (``_untried_neighbour``):
# in the memory studies of the Qwen2 and Gemma decode blocks, 7 random trials after the default all measured
# 0.5 to 12.8 (each lost several of the default's good switches), while neighbours of the best reached 0.102 and
# 0.129 by trials 14 and 15 (benchmarks/studies).
STARTUP_TRIALS = 4

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True)
class DseConfig:
    """What to search and where the study lives (``dse``'s arguments, checked)."""

    model: str
    output: Path
    trials: int
    objectives: tuple[str, ...]
    storage: str
    study_name: str
    workers: int
    timeout: float | None
    compile_options: dict[str, Any] = field(default_factory=dict)  # mode, size, seq_len, max_len, target, seed
    seed: int = 0

    @property
    def fixed(self) -> dict[str, Any]:
        """Options of the space the caller gave: each trial takes them as its (one-choice) parameters."""
        mode = self.compile_options.get("mode", "prefill")
        return {k: v for k, v in self.compile_options.items() if k in _space(mode)}

    @property
    def space(self) -> dict[str, list[Any]]:
        return _space(self.compile_options.get("mode", "prefill"), self.fixed)

    @property
    def block_options(self) -> dict[str, Any]:
        """The compile options every trial shares (the fixed ones come with the trial's parameters)."""
        return {k: v for k, v in self.compile_options.items() if k not in self.fixed}


@dataclass
class DseResult:
    """A finished (or timed-out) study: its trials and the best design, or the Pareto front."""

    study_name: str
    storage: str
    objectives: tuple[str, ...]
    trials: list[FrozenTrial]
    best: list[FrozenTrial]  # one trial for one objective; the Pareto front for several
    seconds: float

    def count(self, state: TrialState) -> int:
        return sum(t.state == state for t in self.trials)


def parse_objectives(objective: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(n.strip() for n in (objective.split(",") if isinstance(objective, str) else objective))
    unknown = [n for n in names if n not in OBJECTIVES]
    if not names or unknown or len(set(names)) != len(names):
        raise OptionError(f"bad objective {','.join(names) or '(none)'}: expected one or more distinct of "
                          f"{', '.join(OBJECTIVES)}")
    return names


def open_storage(url: str) -> BaseStorage:
    """An RDB URL (``scheme://...``) or a journal file path as Optuna storage."""
    if "://" in url:
        return RDBStorage(url)
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(url))


def _space(mode: str, fixed: dict[str, Any] | None = None) -> dict[str, list[Any]]:
    """The space of a block's study; ``fixed``: options the caller gave, each narrowed to its value."""
    space = {**SPACE, **(PREFILL_SPACE if mode == "prefill" else {})}
    return {name: [fixed[name]] if fixed and name in fixed else choices for name, choices in space.items()}


def _sample(trial: Trial, space: dict[str, list[Any]]) -> dict[str, Any]:
    return {name: trial.suggest_categorical(name, choices) for name, choices in space.items()}


DEFAULT_ENQUEUED = "compiler default"  # the ``enqueued`` attribute of a study's first trial (others: neighbours)


def default_point(mode: str, fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    """The compiler's default options as a point of the space (``fixed``: as ``_space``): the first trial of
    every new study, so the study starts from a design the compiler picks without a search and every best is
    measured against it."""
    defaults = CompileOptions()
    values = {**asdict(defaults.tiling), **asdict(defaults)}
    # The compiler chooses a prefill block's token tile itself (None: ``transforms.tiling.tile_graph``), a
    # choice that is no point of the space (it depends on the block and its candidates are the space's own
    # values): the study starts untiled.
    values["token_tile_size"] = values["token_tile_size"] or 0
    space = _space(mode, fixed)
    point = {name: choices[0] if len(choices) == 1 else values[name] for name, choices in space.items()}
    assert all(point[n] in choices for n, choices in space.items())  # the space holds the defaults
    return point


def stored_best(storage: str, study_name: str) -> FrozenTrial:
    """The best complete trial of a stored single-objective study (for benchmarks and tests that take their
    design points from a search); an OptionError when the storage holds no such study or no feasible trial."""
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
        return study.best_trial
    except (KeyError, ValueError) as err:
        raise OptionError(f"no best trial of study {study_name!r} in {storage}: {err}") from err


def _objective(cfg: DseConfig) -> Callable[[Trial], tuple[float, ...]]:
    def run(trial: Trial) -> tuple[float, ...]:
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        params = _sample(trial, cfg.space)
        start, cpu = time.perf_counter(), time.process_time()
        try:
            design, _ = compile_llm_block(cfg.model, **cfg.block_options, **params)
        # Infeasible (too large to simulate in the compile's budget too): steer away from it.
        except (ResourceBudgetError, DeadlockError, SimulationSizeError) as err:
            trial.set_user_attr("reason", str(err))
            raise optuna.TrialPruned(str(err)) from err
        except StageError as err:
            trial.set_user_attr("reason", str(err))
            if err.out_of_memory:  # too large to compile on this machine (``host.memory_cap``): infeasible too
                raise optuna.TrialPruned(str(err)) from err
            raise
        except StreamTensorError as err:  # a point the compiler refuses: a failed trial, the reason kept
            trial.set_user_attr("reason", str(err))
            raise
        trial.set_user_attr("compile_seconds", round(time.perf_counter() - start, 2))
        # CPU seconds of this process: on a shared machine the figure to compare (wall time depends on the load).
        trial.set_user_attr("compile_cpu_seconds", round(time.process_time() - cpu, 2))
        report = design.report
        values = tuple(OBJECTIVES[name].value(report) for name in cfg.objectives)
        trial.set_user_attr("makespan_cycles", report["simulation"]["makespan_cycles"])
        trial.set_user_attr("fused_to_unfused", report["memory"]["fused_to_unfused"])
        return values

    return run


def _fail_dead_trials(study: optuna.Study) -> None:
    """Mark failed the trials still running in the storage that a process of this host started and that is gone
    (a study interrupted by a kill or a crash); trials of other hosts are theirs to finish."""
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if t.user_attrs.get("host") != host or not isinstance(pid, int) or _alive(pid):
            continue
        try:
            study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker got there first


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _counted(study: optuna.Study) -> int:
    """Trials that count towards ``trials``: finished, or running somewhere."""
    return len(study.get_trials(deepcopy=False, states=(*_FINISHED, TrialState.RUNNING)))


def _describe(t: FrozenTrial, objectives: tuple[str, ...]) -> str:
    if t.state == TrialState.COMPLETE and t.values is not None:
        return ", ".join(f"{n} {v:.6g}" for n, v in zip(objectives, t.values, strict=True))
    reason = t.user_attrs.get("reason", "")
    return f"{t.state.name.lower()}" + (f": {reason}" if reason else "")


def _best_line(study: optuna.Study, objectives: tuple[str, ...]) -> str:
    try:
        best = study.best_trials
    except ValueError:
        return "none feasible yet"
    if not best:
        return "none feasible yet"
    if len(objectives) == 1:
        return f"best trial {best[0].number}: {_describe(best[0], objectives)}"
    return f"Pareto front: {len(best)} trial(s)"


def _point(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(trial_options(params).items()))


def _untried_neighbour(study: optuna.Study, space: dict[str, list[Any]], seed: str) -> dict[str, Any] | None:
    """The next point of a steepest-ascent local search from the study's first trial (the compiler's default):
    every neighbour of the centre (one option changed) is tried, in a seeded random order, before the search
    moves to the best of them where it beats the centre; a point no trial has (finished, running or queued; an
    infeasible one counts as tried). None at a local optimum, or before the first trial finished (then TPE
    samples). Trying the whole neighbourhood first keeps the search from leaving a good move untried because an
    earlier, smaller one won: from an fp32 default, W4A8 is such a move."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.state in _FINISHED or t.state == TrialState.RUNNING]
    tried = {_point(t.params) for t in trials}
    tried |= {_point(t.system_attrs.get("fixed_params", {}))
              for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))}
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not done:
        return None
    sign = 1 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1
    score = {_point(t.params): sign * t.value for t in done}  # lower is better
    centre = _point(min(done, key=lambda t: t.number).params)  # a complete trial: it has a score
    for _ in range(len(tried) + 1):
        params = dict(centre)
        neighbours = [_point({**params, name: v}) for name, choices in space.items() for v in choices
                      if v != params.get(name)]
        random.Random(f"{seed}-{centre}").shuffle(neighbours)
        untried = [n for n in neighbours if n not in tried]
        if untried:
            return dict(untried[0])
        best = min((n for n in neighbours if n in score), key=score.__getitem__, default=None)
        if best is None or score[best] >= score[centre]:
            return None  # a local optimum: TPE samples from here on
        centre = best
    return None


# The share of this machine's memory the workers' trials may take together (``host.memory_cap``); the rest is left
# to whatever else runs (the compiles of the paper-size blocks take 0.3-2.5 GB at the default points).
MEMORY_SHARE = 0.5


def _worker(cfg: DseConfig, worker: int, deadline: float | None) -> None:
    """One worker: trials until the storage holds ``cfg.trials`` or the deadline passed; a progress line each."""
    if multiprocessing.parent_process() is not None:  # a spawned worker: its process is the compiler's
        use_small_pages()
    with memory_cap(MEMORY_SHARE / cfg.workers):
        _trials(cfg, worker, deadline)


def _trials(cfg: DseConfig, worker: int, deadline: float | None) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=cfg.study_name, storage=open_storage(cfg.storage),
                              sampler=optuna.samplers.TPESampler(seed=cfg.seed + worker,
                                                                 n_startup_trials=STARTUP_TRIALS))
    _fail_dead_trials(study)
    objective = _objective(cfg)
    space = cfg.space
    while _counted(study) < cfg.trials and (deadline is None or time.time() < deadline):
        if len(cfg.objectives) == 1:
            neighbour = _untried_neighbour(study, space, f"{cfg.seed}-{worker}")
            if neighbour is not None:
                study.enqueue_trial(neighbour, user_attrs={"enqueued": "neighbour of the best"},
                                    skip_if_exists=True)
        study.optimize(objective, n_trials=1, catch=(StreamTensorError,))
        last = study.get_trials(deepcopy=False)
        mine = [t for t in last if t.user_attrs.get("pid") == os.getpid() and t.state in _FINISHED]
        done = len([t for t in last if t.state in _FINISHED])
        if mine:
            t = mine[-1]
            print(f"[dse] worker {worker}: trial {t.number} {_describe(t, cfg.objectives)}; "
                  f"{done}/{cfg.trials} done; {_best_line(study, cfg.objectives)}", flush=True)


def _summary(result: DseResult) -> str:
    names = sorted({k for t in result.trials for k in t.params})
    objs = [f"{n} ({OBJECTIVES[n].unit})" for n in result.objectives]
    lines = [f"# Study {result.study_name}", "",
             f"Storage: `{result.storage}`. Trials: {len(result.trials)} "
             f"({result.count(TrialState.COMPLETE)} complete, {result.count(TrialState.PRUNED)} pruned as "
             f"infeasible, {result.count(TrialState.FAIL)} failed). Best: "
             + (", ".join(f"trial {t.number}" for t in result.best) or "none") + f". Wall time of this run: "
             f"{result.seconds:.0f} s; compile seconds of all trials: "
             f"{sum(float(t.user_attrs.get('compile_seconds', 0)) for t in result.trials):.0f}."
             + "".join(f" The compiler's default point is trial {t.number}." for t in result.trials
                       if t.user_attrs.get("enqueued") == DEFAULT_ENQUEUED), "",
             "| trial | state | " + " | ".join(objs) + " | compile s | CPU s | " + " | ".join(names) + " | reason |",
             "|" + "---|" * (5 + len(objs) + len(names))]
    for t in result.trials:
        values = [f"{v:.6g}" for v in t.values] if t.values else [""] * len(objs)
        reason = str(t.user_attrs.get("reason", "")).replace("|", "\\|")
        lines.append(f"| {t.number} | {t.state.name.lower()} | " + " | ".join(values)
                     + f" | {t.user_attrs.get('compile_seconds', '')} | "
                     + f"{t.user_attrs.get('compile_cpu_seconds', '')} | "
                     + " | ".join(str(t.params.get(n, "")) for n in names) + f" | {reason} |")
    return "\n".join(lines) + "\n"


def _write_design(cfg: DseConfig, trial: FrozenTrial, out: Path) -> Design:
    """Compile the trial's design point again (deterministic) and write its Vitis project."""
    design, block = compile_llm_block(cfg.model, **cfg.block_options, **trial_options(trial.params))
    design.write_project(out, *block.example_inputs(cfg.compile_options.get("seed", 0)))
    design.save(out)
    return design


def dse(model: str, output: str | Path, *, trials: int, objective: str | list[str] | tuple[str, ...] = "tokens_per_s",
        storage: str | None = None, workers: int = 1, timeout: float | None = None, study_name: str | None = None,
        seed: int = 0, write_best: bool = True, **compile_options: Any) -> DseResult:
    """Run (or resume) the study of ``model``'s block until its storage holds ``trials`` trials or ``timeout``
    seconds passed; write the summary, the best trial(s) and their projects into ``output`` (module docstring).
    ``compile_options``: ``mode``, ``size``, ``seq_len``, ``max_len``, ``target``, ``layer`` as for compile, and
    options of the space to fix (e.g. ``quant``)."""
    objectives = parse_objectives(objective)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise OptionError(f"bad trials {trials!r}: expected a number of trials >= 1")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise OptionError(f"bad workers {workers!r}: expected a number of processes >= 1")
    if timeout is not None and timeout <= 0:
        raise OptionError(f"bad timeout {timeout!r}: expected seconds > 0")
    mode = compile_options.get("mode", "prefill")
    space = _space(mode)
    for name in set(space) & set(compile_options):
        if compile_options[name] not in space[name]:
            raise OptionError(f"bad {name.replace('_', '-')} {compile_options[name]!r} to fix in the search: "
                              f"expected one of {', '.join(map(str, space[name]))}")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    url = storage or str(out / "study.journal")
    name = study_name or f"{Path(model).name}-{mode}-{compile_options.get('size', 'tiny')}-{'+'.join(objectives)}"
    cfg = DseConfig(model, out, trials, objectives, url, name, workers, timeout, dict(compile_options), seed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(study_name=name, storage=open_storage(url), load_if_exists=True,
                                    directions=[OBJECTIVES[n].direction for n in objectives])
    except ValueError as err:  # an existing study of another direction
        raise OptionError(f"study {name!r} in {url}: {err}") from err
    if not study.get_trials(deepcopy=False):
        study.enqueue_trial(default_point(mode, cfg.fixed), user_attrs={"enqueued": DEFAULT_ENQUEUED},
                            skip_if_exists=True)
    start = time.perf_counter()
    deadline = None if timeout is None else time.time() + timeout
    if workers == 1:
        _worker(cfg, 0, deadline)
    else:
        # spawn: a forked torch process is not safe to compile in
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_worker, args=(cfg, w, deadline)) for w in range(workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        failed = [w for w, p in enumerate(procs) if p.exitcode != 0]
        if failed:
            raise StreamTensorError(f"dse worker(s) {failed} exited with an error (see their output above)")
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    all_trials = study.get_trials(deepcopy=False)
    try:
        best = list(study.best_trials)
    except ValueError:
        best = []
    result = DseResult(name, url, objectives, all_trials, best, round(time.perf_counter() - start, 2))
    (out / "summary.md").write_text(_summary(result))
    (out / "best.json").write_text(json.dumps({
        "study": name, "storage": url, "objectives": {n: OBJECTIVES[n].direction for n in objectives},
        "best": [{"trial": t.number, "values": dict(zip(objectives, t.values or [], strict=False)), "params": t.params}
                 for t in best],
    }, indent=1) + "\n")
    if write_best and best:
        if len(objectives) == 1:
            _write_design(cfg, best[0], out / "best")
        else:
            for t in best:
                _write_design(cfg, t, out / "front" / f"trial-{t.number}")
    write_report(out)  # the study page: every trial, the Pareto front
    return result
