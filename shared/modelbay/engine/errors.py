"""Failures of serving, beyond the registry's own (NotFound, BadRequest, TooLarge), and what a failed run says.

``library_message`` (defined with the errors, re-exported here) is the one cleaner of library text that may
reach a client."""

from __future__ import annotations

import re

from ..errors import ModelbayError, library_message

__all__ = [
    "Busy",
    "InferenceFailed",
    "InferenceTimeout",
    "LoadFailure",
    "OutOfMemory",
    "library_message",
    "run_failure",
]

# the condition of a failed ORT_ENFORCE names C++ variables; what follows it is the sentence for people
_ENFORCE = re.compile(r"^[^.]*?\bwas false\.\s*")
_RUNNING = re.compile(r"Non-zero status code returned while running (\w+) node\. Name:'([^']*)' Status Message:\s*")


def run_failure(exc: BaseException) -> tuple[str | None, str]:
    """(operator, reason) of a failed ``session.run``: which kind of node failed and why, cleaned."""
    text = next((line for line in str(exc).splitlines() if line.strip()), "")
    op = None
    m = _RUNNING.search(text)
    if m:
        op, text = m.group(1), text[m.end() :]
    reason = library_message(text, 300)
    return op, _ENFORCE.sub("", reason) or reason


class LoadFailure(ModelbayError):
    """The version exists but cannot be served now (download or session build failed)."""

    status = 503
    code = "load_failure"


class InferenceFailed(ModelbayError):
    """onnxruntime failed on inputs that passed validation: the values (a size computed from them, an
    index, a division by zero) are the caller's to change, so this is a 4xx that says what failed."""

    status = 422
    code = "inference_failed"


class InferenceTimeout(ModelbayError):
    status = 504
    code = "timeout"


class OutOfMemory(ModelbayError):
    """One run needs more memory than inference may use at all (``inference_memory_mb``)."""

    status = 413
    code = "memory_limit"


class Busy(ModelbayError):
    """Too many inferences in flight (the tenant's share, or the server's); try again shortly."""

    status = 429
    code = "busy"

    def __init__(self, message: str, *, retry_after: int = 1, status: int = 429, **details: object) -> None:
        super().__init__(message, retry_after=retry_after, **details)
        self.status = status
