"""The embedded default: a directory on local disk.

Object bytes live at ``<root>/<key>``, so the directory is itself a Triton model
repository. What was recorded about each object (sha256, size, etag) lives in
``<root>/.sys/meta/<key>``.

A write is crash-atomic although bytes and record are two files. The record
file is replaced first and keeps the previous revision's record beside the new
one, each naming the file it describes (inode, mtime, size); then the new bytes
are renamed into place. Whichever rename a crash interrupts, the bytes on disk
match one of the records, so the object reads as its old or its new revision,
never as a mix. Reads hash the bytes and pick the record with that sha256.

Conditional writes hold an exclusive ``flock`` while they check the condition
and swap in the new revision; readers take the shared lock. Locks are a fixed
set of stripe files chosen by the key's hash, so their number never grows.
flock works across processes: several local servers may share one directory.
Work files live in ``.sys/tmp``; ``sweep_leftovers`` removes what crashes left.
"""

from __future__ import annotations

import builtins
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypedDict, TypeVar

from ..errors import BadRequest, IntegrityError, NotFound, PreconditionFailed, StoreUnavailable
from .base import ObjectInfo, ObjectStore, copy_hashing

SYS = ".sys"
LOCK_STRIPES = 256
_T = TypeVar("_T")


class _Record(TypedDict, total=False):
    sha256: str
    size: int
    etag: str
    ino: int  # which file the record describes: absent in records written before these three
    mtime_ns: int


def _check_key(key: str) -> None:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or parts[0] == SYS:
        raise BadRequest(f"invalid object key {key!r}")


def _describes(rec: _Record, st: os.stat_result) -> bool:
    return rec.get("ino") == st.st_ino and rec.get("mtime_ns") == st.st_mtime_ns and rec.get("size") == st.st_size


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _disk_errors(what: str, fn: Callable[[], _T]) -> _T:
    """A full or read-only disk is the store being unavailable, said in words (no paths)."""
    try:
        return fn()
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO):
            raise StoreUnavailable(f"the local store could not {what}: {os.strerror(e.errno)}") from None
        raise


