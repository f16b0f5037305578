"""Failures of serving, beyond the registry's own (NotFound, BadRequest, TooLarge)."""

from __future__ import annotations

from ..errors import ModelbayError


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
