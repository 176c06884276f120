"""The loop, array and port lint of the Vitis front-end check (verify.hls_lint): each rule flags the defect the
generator used to have (the snippets are that generated code, trimmed), and passes the code it emits now."""

from __future__ import annotations

from streamtensor.codegen.vitis.boards import U55C
from streamtensor.verify.hls_lint import lint_preprocessed, lint_processes, synthesis_text

TOKENS = """struct tok_f32x8 {
  float data[8];
};
struct tok_f32x128 {
  float data[128];
};
struct tok_f64x8 {
  double data[8];
};
"""


def _lint(code: str) -> list[str]:
    return lint_processes({"k_tokens.h": TOKENS, "k.cpp": code}, U55C)


# reduce_sum_1 as generated before: a double accumulator updated by two chained unrolled lanes every 2 steps of
# the flattened p2/p1 pipeline, at an II of 4 (needs ceil(2 x 5 / 2) = 5), with no stated distance; the output
# tile zero-filled and copied out one element per cycle over a 4-way partition; the input token unpartitioned.
OLD_ACCUMULATOR = """static void reduce_sum_1(hls::stream<tok_f32x128>& s_in, hls::stream<tok_f64x8>& s_out) {
  double acc0[8] = {};
  HLS_PRAGMA(array_partition variable=acc0 type=cyclic factor=4)
  for (int t2 = 0; t2 < 4; ++t2) {
    const tok_f32x128 in0 = s_in.read();
    if (t2 == 0) {
      for (int k = 0; k < 8; ++k) {
        HLS_PRAGMA(pipeline II=1)
        acc0[k] = 0.0;
      }
    }
    for (int p2 = 0; p2 < 16; p2 += 2) {
      for (int p1 = 0; p1 < 8; p1 += 4) {
        HLS_PRAGMA(pipeline II=4)
        for (int u2 = 0; u2 < 2; ++u2) {
          HLS_PRAGMA(unroll)
          for (int u1 = 0; u1 < 4; ++u1) {
            HLS_PRAGMA(unroll)
            const int i2 = p2 + u2;
            const int i1 = p1 + u1;
            const float a0 = in0.data[16 * i1 + i2];
            const double a1 = acc0[i1];
            const double a0_ = static_cast<double>(a0);
            const double s0 = a0_ + a1;
            acc0[i1] = s0;
          }
        }
      }
    }
    if (t2 == 3) {
      tok_f64x8 out0;
      for (int k = 0; k < 8; ++k) {
        HLS_PRAGMA(pipeline II=1)
        out0.data[k] = acc0[k];
      }
      s_out.write(out0);
    }
  }
}
"""

# The same kernel as generated now: labelled loops, the init, the token read and the output write folded
# into the pipelined body under the condition they run at (one perfect nest, flattened), the recurrence distance
# stated and met (the two lanes are one reduction lane here: II=3 covers 5 / 2).
NEW_ACCUMULATOR = """static void reduce_sum_1(hls::stream<tok_f32x128>& s_in, hls::stream<tok_f64x8>& s_out) {
  double acc0[8] = {};
  HLS_PRAGMA(array_partition variable=acc0 type=cyclic factor=4)
  tok_f32x128 in0;
  HLS_PRAGMA(array_partition variable=in0.data type=complete)
  tok_f64x8 out0;
  HLS_PRAGMA(array_partition variable=out0.data type=complete)
  t2_loop: for (int t2 = 0; t2 < 4; ++t2) {
    i2_loop: for (int i2 = 0; i2 < 16; ++i2) {
      p1_loop: for (int p1 = 0; p1 < 8; p1 += 4) {
        HLS_PRAGMA(pipeline II=3)
        HLS_PRAGMA(dependence variable=acc0 type=inter direction=RAW dependent=true distance=2)
        if (i2 == 0 && p1 == 0) {
          in0 = s_in.read();
        }
        u1_loop: for (int u1 = 0; u1 < 4; ++u1) {
          HLS_PRAGMA(unroll)
          const int i1 = p1 + u1;
          const float a0 = in0.data[16 * i1 + i2];
          const double a1 = (t2 == 0 && i2 == 0) ? 0.0 : acc0[i1];
          const double a0_ = static_cast<double>(a0);
          const double s0 = a0_ + a1;
          acc0[i1] = s0;
          out0.data[i1] = s0;
        }
        if (i2 == 15 && p1 == 4 && t2 == 3) {
          s_out.write(out0);
        }
      }
    }
  }
}
"""


