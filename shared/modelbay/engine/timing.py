"""Per-request timings: the Server-Timing header and the metrics event come from one place."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..metrics import ErrorType, InferenceEvent


@dataclass
class Timings:
    started: float = 0.0  # perf_counter at request start
    resolve_ms: float = 0.0
    fetch_ms: float = 0.0  # download to the disk cache (cold only)
    load_ms: float | None = None  # session build (cold only)
    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0
    cold_start: bool = False
    version: int | None = None  # set once the reference resolved, so failures can name it
    route: str | None = None  # "stable" or "canary" when the alias is split

    @classmethod
    def start(cls) -> Timings:
        return cls(started=time.perf_counter())

    def total_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def server_timing(self) -> str:
        parts = [f"resolve;dur={self.resolve_ms:.3f}", f"fetch;dur={self.fetch_ms:.3f}"]
        if self.load_ms is not None:
            parts.append(f"load;dur={self.load_ms:.3f}")
        parts += [
            f"preprocess;dur={self.preprocess_ms:.3f}",
            f"inference;dur={self.inference_ms:.3f}",
            f"postprocess;dur={self.postprocess_ms:.3f}",
            f"total;dur={self.total_ms():.3f}",
        ]
        return ", ".join(parts)

    def event(self, model: str, version: int | None, instances: int, error: ErrorType | None) -> InferenceEvent:
        return InferenceEvent(
            model=model,
            version=version,
            instances=instances,
            error=error,
            total_ms=self.total_ms(),
            # resolving is reading the store too: one number for "getting the model"
            fetch_ms=self.resolve_ms + self.fetch_ms,
            preprocess_ms=self.preprocess_ms,
            inference_ms=self.inference_ms,
            postprocess_ms=self.postprocess_ms,
            cold_start=self.cold_start,
            load_ms=self.load_ms,
            timestamp=time.time(),
        )
