"""Failures of serving, beyond the registry's own (NotFound, BadRequest, TooLarge)."""

from __future__ import annotations

import re

from ..errors import ModelbayError

# an absolute path of two or more segments; only its last segment (a file name) may reach a client
_PATH = re.compile(r"(?<![\w.~-])/(?:[\w.~+@-]+/)+([\w.~+@-]+)")


def library_message(exc: BaseException, limit: int = 300) -> str:
    """The first line of a library's error, fit for a client: paths on this server cut to their file name.

    onnxruntime and tokenizers name the files they failed on; the full message
    belongs in the server's log, not in a response body.
    """
    first = (str(exc).splitlines() or [""])[0]
    return _PATH.sub(r"\1", first)[:limit]


class LoadFailure(ModelbayError):
    """The version exists but cannot be served now (download or session build failed)."""

    status = 503
    code = "load_failure"


class InferenceFailed(ModelbayError):
    """onnxruntime failed on inputs that passed validation."""

    status = 500
    code = "inference_failed"


class InferenceTimeout(ModelbayError):
    status = 504
    code = "timeout"
