"""Who may do what with keys and tenants: the rules live here, once.

* an ``admin`` key manages the keys of its own tenant;
* a root key (the bootstrap key, or one a root key minted with ``root``) also
  creates tenants and manages every tenant's keys;
* keys of other tenants are reported as absent, never as forbidden, so a tenant
  cannot probe for them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import BadRequest, Forbidden, NotFound, StoreUnavailable
from .audit import AuditLog
from .gateway import UsagePlanKeys
from .keys import KeyRecord, KeyStore
from .tenants import Tenant, TenantStore

# A key's lifetime, when it has one: less than an hour is a key born (nearly) dead, e.g. 1e-300 days.
MIN_EXPIRY = 3600
MAX_EXPIRY = 10 * 365 * 86400


@dataclass
class Caller:
    tenant: str
    root: bool
    actor: str


class KeyAdmin:
    def __init__(
        self, keys: KeyStore, tenants: TenantStore, audit: AuditLog, gateway: UsagePlanKeys | None = None
    ) -> None:
        self.keys, self.tenants, self.audit, self.gateway = keys, tenants, audit, gateway

    def _tenant_for(self, caller: Caller, tenant: str | None) -> str:
        tenant = tenant or caller.tenant
        if tenant != caller.tenant and not caller.root:
            raise Forbidden("only a root key manages other tenants", tenant=tenant)
        return tenant

    def create_key(
        self,
        caller: Caller,
        *,
        tenant: str | None,
        scopes: Iterable[str],
        name: str = "",
        root: bool = False,
        expires_in: float | None = None,
    ) -> tuple[KeyRecord, str]:
        tenant = self._tenant_for(caller, tenant)
        if root and not caller.root:
            raise Forbidden("only a root key can mint a root key")
        if expires_in is not None and not MIN_EXPIRY <= expires_in <= MAX_EXPIRY:  # NaN fails too
            raise BadRequest(
                f"a key expires between {MIN_EXPIRY // 3600} hour and {MAX_EXPIRY // 86400} days from now",
                field="expires_in_days",
            )
        self.tenants.get(tenant)  # 404 for a tenant nobody created
        rec, plaintext = self.keys.create(
            tenant, scopes, name=name, root=root, actor=caller.actor, expires_in=expires_in
        )
        if self.gateway is not None:
            try:
                rec = self.keys.update(rec.key_id, gateway_key_id=self.gateway.add(rec.key_id, tenant, plaintext))
            except StoreUnavailable:
                self.keys.revoke(rec.key_id, actor="system")  # a key the gateway rejects must not linger
                raise
        self.audit.record(tenant, caller.actor, "key.create", rec.key_id, scopes=rec.scopes, name=name, root=root)
        return rec, plaintext

    def _visible(self, caller: Caller, key_id: str) -> KeyRecord:
        rec = self.keys.get(key_id)
        if rec.tenant != caller.tenant and not caller.root:
            raise NotFound(f"no key {key_id!r}", key_id=key_id)
        return rec

    def get_key(self, caller: Caller, key_id: str) -> KeyRecord:
        return self._visible(caller, key_id)

    def list_keys(self, caller: Caller, tenant: str | None = None, *, all_tenants: bool = False) -> list[KeyRecord]:
        if all_tenants:
            if not caller.root:
                raise Forbidden("only a root key lists every tenant's keys")
            return self.keys.list()
        return self.keys.list(self._tenant_for(caller, tenant))

    def revoke_key(self, caller: Caller, key_id: str) -> KeyRecord:
        rec = self._visible(caller, key_id)
        if rec.revoked_at is not None:
            return rec
        rec = self.keys.revoke(key_id, actor=caller.actor)
        if self.gateway is not None and rec.gateway_key_id:
            self.gateway.remove(rec.gateway_key_id)
        self.audit.record(rec.tenant, caller.actor, "key.revoke", key_id)
        return rec

    def create_tenant(self, caller: Caller, name: str, description: str = "") -> Tenant:
        if not caller.root:
            raise Forbidden("only a root key creates tenants")
        t = self.tenants.create(name, description=description, actor=caller.actor)
        self.audit.record(name, caller.actor, "tenant.create", name)
        return t

    def list_tenants(self, caller: Caller) -> list[Tenant]:
        if caller.root:
            return self.tenants.list()
        return [self.tenants.get(caller.tenant)]

    def audit_log(
        self, caller: Caller, tenant: str | None = None, *, limit: int = 100, action: str | None = None
    ) -> list[dict]:
        return self.audit.list(self._tenant_for(caller, tenant), limit=limit, action=action)
