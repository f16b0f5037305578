"""Object storage: one interface, a local-directory and an S3 implementation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import ObjectInfo, ObjectStore, UploadPart, UploadTarget, sha256_file

if TYPE_CHECKING:
    from ..settings import Settings


def open_store(url: str, settings: Settings | None = None) -> ObjectStore:
    """``s3://bucket[/prefix]`` selects S3 (timeouts and retries from ``settings``); anything else is a
    local directory."""
    if url.startswith("s3://"):
        from .s3 import S3Store

        bucket, _, prefix = url[5:].partition("/")
        return S3Store(bucket, prefix, settings=settings)
    from .local import LocalStore

    return LocalStore(url)


__all__ = ["ObjectInfo", "ObjectStore", "UploadPart", "UploadTarget", "open_store", "sha256_file"]
