"""Drift over HTTP: a version's reference, and its captured inputs' drift against it (``modelbay.drift``)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from .. import capture, drift
from ..errors import BadRequest
from ..metrics.series import parse_duration
from ..registry import Registry
from .deps import manage_registry

router = APIRouter(prefix="/registry", tags=["drift"])
MAX_WINDOW = 30 * 86400


class ReferenceRequest(BaseModel):
    rows: list[list[float]] | None = Field(None, description="evaluation rows, one list of numbers each")
    from_capture: str | None = Field(None, max_length=16, description="or: the inputs captured over this window")


def _captured(request: Request, reg: Registry, name: str, version: int, window: str) -> np.ndarray:
    span = min(parse_duration(window, "window"), MAX_WINDOW)
    records = capture.export(request.app.state.store, reg.tenant, name, time.time() - span).records
    inputs: list[Any] = [r["input"] for r in records if r.get("version") == version and "input" in r]
    return drift.matrix(inputs)


@router.put("/models/{name}/versions/{version}/drift-reference", response_model=drift.DriftReference)
def set_reference(
    name: str, version: int, body: ReferenceRequest, request: Request, reg: Registry = Depends(manage_registry)
) -> drift.DriftReference:
    reg.get_version(name, version)
    if (body.rows is None) == (body.from_capture is None):
        raise BadRequest("give either 'rows' or 'from_capture'")
    if body.rows is not None:
        x = drift.matrix(body.rows)
    else:
        x = _captured(request, reg, name, version, body.from_capture or "")
    return drift.save_reference(request.app.state.store, reg.tenant, drift.build_reference(name, version, x))


@router.get("/metrics/models/{name}/drift", response_model=drift.DriftReport)
def model_drift(
    name: str,
    request: Request,
    window: str = Query("1h", max_length=16),
    version: int | None = Query(None, ge=1, description="default: the production alias's version, else the latest"),
    reg: Registry = Depends(manage_registry),
) -> drift.DriftReport:
    v = version if version is not None else reg.resolve(name).version
    ref = drift.load_reference(request.app.state.store, reg.tenant, name, v)
    return drift.compare(ref, _captured(request, reg, name, v, window), window)
