"""Every failure leaves as JSON ``{"error": "...", "code": "...", ...}``; never a traceback.

``render`` is the one place an exception becomes a status and a body: the
FastAPI exception handlers, the auth gate, the body limit and the inference
routes all call it. No absolute path of the server survives it (``scrub_paths``).
Anything that is not a ``ModelbayError``, a validation
error or an HTTP error is a bug of ours: it is logged with its traceback and
answered with a generic 500 that names nothing of the server.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ModelbayError, scrub_paths

log = logging.getLogger("modelbay.api")
MAX_DETAILS = 20
HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}
INTERNAL: dict[str, Any] = {"error": "internal error", "code": "internal"}


def _loc(err: Mapping[str, Any]) -> str:
    return ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"


def render(exc: BaseException, where: str = "") -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, headers) for any exception; ``where`` (e.g. "POST /v2/...") only goes to the log."""
    if isinstance(exc, ModelbayError):
        if exc.status >= 500:  # ours to look at; the body already says what failed
            log.error("%s failed: %s", where or "request", exc.message)
        # a message may quote a library that named a file of this server: the body gets its name only
        body = {k: scrub_paths(v) if isinstance(v, str) else v for k, v in exc.to_body().items()}
        return exc.status, body, exc.headers
    if isinstance(exc, RequestValidationError):
        errors = list(exc.errors())
        first = errors[0] if errors else {}
        message = f"{_loc(first)}: {first.get('msg', 'invalid request')}" if first else "invalid request"
        details = [{"loc": _loc(e), "msg": e.get("msg")} for e in errors[:MAX_DETAILS]]
        return 400, {"error": message, "code": "bad_request", "details": details}, {}
    if isinstance(exc, StarletteHTTPException):
        code = HTTP_CODES.get(exc.status_code, "http_error")
        return exc.status_code, {"error": str(exc.detail), "code": code}, dict(exc.headers or {})
    log.error("unhandled error on %s", where or "request", exc_info=exc)
    return 500, dict(INTERNAL), {}


def error_response(exc: BaseException, where: str = "", headers: Mapping[str, str] | None = None) -> JSONResponse:
    status, body, own = render(exc, where)
    return JSONResponse(body, status_code=status, headers={**own, **(headers or {})} or None)


def install_error_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc, f"{request.method} {request.url.path}")

    for kind in (ModelbayError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, handle)
