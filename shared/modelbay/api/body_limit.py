"""Request-body cap for every route (413 JSON), before any handler buffers a body.

Lambda refuses synchronous payloads over 6 MB anyway; the local server must not
be easier to exhaust. The local upload URL is the exception: it streams a model
to disk under its own, larger limit (``Limits.max_model_bytes``).
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import TooLarge
from .errors import error_response

UNCAPPED = re.compile(r"/registry/uploads/[^/]+/files/[^/]+")


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or UNCAPPED.fullmatch(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    await self._refuse(send)
                    return
        seen = 0
        refused = False
        started = False

        async def counted() -> Message:
            # Past the cap, answer 413 now and tell the app the client left: a raised
            # error would be turned into a 400 by the framework's body parsing.
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit and not started:
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded_send)
        except Exception:
            if not refused:
                raise

    async def _refuse(self, send: Send) -> None:
        response = error_response(TooLarge(f"request body exceeds {self.limit} bytes", limit=self.limit))
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": response.raw_headers + [(b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": response.body})


def install_body_limit(app: FastAPI, limit: int) -> None:
    app.add_middleware(BodyLimit, limit=limit)
