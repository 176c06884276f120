"""``report.html``: one self-contained page (the JavaScript libraries inlined from ``assets/``, no network at view
time). The page's data is one JSON script tag (``#st-data``), which ``assets/page.js`` renders: the dataflow graph
(Cytoscape.js with the dagre layered layout), the timeline and the plots (Chart.js), and tables of the figures.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from streamtensor._version import GENERATOR

from .model import BUSY, EMPTY, FULL, ReportModel, Spans
from .paper import PAPER_GPT2_MEDIUM

TIMELINE_BINS = 800  # the page's timeline resolution; trace.json has every span
# Inlined in this order; VERSIONS.json names each library's version and license.
LIBRARIES = ("cytoscape.min.js", "cytoscape-dagre.min.js", "chart.umd.min.js")


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def render_page(data: dict[str, Any]) -> str:
    """The page for ``data`` (``design_data`` or ``build_data``)."""
    # "</" inside the JSON would end the script element: escaped as JSON allows.
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    libs = "\n".join(f"<script>{_asset(name)}</script>" for name in LIBRARIES)
    page = _asset("page.html")
    return (page.replace("%GENERATOR%", GENERATOR)
            .replace("%TITLE%", f"{data['meta']['model']} ({data['meta']['mode']})")
            .replace("%CSS%", _asset("page.css"))
            .replace("%LIBRARIES%", libs)
            .replace("%DATA%", payload)
            .replace("%SCRIPT%", _asset("page.js")))


def design_data(model: ReportModel) -> dict[str, Any]:
    """The page data of one compiled design."""
    r = model.report
    crit = set(model.critical_path)
    crit_edges = set(zip(model.critical_path, model.critical_path[1:], strict=False))
    nodes = []
    for p in model.processes.values():
        nodes.append({
            "id": p.name, "group": p.group, "kind": p.kind, "finish": p.finish,
            "busy": p.spans.cycles(BUSY), "input_empty": p.spans.cycles(EMPTY), "output_full": p.spans.cycles(FULL),
            "critical": p.name in crit, "bottleneck": p.name == model.bottleneck,
            "hbm": [list(r) for r in model.dma_channels[p.name]] if p.name in model.dma_channels else None,
            "details": p.details,
        })
    edges = [{
        "id": f"g{s.group}:{s.name}", "stream": s.name, "group": s.group, "source": s.source, "target": s.target,
        "itype": s.itype, "width_bits": s.width_bits, "tokens": s.tokens, "depth": s.depth, "peak": s.peak,
        "memory": s.memory, "critical": (s.source, s.target) in crit_edges,
    } for s in model.streams]
    sim = r["simulation"]
    return {
        "kind": "design",
        "meta": _meta(r, model),
        "groups": [{"index": g, "offset": off} for g, off in enumerate(model.group_offsets)],
        "nodes": nodes,
        "edges": edges,
        "crossings": [{"stream": s, "source": a, "target": b, "critical": (a, b) in crit_edges}
                      for s, a, b in model.crossings],
        "critical_path": model.critical_path,
        "bottleneck": model.bottleneck,
        "timeline": {"bins": TIMELINE_BINS, "makespan": model.makespan,
                     "rows": [{"process": p.name, "segments": timeline_segments(p.spans, model.makespan)}
                              for p in model.processes.values()]},
        "simulation": {k: sim[k] for k in ("makespan_cycles", "unbounded_makespan_cycles", "stall_cycles",
                                           "stall_cycles_by_process")},
        "fifo_bits_by_memory": _fifo_bits_by_memory(r),
        "resources": r.get("resources"),
        "memory": r.get("memory"),
        "converters": r.get("converters", []),
        "hbm": {"channels": r["target"]["hbm_channels"],
                "bytes_per_channel": {str(c): b for c, b in model.hbm_channels.items()}},
        "llm": None, "dse": None,
    }


def build_data(report: dict[str, Any], kernels: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The page data of a whole-model build: its ``report["llm"]`` and a summary of each kernel (whose own
    page is ``<kernel>/report.html``)."""
    llm = report["llm"]
    key = f"{llm['prompt_len']}:{llm['new_tokens']}"
    # The paper's figures are for GPT-2 medium: next to a GPT-2 of that geometry only.
    hidden = {k.get("geometry", {}).get("hidden_size") for k in kernels.values() if k.get("mode") != "head"}
    comparable = Path(str(report.get("model"))).name == "gpt2" and hidden == {1024} and len(llm["layers"]) == 24
    paper = [{"who": who, "latency_ms": rows[key][0], "ttft_ms": rows[key][1], "decode_tokens_per_s": rows[key][2]}
             for who, rows in PAPER_GPT2_MEDIUM.items() if key in rows and comparable]
    return {
        "kind": "build",
        "meta": {"tool": report.get("tool"), "model": report.get("model"), "mode": "whole model",
                 "target": llm.get("target"), "clock_mhz": llm.get("clock_mhz")},
        "llm": {"figures": llm, "paper": paper, "paper_config": key, "paper_comparable": comparable},
        "kernels": [{"name": name, "mode": k.get("mode"), "makespan_cycles": k.get("simulation", {}).get(
            "makespan_cycles"), "fifo_total_bits": k.get("fifo_total_bits"),
            "fits": k.get("resources", {}).get("fits"), "page": f"{name}/report.html"} for name, k in kernels.items()],
    }


def _meta(r: dict[str, Any], model: ReportModel) -> dict[str, Any]:
    t = r["target"]
    return {"tool": r.get("tool"), "model": r.get("model"), "mode": r.get("mode"), "target": t["board"],
            "clock_mhz": t["clock_mhz"], "makespan_cycles": model.makespan,
            "fifo_total_bits": r.get("fifo_total_bits"), "fifo_strategy": r.get("fifo_lp", {}).get("strategy"),
            "quantization": r.get("quantization", {}).get("scheme"), "processes": len(model.processes),
            "streams": len(model.streams), "fusion_groups": len(model.group_offsets),
            "fits": r.get("resources", {}).get("fits"), "deadlocks": model.deadlocks}


def timeline_segments(spans: Spans, makespan: int, bins: int = TIMELINE_BINS) -> list[list[int]]:
    """``[start, end, state]`` segments for the page: the run cut into ``bins`` equal slices, each shown in the
    state the process spent most of it in (busy wins ties), equal neighbours merged; slices after the process's
    last write are left out. The exact spans are in trace.json and the totals in the page's tables."""
    if spans.count == 0 or makespan <= 0:
        return []
    edges = np.linspace(0, makespan, bins + 1)
    share = np.zeros((3, bins))
    for state in (BUSY, EMPTY, FULL):
        share[state] = np.diff(spans.cycles_before(state, edges))
    active = share.sum(axis=0) > 0
    winner = np.argmax(share, axis=0)
    segments: list[list[int]] = []
    for i in np.flatnonzero(active).tolist():
        lo, hi, st = int(round(edges[i])), int(round(edges[i + 1])), int(winner[i])
        if segments and segments[-1][2] == st and segments[-1][1] == lo:
            segments[-1][1] = hi
        else:
            segments.append([lo, hi, st])
    return segments


def _fifo_bits_by_memory(r: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in r.get("fifos", []):
        out[f["memory"]] = out.get(f["memory"], 0) + f["width_bits"] * f["depth"]
    return dict(sorted(out.items()))
