"""The Vitis backend's files shipped as package data: headers copied into every project (``include/``) and C++
fragments pasted into the generated sources (``templates/``)."""

from pathlib import Path

INCLUDE_DIR = Path(__file__).resolve().parent / "include"
SHIPPED_HEADERS = ("hls_stream.h", "hls_dataflow_sim.h")
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


def template(name: str) -> str:
    """A static C++ fragment of ``templates/``, pasted into a generated source."""
    return (TEMPLATES_DIR / name).read_text()
