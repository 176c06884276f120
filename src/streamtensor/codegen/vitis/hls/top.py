"""C++ of the accelerator's top function: m_axi and control interfaces, the FIFOs with their depths and
implementations, and one dataflow process per node."""

from __future__ import annotations

from streamtensor.analysis.memory import FIFO_DEFAULT_DEPTH
from streamtensor.codegen.vitis.hls.cpp import Code, c_type, stream_struct, stream_var
from streamtensor.ir.dataflow import DataflowGraph, DmaNode
from streamtensor.kernel_interface import HbmPlan


def top_function(code: Code, graph: DataflowGraph, kernel_name: str, plan: HbmPlan, process: dict[str, str],
                 order: list[str], max_bits: int) -> None:
    params = ", ".join([*(f"streamtensor::word512* {a.argument.arg}" for a in plan.assignments),
                        *(f"{c_type(a.itype.dtype)} {a.arg}" for a in plan.scalars)])
    code.line("// The accelerator: one m_axi bundle per HBM channel range (arguments on one range share its port),")
    code.line("// scalars in control registers, FIFOs with their sized depths, one dataflow process per node in")
    code.line("// topological order.")
    code.open(f'extern "C" void {kernel_name}({params})')
    for a in plan.arguments:
        if a.scalar:
            code.pragma(f"interface s_axilite port={a.arg} bundle=control")
        else:
            code.pragma(f"interface m_axi port={a.arg} bundle={plan.bundle(a.arg)} offset=slave "
                        f"depth={a.layout.total_words}")
    code.pragma("interface s_axilite port=return bundle=control")
    # One run at a time, in order: a host may queue a layer's run behind the previous layer's, which writes the
    # buffer it reads (ap_ctrl_chain, the default, would let the next run start before this one is done).
    code.pragma("interface ap_ctrl_hs port=return")
    code.pragma("dataflow")
    for s in graph.streams.values():
        # A wide token is several beats: the FIFO holds its sized depth of tokens as beats.
        depth = (s.depth if s.depth is not None else FIFO_DEFAULT_DEPTH) * s.type.beats(max_bits)
        var = stream_var(s.name)
        code.line(f'hls::stream<{stream_struct(s.type, max_bits)}, {depth}> {var}("{s.name}");')
        code.pragma(f"bind_storage variable={var} type=fifo impl={s.attributes['impl']}")
    code.line()
    code.line(f"HLS_SIM_REGION({kernel_name});")
    for s in graph.streams.values():
        code.line(f"HLS_SIM_CONNECT({stream_var(s.name)}, {process[s.source]}, {process[s.target]});")
    by_dma: dict[str, list[str]] = {}  # a striped DMA's arguments, one per stripe in stripe order
    for a in plan.arguments:
        if not a.scalar:
            by_dma.setdefault(a.dma, []).append(a.arg)
    scalar = {a.name: a.arg for a in plan.scalars}
    for name in order:
        node = graph.nodes[name]
        args = [stream_var(s) for s in node.inputs + node.outputs]
        if isinstance(node, DmaNode):
            rows = [] if node.rows is None else [scalar[node.rows.position]]
            memory = [scalar[node.tensor.name]] if node.role == "scalar" else by_dma[name]
            args = [*memory, *rows, *args]
        code.line(f"HLS_SIM_PROCESS({process[name]}, {process[name]}({', '.join(args)}));")
    code.line("HLS_SIM_END_REGION();")
    code.close()
