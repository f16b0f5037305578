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
from ..engine.service import infer
from ..protocols import oip
from .inference_routes import call, engine_of, failure, invoker, read_body, record, served_headers

router = APIRouter(prefix="/v2", tags=["inference: open inference protocol"])
PLATFORM = "onnx_onnxv1"


@router.get("", summary="Server metadata")
def server_metadata():
    return {"name": "modelbay", "version": __version__, "extensions": oip.EXTENSIONS}


@router.get("/health/live", summary="Liveness")
def live():
    return {"live": True}


@router.get("/health/ready", summary="Readiness: the store answers")
def ready(request: Request):
    # a stateless server is ready when it can reach its store
    request.app.state.store.head("tenants/.ready-probe")
    return {"ready": True}


def _metadata(request: Request, name: str, ref: str | None) -> JSONResponse:
    principal = invoker(request)
    engine = engine_of(request)
    m = engine.resolve(principal.tenant, name, ref)
    if ref is None:
        versions = [str(v) for v in engine.resolver.registry(principal.tenant).version_numbers(name)]
    else:
        versions = [str(m.version)]
    return JSONResponse({
        "name": name, "versions": versions, "platform": PLATFORM,
        "inputs": oip.tensor_metadata(m.inputs), "outputs": oip.tensor_metadata(m.outputs),
        # not in the OIP schema; clients ignore it: what a bare name or an alias resolved to
        "parameters": {"version": m.version, "task": m.task, "sha256": m.sha256},
    }, headers={"x-model-version": str(m.version)})


@router.get("/models/{name}", summary="Model metadata (the production alias, else the latest version)")
def model_metadata(name: str, request: Request):
    return _metadata(request, name, None)


@router.get("/models/{name}/versions/{version}", summary="Model metadata of a version or an alias")
def version_metadata(name: str, version: str, request: Request):
    return _metadata(request, name, version)


def _ready(request: Request, name: str, ref: str | None):
    principal = invoker(request)
    model = engine_of(request).get(principal.tenant, name, ref)  # ready means loaded: this warms it
    return JSONResponse({"name": name, "ready": True}, headers={"x-model-version": str(model.version)})


@router.get("/models/{name}/ready", summary="Model readiness (loads the model)")
def model_ready(name: str, request: Request):
    return _ready(request, name, None)


@router.get("/models/{name}/versions/{version}/ready", summary="Version readiness (loads the model)")
def version_ready(name: str, version: str, request: Request):
    return _ready(request, name, version)


def _run(engine, tenant, name, ref, req: oip.InferRequest, timings: Timings):
    names = [o.name for o in req.outputs] if req.outputs is not None else None
    model, results = infer(engine, tenant, name, ref, req.inputs, names, timings)
    labels = model.manifest.labels
    if req.outputs is None:
        outs = [(n, results[n], req.binary_output) for n in model.output_names]
    else:
        outs = [(o.name, oip.classify(results[o.name], o.class_count, labels) if o.class_count else results[o.name],
                 o.binary or req.binary_output) for o in req.outputs]
    return model, oip.encode_response(name, model.version, outs, req.id)


async def _infer(request: Request, name: str, ref: str | None) -> Response:
    timings = Timings.start()
    n = 0
    try:
        principal = invoker(request)
        body = await read_body(request)
        req = oip.decode_request(body, request.headers.get(oip.HEADER))
        first = next(iter(req.inputs.values()))
        n = int(first.shape[0]) if first.ndim else 1
        model, (payload, headers) = await call(request, _run, engine_of(request), principal.tenant, name, ref,
                                               req, timings)
    except Exception as e:
        return failure(request, e, timings, name, timings.version, n)
    record(request, timings, name, model.version, n, None)
    return Response(payload, headers={**headers, **served_headers(name, model.version, timings)})


@router.post("/models/{name}/infer", summary="Inference (JSON or binary tensors)")
async def model_infer(name: str, request: Request):
    return await _infer(request, name, None)


@router.post("/models/{name}/versions/{version}/infer", summary="Inference on a version or an alias")
async def version_infer(name: str, version: str, request: Request):
    return await _infer(request, name, version)
