"""Shadow traffic over HTTP: set or stop an alias's shadow (on the alias document), and read its figures."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from ..auth.principal import Principal
from ..registry import Registry
from ..schemas import AliasState, ShadowFigures, ShadowSet
from .deps import get_principal, manage_registry
from .registry_routes import IDEMPOTENCY_KEY

router = APIRouter(prefix="/registry/models/{name}/aliases/{alias}/shadow", tags=["shadow"])


@router.put(
    "", response_model=AliasState, description="Let a version also run a sampled share of the alias's requests."
)
def start(
    name: str,
    alias: str,
    body: ShadowSet,
    principal: Principal = Depends(get_principal),
    reg: Registry = Depends(manage_registry),
    change_id: str | None = IDEMPOTENCY_KEY,
) -> AliasState:
    return reg.set_shadow(name, alias, body.version, body.rate, actor=principal.actor, change_id=change_id)


@router.delete("", response_model=AliasState, description="Stop shadowing the alias.")
def stop(
    name: str,
    alias: str,
    principal: Principal = Depends(get_principal),
    reg: Registry = Depends(manage_registry),
    change_id: str | None = IDEMPOTENCY_KEY,
) -> AliasState:
    return reg.set_shadow(name, alias, None, actor=principal.actor, change_id=change_id)


@router.get(
    "",
    response_model=ShadowFigures,
    description="The shadow against the primary over the requests this server shadowed (the figures live in the "
    "inference process: a management-only server has the setting only).",
)
def figures(name: str, alias: str, request: Request, reg: Registry = Depends(manage_registry)) -> ShadowFigures:
    state = reg.alias_state(name, alias)
    service = getattr(request.app.state, "inference", None)
    found = service.shadows.figures(reg.tenant, name, alias) if service else ShadowFigures(model=name, alias=alias)
    if state.shadow is None:
        return ShadowFigures(model=name, alias=alias)
    if found.version != state.shadow.version:
        found = ShadowFigures(model=name, alias=alias)
    return found.model_copy(update={"version": state.shadow.version, "rate": state.shadow.rate})
