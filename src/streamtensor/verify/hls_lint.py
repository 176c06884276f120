"""What UG1399 asks of the loops, arrays and ports of HLS C++, checked on the generated text (no Vitis).

``lint_processes(sources, target)`` reads the sources as ``codegen.vitis.hls`` prints them (one statement per
line, ``{`` ending a loop's head, directives as ``HLS_PRAGMA(...)``) and returns one line per violation of:

- **loops**: every loop has a label and the counted form ``for (int c = 0; c < BOUND; ...)``; a bound that is
  not a constant (a literal, a template or ``constexpr`` constant, a ``constexpr`` call) has a
  ``loop_tripcount``; no loop with such a bound inside a pipelined loop (it cannot be unrolled); loop
  directives head their loop's body.
- **accumulators**: in a pipelined loop (with the perfectly nested loops around it, which Vitis flattens into
  it), a float array element read and written back recurs ``D`` steps later, ``D`` the iterations inside the
  innermost flattened loop its index does not use; the unrolled lanes that update the same element chain
  their adds. II x D must cover lanes x the adder latency of the target, and for D > 1 the loop must state
  ``dependence ... distance=D`` (Vitis otherwise assumes the nearest distance).
- **perfect nests**: every loop around a pipelined loop holds nothing but its one loop, up to the outermost
  loop or up to a loop that reads a token at a drained firing (``HLS_SIM_DRAINED_FIRING``, where the pipeline
  is meant to drain): Vitis flattens only a perfect nest into the pipeline; around anything else the pipeline
  fills and drains once per iteration of the outer loop, and consecutive firings do not overlap. A pipelined
  loop with a variable bound stands in no loop (Vitis cannot flatten it into the loops around it at all).
- **stream ports**: a pipelined loop's body (its unrolled loops by their trips, a whole token wider than the
  stream's element by its beats) accesses each stream at most II times: a stream has one port, one access a
  cycle.
- **copies**: a pipelined loop with nothing unrolled inside that indexes an array partitioned F > 1 ways by its
  own counter moves one element per cycle over F banks.
- **tokens**: a local token whose elements unrolled lanes touch is partitioned (``array_partition
  variable=NAME.data``).
- **lane-invariant math**: a transcendental call or a division inside an unrolled loop whose operands do not
  depend on that loop's counter (it is computed once per lane for one value).
- **external memory**: no ``memcpy`` (byte punning defeats burst inference); the top function's pointers are
  ``ap_uint<W>`` words, W the target's m_axi width; no argument carries an SSA temporary's name (``v30``).

``lint_preprocessed(text)`` flags empty ``if (...) ;`` statements in the synthesis view after the preprocessor.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from streamtensor.target import Target

# Loop directives belong at the top of the loop body they annotate.
LOOP_DIRECTIVES = ("pipeline", "unroll", "loop_tripcount", "loop_flatten", "dependence")
# Element types of the arrays the accumulator rule applies to, with the latency table of their adder.
FLOAT_TYPES = {"float": "float", "double": "double"}
ARRAY_TYPES = {"float", "double", "int64_t", "int32_t", "int16_t", "int8_t", "ap_int<4>", "bool"}
# Math the lanes of an unrolled loop should not each compute for one shared value.
EXPENSIVE = re.compile(r"\bstd::(?:tanh|exp|log|sqrt|sin|cos|erf|pow)\(|\bfpowi<|\s/\s")

_HEAD = re.compile(r'^(?=\S)(?:template <(?P<template>[^>]*)> )?(?:static |inline |extern "C" )?'
                   r"[\w:<>, ]+[\s*&]+(?P<name>\w+)\((?P<params>.*)\) \{$")
_TEMPLATE = re.compile(r"^template <(.*)>$")
_FOR = re.compile(r"^(?:(?P<label>\w+): )?for \((?P<header>.*)\) \{$")
_COUNTED = re.compile(r"^int (\w+) = 0; \1 < ([^;]+); (?:\+\+\1|\1 \+= (\d+))$")
_PRAGMA = re.compile(r"^HLS_PRAGMA\((\w+)(.*)\)$")
_ARRAY = re.compile(r"^(?:static )?([\w<>]+) (\w+)((?:\[\d+\])+)(?: = \{\})?;")
_TOKEN_LOCAL = re.compile(r"^(?:const )?(tok_\w+) (\w+)(?: = .*)?;")
_CONST = re.compile(r"^const (\w+) (\w+) = (.*);")
_CONSTEXPR = re.compile(r"^constexpr int (\w+) = ")
_ACCESS = re.compile(r"\b(\w+(?:\.data)?)((?:\[[^\]]+\])+)")
_IDENT = re.compile(r"\b[A-Za-z_]\w*\b")
_TOKEN_STRUCT = re.compile(r"^struct (tok_\w+) \{\n\s*([\w<>]+) data\[(\d+)\];", re.M)
_WORD_TYPE = re.compile(r"(?:typedef ap_uint<(\d+)> (\w+);|using (\w+) = ap_uint<(\d+)>;)")
_SSA_NAME = re.compile(r"^v\d+(?:_\d+)?$")
_EMPTY_IF = re.compile(r"\bif\s*\((?:[^()]|\([^()]*\))*\)\s*;")


@dataclass
class Loop:
    label: str | None
    counter: str | None  # None: not in counted form
    bound: str
    step: int
    line: str
    parent: Loop | None
    pragmas: list[str] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)  # statements of this loop's own body, in order
    children: list[Loop] = field(default_factory=list)
    body_started: bool = False  # a statement or a nested block came before the current line

    @property
    def pipeline_ii(self) -> int | None:
        for p in self.pragmas:
            m = re.match(r"pipeline II=(\d+)", p)
            if m:
                return int(m.group(1))
        return None

    @property
    def unrolled(self) -> bool:
        return any(p.startswith("unroll") for p in self.pragmas)

    def trip(self, constants: Mapping[str, int]) -> int | None:
        bound = constants.get(self.bound, None)
        if bound is None and re.fullmatch(r"\d+", self.bound):
            bound = int(self.bound)
        return None if bound is None else -(-bound // self.step)

    def subtree(self) -> list[tuple[Loop, str]]:
        """Every statement inside, with the loop it is directly in."""
        found = [(self, s) for s in self.statements]
        for child in self.children:
            found.extend(child.subtree())
        return found

    def name(self) -> str:
        return self.label or self.counter or "?"


@dataclass
class Function:
    name: str
    params: list[str]  # parameter declarations as written
    template_constants: set[str]
    loops: list[Loop] = field(default_factory=list)  # outermost loops
    all_loops: list[Loop] = field(default_factory=list)
    statements: list[tuple[Loop | None, str]] = field(default_factory=list)  # every statement, in order
    pragmas: list[str] = field(default_factory=list)  # every directive, in order
    late: list[tuple[Loop, str]] = field(default_factory=list)  # loop directives after statements


def parse_functions(source: str) -> list[Function]:
    """The functions of ``source`` with their loop trees (generated layout: a function ends at a ``}`` in column
    0; ``{`` ends every block head)."""
    functions: list[Function] = []
    current: Function | None = None
    stack: list[Loop | None] = []  # open blocks: a loop, or None for any other block
    template: str | None = None
    for raw in source.splitlines():
        if current is None:
            t = _TEMPLATE.match(raw)
            if t:
                template = t.group(1)
                continue
            head = _HEAD.match(raw)
            if head and not raw.startswith(("struct ", "namespace ", "class ")):
                text = head.group("template") or template or ""
                current = Function(head.group("name"), [p.strip() for p in head.group("params").split(",")
                                                        if p.strip()],
                                   set(re.findall(r"\bint (\w+)", text)))
                functions.append(current)
                stack = []
            template = None
            continue
        if raw == "}":
            current = None
            continue
        line = raw.strip()
        loop = next((b for b in reversed(stack) if b is not None), None)
        if line.startswith("}"):
            if stack:
                stack.pop()
            if line.endswith("{"):  # `} else {`
                stack.append(None)
            continue
        pragma = _PRAGMA.match(line)
        if pragma:
            text = pragma.group(1) + pragma.group(2)
            current.pragmas.append(text)
            if loop is not None and stack and stack[-1] is loop and pragma.group(1) in LOOP_DIRECTIVES:
                if loop.body_started:
                    current.late.append((loop, pragma.group(1)))
                loop.pragmas.append(text)
            continue
        if not line or line.startswith("//"):
            continue
        if loop is not None:
            loop.body_started = True
        f = _FOR.match(line)
        if f:
            counted = _COUNTED.match(f.group("header"))
            new = Loop(f.group("label"), counted.group(1) if counted else None,
                       counted.group(2).strip() if counted else f.group("header"),
                       int(counted.group(3) or 1) if counted else 1, line, loop)
            (loop.children if loop is not None else current.loops).append(new)
            current.all_loops.append(new)
            stack.append(new)
            continue
        if line.endswith("{"):
            stack.append(None)
        if loop is not None:
            loop.statements.append(line)
        current.statements.append((loop, line))
    return functions


def _constants(function: Function) -> dict[str, int]:
    """Names with a compile-time value in ``function``: constexpr locals with a literal value; template
    constants and constexpr calls have no value here (their loops are constant but of unknown trip)."""
    values: dict[str, int] = {}
    for _, s in function.statements:
        m = re.match(r"^constexpr int (\w+) = (\d+);", s)
        if m:
            values[m.group(1)] = int(m.group(2))
    return values


def _constant_bound(bound: str, function: Function) -> bool:
    constexprs = {m.group(1) for _, s in function.statements if (m := _CONSTEXPR.match(s))}
    return (re.fullmatch(r"-?\d+", bound) is not None or bound in function.template_constants
            or bound in constexprs or re.fullmatch(r"\w+<[^()]*>\(\)", bound) is not None)


def _lint_loop_forms(function: Function) -> list[str]:
    found: list[str] = []
    for loop in function.all_loops:
        where = f"{function.name}: loop {loop.name()}"
        if loop.label is None:
            found.append(f"{where} has no label")
        if loop.counter is None:
            found.append(f"{where} is not a counted loop ({loop.line!r}): its trip count is unknown")
            continue
        constant = _constant_bound(loop.bound, function)
        if not constant and not any(p.startswith("loop_tripcount") for p in loop.pragmas):
            found.append(f"{where} has the variable bound {loop.bound} and no loop_tripcount")
        outer = loop.parent
        while outer is not None and not constant:
            if outer.pipeline_ii is not None:
                found.append(f"{where} inside the pipelined loop {outer.name()} has the variable bound "
                             f"{loop.bound} (it cannot be unrolled)")
                break
            outer = outer.parent
    for loop, directive in function.late:
        found.append(f"{function.name}: HLS {directive} in the middle of the body of loop {loop.name()}")
    return found


def _derived(function: Function) -> dict[str, set[str]]:
    """Identifiers each ``const`` local is computed from, transitively down to loop counters and arrays."""
    deps: dict[str, set[str]] = {}
    for _, s in function.statements:
        m = _CONST.match(s)
        if m:
            used: set[str] = set()
            for ident in _IDENT.findall(m.group(3)):
                used |= deps.get(ident, {ident})
            deps[m.group(2)] = used
    return deps


def _partitions(function: Function, arrays: Mapping[str, int]) -> dict[str, int]:
    """Banks of every partitioned array: the factor of a cyclic or block partition, every element for a
    complete one."""
    banks: dict[str, int] = {}
    for p in function.pragmas:
        m = re.match(r"array_partition variable=(\S+) type=(\w+)(?: factor=(\d+))?", p)
        if m:
            var, kind, factor = m.groups()
            banks[var] = int(factor) if factor else arrays.get(var, 2)
    return banks


def _flattened(loop: Loop) -> list[Loop]:
    """``loop`` and the perfectly nested loops around it (Vitis flattens them into its pipeline), outermost
    first."""
    chain = [loop]
    while (parent := chain[0].parent) is not None and not parent.statements and len(parent.children) == 1:
        chain.insert(0, parent)
    return chain


_READ = re.compile(r"\.read\(\)|\bread_(?:token|beat)\(")


def _lint_perfect_nests(function: Function) -> list[str]:
    found: list[str] = []
    for loop in function.all_loops:
        if loop.pipeline_ii is None:
            continue
        if not _constant_bound(loop.bound, function):
            if loop.parent is not None:
                found.append(f"{function.name}: pipelined loop {loop.name()} has a variable bound inside loop "
                             f"{loop.parent.name()}: Vitis cannot flatten it, so its pipeline fills and drains once "
                             f"per iteration of {loop.parent.name()}")
            continue
        outer = loop.parent
        while outer is not None:
            statements = outer.statements
            if any(s.startswith("HLS_SIM_DRAINED_FIRING(") for s in statements) and \
                    any(_READ.search(s) for s in statements):
                break  # the pipeline drains here, as meant
            if statements or len(outer.children) != 1:
                what = [f"{len(statements)} statement(s) ({statements[0]!r}, ...)"] if statements else []
                if len(outer.children) != 1:
                    what.append(f"{len(outer.children)} loops")
                found.append(f"{function.name}: loop {outer.name()} around the pipelined loop {loop.name()} holds "
                             f"{' and '.join(what)}, not one loop: the nest is not perfect, so Vitis does not "
                             f"flatten it and the pipeline fills and drains once per iteration of {outer.name()}")
                break
            outer = outer.parent
    return found


_STREAM_PARAM = re.compile(r"^hls::stream<(tok_\w+)>& (\w+)$")
_ACCESS_CALL = re.compile(r"\b(?:(?P<whole>read_token|write_token|HLS_SIM_WRITE)|read_beat|write_beat"
                          r"|HLS_SIM_WRITE_BEAT|HLS_SIM_WRITE_BEHIND)\((?P<stream>\w+), (?P<token>\w+)")
_ACCESS_METHOD = re.compile(r"\b(\w+)\.(?:read\(\)|write\()")


def _stream_accesses(statement: str, streams: Mapping[str, str], tokens: Mapping[str, str],
                     token_sizes: Mapping[str, int]) -> dict[str, int]:
    """Accesses of each stream parameter in one statement: a whole token wider than the stream's element moves
    as its beats, one access each."""
    found: dict[str, int] = {}
    for m in _ACCESS_CALL.finditer(statement):
        stream = m.group("stream")
        if stream not in streams:
            continue
        beats = 1
        if m.group("whole") and m.group("token") in tokens:
            beats = token_sizes[tokens[m.group("token")]] // token_sizes[streams[stream]]
        found[stream] = found.get(stream, 0) + beats
    for m in _ACCESS_METHOD.finditer(statement):
        if m.group(1) in streams:
            found[m.group(1)] = found.get(m.group(1), 0) + 1
    return found


def _lint_stream_ports(function: Function, tokens: Mapping[str, str], token_sizes: Mapping[str, int]
                       ) -> list[str]:
    found: list[str] = []
    streams = {m.group(2): m.group(1) for p in function.params if (m := _STREAM_PARAM.match(p))}
    for loop in function.all_loops:
        ii = loop.pipeline_ii
        if ii is None:
            continue
        counts: dict[str, int] = {}
        for inner, statement in loop.subtree():
            lanes = 1
            at = inner
            while at is not loop and at is not None:
                lanes *= at.trip({}) or 1
                at = at.parent
            for stream, n in _stream_accesses(statement, streams, tokens, token_sizes).items():
                counts[stream] = counts.get(stream, 0) + n * lanes
        for stream, n in sorted(counts.items()):
            if n > ii:
                found.append(f"{function.name}: pipelined loop {loop.name()} (II={ii}) accesses stream {stream} {n} "
                             f"times an iteration: its one port needs II >= {n}")
    return found


def _lint_pipelines(function: Function, element_types: Mapping[str, str], sizes: Mapping[str, int],
                    target: Target) -> list[str]:
    found: list[str] = []
    deps = _derived(function)
    constants = _constants(function)
    banks = _partitions(function, sizes)
    for loop in function.all_loops:
        ii = loop.pipeline_ii
        if ii is None:
            continue
        where = f"{function.name}: pipelined loop {loop.name()}"
        statements = loop.subtree()
        chain = _flattened(loop)
        # Read-modify-write of float arrays: the recurrence against the II.
        writes = {}
        for owner, s in statements:
            m = re.match(r"^(\w+(?:\.data)?)((?:\[[^\]]+\])+) = (.*);$", s)
            if m and element_types.get(m.group(1)) in FLOAT_TYPES:
                # A read-modify-write: the value written is computed from the array itself.
                sources: set[str] = set()
                for ident in _IDENT.findall(m.group(3)):
                    sources |= deps.get(ident, {ident})
                if m.group(1).removesuffix(".data") in sources:
                    writes.setdefault((m.group(1), m.group(2)), owner)
        reads = {(a, i) for _, s in statements for a, i in _ACCESS.findall(s.partition(" = ")[2] or s)}
        for (array, index), owner in writes.items():
            if (array, index) not in reads:
                continue
            used: set[str] = set()
            for ident in _IDENT.findall(index):
                used |= deps.get(ident, {ident})
            steps = None
            for k in range(len(chain) - 1, -1, -1):
                if chain[k].counter not in used:
                    trips = [c.trip(constants) for c in chain[k + 1:]]
                    steps = math.prod(t for t in trips if t is not None)
                    break
            if steps is None:
                continue  # each element is updated once per run of the pipeline
            lanes, inner = 1, owner
            while inner is not None and inner is not loop:
                trip = inner.trip(constants)
                if inner.counter not in used and trip:
                    lanes *= trip
                inner = inner.parent
            combiner = _combiner(function, statements, array, index)
            latency = target.ops.float_latency[combiner]
            if element_types[array] == "double":
                latency = target.ops.double_latency.get(combiner, latency)
            need = -(-lanes * latency // steps)
            if ii < need:
                found.append(f"{where}: {array}{index} is updated again {steps} step(s) later through {lanes} "
                             f"chained {combiner}(s) of {latency} cycles: II={ii} cannot be reached (needs {need})")
            stated = [p for p in loop.pragmas if p.startswith(f"dependence variable={array} ")]
            distances = {int(m.group(1)) for p in stated if (m := re.search(r"distance=(\d+)", p))}
            if any("dependent=false" in p for p in stated):
                found.append(f"{where}: declares the true recurrence on {array} false")
            elif steps > 1 and distances != {steps}:
                found.append(f"{where}: {array} recurs every {steps} steps but the loop states "
                             f"{'distance ' + str(sorted(distances)) if distances else 'no dependence distance'} "
                             "(Vitis assumes the nearest)")
        # Copies and fills (every statement `X[...] = literal or Y[...]`): one element per cycle over a
        # partitioned array.
        copy = re.compile(r"^\w+(?:\.data)?(?:\[[^\]]+\])+ = (?:[-\w.]+|\w+(?:\.data)?(?:\[[^\]]+\])+);$")
        if not loop.children and loop.counter is not None and all(copy.match(s) for _, s in statements):
            for _, s in statements:
                for array, index in _ACCESS.findall(s):
                    if banks.get(array, 1) > 1 and index.endswith(f"[{loop.counter}]"):
                        found.append(f"{where} moves one element of {array} per cycle, which is partitioned "
                                     f"{banks[array]} ways (unroll it to the partitioning)")
                        break
                else:
                    continue
                break
    return found


# The operator that folds a value into an accumulator, by how the generated C++ spells it.
_COMBINERS = (("maximumf(", "arith.maximumf"), ("minimumf(", "arith.minimumf"), ("std::fmax(", "arith.maxnumf"),
              ("std::fmin(", "arith.minnumf"), (" + ", "arith.addf"), (" - ", "arith.subf"), (" * ", "arith.mulf"))


def _combiner(function: Function, statements: list[tuple[Loop, str]], array: str, index: str) -> str:
    """The library op of the value written into ``array[index]`` (an add when it cannot tell)."""
    written = next((s.split(" = ", 1)[1].rstrip(";") for _, s in statements if s.startswith(f"{array}{index} = ")),
                   "")
    definition = next((m.group(3) for _, s in function.statements if (m := _CONST.match(s)) and
                       m.group(2) == written), written)
    return next((op for spelling, op in _COMBINERS if spelling in definition), "arith.addf")


def _lint_lanes(function: Function, tokens: Mapping[str, str], banks: Mapping[str, int]) -> list[str]:
    """Token partitioning and lane-invariant math in unrolled loops."""
    found: list[str] = []
    deps = _derived(function)
    reported: set[str] = set()
    for loop in function.all_loops:
        inside_pipeline = loop.unrolled or any(a.pipeline_ii is not None for a in _ancestors(loop))
        if not inside_pipeline:
            continue
        for _, s in loop.subtree():
            for array, _ in _ACCESS.findall(s):
                var = array.removesuffix(".data")
                if array.endswith(".data") and var in tokens and array not in banks and var not in reported:
                    reported.add(var)
                    found.append(f"{function.name}: token {var} ({tokens[var]}) is not partitioned, and lanes "
                                 f"of loop {loop.name()} access its elements")
            m = _CONST.match(s)
            if not (loop.unrolled and m and m.group(1) in FLOAT_TYPES and EXPENSIVE.search(m.group(3))
                    and m.group(2) not in reported):
                continue
            lane = {loop.counter} | {name for name, d in deps.items() if loop.counter in d and
                                     re.fullmatch(r"i\d+", name)}
            if not deps.get(m.group(2), set()) & lane:
                reported.add(m.group(2))
                call = EXPENSIVE.search(m.group(3)).group(0).strip().rstrip("(<")  # type: ignore[union-attr]
                found.append(f"{function.name}: {call} of {m.group(2)} inside unrolled loop {loop.name()} does "
                             f"not depend on {loop.counter} (lane-invariant: compute it once, outside the lanes)")
    return found


def _ancestors(loop: Loop) -> list[Loop]:
    found = []
    while loop.parent is not None:
        loop = loop.parent
        found.append(loop)
    return found


def _lint_memory(sources: Mapping[str, str], functions: list[Function], target: Target) -> list[str]:
    found = [f"{name}: memcpy (byte punning of a word defeats burst inference; use ap_uint bit ranges)"
             for name, text in sources.items() if re.search(r"\bmemcpy\(", text)]
    words = {m.group(2) or m.group(3): int(m.group(1) or m.group(4)) for text in sources.values()
             for m in _WORD_TYPE.finditer(text)}
    for f in functions:
        if not f.params or not any(p == "dataflow" for p in f.pragmas):
            continue
        for param in f.params:
            if "*" not in param:
                continue
            kind, name = param.replace("const ", "").split("*")[0].strip(), param.split("*")[-1].strip()
            base = kind.split("::")[-1]
            width = words.get(base) or (int(m.group(1)) if (m := re.fullmatch(r"ap_uint<(\d+)>", base)) else None)
            if width != target.axi_word_bits:
                found.append(f"{f.name}: m_axi argument {name} is a {kind}, not an ap_uint<{target.axi_word_bits}> "
                             "word")
            if _SSA_NAME.match(name):
                found.append(f"{f.name}: m_axi argument {name} is named after an SSA temporary, not the model's "
                             "tensor")
    return found


def synthesis_text(text: str) -> str:
    """``text`` without its simulation-only branches (``#ifndef __SYNTHESIS__`` up to its ``#else`` or
    ``#endif``, the ``#else`` of ``#ifdef __SYNTHESIS__``): what the synthesis view compiles."""
    kept: list[str] = []
    stack: list[tuple[bool, bool]] = []  # per open #if: (its lines are dropped, it tests __SYNTHESIS__)
    for line in text.splitlines():
        directive = line.strip()
        outer = bool(stack) and stack[-1][0]
        if directive.startswith("#if"):
            synthesis = directive in ("#ifdef __SYNTHESIS__", "#ifndef __SYNTHESIS__")
            stack.append((outer or directive == "#ifndef __SYNTHESIS__", synthesis))
        elif directive.startswith("#else") and stack:
            dropped, synthesis = stack.pop()
            outside = bool(stack) and stack[-1][0]
            stack.append((outside or (not dropped if synthesis else dropped), synthesis))
        elif directive.startswith("#endif") and stack:
            stack.pop()
        elif not outer:
            kept.append(line)
    return "\n".join(kept)


def lint_processes(sources: Mapping[str, str], target: Target) -> list[str]:
    """The loop, array and port rules of the module docstring on the generated sources (file name -> text)."""
    sources = {name: synthesis_text(text) for name, text in sources.items()}
    element_types = {name: ctype for text in sources.values() for name, ctype, _ in _TOKEN_STRUCT.findall(text)}
    token_sizes = {name: int(n) for text in sources.values() for name, _, n in _TOKEN_STRUCT.findall(text)}
    functions = [f for text in sources.values() for f in parse_functions(text)]
    found: list[str] = []
    for f in functions:
        arrays: dict[str, str] = {}
        sizes: dict[str, int] = {}
        tokens: dict[str, str] = {}
        for _, s in f.statements:
            if (m := _ARRAY.match(s)) and m.group(1) in ARRAY_TYPES:
                arrays[m.group(2)] = m.group(1)
                sizes[m.group(2)] = math.prod(int(n) for n in re.findall(r"\[(\d+)\]", m.group(3)))
            elif (m := _TOKEN_LOCAL.match(s)) and m.group(1) in element_types:
                tokens[m.group(2)] = m.group(1)
                arrays[f"{m.group(2)}.data"] = element_types[m.group(1)]
        found += _lint_loop_forms(f)
        found += _lint_perfect_nests(f)
        found += _lint_stream_ports(f, tokens, token_sizes)
        found += _lint_pipelines(f, arrays, sizes, target)
        found += _lint_lanes(f, tokens, _partitions(f, sizes))
    found += _lint_memory(sources, functions, target)
    return found


def lint_preprocessed(text: str, source: str) -> list[str]:
    """Empty ``if (...) ;`` statements in the preprocessed synthesis view of ``source`` (its own lines only)."""
    found: list[str] = []
    current = None
    for line in text.splitlines():
        marker = re.match(r'^# \d+ "([^"]+)"', line)
        if marker:
            current = marker.group(1)
            continue
        if current is not None and current.startswith("src/") and _EMPTY_IF.search(line):
            found.append(f"{current}: empty statement under an if: {line.strip()!r}")
    return found
