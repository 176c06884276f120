"""C++ of the data-movement nodes: fork, reassociate, chunk, concat, converter (ping-pong buffer) and DMA."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from streamtensor.analysis.timing_model import node_beats
from streamtensor.codegen.vitis.hbm import c_identifier
from streamtensor.codegen.vitis.hls.cpp import (
    Code,
    ProcessWrites,
    c_type,
    close_loops,
    counter_loops,
    declare_token,
    decode_counters,
    flat_index,
    read_into,
    stream_port,
    stream_var,
    tile_offsets,
)
from streamtensor.ir.converter_buffer import window_phases
from streamtensor.ir.dataflow import (
    ChunkNode,
    ConcatNode,
    ConverterNode,
    DataflowGraph,
    DmaNode,
    ForkNode,
    Node,
    ReassociateNode,
)
from streamtensor.ir.itensor import dtype_bits
from streamtensor.ir.layout import concat_regions
from streamtensor.kernel_interface import HbmPlan


def _signature(graph: DataflowGraph, node: Node, max_bits: int, extra: Sequence[str] = ()) -> str:
    ports = [stream_port(graph.streams[s].type, stream_var(s), max_bits) for s in node.inputs + node.outputs]
    return f"static void {c_identifier(node.name)}({', '.join([*extra, *ports])})"


def fork_process(graph: DataflowGraph, node: ForkNode, max_bits: int) -> str:
    t = graph.streams[node.inputs[0]].type
    code = Code()
    code.line(f"// {node.name}: itensor_fork, every token to {len(node.outputs)} consumers")
    code.open(_signature(graph, node, max_bits))
    writes = ProcessWrites(graph, node, max_bits)
    writes.declare(code)
    declare_token(code, t, "t")
    _token_loop(code, t.num_tokens, node_beats(graph, node, max_bits))
    writes.firing(code)
    read_into(code, graph, node.inputs[0], "t", max_bits)
    for s in node.outputs:
        code.line(writes.write(s, "t"))
    close_loops(code, ["k"] if t.num_tokens > 1 else [])
    writes.drain(code)
    code.close()
    return code.text()


def _token_loop(code: Code, tokens: int, beats: int) -> None:
    """One pipelined step per token (none for a single token), as many cycles as the token's beats."""
    if tokens > 1:
        code.loop("k", tokens, pragma=f"pipeline II={beats}")


def reassociate_process(graph: DataflowGraph, node: ReassociateNode, max_bits: int) -> str:
    src, res = graph.streams[node.inputs[0]].type, graph.streams[node.outputs[0]].type
    code = Code()
    code.line(f"// {node.name}: itensor_reassociate, tile {'x'.join(map(str, src.element_shape)) or 'scalar'} -> "
              f"{'x'.join(map(str, res.element_shape)) or 'scalar'} (same row-major data)")
    code.open(_signature(graph, node, max_bits))
    writes = ProcessWrites(graph, node, max_bits)
    writes.declare(code)
    declare_token(code, src, "t")
    _token_loop(code, src.num_tokens, node_beats(graph, node, max_bits))
    writes.firing(code)
    read_into(code, graph, node.inputs[0], "t", max_bits)
    code.line(writes.write(node.outputs[0], "t"))
    close_loops(code, ["k"] if src.num_tokens > 1 else [])
    writes.drain(code)
    code.close()
    return code.text()


def _region_test(offsets: list[str], lo: Sequence[int], hi: Sequence[int], full: Sequence[int]) -> str:
    """Is the tile starting at ``offsets`` inside [lo, hi)? Only dims the region cuts are tested."""
    terms = []
    for j, (o, a, b) in enumerate(zip(offsets, lo, hi, strict=True)):
        if a > 0:
            terms.append(f"{o} >= {a}")
        if b < full[j]:
            terms.append(f"{o} < {b}")
    return " && ".join(terms) or "true"


