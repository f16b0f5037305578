"""The management API under /registry/: thin routes over ``modelbay.registry``."""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from ..auth.principal import Principal
from ..errors import TooLarge
from ..manifest import Manifest, VersionMetadata
from ..registry import AliasState, Registry
from ..storage import UploadTarget
from .deps import get_principal, manage_registry, registry_for

router = APIRouter(prefix="/registry", tags=["registry"])


class ModelSummaryOut(BaseModel):
    name: str
    latest_version: int
    version_count: int
    aliases: dict[str, int]
    updated_at: float


class ModelList(BaseModel):
    models: list[ModelSummaryOut]


class ModelDetail(BaseModel):
    name: str
    aliases: dict[str, int]
    versions: list[Manifest]


class VersionList(BaseModel):
    versions: list[Manifest]


class FileDecl(BaseModel):
    size: int = Field(gt=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class UploadRequest(BaseModel):
    files: dict[str, FileDecl] = Field(description="file name -> size and sha256; 'model.onnx' is required")


class UploadPartOut(BaseModel):
    part_number: int
    url: str


class UploadTargetOut(BaseModel):
    method: str = "PUT"
    url: str | None = None
    headers: dict[str, str] = {}
    multipart_id: str | None = None
    part_size: int | None = None
    parts: list[UploadPartOut] = []


class UploadOut(BaseModel):
    upload_id: str
    expires_at: float
    targets: dict[str, UploadTargetOut]


class RegisterRequest(BaseModel):
    upload_id: str
    metadata: VersionMetadata = VersionMetadata()
    aliases: list[str] = []
    parts: dict[str, list[str]] | None = Field(None, description="multipart files: ETags of their parts in order")


class AliasSet(BaseModel):
    version: int = Field(ge=1)
    expected_version: int | None = Field(
        None, description="compare-and-swap: change only if the alias points here now (null: alias must not exist)")


class AliasOut(BaseModel):
    model: str
    alias: str
    version: int | None
    updated_at: str | None
    updated_by: str | None
    history: list[dict[str, Any]]


class AliasesOut(BaseModel):
    aliases: dict[str, int]


class Deleted(BaseModel):
    deleted: bool = True
    model: str
    version: int


def _alias_out(state: AliasState) -> AliasOut:
    return AliasOut(**asdict(state))


@router.get("/models", response_model=ModelList)
def list_models(reg: Registry = Depends(manage_registry)):
    return ModelList(models=[ModelSummaryOut(**asdict(s)) for s in reg.list_models()])


@router.get("/models/{name}", response_model=ModelDetail)
def get_model(name: str, reg: Registry = Depends(manage_registry)):
    versions = reg.list_versions(name)
    return ModelDetail(name=name, aliases=reg.aliases(name), versions=versions)


@router.get("/models/{name}/versions", response_model=VersionList)
def list_versions(name: str, reg: Registry = Depends(manage_registry)):
    return VersionList(versions=reg.list_versions(name))


@router.get("/models/{name}/versions/{ref}", response_model=Manifest,
            description="A version number or an alias name.")
def get_version(name: str, ref: str, reg: Registry = Depends(manage_registry)):
    return reg.resolve(name, ref)


@router.delete("/models/{name}/versions/{version}", response_model=Deleted)
def delete_version(name: str, version: str, request: Request, principal: Principal = Depends(get_principal),
                   reg: Registry = Depends(manage_registry)):
    reg.delete_version(name, version, actor=principal.actor)
    return Deleted(model=name, version=int(version))


def _target_out(t: UploadTarget) -> UploadTargetOut:
    return UploadTargetOut(method=t.method, url=t.url, headers=t.headers, multipart_id=t.multipart_id,
                           part_size=t.part_size, parts=[UploadPartOut(**asdict(p)) for p in t.parts])


@router.post("/models/{name}/uploads", response_model=UploadOut, status_code=201)
def create_upload(name: str, body: UploadRequest, request: Request,
                  principal: Principal = Depends(get_principal), reg: Registry = Depends(manage_registry)):
    session = reg.create_upload(name, {f: d.model_dump() for f, d in body.files.items()}, actor=principal.actor)
    targets = {f: _target_out(t) for f, t in session.targets.items()}
    if session.token:  # the store has no presigned URLs: this server receives the bytes
        for f in session.files:
            url = request.url_for("receive_upload", upload_id=session.upload_id, file=f)
            targets[f] = UploadTargetOut(url=f"{url}?token={session.token}&tenant={principal.tenant}")
    return UploadOut(upload_id=session.upload_id, expires_at=session.expires_at, targets=targets)


@router.put("/uploads/{upload_id}/files/{file}", status_code=204, name="receive_upload",
            description="Upload target of the local store (a presigned URL stands here on S3).")
async def receive_upload(upload_id: str, file: str, request: Request, token: str = Query(...)):
    settings = request.app.state.settings
    reg = Registry(request.app.state.store, tenant=_upload_tenant(request), limits=settings.limits)
    limit = settings.limits.max_model_bytes
    fd, tmp = tempfile.mkstemp(prefix="modelbay-upload-")
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"upload exceeds {limit} bytes")
                out.write(chunk)
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(reg.receive_upload, upload_id, file, token, Path(tmp))
    finally:
        Path(tmp).unlink(missing_ok=True)


