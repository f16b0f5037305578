"""One contract, both stores: local directory and S3 (LocalStack's, whose conditional writes are atomic).

moto's conditional PUT is check-then-write without a lock (moto 5.2.5 ``put_object``):
under load two racing creators both win, so the contract is not tested on it.
"""

from __future__ import annotations

import threading

import pytest

from modelbay.errors import BadRequest, IntegrityError, NotFound, PreconditionFailed


@pytest.fixture(params=["local", "localstack"])
def store(request):
    return request.getfixturevalue(f"{request.param}_store")


def test_put_get_roundtrip_and_head(store):
    etag = store.put_bytes("a/b/c.json", b'{"x": 1}')
    data, etag2 = store.get_bytes("a/b/c.json")
    assert data == b'{"x": 1}'
    assert etag == etag2
    info = store.head("a/b/c.json")
    assert info.size == 8 and info.etag == etag
    assert store.head("a/b/missing") is None


def test_missing_object_is_not_found(store):
    with pytest.raises(NotFound):
        store.get_bytes("nope/x")
    with pytest.raises(NotFound):
        store.get_file("nope/x", store_tmp(store))


def store_tmp(store):
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp()) / "out"


def test_if_none_match_creates_once(store):
    store.put_bytes("k", b"1", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        store.put_bytes("k", b"2", if_none_match=True)
    assert store.get_bytes("k")[0] == b"1"


def test_if_match_compare_and_swap(store):
    e1 = store.put_bytes("alias", b"v1")
    e2 = store.put_bytes("alias", b"v2", if_match=e1)
    with pytest.raises(PreconditionFailed):
        store.put_bytes("alias", b"v3", if_match=e1)  # stale etag
    assert store.get_bytes("alias") == (b"v2", e2)
    with pytest.raises(PreconditionFailed):
        store.put_bytes("absent", b"x", if_match=e2)


def test_concurrent_creates_have_one_winner(store):
    wins, losses = [], []

    def writer(i):
        try:
            store.put_bytes("race", str(i).encode(), if_none_match=True)
            wins.append(i)
        except PreconditionFailed:
            losses.append(i)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(16)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(wins) == 1 and len(losses) == 15
    assert store.get_bytes("race")[0] == str(wins[0]).encode()


def test_files_roundtrip_and_copy(store, tmp_path):
    src = tmp_path / "big.bin"
    payload = bytes(range(256)) * 40_000  # ~10 MB: crosses the multipart threshold on S3
    src.write_bytes(payload)
    store.put_file("m/1/model.onnx", src)
    out = tmp_path / "out.bin"
    info = store.get_file("m/1/model.onnx", out)
    assert out.read_bytes() == payload and info.size == len(payload)
    import hashlib

    sha = hashlib.sha256(payload).hexdigest()
    assert info.sha256 == sha
    store.copy("m/1/model.onnx", "m/2/model.onnx", sha256=sha)
    assert store.get_file("m/2/model.onnx", tmp_path / "o2").sha256 == sha
    with pytest.raises(IntegrityError):
        store.get_file("m/2/model.onnx", tmp_path / "o3", expected_sha256="0" * 64)
    assert not (tmp_path / "o3").exists()


def test_list_by_prefix_and_delete(store):
    for k in ("t/models/a/1/model.onnx", "t/models/a/1/manifest.json", "t/models/ab/1/x", "t/other"):
        store.put_bytes(k, b"x")
    keys = [i.key for i in store.list("t/models/a/")]
    assert keys == ["t/models/a/1/manifest.json", "t/models/a/1/model.onnx"]
    assert len(list(store.list("t/models/a"))) == 3
    store.delete("t/models/a/1/model.onnx")
    store.delete("t/models/a/1/model.onnx")  # idempotent
    assert [i.key for i in store.list("t/models/a/")] == ["t/models/a/1/manifest.json"]
    assert store.delete_prefix("t/") == 3
    assert list(store.list("t/")) == []


def test_corruption_is_detected(store, tmp_path):
    store.put_bytes("c/obj", b"original")
    if hasattr(store, "root"):
        (store.root / "c/obj").write_bytes(b"tampered")
    else:
        # overwrite bytes while keeping the old sha256 metadata, as bit rot would
        import hashlib

        store.client.put_object(
            Bucket=store.bucket,
            Key=store._k("c/obj"),
            Body=b"tampered",
            Metadata={"sha256": hashlib.sha256(b"original").hexdigest()},
        )
    with pytest.raises(IntegrityError):
        store.get_bytes("c/obj")
    with pytest.raises(IntegrityError):
        store.get_file("c/obj", tmp_path / "x")


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a//b", "a/./b", ".sys/meta/x"])
def test_local_store_refuses_escaping_keys(tmp_path, key):
    from modelbay.storage.local import LocalStore

    with pytest.raises(BadRequest):
        LocalStore(tmp_path).put_bytes(key, b"x")
