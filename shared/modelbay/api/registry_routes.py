"""The management API under /registry/: thin routes over ``modelbay.registry``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.concurrency import run_in_threadpool

from ..auth.principal import Principal
from ..errors import BadRequest, ModelbayError, TooLarge
from ..manifest import Manifest, VersionMetadata
from ..registry import Registry
from ..schemas import (
    AliasList,
    AliasSet,
    AliasState,
    Deleted,
    ModelDetail,
    ModelList,
    RegisterRequest,
    Resolution,
    UploadRequest,
    UploadSession,
    UploadTarget,
    VersionList,
)
from .deps import get_principal, manage_registry

router = APIRouter(prefix="/registry", tags=["registry"])
# Names one alias change, so a retried request (same key) is answered as done, not applied twice.
IDEMPOTENCY_KEY = Header(
    None,
    alias="Idempotency-Key",
    max_length=64,
    description="names this change: a retry with the same key is recognised and not applied twice",
)


@router.get(
    "/schemas/metadata",
    description="JSON Schema of a version's metadata: the file `modelbay push --metadata` takes, and the "
    "`metadata` of a registration.",
)
def metadata_schema() -> dict[str, Any]:
    return VersionMetadata.model_json_schema()


@router.get("/models", response_model=ModelList)
def list_models(reg: Registry = Depends(manage_registry)) -> ModelList:
    return ModelList(models=reg.list_models())


@router.get("/models/{name}", response_model=ModelDetail)
def get_model(name: str, reg: Registry = Depends(manage_registry)) -> ModelDetail:
    versions = reg.list_versions(name)
    states = reg.alias_states(name)
    return ModelDetail(
        name=name,
        aliases={a: s.version for a, s in states.items() if s.version is not None},
        versions=versions,
        canaries={a: s.canary for a, s in states.items() if s.canary},
        last_changes={a: s.last_change for a, s in states.items() if s.last_change},
    )


@router.get("/models/{name}/versions", response_model=VersionList)
def list_versions(name: str, reg: Registry = Depends(manage_registry)) -> VersionList:
    return VersionList(versions=reg.list_versions(name))


@router.get("/models/{name}/versions/{ref}", response_model=Manifest, description="A version number or an alias name.")
def get_version(name: str, ref: str, reg: Registry = Depends(manage_registry)) -> Manifest:
    return reg.resolve(name, ref)


@router.get(
    "/models/{name}/resolve",
    response_model=Resolution,
    description="What a reference names, by the rule the inference routes use: a version number, an "
    "alias, or nothing (the 'production' alias when set, else the latest version).",
)
def resolve(
    name: str,
    ref: str | None = Query(None, max_length=64, description="version or alias; empty: default"),
    reg: Registry = Depends(manage_registry),
) -> Resolution:
    return reg.resolution(name, ref)


@router.delete("/models/{name}/versions/{version}", response_model=Deleted)
def delete_version(
    name: str, version: str, principal: Principal = Depends(get_principal), reg: Registry = Depends(manage_registry)
) -> Deleted:
    reg.delete_version(name, version, actor=principal.actor)
    return Deleted(model=name, version=int(version))


@router.post("/models/{name}/uploads", response_model=UploadSession, status_code=201)
def create_upload(
    name: str,
    body: UploadRequest,
    request: Request,
    principal: Principal = Depends(get_principal),
    reg: Registry = Depends(manage_registry),
) -> UploadSession:
    session = reg.create_upload(name, body.files, actor=principal.actor)
    if session.token:  # the store has no presigned URLs: this server receives the bytes
        for f in session.files:
            url = request.url_for("receive_upload", upload_id=session.upload_id, file=f)
            session.targets[f] = UploadTarget(url=f"{url}?token={session.token}&tenant={principal.tenant}")
    return session


@router.put(
    "/uploads/{upload_id}/files/{file}",
    status_code=204,
    name="receive_upload",
    description="Upload target of the local store (a presigned URL stands here on S3).",
)
async def receive_upload(upload_id: str, file: str, request: Request, token: str = Query(..., max_length=128)) -> None:
    settings = request.app.state.settings
    reg = Registry(request.app.state.store, tenant=_upload_tenant(request), limits=settings.limits)
    # id, token and file first: a stranger's PUT is refused before its body is read
    declared = await run_in_threadpool(reg.upload_target, upload_id, file, token)
    length = request.headers.get("content-length")
    if length is not None and length != str(declared):
        raise BadRequest(f"{file}: Content-Length is {length[:20]!r}; the upload declared {declared} bytes")
    fd, tmp = tempfile.mkstemp(prefix="modelbay-upload-")
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > declared:  # stop at the declared size, whatever the client goes on sending
                    raise TooLarge(f"{file}: more than the {declared} bytes declared", limit=declared)
                out.write(chunk)
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
    except ModelbayError:  # no key on this PUT: the token alone decides
        return str(request.app.state.settings.default_tenant)


@router.post("/models/{name}/versions", response_model=Manifest, status_code=201)
def register_version(
    name: str,
    body: RegisterRequest,
    principal: Principal = Depends(get_principal),
    reg: Registry = Depends(manage_registry),
) -> Manifest:
    return reg.register_upload(
        name, body.upload_id, body.metadata, body.aliases, parts=body.parts, actor=principal.actor
    )


@router.get("/models/{name}/aliases", response_model=AliasList)
def list_aliases(name: str, reg: Registry = Depends(manage_registry)) -> AliasList:
    reg.list_versions(name)  # 404 for an unknown model
    return AliasList(aliases=reg.aliases(name))


@router.get("/models/{name}/aliases/{alias}", response_model=AliasState)
def get_alias(name: str, alias: str, reg: Registry = Depends(manage_registry)) -> AliasState:
    return reg.alias_state(name, alias)


@router.put("/models/{name}/aliases/{alias}", response_model=AliasState)
def set_alias(
    name: str,
    alias: str,
    body: AliasSet,
    principal: Principal = Depends(get_principal),
    reg: Registry = Depends(manage_registry),
    change_id: str | None = IDEMPOTENCY_KEY,
) -> AliasState:
    if "expected_version" in body.model_fields_set:
        return reg.set_alias(
            name, alias, body.version, actor=principal.actor, expected=body.expected_version, change_id=change_id
        )
    return reg.set_alias(name, alias, body.version, actor=principal.actor, change_id=change_id)


@router.delete("/models/{name}/aliases/{alias}", response_model=AliasState)
def delete_alias(
    name: str,
    alias: str,
    principal: Principal = Depends(get_principal),
    reg: Registry = Depends(manage_registry),
    change_id: str | None = IDEMPOTENCY_KEY,
) -> AliasState:
    return reg.delete_alias(name, alias, actor=principal.actor, change_id=change_id)


@router.get("/models/{name}/aliases/{alias}/history", response_model=AliasState)
def alias_history(name: str, alias: str, reg: Registry = Depends(manage_registry)) -> AliasState:
    return reg.alias_state(name, alias)


@router.post("/models/{name}/aliases/{alias}/rollback", response_model=AliasState)
def rollback(
    name: str,
    alias: str,
    principal: Principal = Depends(get_principal),
    reg: Registry = Depends(manage_registry),
    change_id: str | None = IDEMPOTENCY_KEY,
) -> AliasState:
    return reg.rollback(name, alias, actor=principal.actor, change_id=change_id)
