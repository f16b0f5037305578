"""Inference over HTTP: the Open Inference Protocol under /v2 and the friendly V1 predict under /v1.

``include_inference`` mounts both over an ``InferenceService``. What is here is
transport only, shared by both protocols: reading a bounded (optionally
gzip'd) body, running the service on or off the event loop, and the response
headers (served version, Server-Timing). Running, timing and metrics are the
service's.

Off the event loop, inference runs in its own thread pool, sized by
``max_inferences``, never in the pool of the synchronous routes: health probes
and the management API do not wait behind slow models. A request takes its
admission slot (``InferenceService.admission``) before it is handed to a
thread, so the pool never queues: past a bound the answer is a 429 or 503 at once.
"""

from __future__ import annotations

import asyncio
import re
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..auth.principal import Principal, require_scope
from ..engine import InferenceService, Timings
from ..errors import BadRequest, TooLarge
from ..routing import ROUTE_HEADER, ROUTE_KEY_HEADER
from .deps import get_principal
from .errors import error_response

T = TypeVar("T")


def include_inference(app: FastAPI, service: InferenceService, *, inline: bool) -> None:
    """``inline``: run the engine on the event loop (Lambda: one request at a time, no thread hop);
    else in the threadpool, so one slow model does not block the loop."""
    from ..generation.service import GenerationService
    from .oip_routes import router as oip
    from .openai_routes import router as openai
    from .v1_routes import router as v1

    app.state.inference = service
    app.state.generation = GenerationService(service.engine, service.metrics, service.settings)
    app.state.engine = service.engine
    app.state.inline_inference = inline
    pool = None if inline else InferencePool(service.settings.max_inferences)
    app.state.inference_pool = pool

    def start() -> None:
        # the same app may serve again after a shutdown (another lifespan): runs are accepted again, and
        # the pool makes new threads on its next use
        service.engine.resume()

    def stop() -> None:
        # the server is exiting and its grace period is over: end the runs still going, or the process
        # would wait for them (up to their time limit) before it can exit
        service.engine.stop()
        if pool is not None:
            pool.shutdown()

    app.router.on_startup.append(start)
    app.router.on_shutdown.append(stop)
    app.include_router(openai)  # before oip: /v2/models/{m}/generate is not a model path
    app.include_router(oip)
    app.include_router(v1)
    app.add_middleware(HotPaths)


class InferencePool:
    """The inference threads (``max_inferences`` of them), apart from the synchronous routes' pool.

    Its executor is made on first use and dropped at shutdown, so an app that serves again after a
    shutdown (a second lifespan) gets new threads rather than "cannot schedule new futures".
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="modelbay-infer")
            return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def service_of(request: Request) -> InferenceService:
    service: InferenceService = request.app.state.inference
    return service


def invoker(request: Request) -> Principal:
    return require_scope(get_principal(request), "invoke")


async def read_body(request: Request) -> bytes:
    """The whole body, refused with a 413 past ``max_body_bytes`` (also once decompressed)."""
    limit = request.app.state.settings.limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body is {declared} bytes; the limit is {limit}", limit=limit)
    # receive() directly: Request.stream()'s async generator costs more than the copy
    chunks: list[bytes] = []
    size, more = 0, True
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


async def call(request: Request, tenant: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in an admission slot of ``tenant``: on the event loop (inline), else in the
    inference pool. The slot is given back when the work ends, even if the client left before."""
    admission = service_of(request).admission
    admission.enter(tenant)
    pool: InferencePool | None = request.app.state.inference_pool
    if pool is None:
        try:
            return fn(*args, **kwargs)
        finally:
            admission.leave(tenant)
    try:
        future = pool.submit(fn, *args, **kwargs)
    except BaseException:
        admission.leave(tenant)
        raise
    future.add_done_callback(lambda _: admission.leave(tenant))
    return await asyncio.wrap_future(future)


def route_key(request: Request) -> str | None:
    """The caller's routing key: the same key always reaches the same side of a split alias."""
    return request.headers.get(ROUTE_KEY_HEADER) or None


def served_headers(name: str, version: int | None, timings: Timings) -> dict[str, str]:
    # the name comes from the path before validation: keep the header latin-1 (else a 500)
    safe = name if name.isascii() and name.isprintable() else quote(name, safe="")
    headers = {"server-timing": timings.server_timing(), "x-model-name": safe}
    if version is not None:
        headers["x-model-version"] = str(version)
    if timings.route is not None:  # the alias is split: which side served
        headers[ROUTE_HEADER] = timings.route
    return headers


def failure(request: Request, exc: BaseException, name: str, timings: Timings) -> JSONResponse:
    """The error answer of an inference call, with the same headers as a success."""
    return error_response(exc, f"{request.method} {request.url.path}", served_headers(name, timings.version, timings))


class HotPaths:
    """POST infer and predict go straight to their endpoint functions.

    FastAPI's router and dependency solver cost about 0.3 ms per request
    (most of the Lambda handler's overhead over session.run at batch 1). The
    FastAPI routes for these paths stay: they are the same functions, and
    they document the API in OpenAPI; only the dispatch is shorter here.
    """

    OIP = re.compile(r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer")
    V1 = re.compile(
        r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<alias>[^/:]+))?"
        r":predict"
    )

    def __init__(self, app: ASGIApp) -> None:
        from . import oip_routes, v1_routes

        self.app = app
        self.oip, self.v1 = oip_routes, v1_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path, root = scope["path"], scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            response: Response | None = None
            m = self.OIP.fullmatch(path)
            if m:
                name, version = m.group("name"), m.group("version")
                request = Request(scope, receive)
                response = await (
                    self.oip.version_infer(name, version, request)
                    if version is not None
                    else self.oip.model_infer(name, request)
                )
            elif (m := self.V1.fullmatch(path)) is not None:
                request = Request(scope, receive)
                name, version, alias = m.group("name", "version", "alias")
                response = await (
                    self.v1.version_predict(name, version, request)
                    if version is not None
                    else self.v1.label_predict(name, alias, request)
                    if alias is not None
                    else self.v1.model_predict(name, request)
                )
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
