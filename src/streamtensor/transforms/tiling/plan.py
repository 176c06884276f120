"""The tiling plan: the options of the design space, each kernel's loop tiles, unrolls and orders, and their
timing."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from streamtensor.analysis.timing_model import KernelTiming
from streamtensor.errors import OptionError
from streamtensor.ir.dataflow import LoopTiling
from streamtensor.ir.linalg import Graph

ORDER_OBJECTIVES = ("auto", "memory", "latency")


@dataclass(frozen=True)
class TilingOptions:
    """The Linalg tiling design space (semantics: the modules of ``transforms.tiling``)."""

    default_tile_size: int = 16
    overall_unroll_size: int = 1024
    permute_reductions_outward: bool = True
    intensity_aware_unroll: bool = True
    max_token_rank: int = 2
    token_tile_size: int | None = 0  # None: chosen per block (``transforms.tiling.tile_graph``; compile's default)
    agree_tiles: bool = True
    wide_feature_tiles: bool = False  # a token tile's rows go to the feature tiles (``tiling.tile_sizes``)
    layout_aware_order: bool = True
    order_search_restarts: int = 8
    order_objective: str = "auto"  # what the tile-order search minimizes (``tiling.tile_order``)

    def __post_init__(self) -> None:
        for name, least in (("default_tile_size", 1), ("overall_unroll_size", 1), ("max_token_rank", 0),
                            ("token_tile_size", 0), ("order_search_restarts", 0)):
            value = getattr(self, name)
            if name == "token_tile_size" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise OptionError(f"bad {name.replace('_', '-')} {value!r}: must be an integer of at least {least}")
        if self.order_objective not in ORDER_OBJECTIVES:
            raise OptionError(f"bad order-objective {self.order_objective!r}: must be one of "
                              + ", ".join(ORDER_OBJECTIVES))
        for name in ("permute_reductions_outward", "intensity_aware_unroll", "agree_tiles", "layout_aware_order",
                     "wide_feature_tiles"):
            if not isinstance(getattr(self, name), bool):
                raise OptionError(f"bad {name.replace('_', '-')} {getattr(self, name)!r}: "
                                  "must be true or false")


def block_rows(graph: Graph) -> int | None:
    """Tokens of the block: the rows of its first input (None without a row dim)."""
    shape = graph.inputs[0].type.shape if graph.inputs else ()
    return shape[-2] if len(shape) >= 2 else None


@dataclass
class OpTiling:
    """Tiling of one kernel: ``loops`` indexed by loop dim, orders outermost first."""

    loops: list[LoopTiling]
    tile_order: list[int]
    point_order: list[int]
    min_pipeline_ii: int = 1  # bandwidth-aware unrolling (``tiling.unroll``)
    # The operands the kernel reads through input ports (``KernelNode.input_operands``: an init folded from a
    # constant fill has none), which its timing moves as beats; None: every input and every init the body reads.
    read_operands: list[int] | None = None

    @property
    def lanes(self) -> int:
        return math.prod(lt.unroll for lt in self.loops)


@dataclass
class Tiling:
    """The tiling of a graph: one ``OpTiling`` per kernel (by op label) and each kernel's timing."""

    options: TilingOptions
    ops: dict[str, OpTiling]
    timings: dict[str, KernelTiming] = field(default_factory=dict)
    # Token tile chosen by ``tile_graph``: each candidate's score (``options.token_tile_size`` is the winner's).
    trials: dict[int, list[float]] = field(default_factory=dict)

    @property
    def total_lanes(self) -> int:
        return sum(t.lanes for t in self.ops.values())

    @property
    def max_latency(self) -> int:
        return max((t.latency for t in self.timings.values()), default=0)
