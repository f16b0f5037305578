"""Who is calling and what they may do: the scopes, the ``Principal`` and the one scope check.

Every transport asks ``require_scope``: the HTTP gate (by path), the route
dependencies (``api.deps.require``) and the inference routes, so the rule and
its 403 body are written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..errors import Forbidden

Scope = Literal["invoke", "manage", "admin"]
SCOPES: tuple[Scope, ...] = ("invoke", "manage", "admin")


@dataclass(frozen=True)
class Principal:
    tenant: str
    scopes: frozenset[str] = field(default_factory=lambda: frozenset(SCOPES))
    key_id: str | None = None
    root: bool = False  # operator: manages tenants and every tenant's keys

    @property
    def actor(self) -> str:
        return self.key_id or "local"


def require_scope(principal: Principal, scope: str | None) -> Principal:
    """The principal itself, or Forbidden naming the missing scope (``None``: any key will do)."""
    if scope is not None and scope not in principal.scopes:
        raise Forbidden(f"this key lacks the {scope!r} scope", scope=scope)
    return principal
