"""The Vitis project of one kernel: build files, simulation testbench, XRT host program and packed parameters.

Every vendor command line (``v++``, ``vitis-run``, the XRT host build) and every vendor string (part, platform)
lives in this module, so a Vitis release that changes them is one edit here. Layout of a project::

    Makefile             csim | hls | xo | link | host | clean
    README.md            what the files and targets are
    hls_config.cfg       Vitis HLS component (v++ -c --mode hls): part, clock, top, sources, xo packaging
    link.cfg             v++ -l connectivity: compute unit, HBM bank per argument, SLR
    kernel.json          the external-memory interface: arguments in signature order, layouts, HBM banks
    include/             streamtensor's simulation-only hls_stream.h and the shared hls_dataflow_sim.h
    src/KERNEL.h         generated: word type, argument sizes, the top function's declaration; it includes
                         <hls_stream.h> and the dataflow macros, so the kernel C++ includes just this header
    src/*.cpp, src/*.h   the kernel C++ (the HLS processes and the top function; given to write_project)
    tb/block_sim.cpp     generated: the simulation executable's main (protocol: streamtensor.runtime.simulation)
    host/block_host.cpp  generated: the same protocol on a board, with the XRT native API
    params/              packed parameter files and manifest.json (write_packed_parameters)

The top function the kernel C++ must define is ``extern "C" void KERNEL(streamtensor::word512* ARG, ...)``
with one pointer per external-memory argument in ``plan.arguments`` order (argument ``i`` on m_axi bundle
``gmem<i>``), each pointing at the argument's packed layout (``streamtensor.packing``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamtensor._version import GENERATOR
from streamtensor.codegen.vitis.hbm import KERNEL_SLR, c_identifier, link_cfg, memory_arguments, plan_hbm
from streamtensor.errors import OptionError, StreamTensorError
from streamtensor.ir.dataflow import DataflowGraph
from streamtensor.kernel_interface import (
    INTERFACE_FILE,
    PARAMS_DIR,
    SIM_EXECUTABLE,
    HbmAssignment,
    HbmPlan,
    KernelInterface,
    layout_json,
    view_json,
)
from streamtensor.packing import WORD_BITS

PART = "xcu55c-fsvh2892-2L-e"
PLATFORM = "xilinx_u55c_gen3x16_xdma_3_202210_1"
DEFAULT_CLOCK_MHZ = 250
MAX_CLOCK_MHZ = 500
LINK_TARGET = "hw"  # the Makefile's default TARGET (hw_emu and sw_emu also work with v++ -l)

INCLUDE_DIR = Path(__file__).resolve().parent / "include"
SHIPPED_HEADERS = ("hls_stream.h", "hls_dataflow_sim.h")
HOST_EXECUTABLE = "build/host/block_host"
MANIFEST_FILE = f"{PARAMS_DIR}/manifest.json"


# --- packed parameters ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterFile:
    """One packed file: the buffer of one read argument, i.e. ``view(tensor)`` in the DMA's packed layout.
    ``offset`` is always 0: every argument has a file of its own (one XRT buffer per argument, so a file maps
    1:1 onto a buffer and a checksum onto what the DMA streams)."""

    name: str  # the tensor
    arg: str
    dma: str
    shape: list[int]  # of the tensor
    dtype: str
    role: str
    view: list[dict[str, Any]]  # tensor -> streamed tensor (the layout's tensor shape)
    layout: dict[str, Any]
    bank: str
    channels: list[int]
    file: str  # relative to the project
    offset: int
    size: int
    sha256: str


@dataclass(frozen=True)
class ParameterManifest:
    kernel: str
    tensors: list[ParameterFile] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "generator": GENERATOR,
            "kernel": self.kernel,
            "word_bits": WORD_BITS,
            "tensors": [asdict(t) for t in self.tensors],
        }


def write_packed_parameters(
    outdir: str | Path,
    graph: DataflowGraph,
    tensors: Mapping[str, np.ndarray],
    plan: HbmPlan | None = None,
) -> ParameterManifest:
    """Pack the graph's constants and ``tensors`` into ``outdir/params/<arg>.bin``, one file per read argument,
    and write ``params/manifest.json`` listing exactly these files.

    ``tensors`` maps a tensor name (every DMA reading it gets its file, packed from its view of the array) or an
    argument identifier (that DMA alone) to the whole tensor. Any tensor the kernel reads may be given: weights
    (the parameter set) and, for a self-contained ``make csim``, sample inputs. ``plan`` defaults to
    ``plan_hbm`` of the graph's arguments."""
    plan = plan or plan_hbm(memory_arguments(graph), graph.name)
    reading = [a for a in plan.assignments if a.argument.reads]
    chosen: dict[str, tuple[HbmAssignment, np.ndarray]] = {}
    given = {name: array for name, array in graph.constants.items() if any(a.argument.name == name for a in reading)}
    for key, array in {**given, **tensors}.items():
        matches = [a for a in reading if key in (a.argument.name, a.argument.arg)]
        if not matches:
            names = ", ".join(sorted({a.argument.name for a in reading}))
            raise StreamTensorError(f"{key!r} is not a tensor the kernel reads (those are: {names})")
        chosen.update({a.argument.arg: (a, array) for a in matches})
    params = Path(outdir) / PARAMS_DIR
    params.mkdir(parents=True, exist_ok=True)
    entries: list[ParameterFile] = []
    for assignment, array in chosen.values():
        arg = assignment.argument
        data = arg.pack_tensor(array)
        relative = f"{PARAMS_DIR}/{arg.arg}.bin"
        (Path(outdir) / relative).write_bytes(data)
        entries.append(
            ParameterFile(
                name=arg.name,
                arg=arg.arg,
                dma=arg.dma,
                shape=list(arg.tensor_shape),
                dtype=arg.itype.dtype,
                role=arg.role,
                view=view_json(arg.view),
                layout=layout_json(arg.layout),
                bank=assignment.bank,
                channels=list(assignment.channels),
                file=relative,
                offset=0,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
    manifest = ParameterManifest(plan.kernel_name, entries)
    (Path(outdir) / MANIFEST_FILE).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    return manifest


# --- generated files --------------------------------------------------------------------------------------


def _argument_comment(a: HbmAssignment, index: int) -> str:
    layout = a.argument.layout
    return (
        f"//   {a.argument.arg} (gmem{index}, {a.bank}, {a.argument.direction}): {a.argument.itype}; "
        f"{layout.total_words} words, {layout.words_per_tile} per tile, word strides {list(layout.word_strides)}"
    )


def _kernel_header(kernel: str, plan: HbmPlan) -> str:
    guard = f"STREAMTENSOR_{kernel.upper()}_H"
    words = "\n".join(
        f"constexpr std::size_t {a.argument.arg}_words = {a.argument.layout.total_words};" for a in plan.assignments
    )
    comments = "\n".join(_argument_comment(a, i) for i, a in enumerate(plan.assignments))
    params = ", ".join(f"streamtensor::word512* {a.argument.arg}" for a in plan.assignments)
    return f"""// Generated by {GENERATOR}: external-memory interface of kernel {kernel}.
// The kernel C++ includes this header (and needs no other streamtensor header), so the compiler checks the top
// function against the declaration below.
#ifndef {guard}
#define {guard}

#include <cstddef>
#include <cstdint>

// hls::stream: Vitis's own for synthesis, streamtensor's bounded threaded one for csim (-Iinclude).
#include <hls_stream.h>

// HLS_SIM_REGION / HLS_SIM_PROCESS / ...: plain calls for synthesis, threads in simulation.
#include "../include/hls_dataflow_sim.h"

namespace streamtensor {{

// One 512-bit HBM word of the packed layout (streamtensor.packing): word bit i is bit i % 8 of
// bytes[i / 8]; element j of a tile of b-bit elements occupies tile bits [j*b, (j+1)*b), tiles are padded to
// whole words.
struct word512 {{
  std::uint8_t bytes[64];
}};
static_assert(sizeof(word512) == 64, "word512 must be exactly 512 bits");

// Words in each argument's packed layout.
namespace {kernel} {{
{words}
}}  // namespace {kernel}

}}  // namespace streamtensor

// Arguments in signature order (argument i is m_axi bundle gmem<i>, one bundle per HBM-bound argument):
{comments}
extern "C" void {kernel}({params});

#endif  // {guard}
"""


_FILE_HELPERS = """\
// Reads exactly `bytes` bytes (the whole file) into `data`.
bool load(const std::string& path, void* data, std::size_t bytes) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    std::fprintf(stderr, "%s: cannot open input %s\\n", kProgram, path.c_str());
    return false;
  }
  const std::size_t got = std::fread(data, 1, bytes, f);
  const bool longer = std::fgetc(f) != EOF;
  std::fclose(f);
  if (got != bytes || longer) {
    std::fprintf(stderr, "%s: %s must hold exactly %zu bytes (its packed layout)\\n", kProgram, path.c_str(), bytes);
    return false;
  }
  return true;
}

bool store(const std::string& path, const void* data, std::size_t bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    std::fprintf(stderr, "%s: cannot create output %s\\n", kProgram, path.c_str());
    return false;
  }
  const bool ok = std::fwrite(data, 1, bytes, f) == bytes;
  if (std::fclose(f) != 0 || !ok) {
    std::fprintf(stderr, "%s: cannot write output %s\\n", kProgram, path.c_str());
    return false;
  }
  return true;
}
"""


def _argument_table(plan: HbmPlan) -> str:
    rows = "\n".join(
        f'    {{"{a.argument.arg}", {a.argument.layout.total_bytes}, '
        f"{str(a.argument.reads).lower()}, {str(a.argument.writes).lower()}}},"
        for a in plan.assignments
    )
    return f"""// The external-memory arguments in signature order, with the size of their packed layouts.
struct Argument {{
  const char* name;
  std::size_t bytes;
  bool reads;
  bool writes;
}};

const Argument kArguments[] = {{
{rows}
}};
constexpr std::size_t kNumArguments = sizeof(kArguments) / sizeof(kArguments[0]);
"""


def _testbench(kernel: str, plan: HbmPlan) -> str:
    call = ", ".join(f"buffers[{i}].data()" for i in range(len(plan.assignments)))
    return f"""// Generated by {GENERATOR}: bounded threaded C simulation of kernel {kernel}.
//
// Protocol (streamtensor.runtime.simulation): block_sim IN_DIR OUT_DIR reads IN_DIR/<arg>.bin for every argument
// the kernel reads and writes OUT_DIR/<arg>.bin for every argument it writes, each exactly the argument's packed
// layout; exit 0 on success, 1 when the simulation fails (deadlock, leftover tokens: the message is on stderr),
// 2 on a usage or file error. STREAMTENSOR_SIM_REPORT=FILE appends per-stream high-water marks (hls_stream.h).
#include <cstddef>
#include <cstdio>
#include <string>
#include <vector>

#include "{kernel}.h"

namespace {{

constexpr const char* kProgram = "block_sim";

{_argument_table(plan)}
{_FILE_HELPERS}
}}  // namespace

int main(int argc, char** argv) {{
  if (argc != 3) {{
    std::fprintf(stderr, "usage: %s IN_DIR OUT_DIR\\n", kProgram);
    return 2;
  }}
  const std::string in_dir = argv[1];
  const std::string out_dir = argv[2];
  // Written-only arguments start zeroed, like freshly allocated device buffers.
  std::vector<std::vector<streamtensor::word512>> buffers;
  for (const Argument& a : kArguments) {{
    buffers.emplace_back(a.bytes / sizeof(streamtensor::word512));
    if (a.reads && !load(in_dir + "/" + a.name + ".bin", buffers.back().data(), a.bytes)) return 2;
  }}
  {kernel}({call});
  for (std::size_t i = 0; i < kNumArguments; ++i) {{
    const Argument& a = kArguments[i];
    if (a.writes && !store(out_dir + "/" + a.name + ".bin", buffers[i].data(), a.bytes)) return 2;
  }}
  return 0;
}}
"""


def _host_program(kernel: str, plan: HbmPlan) -> str:
    call = ", ".join(f"bos[{i}]" for i in range(len(plan.assignments)))
    return f"""// Generated by {GENERATOR}: XRT host program for kernel {kernel} on the AMD Alveo U55C.
//
// Usage: block_host XCLBIN IN_DIR OUT_DIR [DEVICE_INDEX]: the files and exit codes of block_sim
// (streamtensor.runtime.simulation), on a board, with the XRT native API.
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include <xrt/xrt_bo.h>
#include <xrt/xrt_device.h>
#include <xrt/xrt_kernel.h>

namespace {{

constexpr const char* kProgram = "block_host";

{_argument_table(plan)}
{_FILE_HELPERS}
}}  // namespace

int main(int argc, char** argv) {{
  if (argc != 4 && argc != 5) {{
    std::fprintf(stderr, "usage: %s XCLBIN IN_DIR OUT_DIR [DEVICE_INDEX]\\n", kProgram);
    return 2;
  }}
  const std::string in_dir = argv[2];
  const std::string out_dir = argv[3];
  try {{
    xrt::device device(static_cast<unsigned int>(argc == 5 ? std::atoi(argv[4]) : 0));
    const xrt::uuid uuid = device.load_xclbin(argv[1]);
    xrt::kernel kernel(device, uuid, "{kernel}");
    std::vector<xrt::bo> bos;
    std::vector<char> data;
    for (std::size_t i = 0; i < kNumArguments; ++i) {{
      const Argument& a = kArguments[i];
      // Each buffer in the HBM bank that link.cfg connected to this argument.
      bos.emplace_back(device, a.bytes, kernel.group_id(static_cast<int>(i)));
      data.assign(a.bytes, 0);
      if (a.reads && !load(in_dir + "/" + a.name + ".bin", data.data(), a.bytes)) return 2;
      bos.back().write(data.data(), a.bytes, 0);
      bos.back().sync(XCL_BO_SYNC_BO_TO_DEVICE);
    }}
    xrt::run run = kernel({call});
    const ert_cmd_state state = run.wait();
    if (state != ERT_CMD_STATE_COMPLETED) {{
      std::fprintf(stderr, "%s: kernel {kernel} ended in state %d\\n", kProgram, static_cast<int>(state));
      return 1;
    }}
    for (std::size_t i = 0; i < kNumArguments; ++i) {{
      const Argument& a = kArguments[i];
      if (!a.writes) continue;
      bos[i].sync(XCL_BO_SYNC_BO_FROM_DEVICE);
      data.assign(a.bytes, 0);
      bos[i].read(data.data(), a.bytes, 0);
      if (!store(out_dir + "/" + a.name + ".bin", data.data(), a.bytes)) return 2;
    }}
  }} catch (const std::exception& e) {{
    std::fprintf(stderr, "%s: %s\\n", kProgram, e.what());
    return 1;
  }}
  return 0;
}}
"""


def _hls_config(kernel: str, sources: list[str], clock_mhz: int) -> str:
    files = "\n".join(f"syn.file=src/{s}" for s in sources if s.endswith(".cpp"))
    # No include paths: KERNEL.h reaches hls_dataflow_sim.h by a relative path, and <hls_stream.h> must be
    # Vitis's own (the simulation-only one in include/ #errors under __SYNTHESIS__, as a guard).
    return f"""# Generated by {GENERATOR}: Vitis HLS component of kernel {kernel}.
# Used by v++ -c --mode hls (synthesis) and vitis-run --mode hls --package (the .xo).
# Paths are relative to this file's directory, which is where the Makefile runs the tools.
part={PART}

[hls]
flow_target=vitis
clock={clock_mhz}MHz
syn.top={kernel}
{files}
package.output.format=xo
package.output.file=build/{kernel}.xo
"""


def _makefile(kernel: str, sources: list[str], clock_mhz: int) -> str:
    cpp = " ".join(f"src/{s}" for s in sources if s.endswith(".cpp"))
    headers = " ".join([f"src/{kernel}.h", *(f"src/{s}" for s in sources if not s.endswith(".cpp"))])
    shipped = " ".join(f"include/{h}" for h in SHIPPED_HEADERS)
    return f"""# Generated by {GENERATOR}: build of kernel {kernel} for the AMD Alveo U55C.
# `make csim` needs only g++ and make; hls, xo and link need Vitis (settings64.sh sourced), host needs XRT
# (/opt/xilinx/xrt/setup.sh sourced). Every vendor command line comes from streamtensor.codegen.vitis.project.

KERNEL := {kernel}
PART := {PART}
PLATFORM := {PLATFORM}
CLOCK_MHZ := {clock_mhz}
TARGET ?= {LINK_TARGET}

KERNEL_SRCS := {cpp}
KERNEL_HDRS := {headers}
SIM_HDRS := {shipped}
CSIM_CXXFLAGS := -std=c++17 -O2 -Wall -Wextra -Werror -pthread -Iinclude -Isrc
SIM_EXE := {SIM_EXECUTABLE}
SIM_IN ?= {PARAMS_DIR}
SIM_OUT ?= build/csim/out
HLS_DIR := build/hls
XO := build/$(KERNEL).xo
XCLBIN := build/$(KERNEL).$(TARGET).xclbin
HOST_EXE := {HOST_EXECUTABLE}

.PHONY: csim hls xo link host clean

# Bounded threaded C simulation: real FIFO depths, exact deadlock detection (include/hls_stream.h).
csim: $(SIM_EXE)
\tmkdir -p $(SIM_OUT)
\t$(SIM_EXE) $(SIM_IN) $(SIM_OUT)

$(SIM_EXE): $(KERNEL_SRCS) $(KERNEL_HDRS) $(SIM_HDRS) tb/block_sim.cpp
\tmkdir -p $(@D)
\t$(CXX) $(CSIM_CXXFLAGS) $(KERNEL_SRCS) tb/block_sim.cpp -o $@

hls: $(HLS_DIR)/csynth.stamp

$(HLS_DIR)/csynth.stamp: $(KERNEL_SRCS) $(KERNEL_HDRS) include/hls_dataflow_sim.h hls_config.cfg
\tv++ -c --mode hls --config hls_config.cfg --work_dir $(HLS_DIR)
\ttouch $@

xo: $(XO)

$(XO): $(HLS_DIR)/csynth.stamp
\tvitis-run --mode hls --package --config hls_config.cfg --work_dir $(HLS_DIR)

link: $(XCLBIN)

$(XCLBIN): $(XO) link.cfg
\tv++ -l --platform $(PLATFORM) --config link.cfg -t $(TARGET) --kernel_frequency $(CLOCK_MHZ) -o $@ $(XO)

host: $(HOST_EXE)

$(HOST_EXE): host/block_host.cpp
\t@test -n "$(XILINX_XRT)" || {{ echo "host: XILINX_XRT is not set; source /opt/xilinx/xrt/setup.sh" >&2; exit 1; }}
\tmkdir -p $(@D)
\t$(CXX) -std=c++17 -O2 -Wall -Wextra -I$(XILINX_XRT)/include $< -o $@ -L$(XILINX_XRT)/lib -lxrt_coreutil -pthread

clean:
\trm -rf build
"""


def _readme(kernel: str, plan: HbmPlan, sources: list[str], clock_mhz: int) -> str:
    rows = "\n".join(
        f"| {i} | `{a.argument.arg}` | {a.argument.name} | {a.argument.direction} | {a.argument.role} | "
        f"`{a.bank}` | {a.argument.layout.total_bytes} | {a.argument.layout.padding_bytes} |"
        for i, a in enumerate(plan.assignments)
    )
    source_list = ", ".join(f"`src/{s}`" for s in sources)
    return f"""<!-- Generated by {GENERATOR} -->
# Kernel `{kernel}` for the AMD Alveo U55C

A stream-based dataflow accelerator generated by streamtensor: part `{PART}`, platform `{PLATFORM}`,
kernel clock {clock_mhz} MHz, one compute unit `{plan.compute_unit}` on {KERNEL_SLR} (the HBM's SLR).

**Vitis is not needed for `make csim`**: it builds the kernel with g++ against the simulation-only
`include/hls_stream.h` (bounded FIFOs, one thread per dataflow process, exact deadlock detection) and runs it.
Only `hls`, `xo`, `link` (Vitis) and `host` (XRT) need the AMD tools.

## Targets

| target | what it does | needs |
|---|---|---|
| `make csim` | builds `{SIM_EXECUTABLE}`, runs `block_sim $(SIM_IN) $(SIM_OUT)` | g++ |
| `make hls` | C synthesis: `v++ -c --mode hls --config hls_config.cfg` into `build/hls` | Vitis |
| `make xo` | packages the kernel object `build/{kernel}.xo` (`vitis-run --mode hls --package`) | Vitis |
| `make link` | `v++ -l --platform {PLATFORM} --config link.cfg` → `build/{kernel}.$(TARGET).xclbin` | Vitis |
| `make host` | builds the XRT host program `{HOST_EXECUTABLE}` | XRT |
| `make clean` | removes `build/` | |

`block_sim IN_DIR OUT_DIR` and `block_host XCLBIN IN_DIR OUT_DIR [DEVICE]` share one protocol: they read
`IN_DIR/<arg>.bin` for each argument the kernel reads, write `OUT_DIR/<arg>.bin` for each argument it writes
(every file exactly the argument's packed layout), and exit 0 on success, 1 when the run fails (a deadlock or
leftover tokens, explained on stderr), 2 on a usage or file error. `STREAMTENSOR_SIM_REPORT=FILE` makes the
simulation append one JSON line per stream with its depth and high-water mark. From Python,
`streamtensor.runtime.open_runtime(project_dir, backend="sim" | "xrt")` drives either one.

## Files

- `Makefile`, `hls_config.cfg` (HLS component: part, clock, top, sources), `link.cfg` (compute unit, HBM bank
  of every argument, SLR).
- `kernel.json`: the external-memory arguments in signature order with their itensor layouts and HBM banks.
- `src/{kernel}.h`: the 512-bit word type, the size of each argument and the top function's declaration
  (it includes `hls_stream.h` and the dataflow macros for the kernel sources).
- Kernel sources: {source_list}.
- `tb/block_sim.cpp`: the simulation's `main`; `host/block_host.cpp`: the board's.
- `include/hls_stream.h`, `include/hls_dataflow_sim.h`: streamtensor's simulation headers (synthesis uses
  Vitis's own `hls_stream.h`).
- `params/`: packed tensors (`<arg>.bin`) and `manifest.json` (shape, dtype, role, layout, HBM bank, size and
  sha256 of each file).

## External-memory arguments

Each argument is stored in the packed layout of `streamtensor.packing`: its unique tiles in
stream order without repeat loops, each tile row-major and padded with zeros to whole 512-bit words.

| # | argument | tensor | direction | role | HBM bank | bytes | padding bytes |
|---|---|---|---|---|---|---|---|
{rows}
"""


@dataclass(frozen=True)
class VitisProject:
    root: Path
    kernel_name: str
    files: tuple[str, ...]  # written files, relative to root
    manifest: ParameterManifest


def _check_sources(kernel_name: str, sources: Mapping[str, str]) -> list[str]:
    names = sorted(sources)
    for name in names:
        if "/" in name or "\\" in name or not name.endswith((".cpp", ".h")):
            raise OptionError(f"kernel source {name!r} must be a plain .cpp or .h file name (it goes to src/)")
    if f"{kernel_name}.cpp" not in sources:
        raise OptionError(f"the kernel sources must include {kernel_name}.cpp (the top function), got {names}")
    if f"{kernel_name}.h" in sources:
        raise OptionError(f"{kernel_name}.h is generated by write_project; do not pass it as a source")
    return names


def write_project(
    outdir: str | Path,
    graph: DataflowGraph,
    kernel_name: str,
    plan: HbmPlan,
    sources: Mapping[str, str],
    *,
    tensors: Mapping[str, np.ndarray] | None = None,
    clock_mhz: int = DEFAULT_CLOCK_MHZ,
) -> VitisProject:
    """Write the Vitis project of ``graph``'s kernel into ``outdir`` (see the module docstring).

    ``sources`` maps file names under ``src/`` to the kernel C++ (``KERNEL.cpp`` defines the top function and
    includes ``KERNEL.h``); ``tensors`` are packed into ``params/`` (``write_packed_parameters``)."""
    if c_identifier(kernel_name) != kernel_name:
        raise OptionError(f"kernel name {kernel_name!r} is not a C identifier")
    if plan.kernel_name != kernel_name:
        raise OptionError(f"the HBM plan is for kernel {plan.kernel_name!r}, not {kernel_name!r}")
    if not 0 < clock_mhz <= MAX_CLOCK_MHZ:
        raise OptionError(f"clock {clock_mhz} MHz is outside (0, {MAX_CLOCK_MHZ}]")
    arguments = memory_arguments(graph)
    if not arguments:
        raise StreamTensorError(f"dataflow graph @{graph.name} has no DMA: the kernel has no external memory")
    if list(plan.arguments) != arguments:
        raise StreamTensorError(f"the HBM plan does not match the DMA arguments of @{graph.name}")
    names = _check_sources(kernel_name, sources)

    root = Path(outdir)
    interface = KernelInterface(plan, clock_mhz, SIM_EXECUTABLE, f"build/{kernel_name}.{LINK_TARGET}.xclbin")
    generated = {
        "Makefile": _makefile(kernel_name, names, clock_mhz),
        "README.md": _readme(kernel_name, plan, names, clock_mhz),
        "hls_config.cfg": _hls_config(kernel_name, names, clock_mhz),
        "link.cfg": link_cfg(plan),
        INTERFACE_FILE: json.dumps(interface.to_json(), indent=2) + "\n",
        f"src/{kernel_name}.h": _kernel_header(kernel_name, plan),
        "tb/block_sim.cpp": _testbench(kernel_name, plan),
        "host/block_host.cpp": _host_program(kernel_name, plan),
        **{f"src/{name}": sources[name] for name in names},
    }
    for relative, text in generated.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "include").mkdir(exist_ok=True)
    for header in SHIPPED_HEADERS:
        shutil.copyfile(INCLUDE_DIR / header, root / "include" / header)
    manifest = write_packed_parameters(root, graph, tensors or {}, plan)
    files = [*generated, *(f"include/{h}" for h in SHIPPED_HEADERS), MANIFEST_FILE, *(t.file for t in manifest.tensors)]
    return VitisProject(root, kernel_name, tuple(sorted(files)), manifest)
