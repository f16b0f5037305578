"""Errors that carry their own HTTP meaning.

Services raise these; every transport (FastAPI, Lambda, CLI, TUI) turns them
into its own shape, so a rule about which status a failure gets lives here once.
The JSON body is ``{"error": message, "code": code, ...details}``: ``error`` is a
plain string so the same body is valid for the Open Inference Protocol.
"""

from __future__ import annotations

import re
from typing import Any

# an absolute path of two or more segments; only its last segment (a file name) may reach a client
_PATH = re.compile(r"(?<![\w.~-])/([\w.~+@-]+)/(?:[\w.~+@-]+/)*([\w.~+@-]+)")
# ...unless it is one of this API's own paths, which a message may quote ("use /labels/latest")
_API_ROOTS = frozenset({"v1", "v2", "registry", "models", "versions", "labels", "aliases", "health", "docs"})


def _file_name(m: re.Match[str]) -> str:
    return m.group(0) if m.group(1) in _API_ROOTS else m.group(2)


def scrub_paths(text: str) -> str:
    """``text`` with every absolute path on this server cut to its file name (API paths are kept)."""
    return _PATH.sub(_file_name, text)


# onnxruntime's "[ONNXRuntimeError] : 1 : FAIL : " prefixes (nested when a status wraps another)
_ORT_PREFIX = re.compile(r"\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*")
# a source location, e.g. "/onnxruntime_src/onnxruntime/core/framework/op_kernel.cc:87 " or "tensor.cc:57 ",
# and the function that follows it: a C++ signature ("virtual T* ns::C::f(int, ...) const") or a bare name
_SOURCE = re.compile(
    r"(?:/\S*/)?[\w.+-]+\.(?:cc|cpp|cxx|c|h|hpp|cu|inc):\d+\s+"
    r"(?:(?:[\w:<>,*&~\[\] ]*?::[\w~<>]+|[\w<>:~]+)\((?:[^()]|\([^()]*\))*\)(?:\s*const)?\s*|[A-Za-z_]\w*\s+)?"
)


def library_message(exc: BaseException | str, limit: int = 300) -> str:
    """A library's error (its first line) fit for a client: no server paths, no library source locations or
    symbols.

    onnxruntime names its source files, C++ functions and the files it failed
    on; tokenizers and onnx name files. The full message belongs in the
    server's log, never in a response body.
    """
    text = next((line for line in str(exc).splitlines() if line.strip()), "")
    text = _ORT_PREFIX.sub("", text)
    text = _SOURCE.sub("", text)
    text = scrub_paths(text)
    return text.strip()[:limit]


class ModelbayError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_body(self) -> dict[str, Any]:
        return {"error": self.message, "code": self.code, **self.details}

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the answer carries: Retry-After when the error says when to try again."""
        retry_after = self.details.get("retry_after")
        return {"Retry-After": str(retry_after)} if retry_after else {}


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


class CredentialsUnavailable(ModelbayError):
    """A credential the server needs to check a key (the bootstrap key's secret) cannot be read now.

    The body says only that; what failed (the secret, the AWS error) goes to the server's log.
    """

    status = 503
    code = "credentials_unavailable"

    def __init__(self, message: str, *, retry_after: int, **details: Any) -> None:
        super().__init__(message, retry_after=retry_after, **details)