def chunk_process(graph: DataflowGraph, node: ChunkNode, max_bits: int) -> str:
    src = graph.streams[node.inputs[0]].type
    code = Code()
    hi = [o + s for o, s in zip(node.offsets, node.sizes, strict=True)]
    code.line(f"// {node.name}: itensor_chunk, forwards the tiles inside offsets {list(node.offsets)} sizes "
              f"{list(node.sizes)}")
    code.open(_signature(graph, node, max_bits))
    writes = ProcessWrites(graph, node, max_bits)
    writes.declare(code)
    declare_token(code, src, "t")
    names = counter_loops(code, src, "n", node_beats(graph, node, max_bits))
    writes.firing(code)
    read_into(code, graph, node.inputs[0], "t", max_bits)
    test = _region_test(tile_offsets(src, names), node.offsets, hi, src.tensor_shape)
    code.open(f"if ({test})")
    code.line(writes.write(node.outputs[0], "t"))
    code.close()
    close_loops(code, names)
    writes.drain(code)
    code.close()
    return code.text()


def concat_process(graph: DataflowGraph, node: ConcatNode, max_bits: int) -> str:
    res = graph.streams[node.outputs[0]].type
    ins = [graph.streams[s].type for s in node.inputs]
    regions = concat_regions([t.tensor_shape for t in ins], node.dim)
    code = Code()
    code.line(f"// {node.name}: itensor_concat along dim {node.dim}; each token from the input whose region "
              "holds it")
    code.open(_signature(graph, node, max_bits))
    writes = ProcessWrites(graph, node, max_bits)
    writes.declare(code)
    declare_token(code, res, "t")
    names = counter_loops(code, res, "n", node_beats(graph, node, max_bits))
    writes.firing(code)
    offset = tile_offsets(res, names)[node.dim]
    last = len(node.inputs) - 1
    for i, (s, (lo, size)) in enumerate(zip(node.inputs, regions, strict=True)):
        if last > 0:
            test = f"if ({offset} < {lo[node.dim] + size[node.dim]}) " if i < last else ""
            code.line(("" if i == 0 else "} else ") + test + "{")
            code.depth += 1
        read_into(code, graph, s, "t", max_bits)
        if last > 0:
            code.depth -= 1
    if last > 0:
        code.line("}")
    code.line(writes.write(node.outputs[0], "t"))
    close_loops(code, names)
    writes.drain(code)
    code.close()
    return code.text()


