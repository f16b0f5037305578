"""Inference over HTTP: the Open Inference Protocol under /v2 and the friendly V1 predict under /v1.

``include_inference(app)`` mounts both and gives the app its ``Engine``. The
helpers here are what both protocols share: the invoke-scope check, reading a
bounded (optionally gzip'd) body, running the engine off or on the event loop,
and answering with the served version, Server-Timing and one metrics event.
"""

from __future__ import annotations

import logging
import re
import zlib
from urllib.parse import quote
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ..engine import Engine, Timings
from ..engine.errors import InferenceTimeout, LoadFailure
from ..errors import BadRequest, Forbidden, ModelbayError, NotFound, TooLarge
from .deps import Principal, get_principal

log = logging.getLogger("modelbay.inference")


def include_inference(app: FastAPI) -> None:
    from .oip_routes import router as oip
    from .v1_routes import router as v1

    state = app.state
    if getattr(state, "engine", None) is None:
        state.engine = Engine(state.store, state.settings)
    # On Lambda one request runs at a time: running inline saves the thread hop.
    # A local server runs the engine in the threadpool so one slow model does not block the loop.
    if not hasattr(state, "inline_inference"):
        state.inline_inference = state.settings.on_lambda
    app.include_router(oip)
    app.include_router(v1)
    app.add_middleware(HotPaths)
    if state.settings.prewarm:
        state.engine.prewarm_in_background()  # no-op when the caller already started it


def invoker(request: Request) -> Principal:
    principal = get_principal(request)
    if "invoke" not in principal.scopes:
        raise Forbidden("this key lacks the 'invoke' scope", scope="invoke")
    return principal


async def read_body(request: Request) -> bytes:
    """The whole body, refused with a 413 past ``max_body_bytes`` (also once decompressed)."""
    limit = request.app.state.settings.limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body is {declared} bytes; the limit is {limit}", limit=limit)
    # receive() directly: Request.stream()'s async generator costs more than the copy
    chunks, size, more = [], 0, True
    while more:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body exceeds the {limit} byte limit", limit=limit)
        chunks.append(chunk)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding in ("gzip", "deflate"):
        body = _inflate(body, encoding, limit)
    elif encoding not in ("identity", ""):
        raise BadRequest(f"unsupported Content-Encoding {encoding!r}; use gzip or deflate")
    return body


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    d = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as e:
        raise BadRequest(f"body is not valid {encoding}: {e}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise TooLarge(f"decompressed body exceeds the {limit} byte limit", limit=limit)
    return out


async def call(request: Request, fn: Callable[..., Any], *args) -> Any:
    if request.app.state.inline_inference:
        return fn(*args)
    return await run_in_threadpool(fn, *args)


def error_type(exc: BaseException) -> str:
    if isinstance(exc, LoadFailure):
        return "load_failure"
    if isinstance(exc, InferenceTimeout):
        return "timeout"
    if isinstance(exc, NotFound):
        return "not_found"
    if isinstance(exc, ModelbayError) and 400 <= exc.status < 500:
        return "bad_request"
    return "internal"


def record(request: Request, timings: Timings, name: str, version: int | None, instances: int,
           error: str | None) -> None:
    try:
        event = timings.event(name, version, instances, error)
        # the authenticator left the caller here; metrics are read back per tenant
        principal = getattr(request.state, "principal", None)
        if principal is not None:
            event.tenant = principal.tenant
        request.app.state.metrics.record(event)
    except Exception:  # a metrics sink must never fail a prediction
        log.exception("metrics sink failed")


def served_headers(name: str, version: int | None, timings: Timings) -> dict[str, str]:
    # the name comes from the path before validation: keep the header latin-1 (else a 500)
    safe = name if name.isascii() and name.isprintable() else quote(name, safe="")
    headers = {"server-timing": timings.server_timing(), "x-model-name": safe}
    if version is not None:
        headers["x-model-version"] = str(version)
    return headers


def failure(request: Request, exc: BaseException, timings: Timings, name: str, version: int | None,
            instances: int) -> Response:
    """The error answer of an inference call, with the same headers and metrics as a success."""
    kind = error_type(exc)
    record(request, timings, name, version, instances, kind)
    if isinstance(exc, ModelbayError):
        if exc.status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc.message)
        body, status = exc.to_body(), exc.status
    else:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        body, status = {"error": "internal error", "code": "internal"}, 500
    return JSONResponse(body, status_code=status, headers=served_headers(name, version, timings))


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


class HotPaths:
    """POST infer and predict go straight to their endpoint functions.

    FastAPI's router and dependency solver cost about 0.3 ms per request
    (most of the Lambda handler's overhead over session.run at batch 1). The
    FastAPI routes for these paths stay: they are the same functions, and
    they document the API in OpenAPI; only the dispatch is shorter here.
    """

    OIP = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer$")
    V1 = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<alias>[^/:]+))?"
                    r":predict$")

    def __init__(self, app) -> None:
        from . import oip_routes, v1_routes

        self.app = app
        self.oip, self.v1 = oip_routes, v1_routes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path, root = scope["path"], scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root):]
            response = None
            m = self.OIP.match(path)
            if m:
                name, version = m.group("name"), m.group("version")
                request = Request(scope, receive)
                response = await (self.oip.version_infer(name, version, request) if version is not None
                                  else self.oip.model_infer(name, request))
            elif (m := self.V1.match(path)) is not None:
                request = Request(scope, receive)
                name, version, alias = m.group("name", "version", "alias")
                response = await (self.v1.version_predict(name, version, request) if version is not None
                                  else self.v1.label_predict(name, alias, request) if alias is not None
                                  else self.v1.model_predict(name, request))
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
