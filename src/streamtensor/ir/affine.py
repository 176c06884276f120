"""Affine expressions and maps, shared by the Linalg IR (indexing maps) and itensor types (iteration maps).

Text form follows MLIR: ``(d0, d1, d2) -> (d0, d2 * 4 + d1, 0)``. ``parse_affine_map(str(m)) == m``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class AffineExpr:
    """Base class of affine expressions over loop dimensions ``d0 .. dn-1``."""

    def evaluate(self, point: tuple[int, ...]) -> int:
        raise NotImplementedError

    def dims(self) -> set[int]:
        raise NotImplementedError

    def __add__(self, other: AffineExpr | int) -> AffineExpr:
        return AffineBinary("+", self, _wrap(other))

    def __mul__(self, other: int) -> AffineExpr:
        return AffineBinary("*", self, _wrap(other))


def _wrap(value: AffineExpr | int) -> AffineExpr:
    return value if isinstance(value, AffineExpr) else AffineConst(int(value))


@dataclass(frozen=True)
class AffineDim(AffineExpr):
    position: int

    def evaluate(self, point: tuple[int, ...]) -> int:
        return point[self.position]

    def dims(self) -> set[int]:
        return {self.position}

    def __str__(self) -> str:
        return f"d{self.position}"


@dataclass(frozen=True)
class AffineConst(AffineExpr):
    value: int

    def evaluate(self, point: tuple[int, ...]) -> int:
        return self.value

    def dims(self) -> set[int]:
        return set()

    def __str__(self) -> str:
        return str(self.value)


_BINARY_PRECEDENCE = {"+": 1, "*": 2, "floordiv": 2, "mod": 2}


@dataclass(frozen=True)
class AffineBinary(AffineExpr):
    op: str  # one of "+", "*", "floordiv", "mod"
    lhs: AffineExpr
    rhs: AffineExpr

    def evaluate(self, point: tuple[int, ...]) -> int:
        a, b = self.lhs.evaluate(point), self.rhs.evaluate(point)
        if self.op == "+":
            return a + b
        if self.op == "*":
            return a * b
        if self.op == "floordiv":
            return a // b
        return a % b

    def dims(self) -> set[int]:
        return self.lhs.dims() | self.rhs.dims()

    def __str__(self) -> str:
        prec = _BINARY_PRECEDENCE[self.op]

        def side(e: AffineExpr, right: bool) -> str:
            if isinstance(e, AffineBinary):
                inner = _BINARY_PRECEDENCE[e.op]
                if inner < prec or (right and inner == prec and self.op != "+"):
                    return f"({e})"
            return str(e)

        sep = f" {self.op} "
        return side(self.lhs, False) + sep + side(self.rhs, True)


@dataclass(frozen=True)
class AffineMap:
    num_dims: int
    results: tuple[AffineExpr, ...]

    @staticmethod
    def identity(n: int) -> AffineMap:
        return AffineMap(n, tuple(AffineDim(i) for i in range(n)))

    @staticmethod
    def from_dims(num_dims: int, dims: list[int | None]) -> AffineMap:
        """Map whose result i is ``d_dims[i]`` (or the constant 0 for ``None``)."""
        return AffineMap(num_dims, tuple(AffineConst(0) if d is None else AffineDim(d) for d in dims))

    @property
    def num_results(self) -> int:
        return len(self.results)

    def evaluate(self, point: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(r.evaluate(point) for r in self.results)

    def result_dim(self, i: int) -> int | None:
        """Loop dim index when result ``i`` is exactly a dim, else None."""
        r = self.results[i]
        return r.position if isinstance(r, AffineDim) else None

    def is_projected_permutation(self) -> bool:
        """Every result a distinct dim or the constant 0 (what Linalg ops on LLMs use)."""
        seen: set[int] = set()
        for r in self.results:
            if isinstance(r, AffineConst) and r.value == 0:
                continue
            if not isinstance(r, AffineDim) or r.position in seen:
                return False
            seen.add(r.position)
        return True

    def is_permutation(self) -> bool:
        """Every loop dim exactly once, nothing else (an all-parallel op's output map)."""
        return (self.num_results == self.num_dims and self.is_projected_permutation()
                and self.used_dims() == set(range(self.num_dims)))

    def used_dims(self) -> set[int]:
        out: set[int] = set()
        for r in self.results:
            out |= r.dims()
        return out

    def __str__(self) -> str:
        dims = ", ".join(f"d{i}" for i in range(self.num_dims))
        return f"({dims}) -> ({', '.join(str(r) for r in self.results)})"


_TOKEN = re.compile(r"\s*(->|d\d+|\d+|floordiv|mod|[-+*(),])")


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"bad affine map syntax at {text[pos:]!r} in {text!r}")
        tokens.append(m.group(1))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise ValueError(f"expected {expected or 'a token'} but found {tok!r} in affine map {self.text!r}")
        self.i += 1
        return tok

    def expr(self, num_dims: int) -> AffineExpr:
        lhs = self.term(num_dims)
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term(num_dims)
            lhs = AffineBinary("+", lhs, rhs if op == "+" else AffineBinary("*", rhs, AffineConst(-1)))
        return lhs

    def term(self, num_dims: int) -> AffineExpr:
        lhs = self.atom(num_dims)
        while self.peek() in ("*", "floordiv", "mod"):
            op = self.take()
            lhs = AffineBinary(op, lhs, self.atom(num_dims))
        return lhs

    def atom(self, num_dims: int) -> AffineExpr:
        tok = self.take()
        if tok == "(":
            e = self.expr(num_dims)
            self.take(")")
            return e
        if tok == "-":
            return AffineBinary("*", self.atom(num_dims), AffineConst(-1))
        if tok.startswith("d"):
            pos = int(tok[1:])
            if pos >= num_dims:
                raise ValueError(f"d{pos} out of range for {num_dims} dims in affine map {self.text!r}")
            return AffineDim(pos)
        if tok.isdigit():
            return AffineConst(int(tok))
        raise ValueError(f"unexpected {tok!r} in affine map {self.text!r}")


def parse_affine_map(text: str) -> AffineMap:
    """Parse ``(d0, d1) -> (d1, d0)``; MLIR's ``affine_map<...>`` wrapper is accepted too."""
    body = text.strip()
    if body.startswith("affine_map<") and body.endswith(">"):
        body = body[len("affine_map<") : -1]
    p = _Parser(body)
    p.take("(")
    num_dims = 0
    while p.peek() != ")":
        tok = p.take()
        if tok != f"d{num_dims}":
            raise ValueError(f"expected d{num_dims} in dim list of affine map {text!r}")
        num_dims += 1
        if p.peek() == ",":
            p.take(",")
    p.take(")")
    p.take("->")
    p.take("(")
    results: list[AffineExpr] = []
    while p.peek() != ")":
        results.append(p.expr(num_dims))
        if p.peek() == ",":
            p.take(",")
    p.take(")")
    if p.peek() is not None:
        raise ValueError(f"trailing text {p.peek()!r} in affine map {text!r}")
    return AffineMap(num_dims, tuple(results))
