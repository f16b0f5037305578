"""Open Inference Protocol (KServe V2) REST endpoints at their standard paths.

tritonclient, KServe's and MLServer's clients call these unchanged; a version
path segment may also be an alias (``/v2/models/m/versions/production/infer``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .. import __version__
from ..engine import Timings
from ..protocols import oip
from .inference_routes import call, failure, invoker, read_body, route_key, served_headers, service_of

router = APIRouter(prefix="/v2", tags=["inference: open inference protocol"])
PLATFORM = "onnx_onnxv1"


@router.get("", summary="Server metadata")
def server_metadata() -> dict[str, Any]:
    return {"name": "modelbay", "version": __version__, "extensions": oip.EXTENSIONS}


@router.get("/health/live", summary="Liveness")
def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", summary="Readiness: the store answers")
def ready(request: Request) -> dict[str, bool]:
    # a stateless server is ready when it can reach its store
    request.app.state.store.head("tenants/.ready-probe")
    return {"ready": True}


def _metadata(request: Request, name: str, ref: str | None) -> JSONResponse:
    tenant = invoker(request).tenant
    service = service_of(request)
    m = service.resolve(tenant, name, ref)
    versions = [str(v) for v in service.versions(tenant, name)] if ref is None else [str(m.version)]
    return JSONResponse(
        {
            "name": name,
            "versions": versions,
            "platform": PLATFORM,
            "inputs": oip.tensor_metadata(m.inputs),
            "outputs": oip.tensor_metadata(m.outputs),
            # not in the OIP schema; clients ignore it: what a bare name or an alias resolved to
            "parameters": {"version": m.version, "task": m.task, "sha256": m.sha256},
        },
        headers={"x-model-version": str(m.version)},
    )


@router.get("/models/{name}", summary="Model metadata (the production alias, else the latest version)")
def model_metadata(name: str, request: Request) -> JSONResponse:
    return _metadata(request, name, None)


@router.get("/models/{name}/versions/{version}", summary="Model metadata of a version or an alias")
def version_metadata(name: str, version: str, request: Request) -> JSONResponse:
    return _metadata(request, name, version)


def _ready(request: Request, name: str, ref: str | None) -> JSONResponse:
    model = service_of(request).ready(invoker(request).tenant, name, ref)
    return JSONResponse({"name": name, "ready": True}, headers={"x-model-version": str(model.version)})


@router.get("/models/{name}/ready", summary="Model readiness (loads the model)")
def model_ready(name: str, request: Request) -> JSONResponse:
    return _ready(request, name, None)


@router.get("/models/{name}/versions/{version}/ready", summary="Version readiness (loads the model)")
def version_ready(name: str, version: str, request: Request) -> JSONResponse:
    return _ready(request, name, version)


async def _infer(request: Request, name: str, ref: str | None) -> Response:
    timings = Timings.start()
    try:
        tenant = invoker(request).tenant
        body = await read_body(request)
        result = await call(
            request,
            tenant,
            service_of(request).infer,
            tenant,
            name,
            ref,
            body,
            header_length=request.headers.get(oip.HEADER),
            timings=timings,
            route_key=route_key(request),
        )
        payload, headers = oip.encode_response(result.payload)
    except Exception as e:
        return failure(request, e, name, timings)
    return Response(payload, headers={**headers, **served_headers(name, result.version, timings)})


@router.post("/models/{name}/infer", summary="Inference (JSON or binary tensors)")
async def model_infer(name: str, request: Request) -> Response:
    return await _infer(request, name, None)


@router.post("/models/{name}/versions/{version}/infer", summary="Inference on a version or an alias")
async def version_infer(name: str, version: str, request: Request) -> Response:
    return await _infer(request, name, version)
