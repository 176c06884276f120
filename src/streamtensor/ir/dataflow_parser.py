"""Parser of the dataflow graph text that ``print_dataflow`` writes: ``parse_dataflow(print_dataflow(g))`` prints
the same.

A stream's producer and consumer are the nodes that list it among their outputs and inputs (the ``// a -> b``
comment after a stream only repeats them); a stream is declared in the fusion group of its producer. Kernels
and DMAs carry their Linalg ops as a region (``ir.linalg_parser``). The parsed graph is verified
(``DataflowGraph.verify``); text the printer would not write raises ``ParseError`` naming ``file:line:col``.
"""

from __future__ import annotations

import re
from dataclasses import replace
from fractions import Fraction

import numpy as np

from streamtensor.ir.converter_buffer import ConverterBuffer
from streamtensor.ir.dataflow import (
    CacheRows,
    ChunkNode,
    ConcatNode,
    ConverterNode,
    DataflowGraph,
    DmaNode,
    ForkNode,
    KernelNode,
    LoopTiling,
    Node,
    ReassociateNode,
    Stream,
)
from streamtensor.ir.itensor import parse_itensor_type
from streamtensor.ir.linalg import GenericOp, ReshapeOp, SliceOp, Value
from streamtensor.ir.linalg_parser import LinalgParser
from streamtensor.ir.text import Cursor, dense_array, read_dense

_NODE_KINDS = ("kernel", "itensor_converter", "itensor_fork", "itensor_reassociate", "itensor_chunk",
               "itensor_concat", "dma_read", "dma_write")
_KIND = re.compile("|".join(sorted(_NODE_KINDS, key=len, reverse=True)) + r"(?![\w.])")
_TILE = re.compile(r"d(\d+):\s*(\d+)x(\d+)/u(\d+)(r?)")
_BUFFER = re.compile(r"(\d+)x(scalar|\d+(?:x\d+)*)(?![\w.])")
_INIT = re.compile(r"init(\d+)")
_ROLE = re.compile(r"input|weight|kv_cache|constant|output|scalar")
_CONSTANT = re.compile(r"%[\w.]+\s*=\s*arith\.constant")
_VIEW_OPS = ("tensor.expand_shape", "tensor.collapse_shape", "tensor.extract_slice")


