"""Element types the IR knows, with their widths in bits (one table for every IR level)."""

DTYPE_BITS: dict[str, int] = {"f64": 64, "f32": 32, "f16": 16, "bf16": 16, "i64": 64, "i32": 32, "i16": 16,
                              "i8": 8, "i1": 1, "index": 64}