# The same kernel as generated later: labelled loops, the init folded into the pipelined body, the recurrence
# distance stated and met (the two lanes are one reduction lane here: II=3 covers 5 / 2), but the token read
# and the result write between the tile loop and the point loops: Vitis does not flatten t2 into the pipeline.
IMPERFECT_ACCUMULATOR = NEW_ACCUMULATOR.replace(
    "        if (i2 == 0 && p1 == 0) {\n          in0 = s_in.read();\n        }\n", "").replace(
    "        if (i2 == 15 && p1 == 4 && t2 == 3) {\n          s_out.write(out0);\n        }\n", "").replace(
    "  t2_loop: for (int t2 = 0; t2 < 4; ++t2) {\n",
    "  t2_loop: for (int t2 = 0; t2 < 4; ++t2) {\n    in0 = s_in.read();\n"
).replace("      }\n    }\n  }\n}\n", "      }\n    }\n    if (t2 == 3) {\n      s_out.write(out0);\n    }\n  }\n}\n")


def test_the_generated_accumulator_passes() -> None:
    assert _lint(NEW_ACCUMULATOR) == []


def test_an_imperfect_nest_around_a_pipeline_is_caught() -> None:
    assert _lint(IMPERFECT_ACCUMULATOR) == [
        "reduce_sum_1: loop t2_loop around the pipelined loop p1_loop holds 3 statement(s) ('in0 = s_in.read();', "
        "...), not one loop: the nest is not perfect, so Vitis does not flatten it and the pipeline fills and "
        "drains once per iteration of t2_loop"]
    # Two loops in one body are no perfect nest either.
    twice = NEW_ACCUMULATOR.replace("    i2_loop: for", "    k_loop: for (int k = 0; k < 2; ++k) {\n    }\n"
                                    "    i2_loop: for")
    assert any("loop t2_loop around the pipelined loop p1_loop holds 2 loops, not one loop" in v
               for v in _lint(twice))


def test_only_a_drained_read_may_stand_between_the_loops() -> None:
    # A read at a drained firing: the pipeline is meant to drain there (timing_model.drained_inputs).
    drained = IMPERFECT_ACCUMULATOR.replace("    in0 = s_in.read();\n", "    HLS_SIM_DRAINED_FIRING(true);\n"
                                            "    in0 = s_in.read();\n")
    assert _lint(drained) == []
    # A drained mark with no read there does not excuse the nest.
    unread = drained.replace("    in0 = s_in.read();\n", "").replace("        u1_loop:", "        in0 = s_in.read();\n"
                                                                          "        u1_loop:")
    assert any("loop t2_loop around the pipelined loop p1_loop holds 3 statement(s)" in v for v in _lint(unread))


def test_an_accumulator_ii_shorter_than_its_recurrence_is_caught() -> None:
    found = _lint(OLD_ACCUMULATOR)
    assert ("reduce_sum_1: pipelined loop p1: acc0[i1] is updated again 2 step(s) later through 2 chained "
            "arith.addf(s) of 5 cycles: II=4 cannot be reached (needs 5)") in found
    assert ("reduce_sum_1: pipelined loop p1: acc0 recurs every 2 steps but the loop states no dependence distance "
            "(Vitis assumes the nearest)") in found


def test_a_wrong_or_false_dependence_is_caught() -> None:
    wrong = NEW_ACCUMULATOR.replace("distance=2", "distance=8")
    assert any("states distance [8]" in v for v in _lint(wrong))
    false = NEW_ACCUMULATOR.replace("dependent=true distance=2", "dependent=false")
    assert "reduce_sum_1: pipelined loop p1_loop: declares the true recurrence on acc0 false" in _lint(false)


def test_copies_one_element_per_cycle_over_a_partition_are_caught() -> None:
    found = _lint(OLD_ACCUMULATOR)
    assert found.count("reduce_sum_1: pipelined loop k moves one element of acc0 per cycle, which is partitioned "
                       "4 ways (unroll it to the partitioning)") == 2


def test_unpartitioned_tokens_and_unlabelled_loops_are_caught() -> None:
    found = _lint(OLD_ACCUMULATOR)
    assert "reduce_sum_1: token in0 (tok_f32x128) is not partitioned, and lanes of loop u2 access its elements" in found
    assert sum(v.endswith("has no label") for v in found) == 7


