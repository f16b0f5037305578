"""Request-scoped dependencies: who is calling, and the registry of their tenant."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from ..auth.principal import Principal, require_scope
from ..registry import Registry


def get_principal(request: Request) -> Principal:
    """Who is calling: what the auth gate found, else the app's ``authenticate`` hook; without one, the
    default tenant with every scope (``--no-auth``)."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is not None:
        return principal
    auth = getattr(request.app.state, "authenticate", None)
    if auth is not None:
        found: Principal = auth(request)
        return found
    return Principal(tenant=request.app.state.settings.default_tenant)


def require(scope: str) -> Callable[..., Principal]:
    """A route dependency: the caller, who must hold ``scope``."""

    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        return require_scope(principal, scope)

    return check


def registry_for(principal: Principal, request: Request) -> Registry:
    state = request.app.state
    if getattr(state, "audit", None) is not None:
        from ..auth.audit import AuditedRegistry

        return AuditedRegistry(state.store, tenant=principal.tenant, limits=state.settings.limits, audit=state.audit)
    return Registry(state.store, tenant=principal.tenant, limits=state.settings.limits)


def manage_registry(request: Request, principal: Annotated[Principal, Depends(require("manage"))]) -> Registry:
    return registry_for(principal, request)
