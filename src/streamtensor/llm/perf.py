"""Performance model of a whole generation run on the board: TTFT, decode tokens/s, latency, with every term.

All kernel figures are *modelled*: cycles from each compiled block's timing simulation (FIFOs as sized) at the
target's clock. The host program (``llm.generate``; the C++ host does the same) runs, per token and per layer, one
kernel invocation: it pays the target's kernel-launch round trip, one buffer sync per activation buffer it writes
or reads and the bytes of those buffers over PCIe (``Target.host_link``, whose figures and sources the report
repeats); a scalar argument (the decode position) is a register written with the launch. Weights are resident in
HBM (written once at load). The KV cache is resident too: one cache buffer pair per layer on the device, updated
in place by the decode kernel (it reads rows ``0..position`` and writes row ``position``), filled once per
generation from the prefill kernel's keys and values (read back, packed into the cache layout, written: the
``cache_fill`` term of TTFT). No cache byte crosses PCIe during decode. Every byte figure follows the cache's
element type from the kernels' layouts: an int8 KV cache moves and holds one byte per element. Embedding lookup
and sampling are host work, *measured* here.

Prefill: a prompt of n <= prefill length runs one prefill invocation per layer (padded to the compiled length);
longer prompts prefill the first part and feed the rest through decode steps. TTFT = prefill layers + cache fill
+ head + host. Every later token is one decode step: layers + head + host. latency = TTFT + (new_tokens - 1) *
step.

Decode and the position: the decode block as built runs its attention over all ``max_len`` cache rows (the rows
past the position are zero tiles the cache DMA streams without reading HBM, and the mask drops them); the timing
model charges the cache DMAs at the worst case, ``position = max_len - 1``, so every step is modelled at those
cycles (an upper bound: a zero tile costs one cycle, a loaded one its HBM transfer). The HBM bytes of the cache
DMAs are exact per position (``analysis.timing_model.cache_dma_bytes``) and the report gives them per position.
What a design whose attention ran only up to the position would cost is modelled separately (blocks compiled at
smaller capacities, cycles interpolated linearly in the capacity) and reported, not used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from streamtensor.analysis.timing_model import cache_dma_bytes
from streamtensor.ir.dataflow import DataflowGraph, DmaNode, KernelNode
from streamtensor.kernel_interface import MemoryArgument
from streamtensor.target import Target


@dataclass(frozen=True)
class Invocation:
    """One kernel run as the host program performs it."""

    cycles: int  # timing simulation makespan (a decode block: at the worst-case position)
    to_device_bytes: int  # activation buffers the host writes per run (weights and the KV cache stay resident)
    to_device_buffers: int
    registers: int  # scalar arguments written with the launch (the decode position)
    from_device_bytes: int  # results the host reads back per run (the in-place cache update stays on the device)
    from_device_buffers: int
    hbm_bytes: int  # bytes the kernel's DMAs move over HBM per run (repeat passes included), KV cache excluded
    work: int  # multiply-accumulate work items of its reductions (points of kernels with a reduction loop)
    cache_hbm_bytes: list[int] = field(default_factory=list)  # KV-cache DMA bytes per run at position 0, 1, ...
    cache_fill_bytes: int = 0  # the resident cache buffers, written once per generation after the prefill
    cache_fill_buffers: int = 0

    @classmethod
    def of(cls, cycles: int, arguments: Sequence[MemoryArgument], graph: DataflowGraph) -> Invocation:
        """The transfers and HBM bytes of a compiled kernel from its arguments and dataflow graph."""
        # A buffer the host writes is synced once, whichever DMAs read it (``MemoryArgument.shares``).
        ins = [a for a in arguments if a.reads and a.role == "input" and a.shares is None]
        outs = [a for a in arguments if a.writes and a.role != "kv_cache"]
        cache = [a for a in arguments if a.role == "kv_cache"]
        fixed = sum(a.layout.streamed_bytes for a in arguments if a.role not in ("kv_cache", "scalar"))
        per_position: list[int] = []
        rows = [graph.nodes[a.dma] for a in cache]
        dmas = [n for n in rows if isinstance(n, DmaNode) and n.rows is not None]
        if len(dmas) != len(cache):
            # A cache DMA without a row range would move the whole cache every run: counted as such.
            fixed += sum(a.layout.streamed_bytes for a, n in zip(cache, rows, strict=True)
                         if not (isinstance(n, DmaNode) and n.rows is not None))
        if dmas:
            types = [graph.streams[n.outputs[0] if n.direction == "read" else n.inputs[0]].type for n in dmas]
            length = types[0].tensor_shape[dmas[0].rows.dim]  # type: ignore[union-attr]
            per_position = [sum(int(cache_dma_bytes(n, t, p).sum()) for n, t in zip(dmas, types, strict=True))
                            for p in range(length)]
        owners = [a for a in cache if a.reads and a.shares is None]
        work = sum(math.prod(lt.size for lt in n.loops) for n in graph.nodes.values()
                   if isinstance(n, KernelNode) and any(lt.reduction for lt in n.loops))
        return cls(cycles, sum(a.layout.total_bytes for a in ins), len(ins),
                   sum(1 for a in arguments if a.scalar), sum(a.layout.total_bytes for a in outs), len(outs), fixed,
                   work, per_position, sum(a.layout.total_bytes for a in owners), len(owners))

    def hbm_at(self, position: int) -> int:
        """HBM bytes of one run at ``position`` (the cache DMAs' share grows with it)."""
        if not self.cache_hbm_bytes:
            return self.hbm_bytes
        return self.hbm_bytes + self.cache_hbm_bytes[min(position, len(self.cache_hbm_bytes) - 1)]


@dataclass
class RunModel:
    """What the model of a run needs, stored with a build (``llm.json``) so ``generate`` can model its own run."""

    target: str
    clock_hz: int
    kernel_launch_s: float
    transfer_latency_s: float
    pcie_bytes_per_second: int
    host_link_source: str
    board_power_w: float
    hbm_bytes_per_second: int
    mac_lanes: int  # fp32 multiply-accumulate lanes the device's DSPs could hold at once
    dsp_per_mac: int
    prefill_len: int
    max_len: int
    prefill: list[str]  # per layer: its prefill invocation
    decode: list[str]  # per layer: its decode invocation
    head: str
    invocations: dict[str, Invocation]
    host_token_s: float  # measured here: embedding lookup + sampling of one token
    host_head_s: float | None  # measured here: the output head in PyTorch eager on the host (None: not measured)
    position_points: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # decode: (capacity, cycles)

    @staticmethod
    def device_figures(target: Target) -> dict[str, Any]:
        link = target.host_link
        dsp_per_mac = round(sum(target.ops.float_cost[op][0] for op in ("arith.mulf", "arith.addf")))
        return {"target": target.name, "clock_hz": target.clock_hz, "kernel_launch_s": link.kernel_launch_s,
                "transfer_latency_s": link.transfer_latency_s, "pcie_bytes_per_second": link.pcie_bytes_per_second,
                "host_link_source": link.source, "board_power_w": target.board_power_w,
                "hbm_bytes_per_second": target.hbm.channels * target.hbm.channel_bytes_per_second,
                "mac_lanes": target.totals.dsp // dsp_per_mac, "dsp_per_mac": dsp_per_mac}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunModel:
        fields = dict(data)
        fields["invocations"] = {k: Invocation(**v) for k, v in data["invocations"].items()}
        fields["position_points"] = {k: [tuple(p) for p in v] for k, v in data.get("position_points", {}).items()}
        return cls(**fields)

    # --- the terms ------------------------------------------------------------------------------------------------

    def kernel_s(self, name: str) -> float:
        return self.invocations[name].cycles / self.clock_hz

    def overhead_s(self, name: str) -> dict[str, float]:
        """Launch, sync and PCIe seconds of one invocation (the host program's, beyond the kernel's cycles)."""
        inv = self.invocations[name]
        buffers = inv.to_device_buffers + inv.from_device_buffers
        moved = inv.to_device_bytes + inv.from_device_bytes
        return {"launch": self.kernel_launch_s, "sync": buffers * self.transfer_latency_s,
                "pcie": moved / self.pcie_bytes_per_second}

    def invocation_s(self, name: str) -> float:
        o = self.overhead_s(name)
        return self.kernel_s(name) + o["launch"] + o["sync"] + o["pcie"]

    def cache_fill_s(self) -> float:
        """Once per generation, per layer: the decode kernel's resident cache buffers written from the prefill's
        keys and values (which the prefill invocation's outputs already brought back)."""
        return sum(self.invocations[n].cache_fill_buffers * self.transfer_latency_s
                   + self.invocations[n].cache_fill_bytes / self.pcie_bytes_per_second for n in self.decode)

    def prefill_s(self) -> float:
        return sum(self.invocation_s(n) for n in self.prefill)

    def layers_step_s(self) -> float:
        return sum(self.invocation_s(n) for n in self.decode)

    def step_s(self) -> float:
        """One decode step: every layer's decode invocation, the head, the host's embedding and sampling."""
        return self.layers_step_s() + self.invocation_s(self.head) + self.host_token_s

    def hbm_bytes_at(self, position: int) -> int:
        """HBM bytes of one decode step (every layer and the head) feeding the token at ``position``."""
        return sum(self.invocations[n].hbm_at(position) for n in self.decode) + self.invocations[self.head].hbm_bytes

    def step_transfers(self) -> dict[str, int]:
        """Host <-> card traffic of one decode step (every layer and the head): what the host program moves."""
        names = [*self.decode, self.head]
        inv = [self.invocations[n] for n in names]
        return {"to_device_bytes": sum(i.to_device_bytes for i in inv),
                "from_device_bytes": sum(i.from_device_bytes for i in inv),
                "buffer_syncs": sum(i.to_device_buffers + i.from_device_buffers for i in inv),
                "scalar_registers": sum(i.registers for i in inv), "kernel_launches": len(names),
                "kv_cache_bytes": 0}

    def model(self, prompt_len: int, new_tokens: int) -> dict[str, Any]:
        """``report["llm"]`` for a prompt of ``prompt_len`` tokens and ``new_tokens`` generated ones."""
        prefilled = min(prompt_len, self.prefill_len)
        extra_prompt_steps = prompt_len - prefilled
        step = self.step_s()
        head = self.invocation_s(self.head)
        ttft = (self.prefill_s() + self.cache_fill_s() + extra_prompt_steps * self.layers_step_s() + head
                + self.host_token_s)
        latency = ttft + max(new_tokens - 1, 0) * step
        # Decode steps feed the tokens at these positions (the prompt's past the prefill, then the answer's).
        positions = [*range(prefilled, prompt_len), *range(prompt_len, prompt_len + max(new_tokens - 1, 0))]
        per_position = [self.hbm_bytes_at(p) for p in positions] or [self.hbm_bytes_at(prompt_len)]
        mean_hbm = sum(per_position) / len(per_position)
        worst_hbm = self.hbm_bytes_at(self.max_len - 1)
        decode_work = sum(self.invocations[n].work for n in self.decode) + self.invocations[self.head].work
        compute_roofline = self.mac_lanes * self.clock_hz / decode_work
        kernel_tokens_per_s = 1 / sum(self.kernel_s(n) for n in [*self.decode, self.head])
        layers = [{"layer": i, "prefill_design": p, "prefill_cycles": self.invocations[p].cycles,
                   "decode_design": d, "decode_cycles": self.invocations[d].cycles}
                  for i, (p, d) in enumerate(zip(self.prefill, self.decode, strict=True))]
        names = [*self.decode, self.head]
        overheads = {
            "kernel_launch_s_each": self.kernel_launch_s, "buffer_sync_s_each": self.transfer_latency_s,
            "pcie_bytes_per_s": self.pcie_bytes_per_second, "source": self.host_link_source,
            "per_decode_step_s": {
                "kernels": sum(self.kernel_s(n) for n in names),
                **{k: sum(self.overhead_s(n)[k] for n in names) for k in ("launch", "sync", "pcie")},
                "host_embedding_and_sampling_measured_here": self.host_token_s,
            },
            "per_decode_step_transfers": self.step_transfers(),
            "ttft_s": {"prefill_kernels": sum(self.kernel_s(n) for n in self.prefill),
                       **{f"prefill_{k}": sum(self.overhead_s(n)[k] for n in self.prefill)
                          for k in ("launch", "sync", "pcie")},
                       "kv_cache_fill": self.cache_fill_s(),
                       "prompt_tokens_through_decode": extra_prompt_steps * self.layers_step_s(),
                       "head": head, "host_embedding_and_sampling_measured_here": self.host_token_s},
        }
        return {
            "figures": "modelled (timing simulation at the target clock + host-link figures); host work measured here",
            "target": self.target, "clock_mhz": self.clock_hz / 1e6,
            "prompt_len": prompt_len, "new_tokens": new_tokens, "prefill_len": self.prefill_len,
            "max_len": self.max_len, "prompt_tokens_through_decode": extra_prompt_steps,
            "ttft_ms": ttft * 1e3,
            "decode_tokens_per_s": 1 / step,
            "latency_ms": latency * 1e3,
            "decode_step_ms": step * 1e3,
            "layers": layers,
            "lm_head": self._head_placement(),
            "overheads": overheads,
            "hbm_bytes_per_token": mean_hbm,
            "hbm_bytes_per_token_detail": {
                "mean_over_this_run": mean_hbm, "first_step": per_position[0], "last_step": per_position[-1],
                "worst_case_position": worst_hbm,
                "kv_cache_share_at_worst_case": sum(self.invocations[n].hbm_at(self.max_len - 1)
                                                    - self.invocations[n].hbm_bytes for n in self.decode),
                "note": "weights, activations and the KV-cache DMAs (rows 0..position read, row position written)"},
            "work_per_token": decode_work,
            "rooflines": {
                "hbm_tokens_per_s": self.hbm_bytes_per_second / mean_hbm,
                "hbm_tokens_per_s_worst_case_position": self.hbm_bytes_per_second / worst_hbm,
                "compute_tokens_per_s": compute_roofline,
                "kernel_only_tokens_per_s": kernel_tokens_per_s,
                "hbm_bytes_per_s": self.hbm_bytes_per_second,
                "compute": f"{self.mac_lanes} fp32 MAC lanes ({self.dsp_per_mac} DSP each) at "
                           f"{self.clock_hz / 1e6:.0f} MHz",
                # The kernels' cycles are at the worst-case position, so they are held to its bytes.
                "within_rooflines": kernel_tokens_per_s <= min(self.hbm_bytes_per_second / worst_hbm,
                                                               compute_roofline) * (1 + 1e-9),
            },
            "energy": {"board_power_w": self.board_power_w,
                       "joules_per_token_upper_bound": self.board_power_w * step,
                       "tokens_per_joule_lower_bound": 1 / (self.board_power_w * step),
                       "note": "the card's maximum power times the modelled step: an upper bound on energy"},
            "decode_position_model": self._position_model(),
        }

    def _head_placement(self) -> dict[str, Any]:
        """Device (as built: a kernel run, its launch, syncs and the logits over PCIe) against the host (the last
        layer's hidden row is on the host already: only the head's own time, measured here in PyTorch eager)."""
        device = self.invocation_s(self.head)
        out: dict[str, Any] = {"placement": "device (compiled GEMV with the final norm)", "design": self.head,
                               "cycles": self.invocations[self.head].cycles, "seconds_per_token": device,
                               "hbm_bytes": self.invocations[self.head].hbm_bytes}
        if self.host_head_s is None:
            out["host_alternative"] = "not measured"
            return out
        faster = "device" if device <= self.host_head_s else "host"
        out.update({"host_alternative_seconds_per_token_measured_here": self.host_head_s, "model_prefers": faster,
                    "note": "figures use the device head as built" + (
                        "; the host would be faster at this size, but the C++ host computes no final norm, so "
                        "the head stays a kernel" if faster == "host" else "")})
        return out

    def _position_model(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "as_built": f"every decode step runs attention over all {self.max_len} KV-cache rows (zero tiles past "
                        "the position): per-step cycles are those at the worst-case position whatever the position "
                        "(used above); HBM bytes follow the position exactly"}
        for design, points in self.position_points.items():
            if len(points) < 2:
                continue
            (c0, y0), (c1, y1) = points[0], points[-1]
            slope = (y1 - y0) / (c1 - c0)
            out[design] = {"capacities_and_cycles": [list(p) for p in points],
                           "fit": f"cycles(position p) = {y0 - slope * c0:.1f} + {slope:.3f} * (p + 1)",
                           "meaning": "attention over rows 0..position only (a cache as long as the position): "
                                      "not the design as built, not used above"}
        return out
