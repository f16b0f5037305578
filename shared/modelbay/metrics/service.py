"""Metrics use cases shared by the HTTP routes, the CLI and the TUI: no transport here."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, Field, model_validator

from ..errors import BadRequest
from ..registry import Registry
from . import FeedbackEvent, MetricsBackend
from .series import ModelTotals, Series, clock, plan, settle_rates

MAX_VERSIONS_SIDE_BY_SIDE = 8
MAX_FEEDBACK_ITEMS = 1000


class ModelMetrics(BaseModel):
    model: str
    window: str
    start: float
    end: float
    step: int
    overall: Series = Field(description="all versions together, or the one version asked for")
    versions: dict[str, Series] = Field({}, description="per version, side by side (by_version=true)")


class Overview(BaseModel):
    window: str
    start: float
    end: float
    models: dict[str, ModelTotals]


def model_metrics(
    backend: MetricsBackend,
    reg: Registry,
    name: str,
    window: str = "1h",
    step: str | None = None,
    ref: str | None = None,
    by_version: bool = False,
    now: float | None = None,
) -> ModelMetrics:
    now = clock() if now is None else now
    start, end, step_s = plan(window, step, now)
    version = None
    if ref not in (None, ""):
        version = reg.resolve(name, ref).version  # 404 for an unknown model, version or alias
    elif not reg.version_numbers(name) and not backend.versions(reg.tenant, name, start, end):
        reg.resolve(name)  # a name never seen anywhere: 404 rather than an empty chart
    overall = settle_rates(backend.series(reg.tenant, name, version, start, end, step_s), now)
    per: dict[str, Series] = {}
    if by_version and version is None:
        seen = backend.versions(reg.tenant, name, start, end)[-MAX_VERSIONS_SIDE_BY_SIDE:]
        per = {str(v): settle_rates(backend.series(reg.tenant, name, v, start, end, step_s), now) for v in seen}
    return ModelMetrics(model=name, window=window, start=start, end=end, step=step_s, overall=overall, versions=per)


def overview(backend: MetricsBackend, reg: Registry, window: str = "1h", now: float | None = None) -> Overview:
    start, end, _ = plan(window, None, now)
    names = [m.name for m in reg.list_models()]
    return Overview(window=window, start=start, end=end, models=backend.overview(reg.tenant, names, start, end))


class FeedbackItem(BaseModel):
    """One earlier prediction's ground truth: ``correct``, or ``prediction`` with ``label``, and/or a ``score``."""

    prediction: Any = None
    label: Any = None
    correct: bool | None = None
    score: float | None = None
    id: str | None = Field(None, max_length=256, description="the caller's id for the prediction (not stored)")
    timestamp: float | None = Field(None, description="when the prediction was made (epoch s); default now")

    @model_validator(mode="after")
    def _verdict(self) -> FeedbackItem:
        if self.correct is None and self.label is not None:
            if self.prediction is None:
                raise ValueError("a label needs the prediction it judges")
            self.correct = _same(self.prediction, self.label)
        if self.correct is None and self.score is None:
            raise ValueError("give correct, prediction and label, or score")
        if self.score is not None and not math.isfinite(self.score):
            raise ValueError("score must be a finite number")
        return self


def _same(prediction: Any, label: Any) -> bool:
    # a classifier's top-1 answer may come back as {"label": "cat", "score": 0.9}
    if isinstance(prediction, dict) and "label" in prediction:
        prediction = prediction["label"]
    if isinstance(prediction, list) and prediction and isinstance(prediction[0], dict) and "label" in prediction[0]:
        prediction = prediction[0]["label"]
    return prediction == label or str(prediction) == str(label)


class FeedbackRequest(BaseModel):
    ref: str | None = Field(None, description="version number or alias; default: production, else latest")
    items: list[FeedbackItem] = Field(min_length=1, max_length=MAX_FEEDBACK_ITEMS)


class FeedbackResult(BaseModel):
    model: str
    version: int
    accepted: int
    correct: int
    labelled: int


def record_feedback(
    backend: MetricsBackend, reg: Registry, name: str, body: FeedbackRequest, now: float
) -> FeedbackResult:
    version = reg.resolve(name, body.ref).version
    correct = labelled = 0
    for item in body.items:
        ts = item.timestamp or now
        if not now - 14 * 86400 <= ts <= now + 300:
            raise BadRequest("feedback timestamp must be within the last 14 days", field="timestamp")
    for item in body.items:
        backend.record_feedback(
            FeedbackEvent(
                model=name,
                version=version,
                correct=item.correct,
                score=item.score,
                timestamp=item.timestamp or now,
                tenant=reg.tenant,
            )
        )
        if item.correct is not None:
            labelled += 1
            correct += int(item.correct)
    return FeedbackResult(model=name, version=version, accepted=len(body.items), correct=correct, labelled=labelled)
