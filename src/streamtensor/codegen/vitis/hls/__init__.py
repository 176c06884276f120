"""HLS C++ of a dataflow graph for Vitis HLS; ``generate.generate_hls`` is the entry."""
