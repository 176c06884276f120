"""The C++ host program of a whole model (``streamtensor build``): the token loop of ``streamtensor.llm.generate``
against XRT, from ``templates/llm_host.cpp`` plus generated tables, the slot maps it packs activations with, and
its Makefile (which also links every kernel of the build into one xclbin)."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from streamtensor._version import GENERATOR
from streamtensor.codegen.vitis.build_files import LINK_TARGET
from streamtensor.codegen.vitis.package_data import template
from streamtensor.errors import StreamTensorError
from streamtensor.kernel_interface import KernelInterface, MemoryArgument

MAPS_DIR = "maps"
_EXACT_F32 = 2**24  # slot indices travel through float32 packing: exact up to here
_RESIDENT = ("weight", "constant")
# The element types the C++ host holds tensors in: f32 values, i64 positions, i8 KV-cache codes.
_HOST_ELEMENTS = {"f32": np.dtype(np.float32), "i64": np.dtype(np.int64), "index": np.dtype(np.int64),
                  "i8": np.dtype(np.int8)}


def _element_dtype(arg: MemoryArgument) -> np.dtype:
    found = _HOST_ELEMENTS.get(arg.itype.dtype)
    if found is None:
        raise StreamTensorError(f"argument {arg.arg} holds {arg.itype.dtype} elements: the C++ host moves only "
                                f"{', '.join(_HOST_ELEMENTS)}")
    return found


def _byte_planes(index: np.ndarray, dtype: np.dtype) -> list[np.ndarray]:
    """``index`` (non-negative, below 2^24) as a wide enough integer split over elements of ``dtype``: one int8
    array per byte for 1-byte elements (an int8 cannot hold an index), else the index itself."""
    if dtype.itemsize > 1:
        return [index.astype(dtype)]
    return [((index >> (8 * b)) & 0xFF).astype(np.uint8).view(np.int8) for b in range(3)]


def _join_planes(planes: list[np.ndarray]) -> np.ndarray:
    if len(planes) == 1:
        return planes[0].astype(np.int32)
    return sum(p.view(np.uint8).astype(np.int32) << (8 * b) for b, p in enumerate(planes))


def _host_element_bytes(arg: MemoryArgument) -> int:
    """Bytes per element of an argument the host packs or unpacks; 0 for a resident one (weights and constants:
    their packed files are written whole, whatever their elements, e.g. W4A8's int4 weights)."""
    return 0 if arg.role in _RESIDENT else _element_dtype(arg).itemsize


def slot_map(arg: MemoryArgument) -> np.ndarray:
    """int32 slot map of a host-moved argument (see the template): packs an index tensor with the argument's own
    packing, so the C++ host needs no layout arithmetic of its own (1-byte elements: each byte of the index packed
    on its own, the same slots)."""
    dtype = _element_dtype(arg)
    if arg.reads:
        count = int(np.prod(arg.tensor_shape))
        if count >= _EXACT_F32:
            raise StreamTensorError(f"argument {arg.arg} has {count} elements: too many for the host's slot map")
        index = (np.arange(count) + 1).reshape(arg.tensor_shape)
        return _join_planes([np.frombuffer(arg.pack_tensor(plane), dtype=dtype)
                             for plane in _byte_planes(index, dtype)])
    slots = arg.layout.total_bytes // dtype.itemsize
    if slots >= _EXACT_F32:
        raise StreamTensorError(f"argument {arg.arg} has {slots} slots: too many for the host's slot map")
    index = np.arange(slots) + 1
    return _join_planes([arg.unpack_tensor(plane.tobytes()).reshape(-1) for plane in _byte_planes(index, dtype)])


def _cpp_list(values: list[int]) -> str:
    return "{" + ", ".join(str(v) for v in values) + "}"


def chain_key(producer: str, consumer: str) -> str:
    """How the run model names a handoff: kernel ``consumer`` reads kernel ``producer``'s output."""
    return f"{producer}->{consumer}"


def _cpp_strings(values: list[str]) -> str:
    return "{" + ", ".join(f'"{v}"' for v in values) + "}"


def _cpp_names(per_layer: list[list[str]]) -> str:
    return "{" + ", ".join(_cpp_strings(v) for v in per_layer) + "}"


def _cpp_pairs(per_layer: list[list[list[str]]]) -> str:
    return "{" + ", ".join("{" + ", ".join(f'{{"{a}", "{b}"}}' for a, b in pairs) + "}" for pairs in per_layer) + "}"


def _in_place(names: list[str], chained: Mapping[str, list[str]]) -> list[list[str]]:
    return [[]] + [chained.get(chain_key(p, c), []) for p, c in pairwise(names)]


def _queued(names: list[str], queued: list[str]) -> str:
    return "{" + ", ".join(["false"] + [str(chain_key(p, c) in queued).lower() for p, c in pairwise(names)]) + "}"


def _tables(manifest: Mapping[str, Any], interfaces: Mapping[str, KernelInterface]) -> str:
    names = list(manifest["kernels"])
    kernels = []
    for name in names:
        k = manifest["kernels"][name]
        arguments = interfaces[name].plan.arguments
        position = {a.arg: i for i, a in enumerate(arguments)}
        args = ",\n".join(
            f'      {{"{a.arg}", "{a.name}", "{a.role}", {str(a.reads).lower()}, {a.layout.total_bytes}, '
            f"{_host_element_bytes(a)}, {-1 if a.shares is None else position[a.shares]}}}" for a in arguments)
        outputs = ", ".join(f'{{"{o}", "{arg}"}}' for o, arg in k["outputs"].items())
        kernels.append(f'  {{"{name}", "{k["dir"]}", "{k["kernel"]}",\n    {{\n{args}\n    }},\n    {{{outputs}}}}}')
    index = {n: i for i, n in enumerate(names)}
    m = manifest
    chained: dict[str, list[str]] = m["run_model"].get("chained", {})
    to_head = chained.get(chain_key(m["decode"][-1], m["head"]), [])
    queued: list[str] = m["run_model"].get("queued", [])
    rows = ", ".join(f'{{"{arg}", {_cpp_list([-1 if o is None else o for o in offsets])}}}'
                     for arg, offsets in m["run_model"].get("head_row_offsets", {}).items())
    in_place: dict[str, list[list[str]]] = m["run_model"].get("cache_in_place", {})
    placed = [in_place.get(chain_key(p, d), []) for p, d in zip(m["prefill"], m["decode"], strict=True)]
    copied = [[pair for pair in m["kv_caches"] if pair not in layer] for layer in placed]
    return f"""// Generated by {GENERATOR}: the build's geometry and kernels ({m['model']}).
constexpr int kLayers = {m['num_layers']};
constexpr int kHidden = {m['hidden_size']};
constexpr int kVocab = {m['vocab_size']};
constexpr int kPromptLen = {m['prompt_len']};
constexpr int kMaxLen = {m['max_len']};
constexpr int kMaxNewTokens = {m['max_new_tokens']};
constexpr int kPositionRows = {m['embedding']['position_rows']};
constexpr int kKvHeads = {m['num_kv_heads']};
const std::vector<int> kEos = {_cpp_list(m['eos_token_ids'])};
// Per layer: prefill output -> the decode kernel's resident cache it fills, written by the prefill kernel in place
// (its output buffer a sub-buffer at offset 0 of the cache buffer: llm.perf.cache_handoffs) or copied by the host.
const std::vector<std::vector<std::pair<std::string, std::string>>> kCachesInPlace = {_cpp_pairs(placed)};
const std::vector<std::vector<std::pair<std::string, std::string>>> kCachesCopied = {_cpp_pairs(copied)};

const KernelDesc kKernels[] = {{
{(',' + chr(10)).join(kernels)}
}};
constexpr std::size_t kNumKernels = {len(names)};
const std::vector<int> kKernelLayers[] = {{{', '.join(_cpp_list(m['kernels'][n]['layers']) for n in names)}}};
const int kPrefill[] = {_cpp_list([index[n] for n in m['prefill']])};
const int kDecode[] = {_cpp_list([index[n] for n in m['decode']])};
constexpr int kHead = {index[m['head']]};
// Per layer: its input buffers that are the previous layer's output buffer, read in place (llm.perf.chain_handoffs;
// layer 0: none, the host writes its input); the head's on the last decode layer's output; per input buffer of the
// head, per prefill row, its byte offset in the last prefill layer's output buffer (-1: the host writes it).
const std::vector<std::vector<std::string>> kPrefillInPlace = {_cpp_names(_in_place(m['prefill'], chained))};
const std::vector<std::vector<std::string>> kDecodeInPlace = {_cpp_names(_in_place(m['decode'], chained))};
// Per layer: whether its run is queued behind the previous layer's (llm.perf.queued_handoffs).
const std::vector<bool> kPrefillQueued = {_queued(m['prefill'], queued)};
const std::vector<bool> kDecodeQueued = {_queued(m['decode'], queued)};
const std::vector<std::string> kDecodeToHeadInPlace = {_cpp_strings(to_head)};
const std::map<std::string, std::vector<long>> kHeadRowOffsets = {{{rows}}};"""


def _makefile(manifest: Mapping[str, Any], interfaces: Mapping[str, KernelInterface], platform: str,
              clock_mhz: int) -> str:
    xos = " ".join(f"../{k['dir']}/build/{k['kernel']}.xo" for k in manifest["kernels"].values())
    configs = " ".join(f"--config ../{k['dir']}/link.cfg" for k in manifest["kernels"].values())
    return f"""# Generated by {GENERATOR}: host program of {manifest['model']}, one xclbin of all its kernels.
# `make` builds llm_host against XRT (XILINX_XRT: /opt/xilinx/xrt after its setup.sh, or a tree whose include/
# holds the xrt headers and lib/ libxrt_coreutil); `make link` (Vitis) links every kernel's .xo (each project's
# `make xo`) into llm.xclbin with their link.cfg connectivity. Run: ./llm_host llm.$(TARGET).xclbin .. 1,2,3 16
XILINX_XRT ?= /opt/xilinx/xrt
PLATFORM := {platform}
CLOCK_MHZ := {clock_mhz}
TARGET ?= {LINK_TARGET}

.PHONY: all link clean
all: llm_host

llm_host: llm_host.cpp
\t$(CXX) -std=c++17 -O2 -Wall -Wextra -I$(XILINX_XRT)/include $< -o $@ -L$(XILINX_XRT)/lib -lxrt_coreutil -pthread

link: llm.$(TARGET).xclbin

llm.$(TARGET).xclbin: {xos}
\tv++ -l --platform $(PLATFORM) {configs} -t $(TARGET) --kernel_frequency $(CLOCK_MHZ) -o $@ $^

clean:
\trm -f llm_host
"""


def host_moved(arg: MemoryArgument) -> bool:
    """Whether the host packs or unpacks this argument's buffer (so it needs a slot map): not resident weights,
    not a scalar register, not an argument addressing another's buffer (the cache's in-place row write)."""
    return arg.role not in _RESIDENT and not arg.scalar and arg.shares is None


def write_llm_host(host_dir: Path, manifest: Mapping[str, Any], interfaces: Mapping[str, KernelInterface],
                   platform: str, clock_mhz: int) -> None:
    """``llm_host.cpp``, ``Makefile`` and ``maps/<kernel>/<arg>.map`` (every buffer the host packs or unpacks)."""
    for name, interface in interfaces.items():
        folder = host_dir / MAPS_DIR / name
        folder.mkdir(parents=True, exist_ok=True)
        for arg in interface.plan.arguments:
            if host_moved(arg):
                slot_map(arg).astype("<i4").tofile(folder / f"{arg.arg}.map")
    source = template("llm_host.cpp").replace("/*@TABLES@*/", _tables(manifest, interfaces))
    (host_dir / "llm_host.cpp").write_text(f"// Generated by {GENERATOR}: host program of {manifest['model']}.\n"
                                           + source)
    (host_dir / "Makefile").write_text(_makefile(manifest, interfaces, platform, clock_mhz))
