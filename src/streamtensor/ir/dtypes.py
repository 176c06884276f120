"""Element types the IR knows, with their widths in bits (one table for every IR level)."""

DTYPE_BITS: dict[str, int] = {"f64": 64, "f32": 32, "f16": 16, "bf16": 16, "i64": 64, "i32": 32, "i16": 16,
                              "i8": 8, "i4": 4, "i1": 1, "index": 64}

# Storage-only element types: a graph input may hold them (W4A8's int4 weights, stored two per byte), a kernel
# body only widens them (``arith.extsi``/``arith.sitofp``); no op computes one. Hosts hold them in int8.
STORAGE_DTYPES: frozenset[str] = frozenset({"i4"})


def int_range(dtype: str) -> tuple[int, int]:
    """``(min, max)`` of a signed integer element type."""
    bits = DTYPE_BITS[dtype]
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
