"""Block speed against the rooflines: the paper-size families x prefill / decode x fp32 / W8A8 / W4A8.

Run: ``.venv/bin/python benchmarks/block_speed.py [--quick] [--families gpt2,llama] [--modes decode]
[--quants w4a8] [--out FILE.md]``.
Every row is one ``compile_llm_block(FAMILY, size="paper", mode=MODE, quant=QUANT)`` (prefill: ``seq_len=32``;
decode: ``max_len=128``) on the default target, in this process, one after the other, and prints

- **modelled cycles per layer**: the timing simulation's makespan of the block (``report["simulation"]``), at the
  target clock; one block is one layer;
- **weight bytes per layer**: the bytes of the block's weight tensors as the design stores and streams them
  (int4 weights sign-extended to int8 bytes, scales and biases included);
- **HBM roofline**: weight bytes / the bandwidth of all the target's pseudo-channels per cycle; no block can
  stream its weights faster, whatever the striping;
- **compute roofline**: the block's multiply-accumulates against the whole device, resource by resource: a MAC
  of kernel ``k`` occupies one lane of its multiply and combiner (``analysis.resources.scalar_op_cost``: an f32
  MAC 5 DSP and 310 LUTs, an int8 MAC 0.5 DSP and 52 LUTs) for a cycle, so
  ``cycles >= max over DSP, LUT of sum_k MACs_k x cost_k / the device's total``; quantized blocks keep their
  attention MACs in f32;
- the design's DSP / LUT / BRAM36 / URAM, whether it fits the device and its SLRs, and the compile seconds.

A modelled figure below either roofline is a bug of the timing model (a kernel modelled faster than the silicon
or the memory allows): the row says ``BUG`` and the script exits non-zero. ``--quick``: GPT-2 decode only.
``--out`` of an existing table replaces the rows re-run and keeps the others (the summary counts them all).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from streamtensor import __version__, compile_llm_block
from streamtensor.analysis.resources import scalar_op_cost, value_bits
from streamtensor.driver import Design
from streamtensor.ir.dataflow import KernelNode

FAMILIES = ("gpt2", "llama", "qwen2", "gemma")
MODES = ("prefill", "decode")
QUANTS = ("fp32", "w8a8", "w4a8")
SEQ_LEN = 32
MULTIPLIES = ("arith.mulf", "arith.muli")
COMBINERS = ("arith.addf", "arith.addi")


@dataclass
class Row:
    family: str
    mode: str
    quant: str
    cycles: int
    weight_bytes: int
    hbm_roofline: int
    compute_roofline: int
    dsp: int
    lut: int
    bram36: int
    uram: int
    fits: bool
    seconds: float

    @property
    def bug(self) -> bool:
        return self.cycles < self.hbm_roofline or self.cycles < self.compute_roofline


def mac_lane_cost(node: KernelNode, design: Design) -> tuple[float, int] | None:
    """(DSP, LUT) of one MAC lane of a contraction kernel (its multiply and the combiner it feeds), or None when
    the kernel is no multiply-accumulate."""
    body = node.op.body
    if not node.op.reduction_dims or not body.ops or body.ops[-1].name not in COMBINERS:
        return None
    combiner = body.ops[-1]
    producers = {op.result: op for op in body.ops}
    seen, todo, mul = set(), list(combiner.operands), None
    while todo and mul is None:  # the multiply the combiner folds in, through casts
        v = todo.pop()
        op = producers.get(v)
        if op is None or v in seen:
            continue
        seen.add(v)
        if op.name in MULTIPLIES:
            mul = op
        elif op.name.startswith(("arith.ext", "arith.sitofp", "arith.trunc")):
            todo.extend(op.operands)
    if mul is None:
        return None
    bits = value_bits(body)
    ops = design.target.ops
    costs = [scalar_op_cost(op, bits, {}, ops) for op in (mul, combiner)]
    return sum(c[0] for c in costs), sum(c[1] for c in costs)


def compute_roofline(design: Design) -> int:
    """Least cycles the device's DSPs and LUTs allow for the block's MACs (module docstring)."""
    assert design.dataflow is not None
    totals = design.target.totals
    need = [0.0, 0.0]
    for node in design.dataflow.nodes.values():
        if isinstance(node, KernelNode) and (cost := mac_lane_cost(node, design)) is not None:
            macs = math.prod(node.op.domain)
            need[0] += macs * cost[0]
            need[1] += macs * cost[1]
    return math.ceil(max(need[0] / totals.dsp, need[1] / totals.lut))


def measure(family: str, mode: str, quant: str) -> Row:
    start = time.perf_counter()
    design, _ = compile_llm_block(family, size="paper", mode=mode, quant=quant, seq_len=SEQ_LEN, allow_unfit=True)
    seconds = time.perf_counter() - start
    report = design.report
    assert design.block is not None
    weights = set(design.block.weight_names)
    weight_bytes = sum(v.type.bytes for v in design.graph.inputs if v.name in weights)
    target = design.target
    per_cycle = target.hbm.channels * Fraction(target.hbm.channel_bytes_per_second, target.clock_hz)
    res = report["resources"]
    return Row(family, mode, quant, int(report["simulation"]["makespan_cycles"]), weight_bytes,
               math.ceil(weight_bytes / per_cycle), compute_roofline(design), res["dsp"], res["lut"],
               res["bram36"], res["uram"], bool(res["fits"]), seconds)


HEADER = ("| family | mode | quant | modelled cycles/layer | weight bytes/layer | HBM roofline | compute roofline "
          "| DSP | LUT | BRAM36 | URAM | fits | compile s | check |")
RULE = "|" + "---|" * (HEADER.count("|") - 1)


def line(row: Row) -> str:
    return (f"| {row.family} | {row.mode} | {row.quant} | {row.cycles:,} | {row.weight_bytes:,} | "
            f"{row.hbm_roofline:,} | {row.compute_roofline:,} | {row.dsp:,} | {row.lut:,} | {row.bram36:,} | "
            f"{row.uram:,} | {'yes' if row.fits else 'no'} | {row.seconds:.1f} | {'BUG' if row.bug else 'ok'} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="GPT-2 decode only (fp32, W8A8, W4A8)")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated families")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes")
    parser.add_argument("--quants", default=",".join(QUANTS), help="comma-separated quantization schemes")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) to this file, replacing the "
                                                 "rows re-run of a table already there")
    args = parser.parse_args(argv)
    families = ["gpt2"] if args.quick else [f for f in args.families.split(",") if f]
    modes = ["decode"] if args.quick else [m for m in args.modes.split(",") if m]
    quants = [q for q in args.quants.split(",") if q]
    for what, chosen, known in (("family", families, FAMILIES), ("mode", modes, MODES), ("quant", quants, QUANTS)):
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            print(f"error: unknown {what} {', '.join(unknown)}: expected some of {', '.join(known)}", file=sys.stderr)
            return 2
    print("\n".join([HEADER, RULE]), flush=True)
    rows = []
    for family in families:
        for mode in modes:
            for quant in quants:
                row = measure(family, mode, quant)
                rows.append(row)
                print(line(row), flush=True)
    bugs = [r for r in rows if r.bug]
    print(summary(len(rows), [f"{r.family} {r.mode} {r.quant}" for r in bugs]))
    if args.out:
        table = kept_rows(args.out) | {(r.family, r.mode, r.quant): line(r) for r in rows}
        order = [(f, m, q) for f in FAMILIES for m in MODES for q in QUANTS]
        ordered = sorted(table.items(), key=lambda kv: order.index(kv[0]))
        buggy = [" ".join(key) for key, text in ordered if text.rstrip().endswith("| BUG |")]
        args.out.write_text(f"<!-- generated by benchmarks/block_speed.py, streamtensor {__version__} -->\n"
                            "# Block speed (modelled cycles at the target clock)\n\n"
                            + "\n".join([HEADER, RULE, *(text for _, text in ordered)]) + "\n\n"
                            + summary(len(ordered), buggy) + "\n")
    return 1 if bugs else 0


def summary(blocks: int, bugs: list[str]) -> str:
    return f"{blocks} blocks, {len(bugs)} modelled below a roofline" + (": " + ", ".join(bugs) if bugs else "")


def kept_rows(path: Path) -> dict[tuple[str, str, str], str]:
    """The rows of a table this script wrote at ``path`` (none if there is no file), by (family, mode, quant)."""
    if not path.exists():
        return {}
    rows = {}
    for text in path.read_text().splitlines():
        cells = [c.strip() for c in text.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] in FAMILIES and cells[1] in MODES and cells[2] in QUANTS:
            rows[cells[0], cells[1], cells[2]] = text
    return rows


if __name__ == "__main__":
    sys.exit(main())
