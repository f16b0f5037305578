"""Model files cached on local disk, addressed by their sha256.

A file appears under its final name only after its sha256 was verified (the
store checks it while copying; we rename atomically afterwards), so a file
that exists is a verified file and a warm restart never re-hashes it.
Content addressing also shares one copy between versions with equal bytes.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from pathlib import Path

from ..storage import ObjectStore

_lock = threading.Lock()
RECENT_SECONDS = 60


class DiskCache:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root) / "blobs"
        self.max_bytes = max_bytes

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def fetch(self, store: ObjectStore, key: str, sha256: str) -> tuple[Path, bool]:
        """The cached path of ``key``; True when it had to be downloaded."""
        dest = self.path(sha256)
        if dest.exists():
            with contextlib.suppress(OSError):
                os.utime(dest)  # recency for pruning
            return dest, False
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{sha256}.{uuid.uuid4().hex}.part")
        try:
            store.get_file(key, tmp, expected_sha256=sha256)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        self.prune(keep=dest)
        return dest, True

    def prune(self, keep: Path | None = None) -> int:
        """Delete least recently used blobs until under budget; returns bytes freed."""
        with _lock:
            try:
                files = [(p.stat(), p) for p in self.root.glob("*/*") if not p.name.startswith(".")]
            except OSError:
                return 0
            total = sum(st.st_size for st, _ in files)
            freed = 0
            now = time.time()
            for st, p in sorted(files, key=lambda f: f[0].st_mtime):
                if total - freed <= self.max_bytes:
                    break
                # a blob fetched moments ago may be about to become a session in another thread
                if p == keep or now - st.st_mtime < RECENT_SECONDS:
                    continue
                # an open session keeps its own copy in memory; the file is only for reloads
                p.unlink(missing_ok=True)
                freed += st.st_size
            return freed
