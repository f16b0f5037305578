"""Every failure leaves as JSON ``{"error": "...", "code": "..."}``; never a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ModelbayError

log = logging.getLogger("modelbay.api")


def _loc(err: dict) -> str:
    return ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ModelbayError)
    async def _modelbay(request: Request, exc: ModelbayError):
        if exc.status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc.message)
        return JSONResponse(exc.to_body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        message = f"{_loc(first)}: {first.get('msg', 'invalid request')}" if first else "invalid request"
        details = [{"loc": _loc(e), "msg": e.get("msg")} for e in errors[:20]]
        return JSONResponse({"error": message, "code": "bad_request", "details": details}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": str(exc.detail), "code": code}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error", "code": "internal"}, status_code=500)