def converter_process(graph: DataflowGraph, node: ConverterNode, max_bits: int) -> str:
    src, res = graph.streams[node.inputs[0]].type, graph.streams[node.outputs[0]].type
    buf = node.buffer
    m = buf.shared_loops
    shape = list(buf.shape) or [1]  # a rank-0 tensor is a one-element buffer
    s, a, b = window_phases(src, res, buf)
    code = Code()
    code.line(f"// {node.name}: itensor_converter ({node.reason or 'layouts differ'}); buffer "
              f"{buf.banks} x {'x'.join(map(str, buf.shape)) or 'scalar'}, {m} shared loop(s), {s} window(s)")
    code.line(f"//   source {src}")
    code.line(f"//   result {res}")
    code.open(_signature(graph, node, max_bits))
    writes = ProcessWrites(graph, node, max_bits)
    writes.declare(code)
    declare_token(code, src, "t_in")
    declare_token(code, res, "t_out")
    code.line(f"{c_type(buf.dtype)} buf[{buf.banks}]{''.join(f'[{n}]' for n in shape)};")
    code.pragma("array_partition variable=buf type=complete dim=1")
    for j, n in enumerate(shape):
        # One whole tile per step on both sides: lcm of the two element sizes banks along each dim.
        lanes = math.lcm(src.element_shape[j], res.element_shape[j]) if src.rank else 1
        if lanes > 1:
            kind = f"type=cyclic factor={lanes}" if lanes < n else "type=complete"
            code.pragma(f"array_partition variable=buf {kind} dim={j + 2}")
    impl = node.attributes.get("pingpong_memory")
    if impl is not None:
        code.pragma(f"bind_storage variable=buf type=ram_2p impl={impl}")
    one = buf.banks == 1
    if one:
        code.line(f"// Phase p drains shared iteration p - 1 (p > 0), then fills the window with iteration p "
                  f"(p < {s}):")
        code.line("// one token a step (one window: analysis.converter_banks).")
    else:
        code.line(f"// Phase p fills window p % 2 with shared iteration p (p < {s}) while it drains window "
                  "(p - 1) % 2:")
        code.line("// one source token in and one result token out per step, the reads spread over a longer drain.")
    # One pipelined loop over every step of every phase, its phase p and step k counted by hand: a loop per
    # phase (of a variable length) would fill and drain its pipeline once per phase.
    longest = a + b if one else max(a, b)
    total = s * (a + b) if one else a + (s - 1) * longest + b
    code.line("int p = 0, k = 0;  // the phase and its step")
    code.loop("f", total, pragma=f"pipeline II={node_beats(graph, node, max_bits)}")
    length = str(a)
    if a != b or (one and s > 1):
        length = "length"
        middle = f" : p == {s} ? {b}" if s > 1 else ""
        code.line(f"const int length = p == 0 ? {a}{middle} : {b if s == 1 else longest};")
    writes.firing(code)
    # Dims a shared loop walks exactly are one element wide in the window: their relative offset is 0.
    exact = {j for loop in range(m) for j in range(src.rank) if src.iter_map.result_dim(j) == loop}
    for fill, t, count in ((True, src, a), (False, res, b)):
        cond = [f"p < {s}" if fill else "p > 0", *([f"k < {count}"] if count < longest and not one else [])]
        step = "k"
        if one and s > 1:  # a middle phase drains in its first b steps and fills in the rest
            cond.append(f"(p == 0 || k >= {b})" if fill else f"k < {b}")
            step = f"(p == 0 ? k : k - {b})" if fill else "k"
        elif fill and count < longest and s > 1:
            # A phase that drains more than it fills spreads its reads (timing_model._converter_process): token
            # j at step ceil(j * length / a), so step k reads token k * a / length when that division leaves
            # less than a; phase 0 only fills, a token a step.
            cond[1] = f"(p == 0 || k * {count}LL % {longest} < {count})"
            step = f"(p == 0 ? k : static_cast<int>(k * {count}LL / {longest}))"
        code.open(f"if ({' && '.join(cond)})")
        names = [f"q{loop}" for loop in range(m)] + [f"c{loop}" for loop in range(m, t.num_loops)]
        offsets = tile_offsets(t, [n if trip > 1 else None for n, trip in zip(names, t.trip_counts, strict=True)])
        relative = ["0" if j in exact else offsets[j] for j in range(t.rank)] or ["0"]
        needed = {n for n in names if any(re.search(rf"\b{n}\b", r) for r in relative)}
        decode_counters(code, "p" if fill else "(p - 1)", t.trip_counts[:m], names[:m], needed)
        decode_counters(code, step if fill else "k", t.trip_counts[m:], names[m:], needed)
        element = list(t.element_shape) or [1]
        half = "buf[0]" if one else "buf[p % 2]" if fill else "buf[(p - 1) % 2]"
        if fill:
            read_into(code, graph, node.inputs[0], "t_in", max_bits)
        e = [f"e{j}" if n > 1 else "0" for j, n in enumerate(element)]
        for j, n in enumerate(element):
            if n > 1:
                code.loop(f"e{j}", n, pragma="unroll")
        at = "".join(f"[{_plus(r, ej)}]" for r, ej in zip(relative, e, strict=True))
        token = f"{'t_in' if fill else 't_out'}.data[{flat_index(e, element)}]"
        code.line(f"{half}{at} = {token};" if fill else f"{token} = {half}{at};")
        for n in element:
            if n > 1:
                code.close()
        if not fill:
            code.line(writes.write(node.outputs[0], "t_out"))
        code.close()
    code.open(f"if (k == {length} - 1)")
    code.line("k = 0;")
    code.line("++p;")
    code.depth -= 1
    code.line("} else {")
    code.depth += 1
    code.line("++k;")
    code.close()
    code.close()
    writes.drain(code)
    code.close()
    return code.text()


def _plus(a: str, b: str) -> str:
    if a == "0":
        return b
    return a if b == "0" else f"{a} + {b}"


