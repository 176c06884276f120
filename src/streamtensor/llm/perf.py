"""Performance model of a whole generation run on the board: TTFT, decode tokens/s, latency, with every term.

All kernel figures are *modelled*: cycles from each compiled block's timing simulation (FIFOs as sized) at the
target's clock. The host program (``llm.generate``; the C++ host does the same) runs, per token and per layer, one
kernel invocation: it pays the target's kernel-launch round trip, one buffer sync per activation argument it
writes or reads and the bytes of those buffers over PCIe (``Target.host_link``, whose figures and sources the
report repeats). Weights are resident in HBM (written once at load). The KV cache is held by the host as today's
decode block requires (it reads the whole cache and writes it back whole), so its buffers cross PCIe every layer
of every step: the report shows that term apart. Embedding lookup and sampling are host work, *measured* here.

Prefill: a prompt of n <= prefill length runs one prefill invocation per layer (padded to the compiled length);
longer prompts prefill the first part and feed the rest through decode steps. TTFT = prefill layers + head +
host. Every later token is one decode step: layers + head + host. latency = TTFT + (new_tokens - 1) * step.

Decode attention and the position: the decode block as built streams all ``max_len`` cache rows every step
(the mask selects the valid ones), so every step costs the cycles simulated at capacity ``max_len``. The
position-dependent cost a cache that reads only the valid rows would have is modelled separately (blocks
compiled at smaller capacities, cycles interpolated linearly in the capacity) and reported, not used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from streamtensor.ir.dataflow import DataflowGraph, KernelNode
from streamtensor.kernel_interface import MemoryArgument
from streamtensor.target import Target

_HOST_ROLES = ("input", "kv_cache")  # arguments the host program writes per invocation (weights stay resident)


@dataclass(frozen=True)
class Invocation:
    """One kernel run as the host program performs it."""

    cycles: int  # timing simulation makespan
    to_device_bytes: int
    to_device_buffers: int
    from_device_bytes: int
    from_device_buffers: int
    kv_cache_bytes: int  # of the transfer bytes above, those of the host-held KV cache (both directions)
    hbm_bytes: int  # bytes the kernel's DMAs move over HBM per run (repeat passes included)
    work: int  # multiply-accumulate work items of its reductions (points of kernels with a reduction loop)

    @classmethod
    def of(cls, cycles: int, arguments: Sequence[MemoryArgument], graph: DataflowGraph, kv_outputs: set[str]
           ) -> Invocation:
        """``kv_outputs``: the write arguments (C identifiers) that return keys and values to the host."""
        ins = [a for a in arguments if a.reads and a.role in _HOST_ROLES]
        outs = [a for a in arguments if a.writes]
        kv = sum(a.layout.total_bytes for a in arguments if a.role == "kv_cache" or a.arg in kv_outputs)
        work = sum(math.prod(lt.size for lt in n.loops) for n in graph.nodes.values()
                   if isinstance(n, KernelNode) and any(lt.reduction for lt in n.loops))
        return cls(cycles, sum(a.layout.total_bytes for a in ins), len(ins), sum(a.layout.total_bytes for a in outs),
                   len(outs), kv, sum(a.layout.streamed_bytes for a in arguments), work)


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
    host_head_s: float  # measured here: the output head in PyTorch eager on the host (the alternative placement)
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
                "pcie": moved / self.pcie_bytes_per_second,
                "pcie_kv_cache": inv.kv_cache_bytes / self.pcie_bytes_per_second}

    def invocation_s(self, name: str) -> float:
        o = self.overhead_s(name)
        return self.kernel_s(name) + o["launch"] + o["sync"] + o["pcie"]

    def prefill_s(self) -> float:
        return sum(self.invocation_s(n) for n in self.prefill)

    def step_s(self) -> float:
        """One decode step: every layer's decode invocation, the head, the host's embedding and sampling."""
        return sum(self.invocation_s(n) for n in self.decode) + self.invocation_s(self.head) + self.host_token_s

    def model(self, prompt_len: int, new_tokens: int) -> dict[str, Any]:
        """``report["llm"]`` for a prompt of ``prompt_len`` tokens and ``new_tokens`` generated ones."""
        prefilled = min(prompt_len, self.prefill_len)
        extra_prompt_steps = prompt_len - prefilled
        step = self.step_s()
        layers_step = sum(self.invocation_s(n) for n in self.decode)  # a prompt token past the prefill: no head
        ttft = self.prefill_s() + extra_prompt_steps * layers_step + self.invocation_s(self.head) + self.host_token_s
        latency = ttft + max(new_tokens - 1, 0) * step
        decode_hbm = sum(self.invocations[n].hbm_bytes for n in self.decode) + self.invocations[self.head].hbm_bytes
        decode_work = sum(self.invocations[n].work for n in self.decode) + self.invocations[self.head].work
        hbm_roofline = self.hbm_bytes_per_second / decode_hbm
        compute_roofline = self.mac_lanes * self.clock_hz / decode_work
        layers = [{"layer": i, "prefill_design": p, "prefill_cycles": self.invocations[p].cycles,
                   "decode_design": d, "decode_cycles": self.invocations[d].cycles}
                  for i, (p, d) in enumerate(zip(self.prefill, self.decode, strict=True))]
        overheads = {
            "kernel_launch_s_each": self.kernel_launch_s, "buffer_sync_s_each": self.transfer_latency_s,
            "pcie_bytes_per_s": self.pcie_bytes_per_second, "source": self.host_link_source,
            "per_decode_step_s": {
                "kernels": sum(self.kernel_s(n) for n in [*self.decode, self.head]),
                **{k: sum(self.overhead_s(n)[k] for n in [*self.decode, self.head])
                   for k in ("launch", "sync", "pcie", "pcie_kv_cache")},
                "host_embedding_and_sampling_measured_here": self.host_token_s,
            },
        }
        kernel_tokens_per_s = 1 / sum(self.kernel_s(n) for n in [*self.decode, self.head])
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
            "hbm_bytes_per_token": decode_hbm,
            "work_per_token": decode_work,
            "rooflines": {
                "hbm_tokens_per_s": hbm_roofline,
                "compute_tokens_per_s": compute_roofline,
                "kernel_only_tokens_per_s": kernel_tokens_per_s,
                "hbm_bytes_per_s": self.hbm_bytes_per_second,
                "compute": f"{self.mac_lanes} fp32 MAC lanes ({self.dsp_per_mac} DSP each) at "
                           f"{self.clock_hz / 1e6:.0f} MHz",
                "within_rooflines": kernel_tokens_per_s <= min(hbm_roofline, compute_roofline) * (1 + 1e-9),
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
        faster = "device" if device <= self.host_head_s else "host"
        return {"placement": "device (compiled GEMV with the final norm)", "design": self.head,
                "cycles": self.invocations[self.head].cycles, "seconds_per_token": device,
                "host_alternative_seconds_per_token_measured_here": self.host_head_s,
                "model_prefers": faster,
                "note": "figures use the device head as built" + (
                    "; the host would be faster at this size, but the C++ host computes no final norm, so the head "
                    "stays a kernel" if faster == "host" else "")}

    def _position_model(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "as_built": f"every decode step streams all {self.max_len} KV-cache rows: per-step cycles are those at "
                        f"capacity {self.max_len} whatever the position (used above)"}
        for design, points in self.position_points.items():
            if len(points) < 2:
                continue
            (c0, y0), (c1, y1) = points[0], points[-1]
            slope = (y1 - y0) / (c1 - c0)
            out[design] = {"capacities_and_cycles": [list(p) for p in points],
                           "fit": f"cycles(position p) = {y0 - slope * c0:.1f} + {slope:.3f} * (p + 1)",
                           "meaning": "a cache read only up to the position (in-place KV cache): not used above"}
        return out