# reduce_sum_9 (the GELU before the MLP's second projection) as generated before: tanh of a value of row i1
# computed in each of the 16 unrolled lanes of i2.
OLD_GELU = """static void gelu(hls::stream<tok_f32x128>& s_in, hls::stream<tok_f32x128>& s_out) {
  tok_f32x128 in0;
  HLS_PRAGMA(array_partition variable=in0.data type=complete)
  tok_f32x128 out0;
  HLS_PRAGMA(array_partition variable=out0.data type=complete)
  in0 = s_in.read();
  i1_loop: for (int i1 = 0; i1 < 8; ++i1) {
    HLS_PRAGMA(pipeline II=1)
    i2_loop: for (int i2 = 0; i2 < 16; ++i2) {
      HLS_PRAGMA(unroll)
      const float a0 = in0.data[16 * i1];
      const float s10 = std::tanh(a0);
      const float s11 = float(1) / std::sqrt(a0);
      out0.data[16 * i1 + i2] = s10 * s11 * in0.data[16 * i1 + i2];
    }
  }
  s_out.write(out0);
}
"""


def test_lane_invariant_math_in_unrolled_lanes_is_caught() -> None:
    assert _lint(OLD_GELU) == [
        "gelu: std::tanh of s10 inside unrolled loop i2_loop does not depend on i2 (lane-invariant: compute it "
        "once, outside the lanes)",
        "gelu: / of s11 inside unrolled loop i2_loop does not depend on i2 (lane-invariant: compute it once, "
        "outside the lanes)",
    ]
    hoisted = OLD_GELU.replace("""    i2_loop: for (int i2 = 0; i2 < 16; ++i2) {
      HLS_PRAGMA(unroll)
      const float a0 = in0.data[16 * i1];
      const float s10 = std::tanh(a0);
      const float s11 = float(1) / std::sqrt(a0);
""", """    const float a0 = in0.data[16 * i1];
    const float s10 = std::tanh(a0);
    const float s11 = float(1) / std::sqrt(a0);
    i2_loop: for (int i2 = 0; i2 < 16; ++i2) {
      HLS_PRAGMA(unroll)
""")
    assert _lint(hoisted) == []


# The old fpowi helper: a loop with a variable trip count, unrolled inside the callers' pipelines.
OLD_FPOWI = """template <typename T>
T fpowi(T x, int64_t n) {
  T result = T(1);
  for (T base = x; e != 0; e >>= 1, base *= base) {
    if (e & 1) result *= base;
  }
  return result;
}
"""


def test_a_variable_bound_loop_is_caught() -> None:
    assert _lint(OLD_FPOWI) == [
        "fpowi: loop ? has no label",
        "fpowi: loop ? is not a counted loop ('for (T base = x; e != 0; e >>= 1, base *= base) {'): its trip count "
        "is unknown",
    ]
    variable = """static void drain(hls::stream<tok_f32x8>& s, int n) {
  k_loop: for (int k = 0; k < n; ++k) {
    HLS_PRAGMA(pipeline II=1)
    s.read();
  }
}
"""
    assert _lint(variable) == ["drain: loop k_loop has the variable bound n and no loop_tripcount"]
    counted = variable.replace("HLS_PRAGMA(pipeline II=1)", "HLS_PRAGMA(pipeline II=1)\n    "
                               "HLS_PRAGMA(loop_tripcount min=1 max=8)")
    assert _lint(counted) == []
    # Inside a loop (a converter's phases as generated before) its pipeline drains once per outer iteration.
    phases = counted.replace("  k_loop: for (int k = 0; k < n; ++k) {\n", "  p_loop: for (int p = 0; p < 4; ++p) {\n"
                             "  k_loop: for (int k = 0; k < n; ++k) {\n").replace("  }\n}\n", "  }\n  }\n}\n")
    assert _lint(phases) == ["drain: pipelined loop k_loop has a variable bound inside loop p_loop: Vitis cannot "
                             "flatten it, so its pipeline fills and drains once per iteration of p_loop"]


