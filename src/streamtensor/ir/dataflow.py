"""Dataflow graph IR: kernels, converters, forks, reassociations, chunks/concats and DMAs joined by streams.

Every stream has exactly one producer and one consumer and carries an ``ITensorType`` (its token order). A
node lists its input and output stream names in port order. ``groups`` (fusion) partitions the nodes; a
stream whose ends lie in different groups goes through external memory. Text form: ``print_dataflow``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamtensor.errors import VerificationError
from streamtensor.ir.itensor import ITensorType
from streamtensor.ir.linalg import GenericOp, Value
from streamtensor.transforms.converter_buffer import ConverterBuffer


@dataclass
class Stream:
    """A FIFO between two node ports. ``depth`` is set by FIFO sizing (tokens)."""

    name: str
    type: ITensorType
    source: str
    target: str
    depth: int | None = None


@dataclass
class LoopTiling:
    """How one loop of a Linalg op is tiled: ``trip`` tiles of ``tile`` points, ``unroll`` points in parallel."""

    size: int  # full loop range
    tile: int  # points per tile (divides size)
    unroll: int  # parallel points inside a tile (divides tile)
    reduction: bool

    @property
    def trip(self) -> int:
        return self.size // self.tile


@dataclass
class Node:
    name: str
    inputs: list[str]  # stream names, in port order
    outputs: list[str]

    @property
    def kind(self) -> str:
        raise NotImplementedError


@dataclass
class KernelNode(Node):
    """A tiled ``linalg.generic``. ``tile_order`` lists loop dims outermost-first (all of them)."""

    op: GenericOp
    loops: list[LoopTiling]
    tile_order: list[int]
    point_order: list[int]  # loop order inside a tile (reduction loops outward, parallel innermost)
    # For each input port: index into op.inputs; for each output port: index into op.results.
    input_operands: list[int] = field(default_factory=list)
    output_results: list[int] = field(default_factory=list)
    # Inputs that are not streamed but held whole in the kernel (e.g. small constants), by operand index.
    local_operands: dict[int, Value] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "kernel"


@dataclass
class ConverterNode(Node):
    buffer: ConverterBuffer

    @property
    def kind(self) -> str:
        return "itensor_converter"


@dataclass
class ForkNode(Node):
    @property
    def kind(self) -> str:
        return "itensor_fork"


@dataclass
class ReassociateNode(Node):
    """Reshape of the token stream without reordering (expand/collapse of element shape and iteration space)."""

    @property
    def kind(self) -> str:
        return "itensor_reassociate"


@dataclass
class ChunkNode(Node):
    """A static slice of the tensor: forwards the tokens inside ``offsets``/``sizes``, drops the rest."""

    offsets: tuple[int, ...]
    sizes: tuple[int, ...]

    @property
    def kind(self) -> str:
        return "itensor_chunk"


@dataclass
class ConcatNode(Node):
    dim: int

    @property
    def kind(self) -> str:
        return "itensor_concat"


@dataclass
class DmaNode(Node):
    """The boundary with external memory: ``read`` streams a tensor in, ``write`` streams one out."""

    direction: str  # "read" | "write"
    tensor: Value
    role: str  # "input" | "weight" | "kv_cache" | "constant" | "output"

    @property
    def kind(self) -> str:
        return f"dma_{self.direction}"


@dataclass
class DataflowGraph:
    name: str
    nodes: dict[str, Node]
    streams: dict[str, Stream]
    groups: list[list[str]] = field(default_factory=list)  # fusion groups (node names), topological order

    def producer(self, stream: str) -> Node:
        return self.nodes[self.streams[stream].source]

    def consumer(self, stream: str) -> Node:
        return self.nodes[self.streams[stream].target]

    def topological_order(self) -> list[str]:
        indegree = {n: 0 for n in self.nodes}
        for s in self.streams.values():
            indegree[s.target] += 1
        ready = [n for n in self.nodes if indegree[n] == 0]
        order: list[str] = []
        while ready:
            n = ready.pop(0)
            order.append(n)
            for out in self.nodes[n].outputs:
                t = self.streams[out].target
                indegree[t] -= 1
                if indegree[t] == 0:
                    ready.append(t)
        if len(order) != len(self.nodes):
            raise VerificationError(f"dataflow graph @{self.name} has a cycle")
        return order

    def group_of(self) -> dict[str, int]:
        return {n: i for i, g in enumerate(self.groups) for n in g}

    def verify(self) -> None:
        """Both ends of every stream agree on it; ports are consistent; types verify; groups partition nodes."""
        for s in self.streams.values():
            for end, role in ((s.source, "outputs"), (s.target, "inputs")):
                if end not in self.nodes:
                    raise VerificationError(f"stream {s.name} references unknown node {end}")
                if getattr(self.nodes[end], role).count(s.name) != 1:
                    raise VerificationError(f"stream {s.name} is not exactly once in the {role} of {end}")
            s.type.verify()
        for node in self.nodes.values():
            for port in node.inputs + node.outputs:
                if port not in self.streams:
                    raise VerificationError(f"node {node.name} uses unknown stream {port}")
            if isinstance(node, ForkNode):
                types = {str(self.streams[p].type) for p in node.inputs + node.outputs}
                if len(types) != 1:
                    raise VerificationError(f"fork {node.name} changes the stream type: {sorted(types)}")
            if isinstance(node, ConverterNode):
                (src,), (res,) = node.inputs, node.outputs
                if self.streams[src].type.tensor_shape != self.streams[res].type.tensor_shape:
                    raise VerificationError(f"converter {node.name} changes the tensor shape")
        self.topological_order()
        if self.groups:
            seen = [n for g in self.groups for n in g]
            if sorted(seen) != sorted(self.nodes):
                raise VerificationError(f"fusion groups of @{self.name} do not partition its nodes")


def print_dataflow(graph: DataflowGraph) -> str:
    """MLIR-like text: streams with types (and depths), then nodes by fusion group in topological order."""
    lines = [f"// Dataflow graph of @{graph.name}: {len(graph.nodes)} nodes, {len(graph.streams)} streams, "
             f"{len(graph.groups)} fusion group(s)"]
    lines.append(f"dataflow.graph @{graph.name} {{")
    order = graph.topological_order()
    groups = graph.groups or [order]
    position = {n: i for i, n in enumerate(order)}
    for gi, group in enumerate(groups):
        lines.append(f"  dataflow.kernel @group{gi} {{  // one accelerator: {len(group)} nodes")
        members = sorted(group, key=position.__getitem__)
        member_set = set(members)
        for s in graph.streams.values():
            if s.source in member_set:
                depth = f", depth {s.depth}" if s.depth is not None else ""
                lines.append(f"    %{s.name} = itensor_instance : !{s.type}{depth}  // {s.source} -> {s.target}")
        for n in members:
            lines.append("    " + _print_node(graph, graph.nodes[n]))
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _print_node(graph: DataflowGraph, node: Node) -> str:
    ins = ", ".join(f"%{s}" for s in node.inputs)
    outs = ", ".join(f"%{s}" for s in node.outputs)
    head = f"{node.kind} @{node.name}({ins}) -> ({outs})"
    if isinstance(node, KernelNode):
        tiles = ", ".join(f"d{d}: {lt.trip}x{lt.tile}/u{lt.unroll}{'r' if lt.reduction else ''}"
                          for d, lt in enumerate(node.loops))
        return f"{head} {{op = @{node.op.name}, tiles = [{tiles}], tile_order = {node.tile_order}, " \
               f"point_order = {node.point_order}}}"
    if isinstance(node, ConverterNode):
        b = node.buffer
        return f"{head} {{buffer = 2x{'x'.join(map(str, b.shape))}, shared_loops = {b.shared_loops}, " \
               f"bytes = {b.bytes}}}"
    if isinstance(node, ChunkNode):
        return f"{head} {{offsets = {list(node.offsets)}, sizes = {list(node.sizes)}}}"
    if isinstance(node, ConcatNode):
        return f"{head} {{dim = {node.dim}}}"
    if isinstance(node, DmaNode):
        return f"{head} {{tensor = %{node.tensor.name} : {node.tensor.type}, role = {node.role}}}"
    return head
