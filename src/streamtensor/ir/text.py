"""Pieces shared by the IR printers and parsers: a text cursor that reports ``file:line:col``, literal values
(ints, floats, strings, attribute dictionaries) and dense constant data.

Literals print so that they parse back to the same value: ints as digits, floats with ``repr`` (``1.0``,
``1e-06``, ``inf``), strings double-quoted with JSON escapes, and ``True``/``False`` for booleans.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from streamtensor.errors import ParseError

_SPACE = re.compile(r"(?:\s+|//[^\n]*)*")
_INLINE_SPACE = re.compile(r"[ \t]*")
T = TypeVar("T")
_INT = re.compile(r"-?\d+(?![\w.])")
_FLOAT = re.compile(r"-?(?:\d+\.\d*(?:e[-+]?\d+)?|\d+e[-+]?\d+|inf|nan)(?![\w.])")
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_IDENT = re.compile(r"[A-Za-z0-9_][\w.]*")
_ATTR_KEY = re.compile(r"[A-Za-z_][\w.]*")

AttributeValue = int | float | str

# Element types a constant's data can hold, as numpy types; the others (bf16) have no numpy equivalent.
CONSTANT_NUMPY_TYPES: dict[str, type] = {"f64": np.float64, "f32": np.float32, "f16": np.float16,
                                         "i64": np.int64, "i32": np.int32, "i16": np.int16, "i8": np.int8,
                                         "i1": np.bool_}
# Constants of more elements than this print as MLIR's hex blob (``dense<"0x...">``), smaller ones as a list.
DENSE_LIST_LIMIT = 16


class Cursor:
    """A position in IR text. Every ``expect``/``match`` first skips white space and ``//`` comments, never
    after, so that ``trailing_comment`` can still read the comment at the end of the line just parsed."""

    def __init__(self, text: str, filename: str) -> None:
        self.text = text
        self.filename = filename
        self.pos = 0

    def where(self, pos: int | None = None) -> str:
        pos = self.pos if pos is None else pos
        line = self.text.count("\n", 0, pos) + 1
        col = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        return f"{self.filename}:{line}:{col}"

    def error(self, message: str, pos: int | None = None) -> ParseError:
        return ParseError(f"{self.where(pos)}: {message}")

    def expected(self, what: str) -> ParseError:
        self.skip()
        found = repr(re.match(r"\S{1,24}", self.text[self.pos:]).group(0)) if self.pos < len(self.text) \
            and not self.text[self.pos].isspace() else "end of file"
        return self.error(f"expected {what}, found {found}")

    def skip(self) -> None:
        self.pos = _SPACE.match(self.text, self.pos).end()  # type: ignore[union-attr]

    def at(self, literal: str) -> bool:
        self.skip()
        return self.text.startswith(literal, self.pos)

    def at_end(self) -> bool:
        self.skip()
        return self.pos >= len(self.text)

    def accept(self, literal: str) -> bool:
        if self.at(literal):
            self.pos += len(literal)
            return True
        return False

    def expect(self, literal: str, what: str | None = None) -> int:
        """Consume ``literal``; returns where it started."""
        if not self.at(literal):
            raise self.expected(what or f"'{literal}'")
        start = self.pos
        self.pos += len(literal)
        return start

    def match(self, pattern: re.Pattern[str], what: str) -> str:
        self.skip()
        m = pattern.match(self.text, self.pos)
        if m is None:
            raise self.expected(what)
        self.pos = m.end()
        return m.group(0)

    def trailing_comment(self) -> str | None:
        """The ``// ...`` comment ending the current line, if any (the printers put op locations there)."""
        pos = _INLINE_SPACE.match(self.text, self.pos).end()  # type: ignore[union-attr]
        if not self.text.startswith("//", pos):
            return None
        end = self.text.find("\n", pos)
        end = len(self.text) if end < 0 else end
        self.pos = end
        return self.text[pos + 2:end].strip()

    def angle_body(self, prefix: str, what: str) -> tuple[str, int]:
        """``prefix<...>`` up to its matching ``>`` (an ``->`` inside does not close it): the text from
        ``prefix`` through ``>``, and where it starts."""
        start = self.expect(prefix + "<", what)
        depth, pos = 1, self.pos
        while depth:
            if pos >= len(self.text) or self.text[pos] == "\n":
                raise self.error(f"unterminated {what}", start)
            if self.text.startswith("->", pos):
                pos += 2
                continue
            depth += {"<": 1, ">": -1}.get(self.text[pos], 0)
            pos += 1
        self.pos = pos
        return self.text[start:pos], start

    def ident(self, what: str = "an identifier") -> str:
        return self.match(_IDENT, what)

    def symbol(self, what: str = "a symbol @name") -> str:
        self.expect("@", what)
        return self.match(_IDENT, what)

    def value_name(self, what: str = "a value %name") -> str:
        self.expect("%", what)
        return self.match(_IDENT, what)

    def integer(self, what: str = "an integer") -> int:
        return int(self.match(_INT, what))

    def separated(self, close: str, where: str, item: Callable[[], T]) -> list[T]:
        """``item()`` repeated, separated by ',', up to ``close`` (consumed); ``where`` names the list in errors."""
        out: list[T] = []
        while not self.accept(close):
            if out:
                self.expect(",", f"',' or '{close}' in {where}")
            out.append(item())
        return out

    def int_list(self, what: str = "a list of integers") -> list[int]:
        self.expect("[", what)
        return self.separated("]", what, lambda: self.integer(f"an integer in {what}"))

    def literal(self, what: str = "a value") -> AttributeValue | bool:
        """An int, float, bool (``True``/``False``), quoted string or bare identifier (a string)."""
        self.skip()
        for pattern, convert in ((_STRING, json.loads), (_FLOAT, float), (_INT, int)):
            m = pattern.match(self.text, self.pos)
            if m:
                self.pos = m.end()
                return convert(m.group(0))  # type: ignore[no-any-return]
        word = self.match(_IDENT, what)
        return {"True": True, "False": False}.get(word, word)

    def attribute_dict(self) -> dict[str, AttributeValue]:
        """``{key = value, ...}`` of ints, floats and quoted strings (``format_attribute_dict``)."""
        self.expect("{", "'{' opening the attribute dictionary")
        out: dict[str, AttributeValue] = {}
        while not self.accept("}"):
            if out:
                self.expect(",", "',' or '}' in the attribute dictionary")
            start = self.pos
            key = self.match(_ATTR_KEY, "an attribute name")
            if key in out:
                raise self.error(f"attribute '{key}' given twice", start)
            self.expect("=", f"'=' after attribute '{key}'")
            self.skip()
            value_at = self.pos
            value = self.literal(f"the value of attribute '{key}'")
            if isinstance(value, bool) or (isinstance(value, str) and self.text[value_at] != '"'):
                raise self.error(f"expected an integer, a float or a quoted string as the value of attribute "
                                 f"'{key}'", value_at)
            out[key] = value
        return out


