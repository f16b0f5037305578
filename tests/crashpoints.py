"""Crash points: the process dies before (or right after) one write step, and never touches the store again.

A ``Crash`` is raised at step ``at`` of an operation, and from then on every further
step, of any kind, raises it too: cleanup handlers and ``finally`` blocks cannot do
what a killed process would not have done. The steps are

* on the local store, every filesystem mutation under the store (``os.replace``,
  ``os.rename``, ``os.unlink``, ``os.rmdir``, ``os.mkdir``, ``os.fsync``), patched in
  the ``os`` module for the duration;
* on S3, every mutating API call, twice: before it is sent, and after it was
  answered (it committed; the process dies before using the answer), through
  botocore's ``before-call``/``after-call`` events on the store's client.

``CrashPlan(None)`` only counts the steps of a run, so a harness can then crash a
fresh run at each of them in turn.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MUTATING_S3 = ("PutObject", "CopyObject", "DeleteObject", "DeleteObjects", "CompleteMultipartUpload", "UploadPart")
_FS_CALLS = ("replace", "rename", "unlink", "remove", "rmdir", "mkdir", "fsync")


class Crash(BaseException):
    """The process died here (a BaseException: no ``except Exception`` of the code under test stops it)."""


class CrashPlan:
    def __init__(self, at: int | None) -> None:
        self.at = at
        self.steps: list[str] = []
        self.dead = False

    def step(self, what: str) -> None:
        if self.dead:
            raise Crash(f"dead, at {what}")
        if self.at is not None and len(self.steps) == self.at:
            self.dead = True
            raise Crash(what)
        self.steps.append(what)

    def touch(self) -> None:
        """Any store access: a dead process makes none."""
        if self.dead:
            raise Crash("dead")


def _under(arg: Any, roots: tuple[str, ...]) -> bool:
    return isinstance(arg, str | os.PathLike) and os.fspath(arg).startswith(roots)


@contextlib.contextmanager
def crashing_filesystem(plan: CrashPlan, *roots: Path) -> Iterator[None]:
    """Route filesystem mutations under ``roots`` (and by directory fd, as shutil.rmtree does) through ``plan``."""
    prefixes = tuple(str(r) for r in roots)
    saved = {name: getattr(os, name) for name in _FS_CALLS}

    def wrap(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kw: Any) -> Any:
            if name == "fsync" or kw.get("dir_fd") is not None or any(_under(a, prefixes) for a in args[:2]):
                paths = [os.fspath(a) for a in args[:2] if isinstance(a, str | os.PathLike)]
                plan.step(f"{name} {' -> '.join(paths) or 'fd'}")
            return real(*args, **kw)

        return call

    for name, real in saved.items():
        setattr(os, name, wrap(name, real))
    try:
        yield
    finally:
        for name, real in saved.items():
            setattr(os, name, real)


@contextlib.contextmanager
def crashing_s3(plan: CrashPlan, client: Any) -> Iterator[None]:
    """Route the S3 client's calls through ``plan``: two steps per mutating call (sent / answered)."""

    def before(model: Any, params: dict[str, Any], **_: Any) -> None:
        if model.name in MUTATING_S3:
            plan.step(f"before {model.name} {params.get('Key', '')}")
        else:
            plan.touch()

    def after(model: Any, http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        if model.name in MUTATING_S3 and 200 <= http_response.status_code < 300:
            plan.step(f"after {model.name}")

    events = client.meta.events
    events.register("before-call.s3", before, unique_id="crash-before")
    events.register("after-call.s3", after, unique_id="crash-after")
    try:
        yield
    finally:
        events.unregister("before-call.s3", unique_id="crash-before")
        events.unregister("after-call.s3", unique_id="crash-after")
