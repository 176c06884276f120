"""HLS C++ of a dataflow graph for Vitis HLS: one top function, one dataflow process per node.

The generated code implements exactly the stream semantics of ``interp.stream_exec`` (the executable reference of
every node kind). Processes read and write their tokens at the firings of the timing model
(``analysis.timing_model``), so the LP's depths for that model are the C++ streams' depths; where the model takes
a firing's input tokens at once, a C++ process takes them one stream at a time, which can let it run on a FIFO a
few tokens shallower than the model's minimum. Two files per accelerator (a fused group):

``KERNEL_tokens.h``
    One ``struct tok_<dtype>x<N> { T data[N]; }`` per token shape: a tile in row-major order (reassociations
    keep the flat order, so a token struct is shared by every stream with the same dtype and element count).
    A token wider than the target's stream limit (``Target.stream_max_bits``) crosses its stream as beats, a
    struct of ``ITensorType.beat_elements`` each, through its ``read_token`` / ``write_token`` overloads (one
    beat per cycle; the FIFO holds depth x beats). Helpers: tile <-> packed ``ap_uint<512>`` words
    (``streamtensor.packing``; bit ranges, no byte punning) and the scalar ops without a C++ operator.
``KERNEL.cpp``
    One ``static void`` function per node, named after it:

    - kernel: the tile loop nest in ``tile_order``, one firing per iteration (``KernelNode``): an input token is
      read at the top of the innermost tile loop its indexing map uses and held by the loops inside; an output
      tile starts (init token or constant fill) when every reduction counter is 0 and is written when every
      reduction counter is at its last trip; with a reduction loop outside parallel loops, one accumulator per
      pending output tile. Inside a firing, the point loops that are not fully unrolled run in ``point_order``,
      the innermost ``#pragma HLS pipeline II=<pipeline_ii>`` (the timing model's II) with the accumulators'
      recurrence distance stated (``dependence ... distance=D``, ``timing_model.recurrence_distance``), the
      unrolled lanes inside (``#pragma HLS unroll``); the body is the Linalg scalar body, one C++ statement per
      op, each at the outermost lane loop whose counters it uses (a row's ``rsqrt``, a GELU ``tanh`` once per
      step, not once per lane). An element's first update selects its init (token element or constant) and
      every update also writes the output token, so no fill or copy loop runs between firings. Accumulators
      are arrays partitioned for the lanes, with ``bind_storage`` from the memory allocation; tokens are
      local registers (partitioned completely).
    - itensor_converter: the buffer of ``converter_buffer``; with two banks (ping-pong) phase ``p`` fills
      window ``p % 2`` with shared iteration ``p`` while draining window ``(p - 1) % 2``, one token in and one
      out per step, a phase that drains more tokens than it fills spreading its reads over its steps; with one
      window (``buf[1]``: a single shared iteration, or where the simulation keeps one,
      ``analysis.converter_banks``) phase ``p`` drains iteration ``p - 1`` and then fills the window with
      iteration ``p``.
    - fork / reassociate / chunk / concat: per token, with the tile offsets as loop arithmetic.
    - DMA: walks its stream's loop nest; token ``(n_0, ...)`` is the tile at word ``sum n_l * word_strides[l]``
      of its argument (``PackedLayout``), read or written as whole 512-bit words.

    Every loop is labelled ``<counter>_loop``.

    The top function ``extern "C" void KERNEL(word512* ARG, ...)`` (``word512``: ``ap_uint<512>``, declared
    in ``KERNEL.h``; output arguments carry the model's output names) has one m_axi bundle per argument
    (``gmem<i>``, in ``HbmPlan`` order), ``s_axilite`` control, ``#pragma HLS dataflow``, one
    ``hls::stream<T, DEPTH>`` per stream (``Stream.depth``) and the processes in topological order through
    ``HLS_SIM_PROCESS`` (threads in the bounded C simulation, plain calls under ``__SYNTHESIS__``).

Kernels are printed by ``hls.kernel``, the data-movement nodes by ``hls.processes``, the top function by
``hls.top``; ``hls.cpp`` holds the C++ text helpers; static C++ fragments are files in ``templates/``.

Directives are written ``HLS_PRAGMA(pipeline II=1)``: ``_Pragma("HLS pipeline II=1")`` for Vitis HLS and nothing
for g++, whose ``-Wall`` rejects unknown pragmas (and whose C++ front end ignores ``#pragma GCC diagnostic`` for
them), so the sources compile warning-free with ``-Wall -Wextra -Werror``.
"""