class LocalStore(ObjectStore):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)
        self.scratch_root = self.root / SYS / "tmp"
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
        stripe = int.from_bytes(hashlib.sha1(key.encode()).digest()[:4], "big") % LOCK_STRIPES
        fd = os.open(self.root / SYS / "locks" / f"stripe-{stripe:03d}", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _records(self, key: str) -> builtins.list[_Record]:
        try:
            doc = json.loads(self._meta_path(key).read_text())
        except FileNotFoundError:
            return []
        if "records" in doc:
            records: builtins.list[_Record] = doc["records"]
            return records
        return [doc]  # the single record of stores written before records named their file

    def _live(self, key: str, st: os.stat_result, path: Path | None = None) -> _Record | None:
        """The record of the bytes on disk: the one naming this file; else (a copied store, a record
        without file identity) the one whose sha256 the bytes have when ``path`` is given to hash,
        or the newest when not."""
        records = self._records(key)
        for rec in records:
            if _describes(rec, st):
                return rec
        if path is None:
            return records[0] if records else None
        with open(path, "rb") as f:
            sha = hashlib.file_digest(f, "sha256").hexdigest()
        return next((r for r in records if r["sha256"] == sha), None)

    # -- writes ----------------------------------------------------------
    def _commit(self, key: str, tmp: Path, sha: str, size: int, if_none_match: bool, if_match: str | None) -> str:
        path = self._path(key)
        try:
            with self._lock(key, exclusive=True):
                try:
                    current = self._live(key, path.stat(), path)
                except FileNotFoundError:
                    current = None
                if if_none_match and current is not None:
                    raise PreconditionFailed(f"{key} already exists")
                if if_match is not None and (current is None or current["etag"] != if_match):
                    raise PreconditionFailed(f"{key} changed since it was read")
                # etag must change on every write, even of equal bytes, so If-Match
                # cannot be fooled by an A->B->A sequence.
                etag = f"{sha[:16]}-{os.urandom(6).hex()}"
                st = tmp.stat()
                new: _Record = {"sha256": sha, "size": size, "etag": etag, "ino": st.st_ino, "mtime_ns": st.st_mtime_ns}
                doc = {"records": [new, current] if current is not None else [new]}
                # The record first: until the bytes are renamed, the old record still describes the
                # file. Its rename is synced so that even a power cut cannot keep the bytes' rename
                # without it (contents are synced before their renames).
                self._publish(self._meta_path(key), lambda p: self._write_json(p, doc), sync=True)
                self._publish(path, lambda p: os.replace(tmp, p))
        finally:
            tmp.unlink(missing_ok=True)  # still there only when the write did not happen
        return etag

    def _write_json(self, dest: Path, doc: object) -> None:
        with self._tmpfile() as f:
            f.write(json.dumps(doc).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(f.name, dest)

    @staticmethod
    def _publish(dest: Path, rename: Callable[[Path], None], *, sync: bool = False) -> None:
        """``rename`` the new file to ``dest``; ``sync``: make the rename durable before going on."""
        # a delete of a sibling may prune the directory between our mkdir and rename: make it again
        for attempt in range(5):
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                rename(dest)
                break
            except FileNotFoundError:
                if attempt == 4:
                    raise
        if sync:
            _fsync_dir(dest.parent)

    def _tmpfile(self) -> IO[bytes]:
        return tempfile.NamedTemporaryFile(dir=self.scratch_root, prefix="put-", delete=False)

    def _write_tmp(self, fill: Callable[[IO[bytes]], tuple[str, int]]) -> tuple[Path, str, int]:
        """A work file holding the new bytes, synced: (path, sha256, size)."""
        with self._tmpfile() as f:
            try:
                sha, size = fill(f)
                f.flush()
                os.fsync(f.fileno())
            except BaseException:
                Path(f.name).unlink(missing_ok=True)
                raise
        return Path(f.name), sha, size

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        tags: str | None = None,
    ) -> str:
        self._path(key)

        def fill(f: IO[bytes]) -> tuple[str, int]:
            f.write(data)
            return hashlib.sha256(data).hexdigest(), len(data)

        tmp, sha, size = _disk_errors("write", lambda: self._write_tmp(fill))
        return _disk_errors("write", lambda: self._commit(key, tmp, sha, size, if_none_match, if_match))

    def put_file(self, key: str, path: Path, *, if_none_match: bool = False) -> str:
        self._path(key)

        def fill(f: IO[bytes]) -> tuple[str, int]:
            with open(path, "rb") as src:
                return copy_hashing(src, f)

        tmp, sha, size = _disk_errors("write", lambda: self._write_tmp(fill))
        return _disk_errors("write", lambda: self._commit(key, tmp, sha, size, if_none_match, None))

    def copy(self, src: str, dst: str, *, sha256: str, if_match: str | None = None) -> str:
        self._path(dst)
        with self._tmpfile() as f:
            pass
        tmp = Path(f.name)
        try:
            info = self.get_file(src, tmp, expected_sha256=sha256)
            if if_match is not None and info.etag != if_match:
                raise PreconditionFailed(f"{src} changed since it was checked")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        # the bytes committed are the ones just verified, whatever happens to src meanwhile
        return _disk_errors("write", lambda: self._commit(dst, tmp, sha256, info.size, False, None))

    # -- reads -----------------------------------------------------------
    def get_bytes(self, key: str) -> tuple[bytes, str]:
        path = self._path(key)
        with self._lock(key, exclusive=False):
            records = self._records(key)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise NotFound(f"no object {key}") from None
        sha = hashlib.sha256(data).hexdigest()
        rec = next((r for r in records if r["sha256"] == sha), None)
        if rec is None:
            raise IntegrityError(f"{key}: stored sha256 does not match its bytes")
        return data, rec["etag"]

    def get_file(self, key: str, dest: Path, *, expected_sha256: str | None = None) -> ObjectInfo:
        path = self._path(key)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self._lock(key, exclusive=False):
            records = self._records(key)
            if not path.is_file():  # writers and deleters wait for our lock: no race
                raise NotFound(f"no object {key}")
            with open(path, "rb") as src, open(dest, "wb") as out:
                sha, size = copy_hashing(src, out)
                mtime = os.fstat(src.fileno()).st_mtime
        rec = next((r for r in records if r["sha256"] == sha), None)
        if rec is None or (expected_sha256 and expected_sha256 != sha):
            dest.unlink(missing_ok=True)
            want = expected_sha256 if rec is not None else "its record"
            raise IntegrityError(f"{key}: sha256 {sha} does not match {want}")
        return ObjectInfo(key, size, rec["etag"], sha, mtime)

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        with self._lock(key, exclusive=False):
            try:
                st = path.stat()
            except FileNotFoundError:
                return None
            rec = self._live(key, st)
        if rec is None:
            return None
        return ObjectInfo(key, st.st_size, rec["etag"], rec["sha256"], st.st_mtime)

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._lock(key, exclusive=True):
            # bytes first: a crash between leaves a record without bytes, which reads as absent
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

    # -- housekeeping ------------------------------------------------------
    def sweep_leftovers(self, older_than: float) -> int:
        """Work files, records whose bytes a crash never renamed into place, and the per-key lock
        files of stores written before locks were striped."""
        n = super().sweep_leftovers(older_than)
        cutoff = time.time() - older_than
        for lock in (self.root / SYS / "locks").iterdir():
            if not lock.name.startswith("stripe-") and lock.stat().st_mtime < cutoff:
                lock.unlink(missing_ok=True)
                n += 1
        meta_root = self.root / SYS / "meta"
        for dirpath, _, filenames in os.walk(meta_root):
            for fn in filenames:
                key = os.path.relpath(os.path.join(dirpath, fn), meta_root)
                with self._lock(key, exclusive=True):
                    mp = self._meta_path(key)
                    try:
                        stale = mp.stat().st_mtime < cutoff and not (self.root / key).exists()
                    except FileNotFoundError:
                        continue
                    if stale:
                        mp.unlink(missing_ok=True)
                        n += 1
        return n
