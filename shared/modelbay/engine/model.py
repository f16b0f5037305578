"""A loaded, servable version: its session, its pre/postprocessing, and how to run it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadRequest, ModelbayError
from ..manifest import Manifest
from .errors import InferenceFailed, InferenceTimeout, library_message

log = logging.getLogger("modelbay.engine")


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
    timeout_s: float | None = None  # per session.run; None: no limit beyond the function's own
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
        """One session.run for the whole batch (one per instance if the graph's batch is fixed at 1)."""
        names = outputs or self.output_names
        n = next(iter(feeds.values())).shape[0] if feeds and self._single else 1
        options, timer = None, None
        timeout_s = self.timeout_s
        if timeout_s:
            import onnxruntime as ort

            # onnxruntime checks the terminate flag between kernels: a run stops within one op
            options = ort.RunOptions()
            timer = threading.Timer(timeout_s, setattr, (options, "terminate", True))
            timer.start()
        try:
            if n <= 1 or not self._single:
                results = self.session.run(names, feeds, options)
                return dict(zip(names, results))
            parts = [self.session.run(names, {k: v[i : i + 1] for k, v in feeds.items()}, options) for i in range(n)]
            return {name: np.concatenate([p[j] for p in parts]) for j, name in enumerate(names)}
        except Exception as e:
            if timeout_s and options is not None and options.terminate:
                raise InferenceTimeout(
                    f"inference took longer than {timeout_s * 1000:.0f} ms", limit_ms=timeout_s * 1000
                ) from None
            raise self._ort_error(e) from None
        finally:
            if timer is not None:
                timer.cancel()

    def _ort_error(self, e: Exception) -> ModelbayError:
        # InvalidArgument is onnxruntime refusing the inputs themselves: the client may fix them
        if type(e).__name__ == "InvalidArgument":
            return BadRequest(f"onnxruntime rejected the inputs: {library_message(e, 400)}")
        # anything else is ours to fix: the details go to the log, the client learns what failed
        log.error("%s v%d: session.run failed: %s: %s", self.name, self.version, type(e).__name__, e)
        return InferenceFailed(
            f"{self.name} version {self.version}: onnxruntime failed while running it",
            model=self.name,
            version=self.version,
        )
