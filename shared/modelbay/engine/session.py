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
  Where tuning is on (``autotune``), the level, spinning and threads below are
  only the starting point: measured candidates replace them per model and CPU.
* int8 exact on every CPU, as the gate measured it (``cpu_features.exact_int8``):
  on x86-64 without VNNI that needs at least the extended level, which then wins.
* thread spinning off by default: on Lambda's fractional vCPUs, spinning
  workers burn the quota the request thread needs (``MODELBAY_ORT_SPIN=1``
  turns it on for dedicated hosts).
* isolation: a session is built from a private directory holding nothing but
  the model (a hard link to it), so no file of another version or tenant lies
  where onnxruntime resolves external data, whatever the validator missed.
  Measured on a 192 MiB model (``benchmarks/bench_security.py``): the same load
  time and peak RSS as the cache path (+391 MiB); building from bytes instead
  peaked at +583 MiB, and resolves external data against the working directory.
* memory: with ``memory_limit_bytes`` every session allocates its intermediate
  tensors from one process-wide arena capped at that size (weights are not
  counted), and each run shrinks it when it ends (``runs.SHRINK``): a request
  cannot make the process take more, nor keep what it took. Measured with
  ConstantOfShape(n) (``benchmarks/bench_security.py``): onnxruntime's default
  arena kept 264 MiB after a 256 MiB run and 1.3 GiB after a 1 GiB one; with
  shrinkage it kept nothing; the cap also refuses the 1 GiB request at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..cpu_features import exact_int8
from .cpus import usable_cpus

if TYPE_CHECKING:
    import onnxruntime as ort

    from ..settings import Settings

OPT_LEVELS = ("disable", "basic", "extended", "all")
log = logging.getLogger("modelbay.engine")


@dataclass(frozen=True)
class SessionConfig:
    intra_op_threads: int = field(default_factory=usable_cpus)
    optimization: str = "basic"
    spinning: bool = False
    memory_limit_bytes: int | None = None  # the shared arena's cap; None: onnxruntime's own arena per session

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionConfig:
        return cls(
            intra_op_threads=settings.ort_threads or usable_cpus(),
            optimization=settings.ort_opt or "basic",
            spinning=bool(settings.ort_spin),
            memory_limit_bytes=settings.inference_memory_bytes,
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
    if config.memory_limit_bytes:
        shared_arena(config.memory_limit_bytes)
        opts.add_session_config_entry("session.use_env_allocators", "1")
    # what the gate measured: int8 products exact on every CPU (may raise the level, see exact_int8)
    exact_int8(opts)
    return opts


_arena_lock = threading.Lock()
_arena_limit: int | None = None


def shared_arena(limit: int) -> int:
    """Register the process-wide CPU arena capped at ``limit`` bytes, once; returns the cap in force.

    onnxruntime keeps one such allocator per process and cannot replace it:
    a later, different limit is logged and the first one stays.
    """
    global _arena_limit
    import onnxruntime as ort

    with _arena_lock:
        if _arena_limit is None:
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            # kSameAsRequested (1): grow by what a run needs, not by doubling past the cap
            ort.create_and_register_allocator(info, ort.OrtArenaCfg({"max_mem": limit, "arena_extend_strategy": 1}))
            _arena_limit = limit
        elif limit != _arena_limit:
            log.warning(
                "inference memory limit stays %d bytes (set first in this process), not %d", _arena_limit, limit
            )
        return _arena_limit


def arena_limit() -> int | None:
    """The cap of the shared arena in force in this process (None before any session used it)."""
    return _arena_limit


@contextlib.contextmanager
def alone(path: Path, scratch: Path | None = None) -> Iterator[Path]:
    """``path`` as the only file of a fresh private directory under ``scratch`` (default: the temp dir).

    A hard link when ``scratch`` is on the same file system (no copy, no extra
    memory), else a copy. The directory is removed afterwards: a built session
    holds its weights in memory and never reads the file again.
    """
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix="session-", dir=scratch))
    target = private / "model.onnx"
    try:
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
        yield target
    finally:
        shutil.rmtree(private, ignore_errors=True)


def build_session(path: Path, config: SessionConfig, scratch: Path | None = None) -> ort.InferenceSession:
    """A session of the model at ``path``, built where nothing else lies beside it (see ``alone``)."""
    import onnxruntime as ort

    with alone(path, scratch) as private:
        return ort.InferenceSession(str(private), session_options(config), providers=["CPUExecutionProvider"])
