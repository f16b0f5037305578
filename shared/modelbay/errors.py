"""Errors that carry their own HTTP meaning.

Services raise these; every transport (FastAPI, Lambda, CLI, TUI) turns them
into its own shape, so a rule about which status a failure gets lives here once.
The JSON body is ``{"error": message, "code": code, ...details}``: ``error`` is a
plain string so the same body is valid for the Open Inference Protocol.
"""

from __future__ import annotations

from typing import Any


class ModelbayError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_body(self) -> dict[str, Any]:
        return {"error": self.message, "code": self.code, **self.details}


class BadRequest(ModelbayError):
    status = 400
    code = "bad_request"


class InvalidName(BadRequest):
    code = "invalid_name"


class InvalidModel(ModelbayError):
    """The uploaded bytes are not a model we will serve."""

    status = 422
    code = "invalid_model"


class Unauthorized(ModelbayError):
    status = 401
    code = "unauthorized"


class Forbidden(ModelbayError):
    status = 403
    code = "forbidden"


class NotFound(ModelbayError):
    status = 404
    code = "not_found"


class Conflict(ModelbayError):
    status = 409
    code = "conflict"


class PreconditionFailed(Conflict):
    """A conditional write lost its race (If-Match / If-None-Match)."""

    status = 412
    code = "precondition_failed"


class TooLarge(ModelbayError):
    status = 413
    code = "too_large"


class Busy(ModelbayError):
    """A bounded resource is fully in use right now; retrying later may succeed."""

    status = 429
    code = "busy"


class IntegrityError(ModelbayError):
    """Stored bytes do not match their recorded sha256."""

    status = 500
    code = "integrity"


class StoreUnavailable(ModelbayError):
    status = 503
    code = "store_unavailable"
