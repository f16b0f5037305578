"""Retries that are recognised, deletes that finish, a sweep that repairs, an alias cache that hears changes.

The HTTP tests put the fault proxy (tests/faultproxy.py) in front of a modelbay server:
it drops connections ("Server disconnected without sending a response") and loses
answers to requests the server has carried out, as a loaded server or network does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from modelbay.errors import BadRequest, NotFound
from modelbay.layout import CLAIM, MANIFEST, MODEL_FILE, TOMBSTONE
from modelbay.registry import Registry
from modelbay.settings import Settings
from tests.faultproxy import FaultPlan, FaultProxy, Rule
from tests.invariants import leftovers, violations
from tests.onnx_models import make_mlp
from tests.servers import running


@pytest.fixture
def reg(store) -> Registry:
    return Registry(store)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("reliability-models")
    return [make_mlp(d / f"m{i}.onnx", seed=i) for i in range(3)]


# ---------------------------------------------------------------- B2: deletes that finish
def test_a_delete_that_crashed_after_its_tombstone_is_finished_by_the_next(reg, models):
    for m in models[:2]:
        reg.register_version("m", m)
    # what a delete that died right after hiding the version leaves: tombstone, manifest, model
    reg.store.put_bytes(reg.layout.file("m", 2, TOMBSTONE), b'{"id": "crashed"}')
    assert reg.version_numbers("m") == [1]
    reg.delete_version("m", 2)  # used to answer 404 "was deleted" and leave the files for good
    assert {i.key.rsplit("/", 1)[1] for i in reg.store.list(reg.layout.version("m", 2))} == {CLAIM, TOMBSTONE}
    reg.delete_version("m", 2)  # a retried delete whose answer was lost: done
    with pytest.raises(NotFound):
        reg.delete_version("m", 7)
    assert reg.register_version("m", models[0]).version == 3  # numbers are never reused


def test_the_sweep_finishes_crashed_deletes_and_repairs_partial_versions(reg, models):
    for m in models:
        reg.register_version("m", m)
    reg.register_version("n", models[0])
    reg.set_alias("m", "production", 3)
    # a delete that died after its tombstone (v1); one that raced an alias change, both dying (v3);
    # a failed publish whose cleanup removed the model and then could not remove the manifest (n@1)
    reg.store.put_bytes(reg.layout.file("m", 1, TOMBSTONE), b"{}")
    reg.store.put_bytes(reg.layout.file("m", 3, TOMBSTONE), b"{}")
    reg.store.delete(reg.layout.file("n", 1, MODEL_FILE))
    swept = reg.sweep(older_than=-1)
    assert (swept["deleted_files"], swept["restored_versions"], swept["broken_versions"]) == (2, 1, 1)
    assert reg.version_numbers("m") == [2, 3] and reg.alias_version("m", "production") == 3
    assert reg.version_numbers("n") == []
    reg.sweep(older_than=-1)
    assert violations(reg.store) == [] and leftovers(reg.store) == []


def test_nothing_recent_is_swept(reg, models):
    reg.register_version("m", models[0])
    reg.store.put_bytes(reg.layout.file("m", 1, TOMBSTONE), b"{}")  # a delete in progress
    reg.store.put_bytes(reg.layout.file("m", 2, CLAIM), b"{}")  # a publish in progress
    reg.store.put_bytes(reg.layout.file("m", 2, MODEL_FILE), b"partial")
    assert sum(reg.sweep().values()) == 0
    assert reg.store.head(reg.layout.file("m", 1, MANIFEST)) and reg.store.head(reg.layout.file("m", 2, MODEL_FILE))


# ---------------------------------------------------------------- B6: changes named by an id
def test_alias_changes_with_the_same_id_are_applied_once(reg, models):
    for m in models:
        reg.register_version("m", m)
    reg.set_alias("m", "production", 1, change_id="a")
    reg.set_alias("m", "production", 2, change_id="b")
    assert reg.set_alias("m", "production", 2, change_id="b").version == 2  # the retry of b
    assert reg.set_alias("m", "production", 3, expected=2, change_id="c").version == 3
    # a retried CAS whose first attempt landed: done, not a 412 because the alias moved (by it)
    assert reg.set_alias("m", "production", 3, expected=2, change_id="c").version == 3
    assert reg.rollback("m", "production", change_id="r").version == 2
    assert reg.rollback("m", "production", change_id="r").version == 2  # not walked back twice
    assert [e["id"] for e in reg.alias_state("m", "production").history] == ["a", "b", "c", "r"]
    with pytest.raises(BadRequest):
        reg.set_alias("m", "production", 1, change_id="../../x")
    # an upload's alias changes are named after it: the longest alias still makes a valid id
    up = reg.create_upload("m", {"model.onnx": {"size": models[0].stat().st_size, "sha256": _sha(models[0])}})
    _upload(reg, up, models[0])
    assert reg.register_upload("m", up.upload_id, aliases=["a" * 64]).version == 4


# ---------------------------------------------------------------- B9: the alias cache hears changes
def test_the_resolver_hears_changes_made_through_its_store(reg, models):
    from modelbay.engine.resolve import Resolver

    for m in models[:2]:
        reg.register_version("m", m)
    reg.set_alias("m", "production", 1)
    resolver = Resolver(reg.store, reg.limits, alias_ttl=3600)  # an hour: only a notice can refresh it
    assert resolver.resolve("default", "m").version == 1
    assert resolver.resolve("default", "m", "2").version == 2
    Registry(reg.store).set_alias("m", "production", 2)
    assert resolver.resolve("default", "m").version == 2
    Registry(reg.store).rollback("m", "production")
    assert resolver.resolve("default", "m", "production").version == 1
    Registry(reg.store).delete_version("m", 2)
    with pytest.raises(NotFound):
        resolver.resolve("default", "m", "2")


@pytest.fixture
def local_server(tmp_path) -> Iterator[tuple[str, Registry]]:
    """A local server (management + inference, no keys) whose alias answers live an hour."""
    from modelbay.api.app import create_app
    from modelbay.storage.local import LocalStore

    store = LocalStore(tmp_path / "store")
    settings = Settings(store_url=store.url, cache_dir=tmp_path / "cache", auth=False, alias_ttl=3600)
    with running(create_app(settings, store=store)) as url:
        yield url, Registry(store)


def test_a_local_server_serves_an_alias_change_it_made_at_once(local_server, models):
    from modelbay.client import Client

    url, _ = local_server
    x = {"x": np.ones((1, 4), np.float32)}
    with Client(url, api_key="") as c:
        c.push(models[0], "m", aliases=["production"])
        c.push(models[1], "m")
        assert c.infer("m", x).version == 1  # production is now cached for an hour
        c.set_alias("m", "production", 2)
        assert c.infer("m", x).version == 2
        c.rollback("m", "production")
        assert c.infer("m", x, ref="production").version == 1


# ---------------------------------------------------------------- B10: retried HTTP calls
@pytest.fixture
def proxied_server(local_server) -> Iterator[tuple[FaultProxy, Registry]]:
    url, reg = local_server
    with FaultProxy(url, FaultPlan()) as proxy:
        yield proxy, reg


def _client(proxy: FaultProxy):
    from modelbay.client import Client

    return Client(proxy.url, api_key="", retry_seconds=60)


@pytest.mark.parametrize("kind", ["drop", "lost"])
def test_a_registration_whose_answer_is_lost_registers_once(proxied_server, models, kind):
    proxy, reg = proxied_server
    proxy.plan.rules = [
        Rule("POST", r"/uploads$", kind),
        Rule("PUT", r"/files/model\.onnx", kind),
        Rule("POST", r"/models/m/versions$", kind),
    ]
    with _client(proxy) as c:
        m = c.push(models[0], "m", aliases=["production"])
    assert proxy.injected[kind] == 3  # each step failed once and was retried
    assert m.version == 1 and reg.version_numbers("m") == [1]
    assert len(reg.alias_state("m", "production").history) == 1
    reg.sweep(older_than=-1)  # the session the lost POST opened expires like any other
    assert leftovers(reg.store) == [] and violations(reg.store) == []


def test_alias_changes_whose_answers_are_lost_are_applied_once_over_http(proxied_server, models):
    proxy, reg = proxied_server
    for m in models:
        reg.register_version("m", m)
    proxy.plan.rules = [
        Rule("PUT", r"/aliases/production$", "lost", times=3),
        Rule("POST", r"/aliases/production/rollback$", "lost"),
        Rule("DELETE", r"/aliases/staging$", "lost"),
        Rule("DELETE", r"/versions/3$", "lost"),
        Rule("GET", r"/registry/models$", "503", times=2),
    ]
    with _client(proxy) as c:
        for v in (1, 2, 3):
            assert c.set_alias("m", "production", v).version == v
        assert c.rollback("m", "production").version == 2  # once: not on to 1
        c.set_alias("m", "staging", 1)
        assert c.delete_alias("m", "staging").version is None
        c.delete_version("m", 3)
        assert [s.name for s in c.models()] == ["m"]
    assert sum(proxy.injected.values()) == 8
    history = reg.alias_state("m", "production").history
    assert [(e["from"], e["to"]) for e in history] == [(None, 1), (1, 2), (2, 3), (3, 2)]
    assert reg.version_numbers("m") == [1, 2]


def test_a_failure_that_outlasts_the_retries_is_reported_in_words(proxied_server):
    from modelbay.client import ApiError

    proxy, _ = proxied_server
    proxy.plan.rules = [Rule("GET", r"/registry/models$", "drop", times=100)]
    with _client(proxy) as c:
        c.retry_attempts = 3
        with pytest.raises(ApiError) as failed:
            c.models()
    assert failed.value.retryable and failed.value.code == "unreachable"
    assert str(failed.value).startswith(f"cannot reach {proxy.url}: the connection") and "3 attempts" in str(
        failed.value
    )
    assert proxy.attempts("GET", r"/registry/models$") == 3


def test_a_call_that_must_not_run_twice_is_not_retried_after_it_was_sent(proxied_server):
    from modelbay.client import ApiError

    proxy, _ = proxied_server
    proxy.plan.rules = [Rule("POST", r"/feedback$", "lost")]
    with _client(proxy) as c, pytest.raises(ApiError):
        c.feedback("m", [{"correct": True}])
    assert proxy.attempts("POST", r"/feedback$") == 1


def test_conflicting_registrations_of_one_upload_publish_one_version(reg, models):
    """Two registrations of the same upload at once (a client retrying while the first still runs)."""
    import threading

    up = reg.create_upload("m", {"model.onnx": {"size": models[0].stat().st_size, "sha256": _sha(models[0])}})
    _upload(reg, up, models[0])
    results, errors = [], []

    def register():
        try:
            results.append(Registry(reg.store).register_upload("m", up.upload_id, aliases=["production"]).version)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=register) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == [] and len(results) == 4 and len(set(results)) == 1
    assert reg.version_numbers("m") == results[:1]
    assert len(reg.alias_state("m", "production").history) == 1


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _upload(reg: Registry, up, path: Path) -> None:
    if up.targets:
        import httpx

        t = up.targets["model.onnx"]
        httpx.put(t.url, content=path.read_bytes(), headers=t.headers).raise_for_status()
    else:
        reg.receive_upload(up.upload_id, "model.onnx", up.token, path)
