"""Admin API: keys, tenants and the audit log, under /registry (the management function)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from ..auth.http import caller
from ..auth.principal import SCOPES, Principal
from ..auth.service import KeyAdmin
from .deps import get_principal, require

router = APIRouter(prefix="/registry", tags=["admin"])


def _admin(request: Request) -> KeyAdmin:
    return request.app.state.key_admin


class KeyCreate(BaseModel):
    scopes: list[str] = Field(min_length=1, max_length=3, description=f"any of {', '.join(SCOPES)}")
    tenant: str | None = Field(None, max_length=64, description="default: the caller's tenant")
    name: str = Field("", max_length=128)
    root: bool = Field(False, description="operator key: manages tenants and every tenant's keys")
    expires_in_days: float | None = Field(None, gt=0, le=3650)


class KeyOut(BaseModel):
    key_id: str
    prefix: str
    tenant: str
    scopes: list[str]
    name: str
    root: bool
    active: bool
    created_at: float
    created_by: str | None
    expires_at: float | None
    revoked_at: float | None
    revoked_by: str | None
    gateway_key_id: str | None = None


class KeyCreated(KeyOut):
    key: str = Field(description="the secret, shown once: store it now")


class KeyList(BaseModel):
    keys: list[KeyOut]


class TenantCreate(BaseModel):
    name: str = Field(max_length=64)
    description: str = Field("", max_length=512)


class TenantOut(BaseModel):
    name: str
    description: str
    created_at: float
    created_by: str | None


class TenantList(BaseModel):
    tenants: list[TenantOut]


class AuditList(BaseModel):
    records: list[dict[str, Any]]


class WhoAmI(BaseModel):
    tenant: str
    scopes: list[str]
    key_id: str | None
    root: bool


@router.get("/whoami", response_model=WhoAmI, tags=["auth"])
def whoami(principal: Principal = Depends(get_principal)):
    return WhoAmI(tenant=principal.tenant, scopes=sorted(principal.scopes), key_id=principal.key_id,
                  root=principal.root)


@router.post("/keys", response_model=KeyCreated, status_code=201)
def create_key(body: KeyCreate, request: Request, principal: Principal = Depends(require("admin"))):
    expires = body.expires_in_days * 86400 if body.expires_in_days else None
    rec, plaintext = _admin(request).create_key(caller(principal), tenant=body.tenant, scopes=body.scopes,
                                                name=body.name, root=body.root, expires_in=expires)
    return KeyCreated(**rec.public(), key=plaintext)


@router.get("/keys", response_model=KeyList)
def list_keys(request: Request, tenant: str | None = Query(None, max_length=64),
              all_tenants: bool = Query(False, alias="all"), principal: Principal = Depends(require("admin"))):
    recs = _admin(request).list_keys(caller(principal), tenant, all_tenants=all_tenants)
    return KeyList(keys=[KeyOut(**r.public()) for r in recs])


@router.get("/keys/{key_id}", response_model=KeyOut)
def get_key(key_id: str, request: Request, principal: Principal = Depends(require("admin"))):
    return KeyOut(**_admin(request).get_key(caller(principal), key_id).public())


@router.delete("/keys/{key_id}", response_model=KeyOut)
def revoke_key(key_id: str, request: Request, principal: Principal = Depends(require("admin"))):
    return KeyOut(**_admin(request).revoke_key(caller(principal), key_id).public())


@router.get("/tenants", response_model=TenantList)
def list_tenants(request: Request, principal: Principal = Depends(require("admin"))):
    return TenantList(tenants=[TenantOut(**t.__dict__) for t in _admin(request).list_tenants(caller(principal))])


@router.post("/tenants", response_model=TenantOut, status_code=201)
def create_tenant(body: TenantCreate, request: Request, principal: Principal = Depends(require("admin"))):
    return TenantOut(**_admin(request).create_tenant(caller(principal), body.name, body.description).__dict__)


@router.get("/audit", response_model=AuditList)
def audit(request: Request, tenant: str | None = Query(None, max_length=64),
          action: str | None = Query(None, max_length=64), limit: int = Query(100, ge=1, le=1000),
          principal: Principal = Depends(require("admin"))):
    return AuditList(records=_admin(request).audit_log(caller(principal), tenant, limit=limit, action=action))
