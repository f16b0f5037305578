"""The local store's own guarantees: crash-atomic writes, bounded lock files, swept work files."""

from __future__ import annotations

import contextlib
import json
import os
import shutil

import pytest

from modelbay.errors import IntegrityError
from modelbay.registry import Registry, sweep_all
from modelbay.storage.local import LOCK_STRIPES, LocalStore
from tests.crashpoints import Crash, CrashPlan, crashing_filesystem
from tests.invariants import leftovers, violations


def _crash_where(root, at_step, write) -> CrashPlan:
    """Run ``write(store at root)`` twice: counting its filesystem steps on a twin store, then dying
    just before the first step for which ``at_step(step)`` holds."""
    twin = root.parent / f"{root.name}-twin"
    shutil.copytree(root, twin, copy_function=os.link)  # same inodes: the twin behaves the same
    counting = CrashPlan(None)
    with crashing_filesystem(counting, twin):
        write(LocalStore(twin))
    plan = CrashPlan(next(i for i, step in enumerate(counting.steps) if at_step(step.replace(str(twin), str(root)))))
    with contextlib.suppress(Crash), crashing_filesystem(plan, root):
        write(LocalStore(root))
    assert plan.dead
    return plan


def test_a_crash_between_record_and_bytes_leaves_the_old_revision_readable(tmp_path):
    """B1: the record of the new revision is in place, its bytes are not: the object still reads as
    the old revision (it used to read as a mismatch forever: 500 'integrity' on every call)."""
    root = tmp_path / "store"
    LocalStore(root).put_bytes("a/doc.json", b"old")
    _crash_where(
        root,
        lambda step: step.startswith("replace") and step.endswith(f"{root}/a/doc.json"),
        lambda s: s.put_bytes("a/doc.json", b"new"),
    )
    store = LocalStore(root)  # a restarted process
    data, etag = store.get_bytes("a/doc.json")
    assert data == b"old" and store.head("a/doc.json").etag == etag
    store.put_bytes("a/doc.json", b"newer", if_match=etag)  # and it can be changed
    assert store.get_bytes("a/doc.json")[0] == b"newer"


def test_an_alias_survives_a_crash_at_every_step_of_its_change(tmp_path, mlp_path):
    """The review's case: alias set crashed before each filesystem step; the alias and the tenant stay usable."""
    for at in range(20):
        root = tmp_path / f"s{at}"
        reg = Registry(LocalStore(root))
        reg.register_version("m", mlp_path)
        reg.register_version("m", mlp_path)
        reg.set_alias("m", "production", 1)
        plan = CrashPlan(at)
        with contextlib.suppress(Crash), crashing_filesystem(plan, root):
            reg.set_alias("m", "production", 2)
        again = Registry(LocalStore(root))
        assert again.alias_version("m", "production") in (1, 2)
        assert [s.name for s in again.list_models()] == ["m"]
        assert again.set_alias("m", "production", 2).version == 2  # writable again
        assert again.rollback("m", "production").version in (1, 2)
        assert violations(again.store) == []
        if not plan.dead:
            break


def test_lock_files_do_not_grow_with_writes(tmp_path):
    """B8: one lock file per key made .sys/locks grow by ~2.7 files per push; stripes bound it."""
    store = LocalStore(tmp_path)
    for i in range(3 * LOCK_STRIPES):
        store.put_bytes(f"k/{i}", b"x")
    assert len(list((tmp_path / ".sys" / "locks").iterdir())) <= LOCK_STRIPES


def test_crash_leftovers_are_swept(tmp_path, mlp_path):
    """B8: the staging copy of a registration and the work file of a write, left by a crash, go;
    so does a record whose bytes were never renamed into place."""
    root = tmp_path / "store"
    reg = Registry(LocalStore(root))
    up = reg.create_upload("m", {"model.onnx": {"size": mlp_path.stat().st_size, "sha256": _sha(mlp_path)}})
    reg.receive_upload(up.upload_id, "model.onnx", up.token, mlp_path)
    model = f"{root}/tenants/default/models/m/1/model.onnx"
    _crash_where(
        root,
        lambda step: step.startswith("replace") and step.endswith(model),
        lambda s: Registry(s).register_upload("m", up.upload_id),
    )
    assert {p.name.split("-")[0] for p in (root / ".sys" / "tmp").iterdir()} == {"scratch", "put"}
    assert (root / ".sys" / "meta" / "tenants/default/models/m/1/model.onnx").exists()
    swept = sweep_all(LocalStore(root), older_than=-1)
    assert swept["work_files"] >= 3 and swept["uploads"] == 1
    assert leftovers(LocalStore(root)) == [] and violations(LocalStore(root)) == []


def test_a_copied_store_still_reads(tmp_path, mlp_path):
    """Records name files by inode; a copied directory (new inodes) falls back to the bytes' sha256."""
    reg = Registry(LocalStore(tmp_path / "a"))
    reg.register_version("m", mlp_path, aliases=["production"])
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    copy = Registry(LocalStore(tmp_path / "b"))
    assert copy.resolve("m").version == 1 and violations(copy.store) == []
    copy.set_alias("m", "production", 1, expected=1)


def test_records_of_older_stores_still_read(tmp_path):
    store = LocalStore(tmp_path)
    store.put_bytes("k", b"data")
    meta = tmp_path / ".sys" / "meta" / "k"
    record = json.loads(meta.read_text())["records"][0]
    meta.write_text(json.dumps({k: record[k] for k in ("sha256", "size", "etag")}))  # the format before records
    assert store.get_bytes("k") == (b"data", record["etag"])
    assert store.head("k").etag == record["etag"]
    (tmp_path / "k").write_bytes(b"rot!")
    with pytest.raises(IntegrityError):
        store.get_bytes("k")


def _sha(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
