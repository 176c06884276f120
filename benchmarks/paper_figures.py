"""Reference figures of the StreamTensor paper that the benchmarks print next to ours and the tests hold us to."""

PAPER_FUSED_TO_UNFUSED = 0.148  # the low end of the paper's fused / unfused range (spec §4.2): ours must be lower
