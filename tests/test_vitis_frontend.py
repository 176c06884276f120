"""Vitis's synthesis front end on the generated kernels (verify.frontend_check): the tiny blocks of the four
families and a project written by the CLI compile with -D__SYNTHESIS__ at the standard hls_config.cfg declares,
with no simulation header, and pass the UG1399 dataflow-region lint; the lint catches each rule it checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import tiny_block

from streamtensor.cli import main
from streamtensor.codegen.vitis.boards import U55C
from streamtensor.verify.frontend_check import declared_standard, frontend_check, lint_dataflow

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the front-end check needs g++")

MODES = ("prefill", "decode")


@pytest.fixture(scope="module")
def checked(tiny_project):  # noqa: ANN001, ANN201 - (family, mode) -> FrontEndReport
    done = {}

    def get(family: str, mode: str):  # noqa: ANN202
        if (family, mode) not in done:
            done[family, mode] = frontend_check(tiny_project(family, mode), U55C)
        return done[family, mode]

    return get


@pytest.mark.parametrize("mode", MODES)
def test_tiny_blocks_compile_as_vitis_synthesis_sees_them(family: str, mode: str, checked) -> None:  # noqa: ANN001
    report = checked(family, mode)
    assert report.standard == "c++14" and report.compiled
    assert report.diagnostics == ()
    assert report.violations == ()


@pytest.mark.parametrize("mode", MODES)
def test_tiny_block_streams_fit_the_aggregate_limit(family: str, mode: str, checked) -> None:  # noqa: ANN001
    """Wide tiles (16x16 f32 weights: 8,192 bits) cross their streams as beats of at most 4,096 bits."""
    report = checked(family, mode)
    assert max(report.stream_bits.values()) <= U55C.stream_max_bits


def test_a_cli_project_passes_the_front_end_check(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    assert main(["compile", "llama", "--mode", "decode", "--max-len", "16", "-o", str(out), "-q"]) == 0
    config = (out / "hls_config.cfg").read_text()
    assert "syn.cflags=-std=c++14" in config.splitlines() and declared_standard(config) == "c++14"
    report = frontend_check(out, U55C)
    assert report.diagnostics == () and report.violations == ()
    assert main(["verify", str(out)]) == 0


@pytest.mark.slow
def test_paper_gpt2_decode_passes_the_front_end_check(tmp_path: Path) -> None:
    """The paper-size GPT-2 decode block (a full compile with FIFO sizing: minutes) passes the check, every
    stream within the target's limit."""
    out = tmp_path / "paper"
    assert main(["compile", "gpt2", "--size", "paper", "--mode", "decode", "-o", str(out), "-q"]) == 0
    report = frontend_check(out, U55C)
    assert report.diagnostics == () and report.violations == ()
    assert max(report.stream_bits.values()) <= U55C.stream_max_bits


def test_a_cxx17_construct_fails_the_declared_standard(tmp_path: Path) -> None:
    design, block = tiny_block("gpt2", "decode")
    design.write_project(tmp_path, *block.example_inputs(0))
    (source,) = (tmp_path / "src").glob("*.cpp")
    source.write_text(source.read_text() + "static_assert(std::is_same_v<int, int>, \"C++17\");\n")
    report = frontend_check(tmp_path, U55C)
    assert len(report.diagnostics) == 1 and "is_same_v" in report.diagnostics[0]


TOKENS = """struct tok_f32x16 {
  float data[16];
};
struct tok_f32x256 {
  float data[256];
};
"""

PROCESSES = """static void produce(hls::stream<tok_f32x16>& s_out, int n) {
  for (int k = 0; k < n; ++k) {
    HLS_PRAGMA(pipeline II=1)
    tok_f32x16 t;
    for (int e = 0; e < n; ++e) {
      HLS_PRAGMA(unroll)
      t.data[e] = 0;
    }
    s_out.write(t);
  }
}

static void consume(hls::stream<tok_f32x16>& s_in, hls::stream<tok_f32x256>& s_wide) {
  for (int k = 0; k < 4; ++k) {
    const tok_f32x16 t = s_in.read();
    HLS_PRAGMA(pipeline II=1)
    tok_f32x256 w;
    w.data[0] = t.data[0];
    s_wide.write(w);
  }
}

static void sink(hls::stream<tok_f32x256>& s_in) {
  s_in.read();
}
"""

TOP = """extern "C" void top(int n) {
  HLS_PRAGMA(dataflow)
  hls::stream<tok_f32x16, 2> s_a("a");
  hls::stream<tok_f32x256, 2> s_b("b");
  HLS_SIM_PROCESS(produce, produce(s_a, n));
  if (n > 0) n = 1;
  HLS_SIM_PROCESS(consume, consume(s_a, s_b));
  HLS_SIM_PROCESS(consume2, consume(s_a, s_b));
}
"""


def test_the_dataflow_lint_flags_each_rule() -> None:
    violations, bits = lint_dataflow({"k_tokens.h": TOKENS, "k.cpp": PROCESSES + TOP}, U55C)
    assert bits == {"s_a": 512, "s_b": 8192}
    assert sorted(violations) == sorted([
        "stream s_b: its token tok_f32x256 is 8192 bits, over the 4096 bits of an aggregated struct on the "
        f"{U55C.board}",
        "top: not a canonical dataflow region: 'if (n > 0) n = 1;'",
        "stream s_a: written by ['produce'] and read by ['consume', 'consume'] (a dataflow stream has one of each)",
        "stream s_b: written by ['consume', 'consume'] and read by no process (a dataflow stream has one of each)",
        "produce: loop k has no label",
        "produce: loop k has the variable bound n and no loop_tripcount",
        "produce: loop e has no label",
        "produce: loop e has the variable bound n and no loop_tripcount",
        "produce: loop e inside the pipelined loop k has the variable bound n (it cannot be unrolled)",
        "produce: token t (tok_f32x16) is not partitioned, and lanes of loop e access its elements",
        "consume: loop k has no label",
        "consume: HLS pipeline in the middle of the body of loop k",
    ])