from __future__ import annotations

from streamtensor._version import GENERATOR
from streamtensor.codegen.vitis.hbm import c_identifier
from streamtensor.codegen.vitis.hls.cpp import Code, HlsCodegenError, c_type, stream_struct, token_struct
from streamtensor.codegen.vitis.hls.kernel import SCALAR_HELPERS, KernelWriter
from streamtensor.codegen.vitis.hls.processes import (
    chunk_process,
    concat_process,
    converter_process,
    dma_process,
    fork_process,
    reassociate_process,
)
from streamtensor.codegen.vitis.hls.top import top_function
from streamtensor.codegen.vitis.package_data import template
from streamtensor.ir.dataflow import (
    ChunkNode,
    ConcatNode,
    ConverterNode,
    DataflowGraph,
    DmaNode,
    ForkNode,
    KernelNode,
    ReassociateNode,
)
from streamtensor.ir.itensor import ITensorType
from streamtensor.kernel_interface import HbmPlan
from streamtensor.target import Target


def _process_names(graph: DataflowGraph, reserved: set[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    for n in graph.nodes:
        ident = c_identifier(n)
        if ident in reserved or ident in names.values() or ident.startswith(("s_", "tok_")):
            raise HlsCodegenError(f"node {n} maps to the C identifier {ident}, which is already taken")
        names[n] = ident
    return names


def generate_hls(graph: DataflowGraph, kernel_name: str, plan: HbmPlan, target: Target) -> dict[str, str]:
    """The HLS C++ of ``graph`` as one accelerator named ``kernel_name`` for ``target`` (module docstring): file
    name under ``src/`` -> text, as ``write_project`` takes its ``sources``."""
    max_bits = target.stream_max_bits
    if len(graph.groups) > 1:
        raise HlsCodegenError(f"dataflow graph @{graph.name} has {len(graph.groups)} fusion groups; the Vitis "
                              "backend builds one accelerator per design (one group)")
    reserved = {kernel_name, "load_tile", "store_tile", "element_bits", "tile_words", "unpack_element", "pack_element",
                *SCALAR_HELPERS, *(a.arg for a in plan.arguments)}
    process = _process_names(graph, reserved)
    unannotated = sorted(n for n, node in graph.nodes.items() if "lag" not in node.attributes)
    if unannotated:
        raise HlsCodegenError(f"dataflow graph @{graph.name} has no timing attributes on {', '.join(unannotated[:3])}"
                              f"{' ...' if len(unannotated) > 3 else ''}: size its FIFOs first (analysis.allocation)")
    order = graph.topological_order()
    helpers: set[str] = set()
    functions: list[str] = []
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, KernelNode):
            writer = KernelWriter(graph, node, max_bits)
            functions.append(writer.write())
            helpers |= writer.helpers
        elif isinstance(node, ConverterNode):
            functions.append(converter_process(graph, node, max_bits))
        elif isinstance(node, ForkNode):
            functions.append(fork_process(graph, node, max_bits))
        elif isinstance(node, ReassociateNode):
            functions.append(reassociate_process(graph, node, max_bits))
        elif isinstance(node, ChunkNode):
            functions.append(chunk_process(graph, node, max_bits))
        elif isinstance(node, ConcatNode):
            functions.append(concat_process(graph, node, max_bits))
        elif isinstance(node, DmaNode):
            functions.append(dma_process(graph, node, plan, max_bits))
        else:
            raise HlsCodegenError(f"no C++ for {node.kind} {name}")
    tokens_header = f"{kernel_name}_tokens.h"
    source = Code()
    source.line(f"// Generated by {GENERATOR}: HLS C++ of kernel {kernel_name} (dataflow graph @{graph.name}, "
                f"{len(graph.nodes)} processes, {len(graph.streams)} streams).")
    source.line(f'#include "{kernel_name}.h"')
    source.line(f'#include "{tokens_header}"')
    source.line()
    for f in functions:
        source.paste(f)
        source.line()
    top_function(source, graph, kernel_name, plan, process, order, max_bits)
    in_flight = "HLS_SIM_IN_FLIGHT(" in source.text()
    return {f"{kernel_name}.cpp": source.text(),
            tokens_header: _tokens_header(graph, kernel_name, helpers, in_flight, max_bits)}


def _beat_functions(t: ITensorType, max_bits: int) -> str:
    """``read_token`` / ``write_token`` of a token wider than a stream element: its beats in element order, one
    per cycle (inside a pipelined loop they unroll, and the loop's II counts them: ``timing_model.node_beats``);
    ``read_beat`` / ``write_beat``: beat ``b`` alone."""
    token, beat = token_struct(t), stream_struct(t, max_bits)
    n, beats = t.beat_elements(max_bits), t.beats(max_bits)
    code = Code()
    code.line(f"// {token} ({t.token_bits} bits) crosses its streams as {beats} beats of {beat}.")
    code.open(f"inline void read_token(hls::stream<{beat}>& s, {token}& t)")
    code.line(f"{beat} beat;")
    code.pragma("array_partition variable=beat.data type=complete")
    code.loop("b", beats, pragma="pipeline II=1")
    code.line("beat = s.read();")
    code.loop("e", n, pragma="unroll")
    code.line(f"t.data[{n} * b + e] = beat.data[e];")
    code.close()
    code.close()
    code.close()
    code.open(f"inline void write_token(hls::stream<{beat}>& s, const {token}& t)")
    code.line(f"{beat} beat;")
    code.pragma("array_partition variable=beat.data type=complete")
    code.loop("b", beats, pragma="pipeline II=1")
    code.loop("e", n, pragma="unroll")
    code.line(f"beat.data[e] = t.data[{n} * b + e];")
    code.close()
    code.line("s.write(beat);")
    code.close()
    code.close()
    # One beat of a token, for a pipelined loop that moves a token's beats in different steps
    # (analysis.stream_beats): one stream access, the beat chosen by the step.
    code.open(f"inline void read_beat(hls::stream<{beat}>& s, {token}& t, int b)")
    code.line(f"{beat} beat = s.read();")
    code.pragma("array_partition variable=beat.data type=complete")
    code.loop("e", n, pragma="unroll")
    code.line(f"t.data[{n} * b + e] = beat.data[e];")
    code.close()
    code.close()
    code.open(f"inline void write_beat(hls::stream<{beat}>& s, const {token}& t, int b)")
    code.line(f"{beat} beat;")
    code.pragma("array_partition variable=beat.data type=complete")
    code.loop("e", n, pragma="unroll")
    code.line(f"beat.data[e] = t.data[{n} * b + e];")
    code.close()
    code.line("s.write(beat);")
    code.close()
    return code.text()


def _tokens_header(graph: DataflowGraph, kernel_name: str, helpers: set[str], in_flight: bool, max_bits: int
                   ) -> str:
    guard = f"STREAMTENSOR_{kernel_name.upper()}_TOKENS_H"
    structs: dict[str, tuple[int, str]] = {}
    wide: dict[str, ITensorType] = {}
    for s in graph.streams.values():
        t = s.type
        structs.setdefault(token_struct(t), (t.token_elements, t.dtype))
        structs.setdefault(stream_struct(t, max_bits), (t.beat_elements(max_bits), t.dtype))
        if t.beats(max_bits) > 1:
            wide.setdefault(token_struct(t), t)
    code = Code()
    code.line(f"// Generated by {GENERATOR}: stream tokens and helpers of kernel {kernel_name}.")
    code.line(f"#ifndef {guard}")
    code.line(f"#define {guard}")
    code.line()
    for header in ("algorithm", "cmath", "cstdint", "cstring", "limits", "type_traits"):
        code.line(f"#include <{header}>")
    if in_flight:
        code.line("#ifndef __SYNTHESIS__")
        for header in ("deque", "functional", "vector"):
            code.line(f"#include <{header}>")
        code.line("#endif")
    code.line()
    code.line(f'#include "{kernel_name}.h"')
    code.line()
    code.line("// One token of a stream: a tile of the tensor, row-major (reassociations keep the flat order); a token")
    code.line(f"// over {max_bits} bits (the target's stream element limit) crosses its stream as several beats.")
    for name, (elements, dtype) in sorted(structs.items()):
        code.line(f"struct {name} {{")
        code.line(f"  {c_type(dtype)} data[{elements}];")
        code.line("};")
    code.line()
    code.paste(template("hls_pragma.h"))
    code.line()
    code.paste(template("token_io.h"))
    for _, t in sorted(wide.items()):
        code.line()
        code.paste(_beat_functions(t, max_bits))
    code.line()
    if in_flight:
        code.paste(template("in_flight.h"))
        code.line()
    code.paste(template("tile_io.h"))
    for name in sorted(helpers):
        code.line()
        code.paste(SCALAR_HELPERS[name])
    code.line()
    code.line(f"#endif  // {guard}")
    return code.text()
