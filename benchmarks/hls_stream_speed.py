"""Throughput of the bounded threaded simulation runtime (hls_stream.h): a 40-process chain of ~10^6 tokens.

Prints build and run seconds; run with `.venv/bin/python benchmarks/hls_stream_speed.py`.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INCLUDE = ROOT / "src/streamtensor/codegen/vitis/include"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "chain"
        start = time.perf_counter()
        subprocess.run(["g++", "-std=c++17", "-O2", "-pthread", "-DSTREAMTENSOR_CSIM", f"-I{INCLUDE}",
                        str(ROOT / "tests/cpp/chain.cpp"), "-o", str(exe)], check=True)
        built = time.perf_counter() - start
        stages, tokens = 38, 25_000
        start = time.perf_counter()
        subprocess.run([str(exe), str(stages), str(tokens)], check=True, capture_output=True)
        ran = time.perf_counter() - start
    print(f"build {built:.2f} s; run {ran:.2f} s for {stages + 2} processes x {tokens} tokens "
          f"({(stages + 1) * tokens / ran / 1e6:.2f} M tokens/s)")


if __name__ == "__main__":
    main()
