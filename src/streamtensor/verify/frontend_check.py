"""The generated kernel as Vitis HLS's synthesis front end sees it, checked without Vitis.

``frontend_check(project, target)`` compiles every ``syn.file`` of the project's ``hls_config.cfg`` with
``g++ -fsyntax-only -D__SYNTHESIS__`` at the C++ standard the config declares (``syn.cflags``), with no simulation
header on the include path: only ``synthesis_view/`` (the synthesis API of ``hls::stream``; Vitis's own header
is not redistributable) and Xilinx's Apache-2.0 ``ap_int``/``ap_fixed`` headers (vendored from the hls4ml 1.3.0
wheel, ``codegen/vitis/include/ap_types``, as system headers: their own warnings are not the kernel's). It then
lints the sources for what UG1399 requires of a dataflow region (``lint_dataflow``). The lint reads the C++ as
``codegen.vitis.hls`` prints it (one statement per line, ``{`` at the end of a loop's head), which is what it
checks.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from streamtensor.codegen.vitis.hls.cpp import C_TYPES
from streamtensor.codegen.vitis.package_data import AP_TYPES_DIR
from streamtensor.errors import StreamTensorError
from streamtensor.ir.dtypes import DTYPE_BITS
from streamtensor.target import Target
from streamtensor.verify.hls_lint import lint_preprocessed, lint_processes

SYNTHESIS_VIEW_DIR = Path(__file__).resolve().parent / "synthesis_view"
# Vitis HLS documents C++14 for synthesis; a config that declares no standard gets it.
DEFAULT_STANDARD = "c++14"
# Bits of each C type in an aggregated stream struct (a bool packs to one bit).
# Bits of each generated element type (an aggregated struct packs its ap_int<4> elements to 4 bits each).
ELEMENT_BITS = {ctype: DTYPE_BITS[dtype] for dtype, ctype in C_TYPES.items()}

_TOKEN_STRUCT = re.compile(r"^struct (tok_\w+) \{\n\s*([\w<>]+) data\[(\d+)\];", re.M)
_FUNCTION = re.compile(r'^(?:static void|extern "C" void) (\w+)\((.*)\) \{$')
_STREAM_PARAM = re.compile(r"hls::stream<\w+>& (\w+)")
_STREAM_DECL = re.compile(r"^hls::stream<(\w+), \d+> (\w+)\(")
_PROCESS_CALL = re.compile(r"^HLS_SIM_PROCESS\((\w+), (\w+)\((.*)\)\);$")
# Lines a canonical dataflow region may hold besides its process calls.
_REGION_LINE = re.compile(r"^(?:hls::stream<|HLS_PRAGMA\(|HLS_SIM_(?:REGION|CONNECT|END_REGION)\(|//|$)")


class FrontEndCheckError(StreamTensorError):
    """The front-end check cannot run (no compiler, no project)."""


@dataclass(frozen=True)
class FrontEndReport:
    standard: str
    compiled: tuple[str, ...]  # the syn.file sources, relative to the project
    diagnostics: tuple[str, ...]  # the compiler's errors, one per source that failed
    violations: tuple[str, ...]  # lint_dataflow's findings
    stream_bits: dict[str, int] = field(default_factory=dict)  # token bits of every stream variable

    @property
    def ok(self) -> bool:
        return not self.diagnostics and not self.violations


def declared_standard(config_text: str) -> str:
    """The ``-std=`` of ``syn.cflags`` in an ``hls_config.cfg`` (``DEFAULT_STANDARD`` when it declares none)."""
    for line in config_text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "syn.cflags":
            found = re.search(r"-std=(\S+)", value)
            if found:
                return found.group(1)
    return DEFAULT_STANDARD


def frontend_check(project: str | Path, target: Target) -> FrontEndReport:
    """Compile the project's synthesis sources as Vitis's front end would and lint them (module docstring)."""
    root = Path(project)
    config = root / "hls_config.cfg"
    if not config.is_file():
        raise FrontEndCheckError(f"{root} is not a Vitis project: no hls_config.cfg")
    compiler = shutil.which("g++")
    if compiler is None:
        raise FrontEndCheckError("the front-end check needs g++")
    text = config.read_text()
    standard = declared_standard(text)
    sources = [line.split("=", 1)[1].strip() for line in text.splitlines() if line.startswith("syn.file=")]
    diagnostics: list[str] = []
    violations: list[str] = []
    # Labels name loops for Vitis's reports and directives; g++ -Wall calls them unused.
    flags = [compiler, f"-std={standard}", "-D__SYNTHESIS__", "-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas",
             "-Wno-unused-label", f"-I{SYNTHESIS_VIEW_DIR}", "-isystem", str(AP_TYPES_DIR)]
    for source in sources:
        run = subprocess.run([*flags, "-fsyntax-only", source], cwd=root, capture_output=True, text=True,
                             check=False)
        if run.returncode != 0:
            diagnostics.append(f"{source}: {run.stderr.strip()}")
            continue
        expanded = subprocess.run([*flags, "-E", source], cwd=root, capture_output=True, text=True, check=False)
        violations.extend(lint_preprocessed(expanded.stdout, source))
    texts = {p.name: p.read_text() for p in sorted((root / "src").glob("*")) if p.suffix in (".cpp", ".h")}
    region, bits = lint_dataflow(texts, target)
    return FrontEndReport(standard, tuple(sources), tuple(diagnostics), tuple(violations + region), bits)


@dataclass
class _Function:
    name: str
    streams: list[str]  # the names of its stream parameters
    params: list[str]  # every parameter's name in order
    body: list[str]


def _functions(source: str) -> list[_Function]:
    functions: list[_Function] = []
    current: _Function | None = None
    for raw in source.splitlines():
        head = _FUNCTION.match(raw)
        if head:
            params = [p.strip() for p in head.group(2).split(",") if p.strip()]
            current = _Function(head.group(1), _STREAM_PARAM.findall(head.group(2)),
                                [re.split(r"[\s*&]+", p)[-1] for p in params], [])
            functions.append(current)
        elif raw == "}":
            current = None
        elif current is not None:
            current.body.append(raw.strip())
    return functions


def lint_dataflow(sources: Mapping[str, str], target: Target) -> tuple[list[str], dict[str, int]]:
    """UG1399's dataflow-region rules on the generated sources (file name -> text): canonical form of the top
    function (only stream declarations, pragmas and process calls), one producer and one consumer per stream,
    every stream token within ``target.stream_max_bits``, and ``_lint_loops`` on every process. Returns the
    violations and the token bits of every stream variable."""
    widths = {name: ELEMENT_BITS[ctype] * int(n) for text in sources.values()
              for name, ctype, n in _TOKEN_STRUCT.findall(text)}
    functions = {f.name: f for text in sources.values() for f in _functions(text)}
    tops = [f for f in functions.values() if any(line == "HLS_PRAGMA(dataflow)" for line in f.body)]
    violations: list[str] = []
    bits: dict[str, int] = {}
    for top in tops:
        writers: dict[str, list[str]] = {}
        readers: dict[str, list[str]] = {}
        region = top.body[top.body.index("HLS_PRAGMA(dataflow)") + 1:]
        for line in region:
            declared = _STREAM_DECL.match(line)
            if declared:
                token, var = declared.groups()
                bits[var] = widths[token]
                writers[var], readers[var] = [], []
                if widths[token] > target.stream_max_bits:
                    violations.append(f"stream {var}: its token {token} is {widths[token]} bits, over the "
                                      f"{target.stream_max_bits} bits of an aggregated struct on the "
                                      f"{target.board}")
                continue
            call = _PROCESS_CALL.match(line)
            if call is None:
                if not _REGION_LINE.match(line):
                    violations.append(f"{top.name}: not a canonical dataflow region: {line!r}")
                continue
            process = functions[call.group(2)]
            args = [a.strip() for a in call.group(3).split(",")]
            for arg, param in zip(args, process.params, strict=True):
                if param not in process.streams:
                    continue
                body = "\n".join(process.body)
                if re.search(rf"\b{param}\.read\(|\bread_(?:token|beat)\({param},", body):
                    readers.setdefault(arg, []).append(process.name)
                writes = r"HLS_SIM_WRITE(?:_BEAT|_BEHIND)?|write_token|write_beat"
                if re.search(rf"\b{param}\.write\(|\b(?:{writes})\({param},", body):
                    writers.setdefault(arg, []).append(process.name)
        for var in bits:
            if len(writers[var]) != 1 or len(readers[var]) != 1:
                violations.append(f"stream {var}: written by {writers[var] or 'no process'} and read by "
                                  f"{readers[var] or 'no process'} (a dataflow stream has one of each)")
    violations.extend(lint_processes(sources, target))
    return violations, bits
