"""Request-scoped dependencies: who is calling, and the registry of their tenant."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Depends, Request

from ..errors import Forbidden
from ..registry import Registry

SCOPES = ("invoke", "manage", "admin")


@dataclass(frozen=True)
class Principal:
    tenant: str
    scopes: frozenset[str] = field(default_factory=lambda: frozenset(SCOPES))
    key_id: str | None = None
    root: bool = False  # operator: manages tenants and every tenant's keys

    @property
    def actor(self) -> str:
        return self.key_id or "local"


def get_principal(request: Request) -> Principal:
    """Who is calling. The app's ``authenticate`` hook decides; without one, the default tenant."""
    auth = getattr(request.app.state, "authenticate", None)
    if auth is not None:
        return auth(request)
    return Principal(tenant=request.app.state.settings.default_tenant)


def require(scope: str):
    def check(principal: Principal = Depends(get_principal)) -> Principal:
        if scope not in principal.scopes:
            raise Forbidden(f"this key lacks the {scope!r} scope", scope=scope)
        return principal

    return check


def registry_for(principal: Principal, request: Request) -> Registry:
    state = request.app.state
    if getattr(state, "audit", None) is not None:
        from ..auth.audit import AuditedRegistry

        return AuditedRegistry(state.store, tenant=principal.tenant, limits=state.settings.limits, audit=state.audit)
    return Registry(state.store, tenant=principal.tenant, limits=state.settings.limits)


def manage_registry(request: Request, principal: Principal = Depends(require("manage"))) -> Registry:
    return registry_for(principal, request)
