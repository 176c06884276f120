"""Made-up boards for tests: the U55C's toolchain and memory with other dies."""

from dataclasses import replace

from streamtensor.codegen.vitis.boards import U55C
from streamtensor.target import SlrBudget, Target


def device(name: str, *, dsp: int, bram36: int, uram: int, lut: int, slrs: int = 3) -> Target:
    """The U55C with ``slrs`` dies of these resources each."""
    return replace(U55C, name=name, board=name, slrs=(SlrBudget(dsp, bram36, uram, lut),) * slrs)
