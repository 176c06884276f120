"""Parser of the Linalg graph text that ``print_graph`` writes: ``parse_graph(print_graph(g))`` prints the same.

Op locations are the ``// ...`` comment ending an op's (first) line; other comments are ignored. The parsed
graph is verified (``Graph.verify``); text the printer would not write raises ``ParseError`` naming
``file:line:col`` and what was expected there.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from streamtensor.errors import VerificationError
from streamtensor.ir.affine import AffineMap, parse_affine_map
from streamtensor.ir.linalg import (
    CacheUpdate,
    ConcatOp,
    ConstantOp,
    EmptyOp,
    GenericOp,
    Graph,
    Op,
    ReshapeOp,
    ScalarBody,
    ScalarOp,
    SliceOp,
    TensorType,
    Value,
)
from streamtensor.ir.text import Cursor, T, dense_array, read_dense

_TENSOR = re.compile(r"tensor<((?:\d+x)*)([A-Za-z]\w*)>")
_OP_NAME = re.compile(r"[a-z_]\w*\.[a-z_]\w*")
_DTYPE = re.compile(r"[A-Za-z]\w*")
_ITERATOR = re.compile(r'"(parallel|reduction)"')


class LinalgParser:
    """Linalg ops from a cursor. With ``defined`` (the graph's values by name) every use must agree with its
    definition's type; without it (an op inside a dataflow node) uses take the types written at them."""

    def __init__(self, cur: Cursor, defined: dict[str, TensorType] | None) -> None:
        self.cur = cur
        self.defined = defined
        # Checks of derived text (a generic's domain) that need the op verified first.
        self.after_verify: list[Callable[[], None]] = []

    def tensor_type(self) -> TensorType:
        self.cur.skip()
        start = self.cur.pos
        m = _TENSOR.fullmatch(self.cur.match(_TENSOR, "a tensor type 'tensor<...>'"))
        assert m is not None
        try:
            return TensorType(tuple(int(d) for d in m.group(1).split("x")[:-1]), m.group(2))
        except VerificationError as err:
            raise self.cur.error(str(err), start) from None

    def use(self, written: TensorType | None = None) -> Value:
        """A value use ``%name`` whose type is ``written`` next to it, or (None) the type of its definition."""
        self.cur.skip()
        start = self.cur.pos
        name = self.cur.value_name()
        known = None if self.defined is None else self.defined.get(name)
        if written is None:
            if known is None:
                raise self.cur.error(f"%{name} is not defined before this use (its type is unknown)", start)
            return Value(name, known)
        if known is not None and known != written:
            raise self.cur.error(f"%{name} is used as {written} but defined as {known}", start)
        return Value(name, written)

    def typed_uses(self, close: str) -> list[Value]:
        """``%a : T, %b : U`` up to ``close``."""
        out: list[Value] = []
        while not self.cur.accept(close):
            if out:
                self.cur.expect(",", f"',' or '{close}'")
            self.cur.skip()
            pos = self.cur.pos
            self.cur.value_name()
            self.cur.expect(":", "':' and the operand's type")
            written = self.tensor_type()
            end = self.cur.pos
            self.cur.pos = pos
            out.append(self.use(written))
            self.cur.pos = end
        return out

    def op(self, kinds: tuple[str, ...] | None = None) -> Op:
        """One op; ``kinds`` limits which (an error names them otherwise)."""
        names = [self.cur.value_name("a result %name")]
        while self.cur.accept(","):
            names.append(self.cur.value_name("a result %name"))
        self.cur.expect("=", "'=' after the results")
        self.cur.skip()
        start = self.cur.pos
        kind = self.cur.match(_OP_NAME, "an op name")
        if kinds is not None and kind not in kinds:
            raise self.cur.error(f"expected one of {', '.join(kinds)}, found '{kind}'", start)
        if kind == "linalg.generic":
            op: Op = self.generic(names)
        else:
            if len(names) != 1:
                raise self.cur.error(f"{kind} has one result, not {len(names)}", start)
            op = self.single_result_op(kind, names[0], start)
            op.location = self.cur.trailing_comment()
        if self.defined is not None:
            for r in op.results:
                self.defined.setdefault(r.name, r.type)  # a second definition is the verifier's to report
        return op

    def view(self, name: str, attributes: Callable[[], T]) -> tuple[Value, Value, T]:
        """``%source ATTRIBUTES : source-type -> result-type`` of a reshape or a slice; the source is checked
        against its definition once its type has been read."""
        cur = self.cur
        source_at = cur.pos
        cur.value_name()
        attrs = attributes()
        cur.expect(":", "':' and the source type")
        source_type = self.tensor_type()
        cur.expect("->", "'->' and the result type")
        result = Value(name, self.tensor_type())
        end, cur.pos = cur.pos, source_at
        source = self.use(source_type)
        cur.pos = end
        return source, result, attrs

    def single_result_op(self, kind: str, name: str, start: int) -> Op:
        cur = self.cur
        if kind in ("tensor.expand_shape", "tensor.collapse_shape"):
            source, result, groups = self.view(name, self.int_lists)
            return ReshapeOp([result], source, groups, kind == "tensor.expand_shape")
        if kind == "tensor.extract_slice":
            source, result, (offsets, sizes, strides) = self.view(name, lambda: tuple(
                tuple(cur.int_list(f"the slice {what}")) for what in ("offsets", "sizes", "strides")))
            return SliceOp([result], source, offsets, sizes, strides)
        if kind == "tensor.concat":
            cur.expect("dim(", "'dim(' and the concat dimension")
            dim = cur.integer("the concat dimension")
            cur.expect(")", "')'")
            inputs = [self.use()]
            while cur.accept(","):
                inputs.append(self.use())
            cur.expect("->", "'->' and the result type")
            return ConcatOp([Value(name, self.tensor_type())], inputs, dim)
        if kind == "arith.constant":
            dense = read_dense(cur)
            cur.expect(":", "':' and the constant's type")
            ttype = self.tensor_type()
            return ConstantOp([Value(name, ttype)], dense_array(cur, dense, ttype.shape, ttype.dtype))
        if kind == "tensor.empty":
            cur.expect("()", "'()'")
            cur.expect(":", "':' and the result type")
            return EmptyOp([Value(name, self.tensor_type())])
        raise self.cur.error(f"unknown op '{kind}'", start)

    def int_lists(self) -> list[list[int]]:
        self.cur.expect("[", "'[' opening the reassociation groups")
        return self.cur.separated("]", "the reassociation groups", lambda: self.cur.int_list("a reassociation group"))

    def generic(self, names: list[str]) -> GenericOp:
        cur = self.cur
        label = cur.symbol("the generic's label @name")
        cur.expect("{", "'{' opening the generic's attributes")
        cur.expect("domain", "'domain'")
        cur.expect("=", "'='")
        cur.skip()
        domain_at = cur.pos
        domain = tuple(cur.int_list("the domain"))
        cur.expect(",", "','")
        cur.expect("indexing_maps", "'indexing_maps'")
        cur.expect("=", "'='")
        cur.expect("[", "'[' opening the indexing maps")
        maps: list[AffineMap] = []
        while not cur.accept("]"):
            if maps:
                cur.expect(",", "',' or ']' in the indexing maps")
            text, start = cur.angle_body("affine_map", "an indexing map 'affine_map<...>'")
            try:
                maps.append(parse_affine_map(text))
            except ValueError as err:
                raise cur.error(str(err), start) from None
        cur.expect(",", "','")
        cur.expect("iterator_types", "'iterator_types'")
        cur.expect("=", "'='")
        cur.expect("[", "'[' opening the iterator types")
        iterators = cur.separated("]", "the iterator types",
                                  lambda: cur.match(_ITERATOR, 'an iterator type "parallel" or "reduction"')[1:-1])
        cur.expect("}", "'}' closing the generic's attributes")
        cur.expect("ins(", "'ins('")
        inputs = self.typed_uses(")")
        cur.expect("outs(", "'outs('")
        inits = self.typed_uses(")")
        cur.expect("{", "'{' opening the generic's body")
        location = cur.trailing_comment()
        body = self.body()
        cur.expect("->", "'->' and the result types")
        results = [Value(names[0], self.tensor_type())]
        for name in names[1:]:
            cur.expect(",", f"',' and the type of %{name}")
            results.append(Value(name, self.tensor_type()))
        op = GenericOp(results, label, inputs, inits, maps, iterators, body, location=location)

        def check_domain() -> None:
            if op.domain != domain:
                raise cur.error(f"domain {list(domain)} of {label} does not match its operands' {list(op.domain)}",
                                domain_at)

        self.after_verify.append(check_domain)
        return op

    def body(self) -> ScalarBody:
        cur = self.cur
        cur.expect("^bb0(", "the body's block '^bb0('")
        args: list[tuple[str, str]] = []
        while not cur.accept(")"):
            if args:
                cur.expect(",", "',' or ')' in the block arguments")
            arg = cur.value_name("a block argument %name")
            cur.expect(":", "':' and the argument's type")
            args.append((arg, cur.match(_DTYPE, "an element type")))
        cur.expect(":", "':' after the block arguments")
        ops: list[ScalarOp] = []
        while not cur.accept("linalg.yield"):
            result = cur.value_name("a scalar op or 'linalg.yield'")
            cur.expect("=", "'='")
            name = cur.match(_OP_NAME, "a scalar op name")
            operands = self.names()
            attrs: list[tuple[str, object]] = []
            while cur.accept("{"):
                key = cur.ident("an attribute name")
                cur.expect("=", "'='")
                attrs.append((key, cur.literal(f"the value of '{key}'")))
                cur.expect("}", "'}'")
            cur.expect(":", "':' and the result's element type")
            ops.append(ScalarOp(result, name, tuple(operands), cur.match(_DTYPE, "an element type"), tuple(attrs)))
        yields = self.names()
        cur.expect("}", "'}' closing the body")
        return ScalarBody(tuple(args), tuple(ops), tuple(yields))

    def names(self) -> list[str]:
        """``%a, %b``: possibly none."""
        if not self.cur.at("%"):
            return []
        out = [self.cur.value_name()]
        while self.cur.accept(","):
            out.append(self.cur.value_name())
        return out

    def run_after_verify(self) -> None:
        for check in self.after_verify:
            check()


def parse_graph(text: str, filename: str = "<text>") -> Graph:
    """The graph ``print_graph`` printed as ``text``, verified."""
    cur = Cursor(text, filename)
    cur.expect("func.func", "'func.func' opening a Linalg graph")
    name = cur.symbol("the function name @name")
    cur.expect("(", "'(' opening the arguments")
    inputs: list[Value] = []
    weights: set[str] = set()
    scalars: set[str] = set()
    updates: list[CacheUpdate] = []
    defined: dict[str, TensorType] = {}
    parser = LinalgParser(cur, defined)
    while not cur.accept(")"):
        if inputs:
            cur.expect(",", "',' or ')' in the arguments")
        arg = cur.value_name("an argument %name")
        cur.expect(":", "':' and the argument's type")
        inputs.append(Value(arg, parser.tensor_type()))
        defined[arg] = inputs[-1].type
        if cur.accept("{"):
            if cur.accept("weight"):
                weights.add(arg)
            elif cur.accept("scalar"):
                scalars.add(arg)
            else:
                cur.expect("kv_cache", "'weight', 'scalar' or 'kv_cache'")
                cur.expect("=", "'='")
                cur.expect("result", "'result'")
                output = cur.integer("the index of the updated result")
                cur.expect("row", "'row'")
                position = cur.value_name("the row's argument %name")
                cur.expect("dim", "'dim'")
                updates.append(CacheUpdate(output, arg, position, cur.integer("the row's dim")))
            cur.expect("}", "'}'")
    cur.expect("->", "'->' and the result types")
    cur.expect("(", "'(' opening the result types")
    output_types = cur.separated(")", "the result types", parser.tensor_type)
    cur.expect("{", "'{' opening the function body")
    ops: list[Op] = []
    while not cur.at("return"):
        if cur.at_end() or cur.at("}"):
            raise cur.expected("an op or 'return'")
        ops.append(parser.op())
    return_at = cur.expect("return")
    returned = parser.names()
    if len(returned) != len(output_types):
        raise cur.error(f"returns {len(returned)} values but the signature has {len(output_types)} results",
                        return_at)
    outputs = [Value(n, t) for n, t in zip(returned, output_types, strict=True)]
    for v in outputs:
        if defined.get(v.name, v.type) != v.type:
            raise cur.error(f"returns %{v.name} : {defined[v.name]} where the signature says {v.type}", return_at)
    cur.expect("}", "'}' closing the function")
    if not cur.at_end():
        raise cur.expected("end of file")
    graph = Graph(name, inputs, outputs, ops, weight_names=weights, scalar_names=scalars, cache_updates=updates)
    graph.verify()
    parser.run_after_verify()
    return graph