class _DataflowParser:
    def __init__(self, cur: Cursor) -> None:
        self.cur = cur
        self.ops = LinalgParser(cur, None)  # node regions: uses carry their types
        self.streams: dict[str, Stream] = {}
        self.stream_at: dict[str, int] = {}
        self.stream_group: dict[str, int | None] = {}
        self.nodes: dict[str, Node] = {}
        self.node_at: dict[str, int] = {}
        self.node_group: dict[str, int | None] = {}
        self.converter_bytes: dict[str, tuple[int, int]] = {}  # converter -> (bytes written, where)

    def graph(self) -> DataflowGraph:
        cur = self.cur
        cur.expect("dataflow.graph", "'dataflow.graph' opening a dataflow graph")
        name = cur.symbol("the graph name @name")
        cur.expect("(", "'(' opening the block inputs")
        inputs: list[Value] = []
        while not cur.accept(")"):
            if inputs:
                cur.expect(",", "',' or ')' in the block inputs")
            arg = cur.value_name("a block input %name")
            cur.expect(":", "':' and the input's type")
            inputs.append(Value(arg, self.ops.tensor_type()))
        cur.expect("->", "'->' and the output DMAs")
        cur.expect("(", "'(' opening the output DMAs")
        outputs = cur.separated(")", "the output DMAs", lambda: cur.symbol("an output DMA @name"))
        cur.expect("{", "'{' opening the graph body")
        constants: dict[str, np.ndarray] = {}
        while cur.at("%") and self._is_constant():
            start = cur.pos
            const = cur.value_name()
            cur.expect("=", "'='")
            cur.expect("arith.constant", "'arith.constant'")
            dense = read_dense(cur)
            cur.expect(":", "':' and the constant's type")
            ttype = self.ops.tensor_type()
            if const in constants:
                raise cur.error(f"constant %{const} defined twice", start)
            constants[const] = dense_array(cur, dense, ttype.shape, ttype.dtype)
        groups: list[list[str]] = []
        if cur.at("dataflow.kernel"):
            while cur.accept("dataflow.kernel"):
                cur.skip()
                label_at = cur.pos
                if cur.symbol("a fusion group @groupN") != f"group{len(groups)}":
                    raise cur.error(f"expected @group{len(groups)} (groups are numbered in order)", label_at)
                cur.expect("{", "'{' opening the fusion group")
                groups.append(self.members(len(groups)))
        else:
            self.members(None)
        cur.expect("}", "'}' closing the graph")
        if not cur.at_end():
            raise cur.expected("end of file")
        self.connect()
        graph = DataflowGraph(name, self.nodes, self.streams, groups, inputs, outputs, constants)
        graph.verify()
        self.check_converter_bytes()
        self.ops.run_after_verify()
        return graph

    def _is_constant(self) -> bool:
        """Is the ``%name = ...`` at the cursor a constant (not a stream)?"""
        return _CONSTANT.match(self.cur.text, self.cur.pos) is not None

    def members(self, group: int | None) -> list[str]:
        """Streams and nodes up to the closing ``}`` (consumed when in a group); the node names in order."""
        names: list[str] = []
        while not self.cur.at("}"):
            if self.cur.at_end():
                raise self.cur.expected("a stream, a node or '}'")
            if self.cur.at("%"):
                self.stream(group)
            else:
                names.append(self.node(group))
        if group is not None:
            self.cur.expect("}", "'}' closing the fusion group")
        return names

    def stream(self, group: int | None) -> None:
        cur = self.cur
        start = cur.pos
        name = cur.value_name()
        if name in self.streams:
            raise cur.error(f"stream %{name} defined twice", start)
        cur.expect("=", "'='")
        cur.expect("itensor_instance", "'itensor_instance'")
        cur.expect(":", "':' and the stream type")
        cur.expect("!", "'!itensor<...>'")
        text, type_at = cur.angle_body("itensor", "a stream type 'itensor<...>'")
        try:
            stream_type = parse_itensor_type(text)
        except ValueError as err:
            raise cur.error(str(err), type_at) from None
        depth = None
        if cur.accept(","):
            cur.expect("depth", "'depth'")
            depth = cur.integer("the FIFO depth")
        attributes = cur.attribute_dict() if cur.accept("attributes") else {}
        self.streams[name] = Stream(name, stream_type, "", "", depth, attributes)
        self.stream_at[name] = start
        self.stream_group[name] = group

    def ports(self, what: str) -> list[str]:
        self.cur.expect("(", f"'(' opening the {what}")
        return self.cur.separated(")", f"the {what}", lambda: self.cur.value_name(f"a stream %name in the {what}"))

    def node(self, group: int | None) -> str:
        cur = self.cur
        start = cur.pos
        kind = cur.match(_KIND, f"a node ({', '.join(_NODE_KINDS)}), a stream or '}}'")
        name = cur.symbol("the node name @name")
        if name in self.nodes:
            raise cur.error(f"node @{name} defined twice", start)
        inputs = self.ports("input streams")
        cur.expect("->", "'->' and the output streams")
        outputs = self.ports("output streams")
        node: Node
        if kind == "kernel":
            loops, tile_order, point_order, operands, init_constants, min_ii, replays = self.kernel_attributes()
            attributes = cur.attribute_dict() if cur.accept("attributes") else {}
            cur.expect("{", f"'{{' opening the region of {name} (its linalg.generic)")
            op = self.ops.op(("linalg.generic",))
            assert isinstance(op, GenericOp)
            cur.expect("}", f"'}}' closing the region of {name}")
            node = KernelNode(name, inputs, outputs, op, loops, tile_order, point_order, input_operands=operands,
                              output_results=list(range(len(op.results))) + replays,
                              init_constants=init_constants, min_pipeline_ii=min_ii, attributes=attributes)
        elif kind == "itensor_converter":
            node = self.converter(name, inputs, outputs)
        elif kind == "itensor_fork":
            node = ForkNode(name, inputs, outputs)
        elif kind == "itensor_reassociate":
            node = ReassociateNode(name, inputs, outputs)
        elif kind == "itensor_chunk":
            cur.expect("{", "'{' opening the chunk's attributes")
            offsets = tuple(self.key_int_list("offsets"))
            cur.expect(",", "','")
            sizes = tuple(self.key_int_list("sizes"))
            cur.expect("}", "'}'")
            node = ChunkNode(name, inputs, outputs, offsets, sizes)
        elif kind == "itensor_concat":
            cur.expect("{", "'{' opening the concat's attributes")
            self.key("dim")
            node = ConcatNode(name, inputs, outputs, cur.integer("the concat dimension"))
            cur.expect("}", "'}'")
        else:
            node = self.dma(name, inputs, outputs, kind.removeprefix("dma_"))
        if not isinstance(node, KernelNode) and cur.accept("attributes"):
            node.attributes = cur.attribute_dict()
        if isinstance(node, DmaNode) and cur.accept("{"):  # its view ops; none: no region
            while not cur.accept("}"):
                view_op = self.ops.op(_VIEW_OPS)
                assert isinstance(view_op, ReshapeOp | SliceOp)
                node.view.append(view_op)
        self.nodes[name] = node
        self.node_at[name] = start
        self.node_group[name] = group
        return name

    def key(self, key: str) -> None:
        self.cur.expect(key, f"'{key}'")
        self.cur.expect("=", f"'=' after '{key}'")

    def key_int_list(self, key: str) -> list[int]:
        self.key(key)
        return self.cur.int_list(f"the {key.replace('_', ' ')}")

    def kernel_attributes(self) -> tuple[list[LoopTiling], list[int], list[int], list[int],
                                         dict[int, float | int | bool], int, list[int]]:
        """Loops, tile order, point order, operands, init constants, least II and replayed results."""
        cur = self.cur
        cur.expect("{", "'{' opening the kernel's attributes")
        self.key("tiles")
        cur.expect("[", "'[' opening the loop tiles")
        loops: list[LoopTiling] = []
        while not cur.accept("]"):
            if loops:
                cur.expect(",", "',' or ']' in the loop tiles")
            cur.skip()
            start = cur.pos
            m = _TILE.fullmatch(cur.match(_TILE, f"a loop tile 'd{len(loops)}: TRIPxTILE/uUNROLL[r]'"))
            assert m is not None
            if int(m.group(1)) != len(loops):
                raise cur.error(f"expected the tile of loop d{len(loops)}", start)
            trip, tile, unroll = int(m.group(2)), int(m.group(3)), int(m.group(4))
            loops.append(LoopTiling(trip * tile, tile, unroll, m.group(5) == "r"))
        cur.expect(",", "','")
        tile_order = self.key_int_list("tile_order")
        cur.expect(",", "','")
        point_order = self.key_int_list("point_order")
        cur.expect(",", "','")
        operands = self.key_int_list("operands")
        init_constants: dict[int, float | int | bool] = {}
        min_ii = 1
        replays: list[int] = []
        while cur.accept(","):
            cur.skip()
            start = cur.pos
            key = cur.ident("an attribute name")
            init = _INIT.fullmatch(key)
            cur.expect("=", f"'=' after '{key}'")
            if init:
                value = cur.literal(f"the initial value of result {init.group(1)}")
                if isinstance(value, str):
                    raise cur.error(f"expected a number or True/False as {key}", start)
                init_constants[int(init.group(1))] = value
            elif key == "min_pipeline_ii":
                min_ii = cur.integer("the least pipeline II")
            elif key == "replays":
                replays = cur.int_list("the replayed results")
            else:
                raise cur.error(f"unknown kernel attribute '{key}' (expected initN, min_pipeline_ii or replays)",
                                start)
        cur.expect("}", "'}' closing the kernel's attributes")
        return loops, tile_order, point_order, operands, init_constants, min_ii, replays

    def converter(self, name: str, inputs: list[str], outputs: list[str]) -> ConverterNode:
        cur = self.cur
        cur.expect("{", "'{' opening the converter's attributes")
        self.key("buffer")
        m = _BUFFER.fullmatch(cur.match(_BUFFER, "a buffer 'BANKSxSHAPE' (e.g. 2x4x16, 1xscalar)"))
        assert m is not None
        shape = () if m.group(2) == "scalar" else tuple(int(d) for d in m.group(2).split("x"))
        cur.expect(",", "','")
        self.key("shared_loops")
        shared = cur.integer("the shared loop count")
        cur.expect(",", "','")
        self.key("bytes")
        cur.skip()
        bytes_at = cur.pos
        self.converter_bytes[name] = (cur.integer("the buffer bytes"), bytes_at)
        reason = ""
        if cur.accept(","):
            self.key("reason")
            value_at = cur.pos
            reason_value = cur.literal("the reason, quoted")
            if not isinstance(reason_value, str) or cur.text[value_at:].lstrip()[:1] != '"':
                raise cur.error("expected the reason as a quoted string", value_at)
            reason = reason_value
        cur.expect("}", "'}' closing the converter's attributes")
        # The element type is the stream's, known once every stream is read (``connect``).
        return ConverterNode(name, inputs, outputs, ConverterBuffer(shape, shared, "f32", banks=int(m.group(1))),
                             reason)

    def dma(self, name: str, inputs: list[str], outputs: list[str], direction: str) -> DmaNode:
        cur = self.cur
        cur.expect("{", "'{' opening the DMA's attributes")
        self.key("tensor")
        tensor = cur.value_name("the external tensor %name")
        cur.expect(":", "':' and the tensor's type")
        tensor_type = self.ops.tensor_type()
        cur.expect(",", "','")
        self.key("role")
        role = cur.match(_ROLE, "a role (input, weight, kv_cache, constant, output, scalar)")
        rows = None
        stripes = 1
        share: Fraction | None = None
        # Optional, in this order: rows, stripes, share.
        while cur.accept(","):
            if rows is None and stripes == 1 and share is None and cur.at("rows"):
                self.key("rows")
                position = cur.value_name("the row's input %name")
                cur.expect("dim", "'dim'")
                dim = cur.integer("the row's dim")
                into = cur.value_name("the updated cache %name") if cur.accept("into") else None
                rows = CacheRows(position, dim, into)
            elif stripes == 1 and share is None and cur.at("stripes"):
                self.key("stripes")
                stripes = cur.integer("the number of stripes")
            else:
                self.key("share")
                numerator = cur.integer("the share (ports, a fraction n/d)")
                share = Fraction(numerator, cur.integer("the share's denominator") if cur.accept("/") else 1)
        cur.expect("}", "'}' closing the DMA's attributes")
        return DmaNode(name, inputs, outputs, direction, Value(tensor, tensor_type), role, rows=rows,
                       stripes=stripes, share=share)

    def connect(self) -> None:
        """Stream ends from the nodes' ports; converter buffers get their stream's element type."""
        for node in self.nodes.values():
            for ports, end in ((node.outputs, "source"), (node.inputs, "target")):
                for port in ports:
                    stream = self.streams.get(port)
                    if stream is None:
                        continue  # the verifier names the unknown stream
                    current = getattr(stream, end)
                    if current and current != node.name:
                        role = "producer" if end == "source" else "consumer"
                        raise self.cur.error(f"stream %{port} has a second {role} @{node.name} (the first is "
                                             f"@{current})", self.node_at[node.name])
                    setattr(stream, end, node.name)
        for name, stream in self.streams.items():
            for end, role in (("source", "producer"), ("target", "consumer")):
                if not getattr(stream, end):
                    raise self.cur.error(f"stream %{name} has no {role}", self.stream_at[name])
            if self.stream_group[name] != self.node_group[stream.source]:
                raise self.cur.error(f"stream %{name} is declared in @group{self.stream_group[name]} but its "
                                     f"producer @{stream.source} is in @group{self.node_group[stream.source]}",
                                     self.stream_at[name])
        for name, node in self.nodes.items():
            if not isinstance(node, ConverterNode):
                continue
            if not node.inputs or node.inputs[0] not in self.streams:
                raise self.cur.error(f"converter @{name} needs an input stream (its buffer has its element type)",
                                     self.node_at[name])
            node.buffer = replace(node.buffer, dtype=self.streams[node.inputs[0]].type.dtype)

    def check_converter_bytes(self) -> None:
        """The ``bytes`` written for each converter are its buffer's (once the stream types are verified)."""
        for name, (written, at) in self.converter_bytes.items():
            node = self.nodes[name]
            assert isinstance(node, ConverterNode)
            if written != node.buffer.bytes:
                raise self.cur.error(f"bytes = {written} but the buffer holds {node.buffer.bytes}", at)


def parse_dataflow(text: str, filename: str = "<text>") -> DataflowGraph:
    """The graph ``print_dataflow`` printed as ``text``, verified."""
    return _DataflowParser(Cursor(text, filename)).graph()