def format_literal(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def format_attribute_dict(attributes: dict[str, AttributeValue]) -> str:
    return "{" + ", ".join(f"{k} = {format_literal(v)}" for k, v in attributes.items()) + "}"


def attribute_error(attributes: dict[str, object]) -> str | None:
    """Why ``attributes`` cannot be printed and parsed back, or None."""
    for key, value in attributes.items():
        if not isinstance(key, str) or not _ATTR_KEY.fullmatch(key):
            return f"attribute name {key!r} is not an identifier"
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return f"attribute '{key}' has a {type(value).__name__} value; expected an int, a float or a str"
    return None


def format_dense(array: np.ndarray, dtype: str) -> str:
    """``dense<[...]>`` with every element (shortest text that reads back exactly), or MLIR's little-endian hex
    blob ``dense<"0x...">`` above ``DENSE_LIST_LIMIT`` elements. The shape is the type's."""
    data = np.ascontiguousarray(array, dtype=CONSTANT_NUMPY_TYPES[dtype]).reshape(-1)
    if data.size > DENSE_LIST_LIMIT:
        return f'dense<"0x{data.astype(data.dtype.newbyteorder("<")).tobytes().hex().upper()}">'
    if dtype == "i1":
        return "dense<[" + ", ".join("true" if v else "false" for v in data) + "]>"
    return "dense<[" + ", ".join(str(v) for v in data) + "]>"


_DENSE_ITEM = re.compile(r"-?(?:\d+\.\d*(?:e[-+]?\d+)?|\d+e[-+]?\d+|\d+|inf|nan)|true|false")
_HEX_BLOB = re.compile(r'"0x[0-9A-Fa-f]*"')


@dataclass(frozen=True)
class DenseText:
    """Constant data as written, read before the type that gives its shape (it follows the data)."""

    items: list[str] | bytes  # the list's numbers, or the hex blob's bytes
    pos: int


def read_dense(cur: Cursor) -> DenseText:
    start = cur.expect("dense<", "'dense<' opening constant data")
    if cur.at('"'):
        items: list[str] | bytes = bytes.fromhex(cur.match(_HEX_BLOB, 'a hex blob "0x..."')[3:-1])
    else:
        cur.expect("[", "'[' or a hex blob in constant data")
        items = cur.separated("]", "constant data", lambda: cur.match(_DENSE_ITEM, "a number in constant data"))
    cur.expect(">", "'>' closing constant data")
    return DenseText(items, start)


def dense_array(cur: Cursor, dense: DenseText, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """The data of ``dense`` as an array of ``shape`` and element type ``dtype`` (inverse of ``format_dense``)."""
    np_type = CONSTANT_NUMPY_TYPES.get(dtype)
    if np_type is None:
        raise cur.error(f"constants of element type {dtype} cannot be written as data", dense.pos)
    count = int(np.prod(shape, dtype=np.int64))
    if isinstance(dense.items, bytes):
        little = np.dtype(np_type).newbyteorder("<")
        if len(dense.items) != count * little.itemsize:
            raise cur.error(f"hex blob holds {len(dense.items)} bytes, the type needs {count * little.itemsize}",
                            dense.pos)
        data = np.frombuffer(dense.items, dtype=little).astype(np_type)
    elif len(dense.items) != count:
        raise cur.error(f"{len(dense.items)} values in constant data, the type needs {count}", dense.pos)
    elif dtype == "i1":
        data = np.array([item == "true" for item in dense.items], dtype=np.bool_)
    else:
        try:
            data = np.array(dense.items, dtype=np.str_).astype(np_type)
        except ValueError:
            raise cur.error(f"constant data {dense.items} does not fit element type {dtype}", dense.pos) from None
    return data.reshape(shape)
