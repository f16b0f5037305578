"""Tenants: a name, a record under ``system/tenants/``, and the store prefix ``tenants/<name>/``.

Isolation itself is the key layout: every registry operation is built for the
caller's tenant (``api.deps.registry_for``), so no request can name another
tenant's keys. The record only says the tenant was created on purpose.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from ..errors import BadRequest, NotFound, PreconditionFailed
from ..layout import check_name
from ..storage import ObjectStore
from .keys import now

PREFIX = "system/tenants/"


@dataclass
class Tenant:
    name: str
    description: str = ""
    created_at: float = 0.0
    created_by: str | None = None


class TenantStore:
    def __init__(self, store: ObjectStore, default_tenant: str = "default") -> None:
        self.store = store
        self.default_tenant = default_tenant

    def _key(self, name: str) -> str:
        return f"{PREFIX}{check_name(name, 'tenant')}.json"

    def create(self, name: str, *, description: str = "", actor: str | None = None, exist_ok: bool = False) -> Tenant:
        if len(description) > 512:
            raise BadRequest("description is longer than 512 characters", field="description")
        t = Tenant(name, description, now(), actor)
        try:
            self.store.put_bytes(self._key(name), json.dumps(asdict(t)).encode(), if_none_match=True)
        except PreconditionFailed:
            if exist_ok:
                return self.get(name)
            raise PreconditionFailed(f"tenant {name!r} exists", tenant=name) from None
        return t

    def get(self, name: str) -> Tenant:
        try:
            return Tenant(**json.loads(self.store.get_bytes(self._key(name))[0]))
        except NotFound:
            if name == self.default_tenant:  # exists implicitly: the single-tenant setup
                return Tenant(name, "default tenant")
            raise NotFound(f"no tenant {name!r}", tenant=name) from None

    def list(self) -> list[Tenant]:
        out = {self.default_tenant: Tenant(self.default_tenant, "default tenant")}
        for info in self.store.list(PREFIX):
            name = info.key[len(PREFIX) :].removesuffix(".json")
            try:
                out[name] = self.get(name)
            except (NotFound, BadRequest):
                continue
        return sorted(out.values(), key=lambda t: t.name)
