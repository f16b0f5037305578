"""A loaded, servable version: its session, its pre/postprocessing, and how to run it."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelbayError, TooLarge
from ..manifest import Manifest
from .errors import Busy, InferenceFailed, InferenceTimeout, OutOfMemory, run_failure
from .runs import Runs

log = logging.getLogger("modelbay.engine")
# onnxruntime's arena refusing an allocation: "requested buffer of size N" / "requested bytes of N"
_ALLOCATION = re.compile(r"requested (?:buffer of size|bytes of) (\d+)")
_ORT_ERRORS = "onnxruntime.capi.onnxruntime_pybind11_state"  # the module of every error a run raises


@dataclass
class LoadedModel:
    manifest: Manifest
    session: Any  # onnxruntime.InferenceSession
    files: dict[str, Path] = field(default_factory=dict)
    preprocessor: Any = None  # modelbay.preprocess.Preprocessor | None
    postprocessor: Any = None  # modelbay.postprocess.Postprocessor
    size: int = 0
    fetch_ms: float = 0.0  # download + verify, 0 when the disk cache had it
    load_ms: float = 0.0  # session build + pre/postprocessor setup
    runs: Runs = field(default_factory=lambda: Runs(None))  # the engine's: deadlines and shutdown
    memory_limit: int | None = None  # the shared arena's cap, when there is one
    max_output_bytes: int | None = None
    tuning: dict[str, Any] | None = None  # the measured session settings it runs with (engine.autotune)
    extras: dict[str, Any] = field(default_factory=dict)  # what other services build once per load

    def __post_init__(self) -> None:
        self.output_names = [o.name for o in self.manifest.outputs]
        # a first dimension fixed at 1 means the graph takes one instance per run
        self._single = any(s.shape and s.shape[0] == 1 for s in self.manifest.inputs)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> int:
        return self.manifest.version

    def run(self, feeds: Mapping[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """One session.run for the whole batch (one per instance if the graph's batch is fixed at 1).

        Within the engine's time limit, and refused when the outputs exceed ``max_output_bytes``.
        """
        names = outputs or self.output_names
        n = self._instances(feeds) if self._single else 1
        run, options = self.runs.start()
        try:
            if n <= 1 or not self._single:
                results = dict(zip(names, self.session.run(names, feeds, options)))
            else:
                parts = [
                    self.session.run(names, {k: v[i : i + 1] for k, v in feeds.items()}, options) for i in range(n)
                ]
                results = {name: np.concatenate([p[j] for p in parts]) for j, name in enumerate(names)}
        except Exception as e:
            if type(e).__module__ != _ORT_ERRORS:
                raise  # not onnxruntime refusing a run: a bug of ours, a 500 with its traceback in the log
            raise self._run_error(e, options.terminate) from None
        finally:
            self.runs.finish(run)
        self._check_output_size(results)
        return results

    @staticmethod
    def _instances(feeds: Mapping[str, np.ndarray]) -> int:
        """Rows to run one by one: the common first axis of every input (1 if any is a scalar or they differ)."""
        firsts = {v.shape[0] if v.ndim else None for v in feeds.values()}
        n = firsts.pop() if len(firsts) == 1 else None
        return n if n is not None else 1

    def _check_output_size(self, results: Mapping[str, np.ndarray]) -> None:
        if self.max_output_bytes is None:
            return
        size = sum(a.nbytes if a.dtype.kind != "O" else sum(len(str(v)) for v in a.flat) for a in results.values())
        if size > self.max_output_bytes:
            raise TooLarge(
                f"the outputs of {self.name} are {size} bytes; the limit is {self.max_output_bytes} per request",
                size=size,
                limit=self.max_output_bytes,
            )

    def _run_error(self, e: Exception, terminated: bool) -> ModelbayError:
        # the whole message, with onnxruntime's source paths, is for the log only
        log.warning("%s v%d: session.run failed: %s: %s", self.name, self.version, type(e).__name__, e)
        if terminated:
            if self.runs.stopping:
                return Busy("the server is shutting down", status=503, retry_after=5)
            limit_ms = (self.runs.timeout_s or 0) * 1000
            return InferenceTimeout(f"inference took longer than {limit_ms:.0f} ms", limit_ms=limit_ms)
        op, reason = run_failure(e)
        allocation = _ALLOCATION.search(str(e))
        if allocation and self.memory_limit:
            wanted = int(allocation.group(1))
            if wanted > self.memory_limit:
                return OutOfMemory(
                    f"{self.name} needs more than {self.memory_limit} bytes for these inputs "
                    f"(its {op or 'a'} node asked for {wanted})",
                    limit=self.memory_limit,
                    requested=wanted,
                )
            return Busy("inference memory is in use by other requests; try again", status=503, retry_after=1)
        where = f"its {op} node" if op else "it"
        return InferenceFailed(
            f"{self.name} version {self.version} failed on these inputs ({where}): {reason}",
            model=self.name,
            version=self.version,
            **({"operator": op} if op else {}),
        )
