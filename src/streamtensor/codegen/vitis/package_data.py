"""The Vitis backend's files shipped as package data: headers copied into every project (``include/``) and C++
fragments pasted into the generated sources (``templates/``)."""

from pathlib import Path

INCLUDE_DIR = Path(__file__).resolve().parent / "include"
SHIPPED_HEADERS = ("hls_stream.h", "hls_dataflow_sim.h")
# Xilinx's Apache-2.0 ap_int/ap_fixed headers, vendored from the hls4ml 1.3.0 wheel (ap_types/README.md): the
# front-end check reads them, and every project ships them for its C simulation (include/ap_types, -isystem).
AP_TYPES = "ap_types"
AP_TYPES_DIR = INCLUDE_DIR / AP_TYPES
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


def template(name: str) -> str:
    """A static C++ fragment of ``templates/``, pasted into a generated source."""
    return (TEMPLATES_DIR / name).read_text()
