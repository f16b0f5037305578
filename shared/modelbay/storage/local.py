"""The embedded default: a directory on local disk.

Object bytes live at ``<root>/<key>``, so the directory is itself a Triton model
repository. The sha256 of each object lives in ``<root>/.sys/meta/<key>``.
Conditional writes hold an exclusive ``flock`` on a per-key lock file while they
check the condition and swap in the new bytes with ``os.replace``; readers take
the shared lock, so they never see new metadata with old bytes. flock works
across processes, so several local servers may share one directory.
"""

from __future__ import annotations

import builtins
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypedDict

from ..errors import BadRequest, IntegrityError, NotFound, PreconditionFailed
from .base import ObjectInfo, ObjectStore, copy_hashing

SYS = ".sys"


class _Meta(TypedDict):
    sha256: str
    size: int
    etag: str


def _check_key(key: str) -> None:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or parts[0] == SYS:
        raise BadRequest(f"invalid object key {key!r}")


class LocalStore(ObjectStore):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)
        for d in ("meta", "locks", "tmp"):
            (self.root / SYS / d).mkdir(parents=True, exist_ok=True)

    # -- paths and locks -------------------------------------------------
    def _path(self, key: str) -> Path:
        _check_key(key)
        return self.root / key

    def _meta_path(self, key: str) -> Path:
        return self.root / SYS / "meta" / key

    @contextmanager
    def _lock(self, key: str, exclusive: bool) -> Iterator[None]:
        name = hashlib.sha1(key.encode()).hexdigest()
        fd = os.open(self.root / SYS / "locks" / name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _read_meta(self, key: str) -> _Meta | None:
        try:
            meta: _Meta = json.loads(self._meta_path(key).read_text())
            return meta
        except FileNotFoundError:
            return None

    # -- writes ----------------------------------------------------------
    def _commit(self, key: str, tmp: Path, sha: str, size: int, if_none_match: bool, if_match: str | None) -> str:
        path = self._path(key)
        with self._lock(key, exclusive=True):
            meta = self._read_meta(key) if path.exists() else None
            if if_none_match and meta is not None:
                tmp.unlink(missing_ok=True)
                raise PreconditionFailed(f"{key} already exists")
            if if_match is not None and (meta is None or meta["etag"] != if_match):
                tmp.unlink(missing_ok=True)
                raise PreconditionFailed(f"{key} changed since it was read")
            mp = self._meta_path(key)
            mp.parent.mkdir(parents=True, exist_ok=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            # etag must change on every write, even of equal bytes, so If-Match
            # cannot be fooled by an A->B->A sequence.
            etag = f"{sha[:16]}-{os.urandom(6).hex()}"
            mtmp = mp.with_name(f".{mp.name}.{os.getpid()}.tmp")
            mtmp.write_text(json.dumps({"sha256": sha, "size": size, "etag": etag}))
            os.replace(mtmp, mp)
            os.replace(tmp, path)
        return etag

    def _tmpfile(self) -> IO[bytes]:
        return tempfile.NamedTemporaryFile(dir=self.root / SYS / "tmp", delete=False)

    def put_bytes(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        self._path(key)
        with self._tmpfile() as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return self._commit(key, Path(f.name), hashlib.sha256(data).hexdigest(), len(data), if_none_match, if_match)

    def put_file(self, key: str, path: Path, *, if_none_match: bool = False) -> str:
        self._path(key)
        with self._tmpfile() as f, open(path, "rb") as src:
            sha, size = copy_hashing(src, f)
            f.flush()
            os.fsync(f.fileno())
        return self._commit(key, Path(f.name), sha, size, if_none_match, None)

    def copy(self, src: str, dst: str, *, sha256: str) -> str:
        with self._tmpfile() as f:
            pass
        tmp = Path(f.name)
        info = self.get_file(src, tmp, expected_sha256=sha256)
        return self._commit(dst, tmp, info.sha256 or sha256, info.size, False, None)

    # -- reads -----------------------------------------------------------
    def get_bytes(self, key: str) -> tuple[bytes, str]:
        path = self._path(key)
        with self._lock(key, exclusive=False):
            meta = self._read_meta(key)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise NotFound(f"no object {key}") from None
        if meta is None or hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise IntegrityError(f"{key}: stored sha256 does not match its bytes")
        return data, meta["etag"]

    def get_file(self, key: str, dest: Path, *, expected_sha256: str | None = None) -> ObjectInfo:
        path = self._path(key)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self._lock(key, exclusive=False):
            meta = self._read_meta(key)
            if not path.is_file():  # writers and deleters wait for our lock: no race
                raise NotFound(f"no object {key}")
            with open(path, "rb") as src, open(dest, "wb") as out:
                sha, size = copy_hashing(src, out)
            mtime = path.stat().st_mtime
        for want in (meta and meta["sha256"], expected_sha256):
            if want and want != sha:
                dest.unlink(missing_ok=True)
                raise IntegrityError(f"{key}: sha256 {sha} does not match the recorded {want}")
        return ObjectInfo(key, size, meta["etag"] if meta else sha, sha, mtime)

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        with self._lock(key, exclusive=False):
            meta = self._read_meta(key)
            try:
                st = path.stat()
            except FileNotFoundError:
                return None
        if meta is None:
            return None
        return ObjectInfo(key, st.st_size, meta["etag"], meta["sha256"], st.st_mtime)

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._lock(key, exclusive=True):
            path.unlink(missing_ok=True)
            self._meta_path(key).unlink(missing_ok=True)
        # prune empty directories so listings stay clean (a race is harmless)
        for d in (path.parent, self._meta_path(key).parent):
            while d not in (self.root, self.root / SYS / "meta"):
                try:
                    d.rmdir()
                except OSError:
                    break
                d = d.parent

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / base if base else self.root
        if not start.is_dir():
            return
        keys: builtins.list[str] = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel_dir = os.path.relpath(dirpath, self.root)
            if rel_dir == ".":
                dirnames[:] = [d for d in dirnames if d != SYS]
                rel_dir = ""
            for fn in filenames:
                key = f"{rel_dir}/{fn}" if rel_dir else fn
                if key.startswith(prefix):
                    keys.append(key)
        for key in sorted(keys):
            info = self.head(key)
            if info is not None:
                yield info

    def delete_prefix(self, prefix: str) -> int:
        n = super().delete_prefix(prefix)
        d = self.root / prefix.rstrip("/")
        if prefix.endswith("/") and d.is_dir() and not any(d.iterdir()):
            shutil.rmtree(d, ignore_errors=True)
        return n
