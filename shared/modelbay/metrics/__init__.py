"""Inference metrics: one event per request, handed to a sink that never blocks.

The inference path calls ``sink.record(event)``; sinks (in-process store for the
local server, CloudWatch EMF on Lambda, batched PutMetricData for LocalStack)
live in this package and are chosen by ``sink_from_settings``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

ErrorType = Literal["bad_request", "not_found", "load_failure", "internal", "timeout"]


@dataclass
class InferenceEvent:
    model: str
    version: int | None  # None when the request failed before a version was resolved
    instances: int = 0
    error: ErrorType | None = None
    # milliseconds; total covers the whole request
    total_ms: float = 0.0
    fetch_ms: float = 0.0
    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0
    cold_start: bool = False  # this request loaded the model
    load_ms: float | None = None
    timestamp: float = field(default=0.0)  # epoch seconds; 0 -> the sink stamps it


class MetricsSink(Protocol):
    def record(self, event: InferenceEvent) -> None: ...


class NullSink:
    def record(self, event: InferenceEvent) -> None:
        return None
