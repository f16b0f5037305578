"""The friendly protocol for raw inputs, in the style of TF Serving and KServe V1.

``POST /v1/models/m:predict`` with ``{"instances": [...]}`` answers
``{"predictions": [...]}``; the manifest's pre- and postprocessing turn text,
images and rows into tensors and outputs into labels or vectors.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..engine import Timings
from ..engine.service import predict
from ..errors import BadRequest
from .inference_routes import call, engine_of, failure, invoker, read_body, record, served_headers

router = APIRouter(prefix="/v1", tags=["inference: v1 predict"])


def _instances(body: bytes) -> tuple[list[Any], dict[str, Any]]:
    try:
        req = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"malformed JSON: {e}") from None
    if not isinstance(req, dict):
        raise BadRequest('the body must be a JSON object: {"instances": [...]}')
    params = req.get("parameters") or {}
    if "instances" in req:
        instances = req["instances"]
    elif isinstance(req.get("inputs"), list):  # TF Serving's alias for row format
        instances = req["inputs"]
    elif isinstance(req.get("inputs"), dict):  # TF Serving's columnar format: {input: [batch...]}
        cols = req["inputs"]
        lengths = {len(v) if isinstance(v, list) else -1 for v in cols.values()}
        if len(lengths) != 1 or -1 in lengths:
            raise BadRequest("columnar 'inputs' need a list per input, all of the same length")
        instances = [{k: v[i] for k, v in cols.items()} for i in range(lengths.pop())]
    else:
        raise BadRequest('missing "instances": send {"instances": [...]}')
    if not isinstance(instances, list):
        raise BadRequest("'instances' must be a list")
    return instances, params


async def _predict(request: Request, name: str, ref: str | None, *, version: bool = False) -> Response:
    timings = Timings.start()
    n = 0
    try:
        if version and not str(ref).isdigit():
            raise BadRequest(f"invalid version {ref!r}: use /labels/{ref} for an alias")
        principal = invoker(request)
        instances, params = _instances(await read_body(request))
        n = len(instances)
        model, predictions = await call(request, predict, engine_of(request), principal.tenant, name, ref,
                                        instances, params, timings)
        payload = json.dumps({"predictions": predictions}, separators=(",", ":")).encode()
    except Exception as e:
        return failure(request, e, timings, name, timings.version, n)
    record(request, timings, name, model.version, n, None)
    return Response(payload, media_type="application/json", headers=served_headers(name, model.version, timings))


@router.post("/models/{name}:predict", summary="Predict on raw instances (production alias, else latest)")
async def model_predict(name: str, request: Request):
    return await _predict(request, name, None)


@router.post("/models/{name}/versions/{version}:predict", summary="Predict with a version")
async def version_predict(name: str, version: str, request: Request):
    return await _predict(request, name, version, version=True)


@router.post("/models/{name}/labels/{alias}:predict", summary="Predict with the version an alias points at")
async def label_predict(name: str, alias: str, request: Request):
    return await _predict(request, name, alias)


def _status(request: Request, name: str, ref: str | None) -> JSONResponse:
    principal = invoker(request)
    engine = engine_of(request)
    m = engine.resolve(principal.tenant, name, ref)
    loaded = engine.cached(principal.tenant, m) is not None
    return JSONResponse({
        "name": name, "ready": True, "version": m.version, "loaded": loaded,
        # TF Serving's GetModelStatus shape; a stateless server loads on demand, so AVAILABLE
        "model_version_status": [{"version": str(m.version), "state": "AVAILABLE",
                                  "status": {"error_code": "OK", "error_message": ""}}],
    }, headers={"x-model-version": str(m.version)})


@router.get("/models/{name}", summary="Model status (production alias, else latest)")
def model_status(name: str, request: Request):
    return _status(request, name, None)


@router.get("/models/{name}/versions/{version}", summary="Status of a version")
def version_status(name: str, version: str, request: Request):
    if not version.isdigit():
        raise BadRequest(f"invalid version {version!r}: use /labels/{version} for an alias")
    return _status(request, name, version)


@router.get("/models/{name}/labels/{alias}", summary="Status of the version an alias points at")
def label_status(name: str, alias: str, request: Request):
    return _status(request, name, alias)
