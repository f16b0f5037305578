"""Inference metrics: one event per request, handed to a sink that never blocks.

The inference path calls ``sink.record(event)``; sinks (in-process store for the
local server, CloudWatch EMF on Lambda, batched PutMetricData for LocalStack)
live in this package and are chosen by ``sink_from_settings``. Every sink also
reads its own data back (``series``/``overview``/``versions``), so the
management routes do not care which back end is configured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from ..settings import Settings
    from .series import ModelTotals, Series

# inference_failed: the model's run failed on inputs that passed validation (a 422 to the caller, but the
# version's fault when another version answers the same inputs: canary guard rails count it)
ErrorType = Literal["bad_request", "not_found", "load_failure", "inference_failed", "internal", "timeout"]
ERROR_TYPES: tuple[str, ...] = ("bad_request", "not_found", "load_failure", "inference_failed", "internal", "timeout")
PHASES: tuple[str, ...] = ("fetch", "preprocess", "inference", "postprocess")


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
    tenant: str | None = None  # None -> the server's default tenant
    # text generation only: prompt and completion tokens, time to the first token
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: float | None = None


@dataclass
class FeedbackEvent:
    """Ground truth for one earlier prediction: a correct/incorrect verdict, a score, or both."""

    model: str
    version: int
    correct: bool | None = None
    score: float | None = None
    timestamp: float = 0.0
    tenant: str | None = None


class MetricsSink(Protocol):
    def record(self, event: InferenceEvent) -> None: ...


class MetricsBackend(MetricsSink, Protocol):
    """What the management API needs: record, and read back aggregated series."""

    def record_feedback(self, event: FeedbackEvent) -> None: ...

    def series(self, tenant: str, model: str, version: int | None, start: float, end: float, step: int) -> Series: ...

    def versions(self, tenant: str, model: str, start: float, end: float) -> list[int]: ...

    def overview(self, tenant: str, models: list[str], start: float, end: float) -> dict[str, ModelTotals]: ...

    def flush(self) -> None: ...


class NullSink:
    """Metrics switched off: records nothing, reads back empty series."""

    def record(self, event: InferenceEvent) -> None:
        return None

    def record_feedback(self, event: FeedbackEvent) -> None:
        return None

    def series(self, tenant, model, version, start, end, step):
        from .series import empty_series

        return empty_series(model, version, start, end, step)

    def versions(self, tenant, model, start, end):
        return []

    def overview(self, tenant, models, start, end):
        from .series import ModelTotals

        return {m: ModelTotals() for m in models}

    def flush(self) -> None:
        return None


def sink_from_settings(settings: Settings | None = None) -> MetricsBackend:
    """``MODELBAY_METRICS`` = memory | emf | cloudwatch | off.

    Default: ``emf`` on Lambda (the log line is the metric: no network call), else
    ``memory`` (the in-process store of the local server). ``cloudwatch`` batches
    PutMetricData calls for places that do not ingest EMF, such as LocalStack.
    """
    if settings is None:
        from ..settings import Settings

        settings = Settings.from_env()
    mode = settings.metrics_mode
    tenant = settings.default_tenant
    namespace = settings.metrics_namespace
    if mode == "memory":
        from .memory import MemoryMetrics

        retention = settings.metrics_retention
        return MemoryMetrics(retention_s=retention, default_tenant=tenant)
    if mode == "emf":
        from .cloudwatch import EmfSink

        return EmfSink(namespace=namespace, default_tenant=tenant)
    if mode == "cloudwatch":
        from .cloudwatch import PutMetricDataSink

        interval = settings.metrics_flush_seconds
        return PutMetricDataSink(namespace=namespace, default_tenant=tenant, interval_s=interval)
    if mode == "off":
        return NullSink()
    from ..errors import BadRequest

    raise BadRequest(f"MODELBAY_METRICS={mode!r}: expected memory, emf, cloudwatch or off")