# The old external-memory word: a byte struct with memcpy punning; outputs named after SSA temporaries.
OLD_WORD = """namespace streamtensor {
struct word512 {
  std::uint8_t bytes[64];
};
}
template <typename T>
void unpack_element(const uint8_t* bytes, int /*bit*/, T& value) {
  std::memcpy(&value, bytes, sizeof(T));
}
"""
OLD_TOP = """extern "C" void k(streamtensor::word512* hidden, streamtensor::word512* v30) {
  HLS_PRAGMA(dataflow)
}
"""


def test_byte_words_memcpy_and_ssa_argument_names_are_caught() -> None:
    found = lint_processes({"k.h": OLD_WORD, "k.cpp": OLD_TOP}, U55C)
    assert found == [
        "k.h: memcpy (byte punning of a word defeats burst inference; use ap_uint bit ranges)",
        "k: m_axi argument hidden is a streamtensor::word512, not an ap_uint<512> word",
        "k: m_axi argument v30 is a streamtensor::word512, not an ap_uint<512> word",
        "k: m_axi argument v30 is named after an SSA temporary, not the model's tensor",
    ]
    now = "namespace streamtensor {\ntypedef ap_uint<512> word512;\n}\n"
    assert lint_processes({"k.h": now, "k.cpp": OLD_TOP.replace("v30", "hidden_out")}, U55C) == []


def test_an_empty_if_in_the_synthesis_view_is_caught() -> None:
    expanded = '# 1 "src/k.cpp"\n  if (t2 != 0) ;\n  x = 1;\n# 7 "include/hls_dataflow_sim.h"\n  if (a) ;\n'
    assert lint_preprocessed(expanded, "src/k.cpp") == ["src/k.cpp: empty statement under an if: 'if (t2 != 0) ;'"]


def test_simulation_branches_are_not_linted() -> None:
    text = "#ifdef __SYNTHESIS__\nA\n#else\nB\n#endif\n#ifndef __SYNTHESIS__\nC\n#if X\nD\n#endif\n#else\nE\n#endif\n"
    assert synthesis_text(text).split() == ["A", "E"]


# A wide token (tok_f32x256 over a tok_f32x128 stream: 2 beats) read whole at a firing's first step of an II=1
# pipeline, as the flattened code did before the beats were spread over the firing's steps: two accesses of the
# stream in one iteration.
WIDE_READ = """static void scale_1(hls::stream<tok_f32x128>& s_in, hls::stream<tok_f32x8>& s_out) {
  tok_f32x256 in0;
  HLS_PRAGMA(array_partition variable=in0.data type=complete)
  tok_f32x8 out0;
  HLS_PRAGMA(array_partition variable=out0.data type=complete)
  t0_loop: for (int t0 = 0; t0 < 4; ++t0) {
    i1_loop: for (int i1 = 0; i1 < 32; ++i1) {
      HLS_PRAGMA(pipeline II=1)
      if (i1 == 0) {
        read_token(s_in, in0);
      }
      i2_loop: for (int i2 = 0; i2 < 8; ++i2) {
        HLS_PRAGMA(unroll)
        out0.data[i2] = in0.data[8 * i1 + i2];
      }
      s_out.write(out0);
    }
  }
}
"""


def test_a_stream_accessed_more_often_than_the_ii_is_caught() -> None:
    wide = {"k_tokens.h": TOKENS + "struct tok_f32x256 {\n  float data[256];\n};\n", "k.cpp": WIDE_READ}
    assert lint_processes(wide, U55C) == [
        "scale_1: pipelined loop i1_loop (II=1) accesses stream s_in 2 times an iteration: its one port needs II >= 2"]
    # Its beats one a step (analysis.stream_beats): one access an iteration.
    spread = WIDE_READ.replace("if (i1 == 0) {\n        read_token(s_in, in0);",
                               "if (i1 < 2) {\n        read_beat(s_in, in0, i1);")
    assert lint_processes({**wide, "k.cpp": spread}, U55C) == []
    # A write in an unrolled loop is one access per lane.
    lanes = WIDE_READ.replace("      s_out.write(out0);\n", "").replace(
        "        out0.data[i2] = in0.data[8 * i1 + i2];\n",
        "        out0.data[i2] = in0.data[8 * i1 + i2];\n        s_out.write(out0);\n")
    assert ("scale_1: pipelined loop i1_loop (II=1) accesses stream s_out 8 times an iteration: its one port needs "
            "II >= 8") in lint_processes({**wide, "k.cpp": lanes}, U55C)
