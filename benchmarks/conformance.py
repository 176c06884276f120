"""Conformance sweep: every causal-LM model type of the pinned transformers, compiled and verified.

Run: ``.venv/bin/python benchmarks/conformance.py [--types llama,phi] [--jobs 2] [--timeout 600]
[--check interp|csim] [--modes prefill,decode] [--passed-in-interp] [--resume]``. For every model type in
``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`` a tiny random checkpoint is built generically (the config class's defaults
shrunk by ``SHRINK_RULES``, attribute names only, no per-architecture table), saved with ``save_pretrained`` under
the cache directory, and one decoder block of it compiled and checked against PyTorch eager in prefill and decode,
in a subprocess with a timeout. Results: ``passed``, ``refused`` (the compiler's one-line
``UnsupportedModelError``, or after export its ``UnsupportedOpError``) or ``failed`` (the stage and the error).
Nothing is downloaded.

``--check csim`` (the default) verifies with the C simulation of the generated HLS C++, what ``streamtensor
verify`` runs (minutes per type and mode: the C++ build dominates). Each (model type, mode) is one worker whose
result is appended to ``conformance_csim.jsonl`` as it ends, so the sweep runs in pieces (``--resume`` skips the
pairs done; ``--passed-in-interp`` takes the types the quick tier passed); the table ``conformance.md`` is rebuilt
from that file, a mode not run shown as such.

``--check interp`` is the quick tier (seconds per type, table ``conformance_interp.md``, one row per type,
``--types`` updating only those rows): the compile up to the dataflow graph without FIFO sizing or C++, and the
Linalg reference interpreter against PyTorch eager on the same inputs. The last line printed is the summary
``N passed, N refused, N failed``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

TABLES = {"csim": Path(__file__).with_name("conformance.md"),
          "interp": Path(__file__).with_name("conformance_interp.md")}
TOLERANCE = 1e-4
SEQ_LEN = 8  # prompt tokens of the prefill block
MAX_LEN = 32  # KV-cache capacity of the decode block
MODES = ("prefill", "decode")
NUM_LAYERS = 2

_Rule = Callable[[Any, dict[str, Any]], Any]


def _at_most(limit: int) -> _Rule:
    return lambda value, _: min(value, limit) if isinstance(value, int) and not isinstance(value, bool) else value


def _head_dim(value: Any, _: dict[str, Any]) -> Any:
    """16, also where the default is None (some configs' defaults leave it unset and do not build)."""
    return 16 if value is None or isinstance(value, int) else value


def _kv_heads(value: Any, cfg: dict[str, Any]) -> Any:
    """Keep the attention kind: multi-query stays 1, multi-head stays equal to the heads, grouped becomes 2;
    unset (None) means multi-head."""
    if value is None:
        return 4
    if not isinstance(value, int) or isinstance(value, bool):
        return value
    heads = next((cfg[k] for k in _HEADS if isinstance(cfg.get(k), int)), None)
    return 1 if value == 1 else 4 if value == heads else 2


_HEADS = ("num_attention_heads", "n_head", "n_heads", "num_heads", "decoder_attention_heads")
# Generic shrinking: attribute name -> new value (from the old value and the whole config). Heads x head_dim =
# hidden keeps the geometry consistent for configs that derive one from the others.
SHRINK_RULES: dict[str, _Rule] = {
    **{k: _at_most(NUM_LAYERS) for k in ("num_hidden_layers", "n_layer", "num_layers", "n_layers",
                                          "decoder_layers", "encoder_layers", "num_decoder_layers",
                                          "num_encoder_layers")},
    **{k: _at_most(64) for k in ("hidden_size", "n_embd", "d_model", "n_embed", "embed_dim", "dim",
                                  "word_embed_proj_dim")},
    **{k: _at_most(128) for k in ("intermediate_size", "n_inner", "ffn_dim", "decoder_ffn_dim", "encoder_ffn_dim",
                                   "d_ff", "ffn_hidden_size", "moe_intermediate_size",
                                   "shared_expert_intermediate_size", "dense_intermediate_size")},
    **{k: _at_most(4) for k in _HEADS + ("encoder_attention_heads",)},
    **{k: _kv_heads for k in ("num_key_value_heads", "n_kv_heads", "num_kv_heads", "multi_query_group_num")},
    **{k: _head_dim for k in ("head_dim", "kv_channels", "d_head", "d_kv")},
    # Multi-head latent attention: the rotary part is the head_dim above (16), the low ranks shrink with hidden.
    **{k: _at_most(16) for k in ("qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim")},
    **{k: _at_most(32) for k in ("kv_lora_rank", "q_lora_rank")},
    "rotary_dim": _at_most(8),  # rotary features of a head, at most the head's 16
    "is_decoder": lambda value, _: True,  # BERT-like models are causal LMs only as decoders
    "vocab_size": _at_most(256),
    # Per-layer embedding tables (Gemma 3n / 4: one row of hidden_size_per_layer_input per layer for each of
    # 262,144 tokens) indexed by the same token ids: 0.5 GB per checkpoint at full size, which filled CI's disk.
    "vocab_size_per_layer_input": _at_most(256),
    **{k: _at_most(128) for k in ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len",
                                   "seq_length", "max_sequence_length")},
    **{k: _at_most(4) for k in ("sliding_window", "window_size", "attention_window")},  # < SEQ_LEN: the mask bites
    **{k: _at_most(4) for k in ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")},
    **{k: _at_most(2) for k in ("num_experts_per_tok", "moe_topk", "top_k")},
    "num_kv_shared_layers": _at_most(0),  # layers reusing an earlier layer's KV cache: none of the two kept
}
_HIDDEN_KEYS = ("hidden_size", "n_embd", "d_model", "n_embed", "embed_dim", "dim")


def shrink_config(values: dict[str, Any]) -> dict[str, Any]:
    """The changes ``SHRINK_RULES`` make to a config's ``to_dict()`` (only those: values the config derives from
    others are derived again): nested sub-configs too, token ids kept inside the shrunk vocabulary, per-layer
    lists (``layer_types``, ...) and per-layer dicts (keyed by layer index) cut to the kept layers."""
    layer_keys = [k for k in ("num_hidden_layers", "n_layer", "num_layers", "n_layers") if isinstance(
        values.get(k), int)]
    old_layers = values[layer_keys[0]] if layer_keys else None
    # The layers kept: layer 0 (the one compiled), then the first layer of each other kind in ``layer_types``
    # (a hybrid model must keep one attention layer), then the next ones.
    kinds = values.get("layer_types") if isinstance(values.get("layer_types"), list) else []
    firsts = [i for i, kind in enumerate(kinds) if kind not in kinds[:i] and i > 0]
    keep = [0, *firsts][:NUM_LAYERS]
    keep = sorted(keep + [i for i in range(1, 2 * NUM_LAYERS) if i not in keep][:NUM_LAYERS - len(keep)])
    hidden_key = next((k for k in _HIDDEN_KEYS if isinstance(values.get(k), int)), None)
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value and all(str(k).isdigit() for k in value):
            out[key] = {type(k)(keep.index(int(k))): v for k, v in value.items() if int(k) in keep}
        elif isinstance(value, dict) and ("model_type" in value or key.endswith("_config")):
            out[key] = {**value, **shrink_config(value)}  # a sub-config given is taken whole
        elif key in SHRINK_RULES:
            out[key] = SHRINK_RULES[key](value, values)
        elif isinstance(value, list) and old_layers and len(value) == old_layers > NUM_LAYERS:
            out[key] = [value[i] for i in keep]
        elif (hidden_key and key != hidden_key and isinstance(value, int) and value == values[hidden_key] > 64
              and ("dim" in key or "size" in key)):
            out[key] = SHRINK_RULES[hidden_key](value, values)  # a width the config requires equal to the hidden
        else:
            out[key] = value
    vocab = out.get("vocab_size")
    if isinstance(vocab, int):
        for key, value in out.items():
            if key.endswith("_token_id") and isinstance(value, int) and value >= vocab:
                out[key] = vocab - 1
            elif key.endswith("_token_id") and isinstance(value, list):
                out[key] = [min(v, vocab - 1) for v in value]
    return {k: v for k, v in out.items() if v != values[k]}


def _classes(model_type: str) -> tuple[Any, Any]:
    """The causal-LM class of ``model_type`` (None if transformers does not export it) and its own config class:
    for some types a part of the registered one (a decoder config)."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_class = getattr(transformers, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type], None)
    return model_class, getattr(model_class, "config_class", None) or transformers.CONFIG_MAPPING[model_type]


def build_checkpoint(model_type: str, directory: Path, seed: int = 0, changes: dict[str, Any] | None = None) -> None:
    """A tiny random checkpoint of ``model_type`` in ``directory`` (config.json + model.safetensors); ``changes``
    set config attributes after shrinking (a variant the default config does not exercise)."""
    import torch
    import transformers

    from streamtensor.frontend.models import randomize_params

    model_class, config_class = _classes(model_type)
    config = config_class(**{**shrink_config(config_class().to_dict()), **(changes or {})})
    torch.manual_seed(seed)
    model = (model_class._from_config(config, dtype=torch.float32) if model_class is not None
             else transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32))
    randomize_params(model, torch.Generator().manual_seed(seed + 1))
    model.save_pretrained(directory)


def structural_refusal(model_type: str) -> str | None:
    """For a type whose tiny config does not build: the compiler's refusal of the model built from its default
    config on the meta device (no memory, no weights; the constructs checked before export are in the
    structure), or the reason transformers cannot build that model either (then there is nothing to compile).
    None when the model builds and its structure shows no unsupported construct."""
    import torch
    import transformers

    from streamtensor.errors import UnsupportedModelError
    from streamtensor.frontend.block import LAYER_INPUTS, DecoderBlock, model_decoder_layers
    from streamtensor.frontend.models import LoadedModel
    from streamtensor.frontend.support import check_layer, check_model

    model_class, config_class = _classes(model_type)
    try:
        config = config_class(**({"is_decoder": True} if hasattr(config_class(), "is_decoder") else {}))
        with torch.device("meta"):
            model = model_class._from_config(config)
        _, layers = model_decoder_layers(model)
    except ImportError as exc:  # a multimodal model's vision or audio tower needs an optional library
        return (f"model type '{model_type}' is not supported here: {model_class.__name__} builds a tower that needs "
                f"a library this environment lacks ({_one_line(exc).split(' You can')[0]}); its text decoder would "
                "need the multimodal model built without that tower (a text-only model type of it, where "
                "transformers has one, is checked on its own row)")
    except Exception as exc:  # noqa: BLE001 - transformers' own model, from its own defaults
        return (f"model type '{model_type}' is not built by transformers {transformers.__version__} itself from "
                f"its default config ({_one_line(exc)}); there is no model to compile")
    try:
        check_model(model_type, config)
        check_layer(model_type, layers[0], set(LAYER_INPUTS))
        # The layer's own probe (what it asks of its cache) on the meta device too: shapes only, no memory.
        model.config._attn_implementation = "eager"
        with torch.device("meta"):
            DecoderBlock(LoadedModel(model_type, model.eval(), config, "meta"), "prefill", SEQ_LEN, SEQ_LEN)
    except UnsupportedModelError as exc:  # named by the row's type (the layer's config may be a text sub-config's)
        text = str(exc).replace(f"model type '{exc.model_type}'", f"model type '{model_type}'", 1)
        return f"{text} (seen in the default config's structure: no tiny config of it builds)"
    except Exception:  # noqa: BLE001 - the probe on meta tensors proves nothing either way: no refusal
        return None
    return None


@dataclass
class Row:
    model_type: str
    status: str  # passed | refused | failed
    detail: str  # failed: the stage and the error; refused: the reason; passed: max error per mode
    seconds: float


def _one_line(exc: BaseException) -> str:
    """The exception's first line; for a failed C++ build, also the compiler's first error."""
    text = str(exc).strip()
    line = f"{type(exc).__name__}: {text.splitlines()[0] if text else '(no message)'}"
    first_error = next((ln.strip() for ln in str(getattr(exc, "stderr", "")).splitlines() if "error:" in ln), None)
    return f"{line} {first_error}" if first_error else line


def check_type(model_type: str, cache_dir: Path, check: str = "csim", modes: tuple[str, ...] = MODES) -> Row:
    """Checkpoint, then compile + C simulation (or the reference interpreter) in each of ``modes`` (runs in the
    worker subprocess)."""
    from streamtensor import compile_llm_block
    from streamtensor.errors import StageError, UnsupportedModelError, UnsupportedOpError

    start = time.perf_counter()

    def row(status: str, detail: str) -> Row:
        return Row(model_type, status, detail, round(time.perf_counter() - start, 1))

    directory = cache_dir / model_type
    if not (directory / "config.json").is_file():
        try:
            build_checkpoint(model_type, directory)
        except Exception as exc:  # the sweep's own generic config did not build: reported, not hidden
            refusal = structural_refusal(model_type)
            return row("refused", refusal) if refusal else row("failed", f"checkpoint: {_one_line(exc)}")
    errors: list[str] = []
    for mode in modes:
        try:
            if check == "interp":
                design, block = compile_llm_block(str(directory), mode=mode, seq_len=SEQ_LEN, max_len=MAX_LEN,
                                                  size_fifos=False)
                report = _interpret(design, block)
            else:
                design, block = compile_llm_block(str(directory), mode=mode, seq_len=SEQ_LEN, max_len=MAX_LEN)
                report = design.simulate(*block.example_inputs(), runs=2)
        except UnsupportedModelError as exc:
            return row("refused", str(exc))
        except UnsupportedOpError as exc:  # refused after export: the op names the construct
            return row("refused", f"model type '{model_type}' ({mode}): {exc}")
        except StageError as exc:
            return row("failed", f"{mode}: {exc.stage}: {_one_line(exc.__cause__ or exc)}")
        except Exception as exc:
            return row("failed", f"{mode}: {_one_line(exc)}")
        if not report.ok:
            return row("failed", f"{mode}: verify: {report.failure or 'mismatch: ' + _worst(report)}")
        errors.append(f"{mode} {_worst(report)}")
    return row("passed", ", ".join(errors))


@dataclass
class _Check:
    name: str
    max_abs_error: float


@dataclass
class _InterpReport:
    checks: list[_Check]
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return all(c.max_abs_error <= TOLERANCE for c in self.checks)


def _interpret(design: Any, block: Any) -> _InterpReport:
    """The Linalg reference interpreter against PyTorch eager on the block's example inputs."""
    import numpy as np
    import torch

    args = block.example_inputs()
    got = design.run_reference(*args)
    with torch.no_grad():
        want = block(*args)
    return _InterpReport([_Check(name, float(np.max(np.abs(np.asarray(g, np.float64) - w.numpy()))))
                          for name, g, w in zip(block.spec.output_names, got, want, strict=True)])


def _worst(report: Any) -> str:
    worst = max(report.checks, key=lambda c: c.max_abs_error)
    return f"max error {worst.max_abs_error:.1e} ({worst.name})"


def _run_worker(model_type: str, cache_dir: Path, timeout: int, check: str, modes: tuple[str, ...] = MODES) -> Row:
    start = time.perf_counter()
    cmd = [sys.executable, __file__, "--worker", model_type, "--cache-dir", str(cache_dir), "--check", check,
           "--modes", ",".join(modes)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Row(model_type, "failed", f"timeout after {timeout} s", float(timeout))
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return Row(model_type, "failed", f"worker exit {done.returncode}: {tail}",
                   round(time.perf_counter() - start, 1))
    return Row(**json.loads(lines[-1]))


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_table(rows: dict[str, Row], path: Path, check: str = "csim") -> str:
    import transformers

    counts = {s: sum(r.status == s for r in rows.values()) for s in ("passed", "refused", "failed")}
    summary = f"{counts['passed']} passed, {counts['refused']} refused, {counts['failed']} failed"
    lines = [
        "<!-- Generated by benchmarks/conformance.py (streamtensor); do not edit -->",
        "# Conformance: every causal-LM model type",
        "",
        f"transformers {transformers.__version__}; tiny random checkpoints (benchmarks/conformance.py); "
        f"layer 0, prefill ({SEQ_LEN} tokens) and decode (cache of {MAX_LEN}); "
        + ("fp32 C simulation of the generated HLS C++" if check == "csim" else
           "compile to the dataflow graph (no FIFO sizing, no C++) and the fp32 Linalg reference interpreter")
        + f" against PyTorch eager, tolerance {TOLERANCE:.0e}. {len(rows)} model types checked.",
        "",
        f"**{summary}**",
        "",
        "| model type | result | detail | seconds |",
        "|---|---|---|---|",
        *(f"| {r.model_type} | {r.status} | {_escape(r.detail)} | {r.seconds:.0f} |"
          for r in sorted(rows.values(), key=lambda r: r.model_type)),
    ]
    path.write_text("\n".join(lines) + "\n")
    return summary


@dataclass
class ModeRow:
    """One (model type, mode) result of the C-simulation tier, as appended to ``RESULTS``."""

    model_type: str
    mode: str
    status: str  # passed | refused | failed
    detail: str
    seconds: float


RESULTS = Path(__file__).with_name("conformance_csim.jsonl")  # C-simulation tier: one JSON line per (type, mode)
RESULTS_HEADER = ("# Generated by benchmarks/conformance.py (streamtensor): one JSON line per (model type, mode) "
                  "of the C-simulation tier, appended as each ends; the last one per pair wins\n")


def read_results(path: Path) -> dict[tuple[str, str], ModeRow]:
    """The results file's records, the last one per (model type, mode) winning (a rerun replaces a row)."""
    records: dict[tuple[str, str], ModeRow] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):  # the header names the tool
                record = ModeRow(**json.loads(line))
                records[(record.model_type, record.mode)] = record
    return records


def _mode_cell(record: ModeRow | None) -> str:
    if record is None:
        return "not run"
    return f"{record.status}: {record.detail} ({record.seconds:.0f} s)"


def write_csim_table(records: dict[tuple[str, str], ModeRow], path: Path, total_types: int) -> str:
    """The C-simulation table, one row per model type with a result per mode. A type is passed only when every
    mode ran and passed; a mode not run yet is shown as such, never counted as passed."""
    import transformers

    types = sorted({t for t, _ in records})
    statuses: dict[str, str] = {}
    for t in types:
        got = [records.get((t, m)) for m in MODES]
        done = [r for r in got if r is not None]
        if any(r.status == "failed" for r in done):
            statuses[t] = "failed"
        elif any(r.status == "refused" for r in done):
            statuses[t] = "refused"
        elif len(done) < len(MODES):
            statuses[t] = "incomplete"
        else:
            statuses[t] = "passed"
    counts = {s: sum(v == s for v in statuses.values()) for s in ("passed", "refused", "failed", "incomplete")}
    summary = (f"{counts['passed']} passed, {counts['refused']} refused, {counts['failed']} failed"
               + (f", {counts['incomplete']} incomplete (a mode not run yet)" if counts["incomplete"] else "")
               + f" ({len(types)} of {total_types} model types run)")
    lines = [
        "<!-- Generated by benchmarks/conformance.py (streamtensor) from conformance_csim.jsonl; do not edit -->",
        "# Conformance: every causal-LM model type, compile + C simulation",
        "",
        f"transformers {transformers.__version__}; tiny random checkpoints (benchmarks/conformance.py); "
        f"layer 0, prefill ({SEQ_LEN} tokens) and decode (cache of {MAX_LEN}); compile (FIFO sizing, HLS C++) and "
        f"`streamtensor verify`'s fp32 C simulation of the generated C++ against PyTorch eager, tolerance "
        f"{TOLERANCE:.0e}. Measured here (seconds: wall-clock of each mode's compile + C++ build + simulation, "
        "machine shared). Only the model types run so far are listed (`--check csim --resume` continues).",
        "",
        f"**{summary}**",
        "",
        "| model type | result | prefill | decode |",
        "|---|---|---|---|",
        *(f"| {t} | {statuses[t]} | {_escape(_mode_cell(records.get((t, 'prefill'))))} | "
          f"{_escape(_mode_cell(records.get((t, 'decode'))))} |" for t in types),
    ]
    path.write_text("\n".join(lines) + "\n")
    return summary


def _read_table(path: Path) -> dict[str, Row]:
    rows: dict[str, Row] = {}
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        cells = [c.strip().replace("\\|", "|") for c in line.strip("|").split(" | ")]
        if len(cells) == 4 and cells[1] in ("passed", "refused", "failed"):
            rows[cells[0]] = Row(cells[0], cells[1], cells[2], float(cells[3]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", help="comma-separated model types (default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="types checked in parallel")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per model type")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(os.environ.get("STREAMTENSOR_CACHE_DIR", Path.home() / ".cache/streamtensor"))
                        / "conformance", help="where the tiny checkpoints are kept")
    parser.add_argument("--check", choices=sorted(TABLES), default="csim",
                        help="csim: C simulation of the generated C++; interp: the quick tier (reference interpreter)")
    parser.add_argument("--table", type=Path, help="the markdown table to write (default: by --check)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes (default: both)")
    parser.add_argument("--passed-in-interp", action="store_true",
                        help="only the model types passed in the interp tier's table (conformance_interp.md)")
    parser.add_argument("--resume", action="store_true",
                        help="csim: skip the (model type, mode) pairs already in the results file")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="csim: the results file, one JSON line appended per (model type, mode)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    modes = tuple(args.modes.split(","))
    if set(modes) - set(MODES):
        parser.error(f"bad --modes '{args.modes}': expected some of {', '.join(MODES)}")
    if args.worker:
        print(json.dumps(asdict(check_type(args.worker, args.cache_dir, args.check, modes))))
        return
    table = args.table or TABLES[args.check]

    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    all_types = list(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    types = args.types.split(",") if args.types else all_types
    unknown = sorted(set(types) - set(all_types))
    if unknown:
        parser.error(f"not causal-LM model types of this transformers: {', '.join(unknown)}")
    if args.passed_in_interp:
        passed = {t for t, r in _read_table(TABLES["interp"]).items() if r.status == "passed"}
        types = [t for t in types if t in passed]
    if args.check == "csim":
        _csim_sweep(types, modes, args, table, len(all_types))
        return
    rows = _read_table(table) if args.types else {}
    with ThreadPoolExecutor(args.jobs) as pool:
        for row in pool.map(lambda t: _run_worker(t, args.cache_dir, args.timeout, args.check), types):
            rows[row.model_type] = row
            print(f"{row.model_type:28} {row.status:8} {row.seconds:6.0f} s  {row.detail}", flush=True)
            write_table(rows, table, args.check)
    print(write_table(rows, table, args.check))


def _csim_sweep(types: list[str], modes: tuple[str, ...], args: argparse.Namespace, table: Path,
                total_types: int) -> None:
    """Compile + C simulation per (model type, mode), each appended to the results file as it ends (so a sweep
    runs in pieces: ``--resume`` skips the pairs done), and the table rewritten from that file."""
    done = read_results(args.results) if args.resume else {}
    pairs = [(t, m) for t in types for m in modes if (t, m) not in done]
    print(f"{len(pairs)} (model type, mode) pairs to run, {len(types) * len(modes) - len(pairs)} already in "
          f"{args.results}", flush=True)

    def run(pair: tuple[str, str]) -> ModeRow | None:
        if args.resume and pair in read_results(args.results):
            return None  # another sweep running on the same file finished it meanwhile
        row = _run_worker(pair[0], args.cache_dir, args.timeout, "csim", (pair[1],))
        return ModeRow(row.model_type, pair[1], row.status, row.detail, row.seconds)

    with ThreadPoolExecutor(args.jobs) as pool:
        for record in pool.map(run, pairs):
            if record is None:
                continue
            if not args.results.is_file():
                args.results.write_text(RESULTS_HEADER)
            with args.results.open("a") as out:
                out.write(json.dumps(asdict(record)) + "\n")
            print(f"{record.model_type:28} {record.mode:8} {record.status:8} {record.seconds:6.0f} s  "
                  f"{record.detail}", flush=True)
            write_csim_table(read_results(args.results), table, total_types)
    print(write_csim_table(read_results(args.results), table, total_types))


if __name__ == "__main__":
    main()
