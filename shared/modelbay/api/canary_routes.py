"""Canaries over HTTP: thin routes over the registry's canary changes and ``modelbay.guard``."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request

from .. import guard
from ..auth.principal import Principal
from ..errors import BadRequest
from ..registry import Registry
from ..schemas import AliasState, CanaryChange, CanaryStart, GuardVerdict
from .deps import get_principal, manage_registry
from .registry_routes import IDEMPOTENCY_KEY

router = APIRouter(prefix="/registry/models/{name}/aliases/{alias}/canary", tags=["canaries"])


@router.get("", response_model=GuardVerdict, description="The canary's split, figures and guard-rail verdict.")
def status(name: str, alias: str, request: Request, reg: Registry = Depends(manage_registry)) -> GuardVerdict:
    return guard.evaluate(request.app.state.metrics, reg, name, alias)


@router.post("", response_model=AliasState, description="Start a canary: a share of the alias's traffic.")
def start(
    name: str,
    alias: str,
    body: CanaryStart,
    principal: Principal = Depends(get_principal),
    reg: Registry = Depends(manage_registry),
    change_id: str | None = IDEMPOTENCY_KEY,
) -> AliasState:
    expected = {"expected": body.expected_version} if "expected_version" in body.model_fields_set else {}
    return reg.start_canary(
        name,
        alias,
        body.version,
        body.percent,
        guard=body.guard,
        steps=body.steps,
        actor=principal.actor,
        change_id=change_id,
        **expected,  # type: ignore[arg-type]
    )


@router.post("/ramp", response_model=AliasState, description="Change the canary's share (100 promotes).")
def ramp(
    name: str,
    alias: str,
    body: CanaryChange,
    principal: Principal = Depends(get_principal),
    reg: Registry = Depends(manage_registry),
    change_id: str | None = IDEMPOTENCY_KEY,
) -> AliasState:
    if body.percent is None:
        raise BadRequest("a ramp needs 'percent'", field="percent")
    return reg.ramp_canary(
        name,
        alias,
        body.percent,
        expected_canary=body.expected_canary,
        actor=principal.actor,
        change_id=change_id,
        reason=body.reason,
    )


@router.post(
    "/check",
    response_model=GuardVerdict,
    description="Judge the guard rails now and act on the verdict (abort, ramp or promote), as the scheduled "
    "check does.",
)
def check(name: str, alias: str, request: Request, reg: Registry = Depends(manage_registry)) -> GuardVerdict:
    return guard.enforce(request.app.state.metrics, reg, name, alias)


# after /check and /ramp: a path parameter would take their names
@router.post(
    "/{action}",
    response_model=AliasState,
    description="promote: all traffic to the canary; abort: all traffic back to the stable version.",
)
def finish(
    name: str,
    alias: str,
    action: Literal["promote", "abort"],
    body: CanaryChange | None = None,
    principal: Principal = Depends(get_principal),
    reg: Registry = Depends(manage_registry),
    change_id: str | None = IDEMPOTENCY_KEY,
) -> AliasState:
    body = body or CanaryChange()
    end = reg.promote_canary if action == "promote" else reg.abort_canary
    return end(
        name,
        alias,
        expected_canary=body.expected_canary,
        actor=principal.actor,
        change_id=change_id,
        reason=body.reason,
    )