def dma_process(graph: DataflowGraph, node: DmaNode, plan: HbmPlan, max_bits: int) -> str:
    read = node.direction == "read"
    stream = node.outputs[0] if read else node.inputs[0]
    t = graph.streams[stream].type
    code = Code()
    if node.role == "scalar":  # a register: its value is the one token
        (scalar,) = [a for a in plan.scalars if a.name == node.tensor.name]
        code.line(f"// {node.name}: scalar argument {scalar.arg} (s_axilite) -> {stream}")
        code.open(_signature(graph, node, max_bits, [f"{c_type(scalar.itype.dtype)} {scalar.arg}"]))
        declare_token(code, t, "t")
        code.line(f"t.data[0] = {scalar.arg};")
        code.line(f"write_token({stream_var(stream)}, t);")
        code.close()
        return code.text()
    arguments = [a for a in plan.arguments if a.dma == node.name]  # one per stripe, in stripe order
    argument = arguments[0]
    layout = argument.layout  # a stripe's: its words per tile and word strides (the same for every stripe)
    stripes = node.stripes
    striping = f", striped over {stripes} m_axi ports in lock step" if stripes > 1 else ""
    code.line(f"// {node.name}: {node.kind} of %{node.tensor.name} ({node.role}) {'->' if read else '<-'} {stream}; "
              f"packed layout: {layout.num_tiles} tile(s) of {layout.words_per_tile} word(s){striping}, word "
              f"strides {list(layout.word_strides)}")
    extra = [f"{'const ' if read else ''}streamtensor::word512* {a.arg}" for a in arguments]
    if node.rows is not None:
        (position,) = [a for a in plan.scalars if a.name == node.rows.position]
        extra.append(f"{c_type(position.itype.dtype)} {position.arg}")
        code.line(f"// KV cache in place: {'reads the tiles of rows 0..' if read else 'stores only row '}"
                  f"{position.arg} along dim {node.rows.dim}{' (zero tiles past it)' if read else ''}")
    code.open(_signature(graph, node, max_bits, extra))
    declare_token(code, t, "t")
    # A token a step: its words on every stripe's port, its beats on the stream's (timing_model.dma_token_costs).
    ii = max(layout.words_per_tile, t.beats(max_bits))
    names = counter_loops(code, t, "n", ii)
    if stripes > 1 and t.num_tokens == 1:
        # One tile: a one-step pipeline, so the stripes' word loops unroll side by side as in a token loop.
        code.loop("k", 1, pragma=f"pipeline II={ii}")
        names = [*names, "k"]
    address = " + ".join(f"{n}" if w == 1 else f"{w} * {n}" for n, w in zip(names, layout.word_strides, strict=False)
                         if n is not None and w) or "0"
    at = argument.arg if address == "0" else f"&{argument.arg}[{address}]"
    start = tile_offsets(t, names)[node.rows.dim] if node.rows is not None else ""
    if read:
        if node.rows is not None:
            code.line(f"if ({start} <= {position.arg}) load_tile({at}, t.data);")
            code.line("else clear_tile(t.data);")
        elif stripes > 1:
            for j, a in enumerate(arguments):
                code.line(f"load_tile_stripe<{stripes}, {j}>({a.arg if address == '0' else f'&{a.arg}[{address}]'}, "
                          "t.data);")
        else:
            code.line(f"load_tile({at}, t.data);")
        code.line(f"write_token({stream_var(stream)}, t);")
    else:
        read_into(code, graph, stream, "t", max_bits)
        if node.rows is not None:
            inner = math.prod(t.element_shape[node.rows.dim + 1:]) * dtype_bits(t.dtype)
            extent = t.element_shape[node.rows.dim]
            code.line(f"const int row = {position.arg} - ({start});")
            code.open(f"if (row >= 0 && row < {extent})")
            code.line(f"store_tile_words<{layout.row_write_words(node.rows.dim)}>(t.data, {at}, row * {inner} / 512);")
            code.close()
        else:
            code.line(f"store_tile(t.data, {at});")
    close_loops(code, names)
    code.close()
    return code.text()
