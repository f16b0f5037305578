"""Admin API: keys, tenants and the audit log, under /registry (the management function)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from ..auth.http import caller
from ..auth.principal import Principal
from ..auth.service import KeyAdmin
from ..schemas import (
    AuditList,
    AuditRecord,
    KeyCreate,
    KeyInfo,
    KeyList,
    NewKey,
    TenantCreate,
    TenantInfo,
    TenantList,
    WhoAmI,
)
from .deps import get_principal, require

router = APIRouter(prefix="/registry", tags=["admin"])


def _admin(request: Request) -> KeyAdmin:
    admin: KeyAdmin = request.app.state.key_admin
    return admin


@router.get("/whoami", response_model=WhoAmI, tags=["auth"])
def whoami(principal: Principal = Depends(get_principal)) -> WhoAmI:
    return WhoAmI(
        tenant=principal.tenant, scopes=sorted(principal.scopes), key_id=principal.key_id, root=principal.root
    )


@router.post("/keys", response_model=NewKey, status_code=201)
def create_key(body: KeyCreate, request: Request, principal: Principal = Depends(require("admin"))) -> NewKey:
    expires = body.expires_in_days * 86400 if body.expires_in_days is not None else None
    rec, plaintext = _admin(request).create_key(
        caller(principal), tenant=body.tenant, scopes=body.scopes, name=body.name, root=body.root, expires_in=expires
    )
    return NewKey(**rec.public(), key=plaintext)


@router.get("/keys", response_model=KeyList)
def list_keys(
    request: Request,
    tenant: str | None = Query(None, max_length=64),
    all_tenants: bool = Query(False, alias="all"),
    principal: Principal = Depends(require("admin")),
) -> KeyList:
    recs = _admin(request).list_keys(caller(principal), tenant, all_tenants=all_tenants)
    return KeyList(keys=[KeyInfo(**r.public()) for r in recs])


@router.get("/keys/{key_id}", response_model=KeyInfo)
def get_key(key_id: str, request: Request, principal: Principal = Depends(require("admin"))) -> KeyInfo:
    return KeyInfo(**_admin(request).get_key(caller(principal), key_id).public())


@router.delete("/keys/{key_id}", response_model=KeyInfo)
def revoke_key(key_id: str, request: Request, principal: Principal = Depends(require("admin"))) -> KeyInfo:
    return KeyInfo(**_admin(request).revoke_key(caller(principal), key_id).public())


@router.get("/tenants", response_model=TenantList)
def list_tenants(request: Request, principal: Principal = Depends(require("admin"))) -> TenantList:
    return TenantList(tenants=[TenantInfo(**t.__dict__) for t in _admin(request).list_tenants(caller(principal))])


@router.post("/tenants", response_model=TenantInfo, status_code=201)
def create_tenant(body: TenantCreate, request: Request, principal: Principal = Depends(require("admin"))) -> TenantInfo:
    return TenantInfo(**_admin(request).create_tenant(caller(principal), body.name, body.description).__dict__)


@router.get("/audit", response_model=AuditList)
def audit(
    request: Request,
    tenant: str | None = Query(None, max_length=64),
    action: str | None = Query(None, max_length=64),
    limit: int = Query(100, ge=1, le=1000),
    principal: Principal = Depends(require("admin")),
) -> AuditList:
    records = _admin(request).audit_log(caller(principal), tenant, limit=limit, action=action)
    return AuditList(records=[AuditRecord.model_validate(r) for r in records])
