"""What this CPU can compute: architecture, vendor, SIMD features, and whether int8 U8S8 saturates.

onnxruntime's int8 matrix kernels (MLAS, ``core/mlas/lib/platform.cpp``) are picked
by CPUID at start-up. On x86-64 the U8S8 kernels for AVX2 and AVX-512 *without* a
VNNI or AMX instruction multiply with ``vpmaddubsw``, which adds two u8*s8 products
into an int16 and saturates: an int8 model then computes something else than on a
VNNI x86 (``vpdpbusd`` sums into int32) or on arm64 (``sdot``/``udot``, widening
multiplies), which are exact. Two ways out are exact on every CPU:

* 7-bit weights (onnxruntime's ``reduce_range``): 2 * 255 * 64 fits an int16;
* the session option ``session.x64quantprecision=1``: on the CPUs where U8S8 and
  U8U8 kernels differ, onnxruntime rewrites int8 weights outside [-64, 64] as uint8
  (``Avx2WeightS8ToU8Transformer``) and runs the exact U8U8 kernels; elsewhere it
  does nothing.

Features come from ``/proc/cpuinfo`` (Linux, also Lambda); elsewhere only the
architecture is known and the features are reported as absent.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

# onnxruntime session config entries under which int8 matrix products are exact on every CPU
EXACT_INT8_SESSION_CONFIG = {"session.x64quantprecision": "1"}

_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class CpuFeatures:
    arch: str  # "x86_64", "arm64" or what platform.machine() says
    vendor: str
    model: str
    avx2: bool = False
    avx512: bool = False  # AVX-512 F + BW + DQ + VL, what MLAS calls "AVX512 core"
    avx512_vnni: bool = False
    avx_vnni: bool = False
    amx_int8: bool = False
    dotprod: bool = False  # arm64 sdot/udot

    @property
    def vnni(self) -> bool:
        return (self.avx512 and self.avx512_vnni) or self.avx_vnni

    @property
    def u8s8_saturates(self) -> bool:
        """onnxruntime's U8S8 int8 kernels may saturate here (x86-64 without VNNI or AMX)."""
        return self.arch == "x86_64" and not (self.vnni or self.amx_int8)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "vnni": self.vnni, "u8s8_saturates": self.u8s8_saturates}


def parse_cpuinfo(text: str, machine: str) -> CpuFeatures:
    """Features from the text of ``/proc/cpuinfo`` (first processor) on a ``machine``."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # one processor is enough: Linux reports the same features for all
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    arch = _ARCH.get(machine.lower(), machine.lower())
    vendor = fields.get("vendor_id") or fields.get("cpu implementer") or ""
    model = fields.get("model name") or fields.get("cpu part") or ""
    return CpuFeatures(
        arch=arch,
        vendor=vendor,
        model=model,
        avx2="avx2" in flags,
        avx512={"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags,
        avx512_vnni="avx512_vnni" in flags,
        avx_vnni="avx_vnni" in flags,
        amx_int8={"amx_int8", "amx_tile"} <= flags,
        dotprod="asimddp" in flags,
    )


@functools.cache
def detect(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuFeatures:
    """This machine's features (cached: they do not change while a process runs)."""
    machine = platform.machine()
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    features = parse_cpuinfo(text, machine)
    if not text and features.arch == "arm64":
        # macOS on Apple silicon and Windows on arm: every arm64 server core has dot products
        features = CpuFeatures(arch="arm64", vendor="", model=platform.processor(), dotprod=True)
    return features


class _ConfigurableOptions(Protocol):
    graph_optimization_level: Any  # onnxruntime.GraphOptimizationLevel

    def add_session_config_entry(self, key: str, value: str) -> None: ...


def exact_int8(options: _ConfigurableOptions, cpu: CpuFeatures | None = None) -> None:
    """Make onnxruntime sessions built with ``options`` compute int8 products without saturation.

    onnxruntime applies ``session.x64quantprecision`` in a level-2 (extended) graph
    optimizer: below that level the entry does nothing, and a dynamically quantized
    MatMulInteger still saturates (measured under qemu's Haswell: off by 4.5 at
    ``basic``, exact at ``extended``). So on a CPU whose U8S8 kernels saturate
    (``cpu``, this machine by default) a lower level is raised to extended; elsewhere
    the level chosen for speed stays.
    """
    for key, value in EXACT_INT8_SESSION_CONFIG.items():
        options.add_session_config_entry(key, value)
    if (cpu or detect()).u8s8_saturates:
        import onnxruntime as ort

        extended = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        if int(options.graph_optimization_level) < int(extended):
            options.graph_optimization_level = extended
