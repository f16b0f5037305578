"""The friendly protocol for raw inputs, in the style of TF Serving and KServe V1.

``POST /v1/models/m:predict`` with ``{"instances": [...]}`` answers
``{"predictions": [...]}``; the manifest's pre- and postprocessing turn text,
images and rows into tensors and outputs into labels or vectors.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..engine import Timings
from ..errors import BadRequest
from ..protocols import v1
from .inference_routes import call, failure, invoker, read_body, route_key, served_headers, service_of

router = APIRouter(prefix="/v1", tags=["inference: v1 predict"])


def _version(ref: str) -> str:
    if not ref.isdigit():
        raise BadRequest(f"invalid version {ref!r}: use /labels/{ref} for an alias")
    return ref


async def _predict(request: Request, name: str, ref: str | None, *, version: bool = False) -> Response:
    timings = Timings.start()
    try:
        tenant = invoker(request).tenant
        if version and ref is not None:
            _version(ref)
        body = await read_body(request)
        result = await call(
            request,
            tenant,
            service_of(request).predict,
            tenant,
            name,
            ref,
            body,
            timings=timings,
            route_key=route_key(request),
        )
        payload = v1.encode_response(result.payload)
    except Exception as e:
        return failure(request, e, name, timings)
    return Response(payload, media_type="application/json", headers=served_headers(name, result.version, timings))


@router.post("/models/{name}:predict", summary="Predict on raw instances (production alias, else latest)")
async def model_predict(name: str, request: Request) -> Response:
    return await _predict(request, name, None)


@router.post("/models/{name}/versions/{version}:predict", summary="Predict with a version")
async def version_predict(name: str, version: str, request: Request) -> Response:
    return await _predict(request, name, version, version=True)


@router.post("/models/{name}/labels/{alias}:predict", summary="Predict with the version an alias points at")
async def label_predict(name: str, alias: str, request: Request) -> Response:
    return await _predict(request, name, alias)


def _status(request: Request, name: str, ref: str | None) -> JSONResponse:
    status = service_of(request).status(invoker(request).tenant, name, ref)
    version = status.manifest.version
    return JSONResponse(
        {
            "name": name,
            "ready": True,
            "version": version,
            "loaded": status.loaded,
            "tuning": status.tuning,  # what autotune picked on this server's CPU, once loaded
            # TF Serving's GetModelStatus shape; a stateless server loads on demand, so AVAILABLE
            "model_version_status": [
                {"version": str(version), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            ],
        },
        headers={"x-model-version": str(version)},
    )


@router.get("/models/{name}", summary="Model status (production alias, else latest)")
def model_status(name: str, request: Request) -> JSONResponse:
    return _status(request, name, None)


@router.get("/models/{name}/versions/{version}", summary="Status of a version")
def version_status(name: str, version: str, request: Request) -> JSONResponse:
    return _status(request, name, _version(version))


@router.get("/models/{name}/labels/{alias}", summary="Status of the version an alias points at")
def label_status(name: str, alias: str, request: Request) -> JSONResponse:
    return _status(request, name, alias)
