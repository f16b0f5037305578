"""onnxruntime sessions built with deliberate settings, not the library defaults.

* intra-op threads: the CPUs this process may really use (``cpus.usable_cpus``),
  not the host's core count; inter-op 1 with sequential execution, because
  the graphs served here are chains where parallel branches buy nothing.
* graph optimisation: ``ORT_ENABLE_BASIC`` by default (constant folding,
  redundant-node elimination), chosen on measurements (``make bench``): on
  the dynamically quantized all-MiniLM-L6-v2 the extended fusions (attention,
  GELU, layer norm, written for float graphs) run ~20% *slower* at batch 8-32
  than basic, and equal at batch 1; on a float MLP the levels were within
  the noise of a shared machine of each other. Basic keeps the cheap,
  always-safe rewrites (fewer nodes, smaller graphs) without the fusions.
  ``MODELBAY_ORT_OPT`` (disable/basic/extended/all) overrides it per deployment.
* int8 exact on every CPU, as the gate measured it (``cpu_features.exact_int8``):
  on x86-64 without VNNI that needs at least the extended level, which then wins.
* thread spinning off by default: on Lambda's fractional vCPUs, spinning
  workers burn the quota the request thread needs (``MODELBAY_ORT_SPIN=1``
  turns it on for dedicated hosts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..cpu_features import exact_int8
from .cpus import usable_cpus

if TYPE_CHECKING:
    import onnxruntime as ort

    from ..settings import Settings

OPT_LEVELS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class SessionConfig:
    intra_op_threads: int = field(default_factory=usable_cpus)
    optimization: str = "basic"
    spinning: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionConfig:
        return cls(
            intra_op_threads=settings.ort_threads or usable_cpus(),
            optimization=settings.ort_opt,
            spinning=settings.ort_spin,
        )

    def __post_init__(self) -> None:
        if self.optimization not in OPT_LEVELS:
            raise ValueError(f"optimization must be one of {OPT_LEVELS}, not {self.optimization!r}")
        if self.intra_op_threads < 1:
            raise ValueError("intra-op threads must be >= 1")


def session_options(config: SessionConfig) -> ort.SessionOptions:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = config.intra_op_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[config.optimization]
    spin = "1" if config.spinning else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
    # what the gate measured: int8 products exact on every CPU (may raise the level, see exact_int8)
    exact_int8(opts)
    return opts


def build_session(path: Path, config: SessionConfig) -> ort.InferenceSession:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), session_options(config), providers=["CPUExecutionProvider"])
