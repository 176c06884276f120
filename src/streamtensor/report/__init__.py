"""The human-readable report of a compile: ``OUTDIR/report.html`` (one self-contained page: dataflow graph,
timeline, FIFOs, resources, HBM, the LLM figures, the search) and ``OUTDIR/trace.json`` (Chrome trace-event
format, for Perfetto or chrome://tracing). An output stage: it reads what the compile wrote (``report.json``,
``dataflow.mlir``) and runs the timing simulation again for its spans (``report.model``)."""

from .write import write_report

__all__ = ["write_report"]
