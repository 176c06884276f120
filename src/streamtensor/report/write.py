"""``write_report(OUTDIR)``: ``report.html`` and ``trace.json`` of whatever OUTDIR holds, from its files alone:

* a compiled design (``streamtensor compile``; each kernel of a build): the design page and its trace;
* a whole-model build (``streamtensor build``: ``report.json`` with ``llm``): the LLM page (each kernel's
  directory has its own page), no trace (each kernel's directory has its own);
* a design-space search (``streamtensor dse``: ``best.json`` and ``summary.md``): the study page.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streamtensor.target import Target

from .html import build_data, design_data, render_page
from .model import ReportInputError, load_model
from .trace import trace_json


def write_report(outdir: str | Path, target: Target | None = None) -> list[Path]:
    """Write the report files of ``outdir`` (module docstring); the paths written. ``target``: a compiled
    design's, where it is not one of the named boards."""
    out = Path(outdir)
    if not out.is_dir():
        raise ReportInputError(f"{out}: no such directory")
    report_json = out / "report.json"
    if (out / "best.json").is_file() and not report_json.is_file():
        return [_write(out / "report.html", render_page(study_data(out)))]
    if not report_json.is_file():
        raise ReportInputError(f"{out}: no report.json (not a streamtensor output directory)")
    report = json.loads(report_json.read_text())
    if "llm" in report:
        return [_write(out / "report.html", render_page(build_data(report, report.get("kernels", {}))))]
    model = load_model(out, target)
    data = design_data(model)
    return [_write(out / "report.html", render_page(data)),
            _write(out / "trace.json", trace_json(model))]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def study_data(outdir: Path) -> dict[str, Any]:
    """The page data of a search: ``best.json`` and every trial of ``summary.md``'s table."""
    best = json.loads((outdir / "best.json").read_text())
    objectives = list(best["objectives"])
    trials = _summary_trials(outdir / "summary.md", objectives)
    return {"kind": "study", "meta": {"tool": None, "model": best["study"], "mode": "design-space search",
                                      "target": None, "clock_mhz": None},
            "llm": None, "dse": {**best, "trials": trials}}


_TIMING_COLUMNS = ("compile s", "CPU s")  # between the objectives and the parameters


def _summary_trials(path: Path, objectives: list[str]) -> list[dict[str, Any]]:
    """The rows of the trial table ``search._summary`` writes: ``| trial | state | <objectives> | compile s |
    CPU s | <parameters> | reason |``."""
    if not path.is_file():
        raise ReportInputError(f"{path.parent}: best.json without summary.md (not a finished search)")
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("| ")]
    if not lines:
        raise ReportInputError(f"{path}: no trial table")
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    first_param = 2 + len(objectives) + len(_TIMING_COLUMNS)
    params = header[first_param:-1]
    trials = []
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != len(header):
            continue  # a reason with an escaped bar: the row is still shown in summary.md
        values = {n: float(v) for n, v in zip(objectives, cells[2:2 + len(objectives)], strict=True) if v}
        trials.append({"trial": int(cells[0]), "state": cells[1], "values": values or None,
                       "params": dict(zip(params, cells[first_param:-1], strict=True))})
    return trials
