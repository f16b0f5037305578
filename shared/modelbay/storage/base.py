"""The object-store contract both back ends pass (tests/test_storage_contract.py).

Keys are ``/``-separated strings. Every object written through a store carries
the sha256 of its bytes; reads recompute it and raise ``IntegrityError`` on a
mismatch. Conditional writes are the only concurrency primitive the registry
uses: ``if_none_match`` creates only if absent, ``if_match`` replaces only the
exact revision that was read (an etag).

A conditional write whose first attempt committed but whose answer was lost is
retried by the store; the retry then meets its own write. The store recognises
that (the stored sha256 is the one it wrote) and reports success, so callers
that must tell writers apart put something unique in the bytes (an id).
Failures of the store itself (S3 down, throttling past the retry budget) raise
``StoreUnavailable``, a 503 that says to try again; such a write may or may not
have happened.

Work files (temporary objects, copies being checked) live under the store's
``scratch_root``; ``sweep_leftovers`` removes what a crash left there.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    sha256: str | None
    last_modified: float  # epoch seconds


@dataclass
class UploadPart:
    part_number: int
    url: str


@dataclass
class UploadTarget:
    """Where a client sends bytes without passing them through the API."""

    key: str
    method: str = "PUT"
    url: str | None = None  # single PUT
    headers: dict[str, str] = field(default_factory=dict)
    # multipart: PUT each part to its URL, then register with the part ETags
    multipart_id: str | None = None
    part_size: int | None = None
    parts: list[UploadPart] = field(default_factory=list)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


def copy_hashing(src: Readable, dst: Writable) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    for chunk in iter(lambda: src.read(CHUNK), b""):
        h.update(chunk)
        dst.write(chunk)
        n += len(chunk)
    return h.hexdigest(), n


class ObjectStore(ABC):
    """A flat key space with sha256-verified reads and conditional writes."""

    url: str
    scratch_root: Path

    @abstractmethod
    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        tags: str | None = None,
    ) -> str:
        """Write ``data``; return the new etag. Raises PreconditionFailed on a lost race.

        ``tags``: object tags (``k=v&k2=v2``) for the bucket's lifecycle rules; stores without tags ignore them.
        """

    @abstractmethod
    def put_file(self, key: str, path: Path, *, if_none_match: bool = False) -> str:
        """Write a file of any size; return the new etag."""

    @abstractmethod
    def get_bytes(self, key: str) -> tuple[bytes, str]:
        """Return (data, etag). Raises NotFound, IntegrityError."""

    @abstractmethod
    def get_file(self, key: str, dest: Path, *, expected_sha256: str | None = None) -> ObjectInfo:
        """Stream an object to ``dest``, verifying its stored (or expected) sha256."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """Metadata of one object, or None when absent."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; absent objects are not an error."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order."""

    @abstractmethod
    def copy(self, src: str, dst: str, *, sha256: str, if_match: str | None = None) -> str:
        """Copy ``src`` to ``dst`` (server side where possible), recording ``sha256``.

        ``if_match``: copy only the revision of ``src`` with this etag (the one that was checked);
        PreconditionFailed if ``src`` changed since.
        """

    def presign_put(self, key: str, *, size: int, expires: int) -> UploadTarget | None:
        """A direct upload target, or None when the store has none (the API serves one)."""
        return None

    def complete_multipart(self, key: str, multipart_id: str, etags: builtins.list[str]) -> None:
        raise NotImplementedError

    def delete_prefix(self, prefix: str) -> int:
        n = 0
        for info in [*self.list(prefix)]:
            self.delete(info.key)
            n += 1
        return n

    @contextmanager
    def scratch(self) -> Iterator[Path]:
        """A private work directory, removed afterwards (or by ``sweep_leftovers`` after a crash)."""
        self.scratch_root.mkdir(parents=True, exist_ok=True)
        d = Path(tempfile.mkdtemp(prefix="scratch-", dir=self.scratch_root))
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def sweep_leftovers(self, older_than: float) -> int:
        """Remove work files and directories untouched for ``older_than`` seconds; returns how many."""
        cutoff = time.time() - older_than
        n = 0
        try:
            entries = list(os.scandir(self.scratch_root))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                n += 1
            except FileNotFoundError:  # its owner finished meanwhile
                continue
        return n
