"""Metrics and feedback over HTTP: thin routes over ``modelbay.metrics.service``."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Query, Request

from ..auth.principal import Principal
from ..metrics import service
from ..registry import Registry
from .deps import manage_registry, registry_for, require

router = APIRouter(prefix="/registry", tags=["metrics"])


@router.get("/metrics", response_model=service.Overview)
def metrics_overview(
    request: Request,
    window: str = Query("1h", description="e.g. 15m, 1h, 24h"),
    reg: Registry = Depends(manage_registry),
) -> service.Overview:
    """Every model's traffic, error rate and p95 latency over the window."""
    return service.overview(request.app.state.metrics, reg, window)


@router.get("/metrics/models/{name}", response_model=service.ModelMetrics)
def model_metrics(
    name: str,
    request: Request,
    window: str = Query("1h"),
    step: str | None = Query(None, description="e.g. 1m, 5m; default keeps ~60 points"),
    ref: str | None = Query(None, description="one version (number or alias) instead of all"),
    by_version: bool = Query(False, description="also return each version's series"),
    reg: Registry = Depends(manage_registry),
) -> service.ModelMetrics:
    """Time series of request rate, errors by type, p50/p95/p99 latency, phases, cold starts, accuracy."""
    return service.model_metrics(request.app.state.metrics, reg, name, window, step, ref, by_version)


@router.post("/models/{name}/feedback", response_model=service.FeedbackResult, status_code=202)
def post_feedback(
    name: str, body: service.FeedbackRequest, request: Request, principal: Principal = Depends(require("invoke"))
) -> service.FeedbackResult:
    """Ground truth for earlier predictions; shows up as accuracy per version."""
    return service.record_feedback(request.app.state.metrics, registry_for(principal, request), name, body, time.time())
