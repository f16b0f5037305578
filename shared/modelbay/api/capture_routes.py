"""Payload capture over HTTP: a model's capture settings, and the export of what was captured."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Query, Request

from .. import capture
from ..metrics.series import parse_duration
from ..registry import Registry
from .deps import manage_registry

router = APIRouter(prefix="/registry/models/{name}/capture", tags=["capture"])
MAX_SINCE = 90 * 86400


@router.get("", response_model=capture.CaptureConfig, description="The model's capture settings (off by default).")
def get_config(name: str, request: Request, reg: Registry = Depends(manage_registry)) -> capture.CaptureConfig:
    reg.list_versions(name)  # 404 for an unknown model
    return capture.read_config(request.app.state.store, reg.tenant, name)


@router.put("", response_model=capture.CaptureConfig, description="Capture a sampled share of the model's requests.")
def set_config(
    name: str, body: capture.CaptureConfig, request: Request, reg: Registry = Depends(manage_registry)
) -> capture.CaptureConfig:
    reg.list_versions(name)
    return capture.write_config(request.app.state.store, reg.tenant, name, body)


@router.get("/records", response_model=capture.CaptureExport, description="What was captured, oldest first.")
def records(
    name: str,
    request: Request,
    since: str = Query("1h", max_length=16, description="how far back, e.g. 15m, 1h, 7d"),
    limit: int = Query(10_000, ge=1, le=capture.MAX_EXPORT_RECORDS),
    reg: Registry = Depends(manage_registry),
) -> capture.CaptureExport:
    span = parse_duration(since, "since")
    return capture.export(request.app.state.store, reg.tenant, name, time.time() - min(span, MAX_SINCE), limit)