def _upload_tenant(request: Request) -> str:
    # The token, not an API key, authorises this PUT (as a presigned URL would):
    # the URL names the tenant, and a wrong one finds no upload with that token.
    if tenant := request.query_params.get("tenant"):
        return tenant
    try:
        return get_principal(request).tenant
    except Exception:
        return request.app.state.settings.default_tenant


@router.post("/models/{name}/versions", response_model=Manifest, status_code=201)
def register_version(name: str, body: RegisterRequest, principal: Principal = Depends(get_principal),
                     reg: Registry = Depends(manage_registry)):
    return reg.register_upload(name, body.upload_id, body.metadata, body.aliases, parts=body.parts,
                               actor=principal.actor)


@router.get("/models/{name}/aliases", response_model=AliasesOut)
def list_aliases(name: str, reg: Registry = Depends(manage_registry)):
    reg.list_versions(name)  # 404 for an unknown model
    return AliasesOut(aliases=reg.aliases(name))


@router.get("/models/{name}/aliases/{alias}", response_model=AliasOut)
def get_alias(name: str, alias: str, reg: Registry = Depends(manage_registry)):
    return _alias_out(reg.alias_state(name, alias))


@router.put("/models/{name}/aliases/{alias}", response_model=AliasOut)
def set_alias(name: str, alias: str, body: AliasSet, principal: Principal = Depends(get_principal),
              reg: Registry = Depends(manage_registry)):
    kw = {"expected": body.expected_version} if "expected_version" in body.model_fields_set else {}
    return _alias_out(reg.set_alias(name, alias, body.version, actor=principal.actor, **kw))


@router.delete("/models/{name}/aliases/{alias}", response_model=AliasOut)
def delete_alias(name: str, alias: str, principal: Principal = Depends(get_principal),
                 reg: Registry = Depends(manage_registry)):
    return _alias_out(reg.delete_alias(name, alias, actor=principal.actor))


@router.get("/models/{name}/aliases/{alias}/history", response_model=AliasOut)
def alias_history(name: str, alias: str, reg: Registry = Depends(manage_registry)):
    return _alias_out(reg.alias_state(name, alias))


@router.post("/models/{name}/aliases/{alias}/rollback", response_model=AliasOut)
def rollback(name: str, alias: str, principal: Principal = Depends(get_principal),
             reg: Registry = Depends(manage_registry)):
    return _alias_out(reg.rollback(name, alias, actor=principal.actor))
