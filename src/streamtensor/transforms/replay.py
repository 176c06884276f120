"""Replace the fork of a whole accumulated result by replay ports: the kernel drains its accumulators twice.

A normalization right after a contraction (Gemma's post-attention and post-feed-forward RMSNorm after the o- and
down-projections) forks the contraction's result to a sum of squares and to the scaling that needs that sum.
The scaling branch cannot consume a token before the sum is complete, so its FIFO holds the whole result
(4.5 KiB per norm on paper-size Gemma decode) while the contraction's accumulators hold it too, because every
output tile of that contraction is pending until its last firing.

When a kernel's accumulators hold its whole result (``KernelNode.holds_whole_result``) and the result is forked
to branches of which some *summarize* it (their first kernel, through reassociates and converters, writes
nothing before it has read the branch's last token) and others do not, the fork goes: the kernel writes the
summarizing branches first and then replays its accumulators to the others (``KernelNode`` replay ports). The
summaries are complete when the replay starts, so no branch waits with a copy of the result.
"""

from __future__ import annotations

from streamtensor.ir.dataflow import (
    ConverterNode,
    DataflowGraph,
    ForkNode,
    KernelNode,
    Node,
    ReassociateNode,
    Stream,
)
from streamtensor.ir.linalg import fresh_name


def _first_kernel(graph: DataflowGraph, stream: str) -> tuple[KernelNode, int] | None:
    """The kernel a stream reaches through reassociates and converters, and its input port there."""
    node = graph.consumer(stream)
    while isinstance(node, ReassociateNode | ConverterNode):
        stream = node.outputs[0]
        node = graph.consumer(stream)
    return (node, node.inputs.index(stream)) if isinstance(node, KernelNode) else None


def summarizes(graph: DataflowGraph, stream: str) -> bool:
    """The first kernel on ``stream`` writes no token before it has read the stream's last one."""
    found = _first_kernel(graph, stream)
    if found is None:
        return False
    kernel, port = found
    reads, writes = kernel.port_firings()
    return all(len(w) == 0 or int(w.min()) >= int(reads[port].max()) for w in writes)


def _source(graph: DataflowGraph, stream: str) -> tuple[Node, list[ReassociateNode]]:
    """The node a stream comes from through reassociates, and those reassociates (producer side first)."""
    chain: list[ReassociateNode] = []
    node = graph.producer(stream)
    while isinstance(node, ReassociateNode):
        chain.insert(0, node)
        node = graph.producer(node.inputs[0])
    return node, chain


def _replay_branch(graph: DataflowGraph, kernel: KernelNode, result: int, chain: list[ReassociateNode],
                   branch: str) -> None:
    """A replay port of ``kernel`` feeding ``branch`` through copies of the reassociates of ``chain``."""
    stream = graph.streams[branch]
    nodes, streams = set(graph.nodes), set(graph.streams)
    ends = [kernel.name] + [fresh_name(f"{r.name}_{branch}", nodes) for r in chain] + [stream.target]
    hops = [fresh_name(f"{branch}_{k}", streams) for k in range(len(chain))] + [branch]
    for k, r in enumerate(chain):
        graph.nodes[ends[k + 1]] = ReassociateNode(ends[k + 1], [hops[k]], [hops[k + 1]])
        graph.streams[hops[k]] = Stream(hops[k], graph.streams[r.inputs[0]].type, ends[k], ends[k + 1])
    stream.source = ends[-2]
    kernel.outputs.append(hops[0])
    kernel.output_results.append(result)


def replay_forked_accumulators(graph: DataflowGraph) -> list[str]:
    """Fold every fork that replay ports can replace (module docstring) into its producer, with the
    reassociates between them copied per replay; returns the forks removed. Run before fusion."""
    removed: list[str] = []
    for fork in [n for n in graph.nodes.values() if isinstance(n, ForkNode)]:
        kernel, chain = _source(graph, fork.inputs[0])
        if not isinstance(kernel, KernelNode) or not kernel.holds_whole_result():
            continue
        port = kernel.outputs.index(chain[0].inputs[0] if chain else fork.inputs[0])
        if port >= len(kernel.op.results):
            continue
        first = [s for s in fork.outputs if summarizes(graph, s)]
        rest = [s for s in fork.outputs if s not in first]
        if not first or not rest:
            continue
        last = chain[-1] if chain else kernel
        last.outputs[last.outputs.index(fork.inputs[0])] = first[0]
        graph.streams[first[0]].source = last.name
        del graph.streams[fork.inputs[0]]
        del graph.nodes[fork.name]
        for s in first[1:] + rest:
            _replay_branch(graph, kernel, port, chain, s)
        removed.append(fork.name)
    graph.verify()
    return removed
