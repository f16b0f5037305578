"""A crash at every write step of push, upload registration, alias set, rollback and delete, on both stores.

For each operation the steps of one run are counted, then the operation is run again
on a fresh registry for every step k, dying at k (tests/crashpoints.py: nothing is
written after the crash, cleanup included), and once more dying just after it
finished (the answer lost). Then, as a restarted process and its client would:

1. the store is checked as it is (tests/invariants.py): every visible version reads
   back whole and verified, every alias reads and points at a visible version, no
   history entry twice; and what finished before the crash is there;
2. the operation is retried (same change id, same upload) and must succeed, with its
   effect present exactly once;
3. the sweep runs, and nothing may be left (files of hidden versions, staged uploads,
   work files, records, lock files) and everything in 1 and 2 must still hold.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelbay.registry import Registry, sweep_all
from modelbay.settings import Settings
from modelbay.storage import ObjectStore
from tests.crashpoints import Crash, CrashPlan, crashing_filesystem, crashing_s3
from tests.invariants import leftovers, violations
from tests.onnx_models import make_mlp


@dataclass
class Files:
    a: Path
    b: Path
    notes: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Files:
    d = tmp_path_factory.mktemp("crash-models")
    notes = d / "notes.txt"
    notes.write_text("side file")
    return Files(make_mlp(d / "a.onnx", seed=1), make_mlp(d / "b.onnx", seed=2), notes)


def _setup(reg: Registry, f: Files) -> dict[str, Any]:
    """v1, v2 (with a side file), v3; production 1 -> 2; and an upload waiting to be registered."""
    reg.register_version("m", f.a)
    reg.register_version("m", f.b, side_files={"notes.txt": f.notes})
    reg.register_version("m", f.a)
    reg.set_alias("m", "production", 1)
    reg.set_alias("m", "production", 2)
    decl = {p: {"size": f_.stat().st_size, "sha256": _sha(f_)} for p, f_ in (("model.onnx", f.b),)}
    up = reg.create_upload("m", decl)
    if up.targets:
        t = up.targets["model.onnx"]
        httpx.put(t.url, content=f.b.read_bytes(), headers=t.headers).raise_for_status()
    else:
        reg.receive_upload(up.upload_id, "model.onnx", up.token or "", f.b)
    return {"upload": up.upload_id}


def _sha(p: Path) -> str:
    import hashlib

    return hashlib.sha256(p.read_bytes()).hexdigest()


# operation: (run it, check its effect after it finished)
def _push(reg: Registry, f: Files, ctx: dict[str, Any]) -> None:
    reg.register_version("m", f.b, side_files={"notes.txt": f.notes}, aliases=["staging"])


def _pushed(reg: Registry, ctx: dict[str, Any]) -> None:
    v = reg.alias_version("m", "staging")
    assert v > 3 and "notes.txt" in reg.get_version("m", v).files


def _register(reg: Registry, f: Files, ctx: dict[str, Any]) -> None:
    reg.register_upload("m", ctx["upload"], aliases=["canary"])


def _registered(reg: Registry, ctx: dict[str, Any]) -> None:
    assert reg.version_numbers("m") == [1, 2, 3, reg.alias_version("m", "canary")]  # exactly one new version
    assert len(reg.alias_state("m", "canary").history) == 1


def _alias(reg: Registry, f: Files, ctx: dict[str, Any]) -> None:
    reg.set_alias("m", "production", 3, change_id="change-alias")


def _aliased(reg: Registry, ctx: dict[str, Any]) -> None:
    state = reg.alias_state("m", "production")
    assert state.version == 3 and [e.get("id") for e in state.history].count("change-alias") == 1


def _rollback(reg: Registry, f: Files, ctx: dict[str, Any]) -> None:
    reg.rollback("m", "production", change_id="change-rollback")


def _rolled_back(reg: Registry, ctx: dict[str, Any]) -> None:
    state = reg.alias_state("m", "production")
    assert state.version == 1 and [e.get("id") for e in state.history].count("change-rollback") == 1


def _delete(reg: Registry, f: Files, ctx: dict[str, Any]) -> None:
    reg.delete_version("m", 3)


def _deleted(reg: Registry, ctx: dict[str, Any]) -> None:
    assert reg.version_numbers("m") == [1, 2]


OPERATIONS = {
    "push": (_push, _pushed),
    "register_upload": (_register, _registered),
    "set_alias": (_alias, _aliased),
    "rollback": (_rollback, _rolled_back),
    "delete": (_delete, _deleted),
}


@dataclass
class Place:
    """Where one crash run's store lives; ``open()`` is the store as a (re)started process opens it,
    ``fill(other)`` gives it a copy of everything in ``other`` (the set-up state, made once)."""

    open: Callable[[], ObjectStore]
    crashing: Callable[[CrashPlan, ObjectStore], contextlib.AbstractContextManager[None]]
    fill: Callable[[Place], None]
    where: Any = None
    ctx: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
def places(request, tmp_path) -> Iterator[Callable[[str], Place]]:
    """Fresh stores of the parametrised kind, one per crash run."""
    if request.param == "local":
        from modelbay.storage.local import LocalStore

        def local(tag: str) -> Place:
            root = tmp_path / tag
            # hard links keep inodes, so records still name their files; writes replace files, never edit them
            return Place(
                lambda: LocalStore(root),
                lambda plan, store: crashing_filesystem(plan, root),
                lambda other: shutil.copytree(other.where, root, copy_function=os.link),
                root,
            )

        yield local
        return
    ls = request.getfixturevalue("localstack")
    bucket = ls.new_bucket()
    s3 = ls.client("s3")

    def s3_place(tag: str) -> Place:
        settings = Settings(cache_dir=tmp_path / tag / "cache")

        @contextlib.contextmanager
        def crashing(plan: CrashPlan, store: Any) -> Iterator[None]:
            with crashing_s3(plan, store.client), crashing_filesystem(plan, store.scratch_root):
                yield

        def fill(other: Place) -> None:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{other.where}/"):
                for o in page.get("Contents", []):
                    key = tag + o["Key"][len(other.where) :]
                    s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": o["Key"]})

        return Place(lambda: ls.s3_store(bucket, tag, settings), crashing, fill, tag)

    yield s3_place


def _run(place: Place, template: Place, f: Files, op: str, at: int | None) -> tuple[CrashPlan, bool]:
    """Run ``op`` on a copy of the set-up state, dying at step ``at``; returns the plan and whether it finished."""
    run, _ = OPERATIONS[op]
    place.fill(template)
    store = place.open()
    reg = Registry(store)
    plan = CrashPlan(at)
    finished = False
    with contextlib.suppress(Crash), place.crashing(plan, store):
        run(reg, f, template.ctx)
        finished = True
    return plan, finished


def _check_after_crash(place: Place, f: Files, op: str, finished: bool, ctx: dict[str, Any]) -> list[str]:
    """Restart, check, retry, check, sweep, check; returns what went wrong."""
    run, effect = OPERATIONS[op]
    store = place.open()
    reg = Registry(store)
    problems = [f"after the crash: {v}" for v in violations(store)]
    if finished:  # it had answered: its effect must be there before any retry
        try:
            effect(reg, ctx)
        except Exception as e:
            problems.append(f"finished, but its effect is missing after the restart: {type(e).__name__}: {e}")
    try:
        run(reg, f, ctx)
        effect(reg, ctx)
    except Exception as e:
        problems.append(f"the retry failed: {type(e).__name__}: {e}")
    try:
        sweep_all(store, older_than=-1)
    except Exception as e:
        problems.append(f"the sweep failed: {type(e).__name__}: {e}")
    problems += [f"after the sweep: {v}" for v in violations(store) + leftovers(store)]
    try:
        effect(reg, ctx)
    except Exception as e:
        problems.append(f"the sweep undid the operation: {type(e).__name__}: {e}")
    return problems


@pytest.mark.parametrize("op", list(OPERATIONS))
@pytest.mark.parametrize("places", ["local", "localstack"], indirect=True)
def test_a_crash_at_any_write_step_breaks_nothing(places, files, op):
    template = places("template")
    template.ctx = _setup(Registry(template.open()), files)
    plan, finished = _run(places("count"), template, files, op, None)
    steps = len(plan.steps)
    assert finished and steps > 0
    found: dict[str, list[str]] = {}
    for at in [*range(steps), None]:  # None: died right after it finished, before answering
        place = places(f"{op}-{'done' if at is None else at}")
        _, finished = _run(place, template, files, op, at)
        assert finished == (at is None), f"step {at} of {steps} did not crash"
        step = plan.steps[at] if at is not None else "after the last step"
        if problems := _check_after_crash(place, files, op, finished, template.ctx):
            found[f"crash at step {at} ({step})"] = problems
    assert not found, f"{len(found)} of {steps + 1} crash points of {op} broke invariants:\n" + "\n".join(
        f"{where}:\n  " + "\n  ".join(p) for where, p in found.items()
    )
