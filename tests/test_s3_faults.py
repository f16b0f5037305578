"""S3 faults injected by a proxy (tests/faultproxy.py) in front of LocalStack's S3.

Reproducers of the failures a review found (lost answers to committed writes, a
cleanup that failed half-way, bytes changed after their check, duplicate alias
history, no timeouts, a retry quota that ran dry), then a random run at 10% and
25% faults over pushes (direct and over HTTP), alias changes and reads that counts
acknowledged data lost, corrupted or unverifiable versions and duplicate history
entries (all must be 0), and checks that every failure a caller saw was a clear,
retryable error. ``MODELBAY_FAULT_SCALE=N`` multiplies the random run's size (the
suite runs N=1; the figures reported in issue 12 come from a longer run).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelbay.errors import Conflict, ModelbayError, StoreUnavailable
from modelbay.registry import Registry
from modelbay.settings import Settings
from tests.faultproxy import FaultPlan, FaultProxy, Rule
from tests.invariants import duplicate_history_entries, violations
from tests.onnx_models import make_mlp

SCALE = int(os.environ.get("MODELBAY_FAULT_SCALE", "1"))
# what botocore's own messages look like: none of it may reach a caller
RAW = re.compile(r"An error occurred \(|botocore|Could not connect to the endpoint|Read timeout on endpoint|urllib3")


@pytest.fixture
def s3(localstack, tmp_path) -> Iterator[Callable[..., Any]]:
    """``s3(plan, **settings)``: (proxy, store through it, the same store without it) on a fresh bucket."""
    bucket = localstack.new_bucket()
    with contextlib.ExitStack() as stack:

        def make(plan: FaultPlan, **overrides: Any) -> tuple[FaultProxy, Any, Any]:
            settings = Settings(cache_dir=tmp_path / "cache", **overrides)
            proxy = stack.enter_context(FaultProxy(localstack.endpoint, plan))
            return (
                proxy,
                localstack.s3_store(bucket, "root", settings, endpoint=proxy.url),
                localstack.s3_store(bucket, "root", Settings(cache_dir=tmp_path / "cache")),
            )

        yield make


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("fault-models")
    return [make_mlp(d / f"m{i}.onnx", seed=i) for i in range(3)]


def _clear(e: BaseException) -> bool:
    """A failure a person can act on: modelbay's own error, retryable, in words."""
    return (
        isinstance(e, ModelbayError)
        and bool(getattr(e, "retryable", e.details.get("retryable")))
        and not RAW.search(str(e))
    )


# ---------------------------------------------------------------- B3: a 412 on our own write
@pytest.mark.parametrize("file", ["manifest.json", ".claim", "model.onnx"])
def test_a_lost_answer_to_a_committed_write_is_recognised(s3, models, file):
    proxy, store, direct = s3(FaultPlan(rules=[Rule("PUT", rf"/{re.escape(file)}$", "lost")]))
    m = Registry(store).register_version("m", models[0])
    assert proxy.injected["lost"] == 1
    assert m.version == 1 and Registry(direct).version_numbers("m") == [1]  # reported, kept, and only once
    assert violations(direct) == []


def test_a_lost_answer_to_the_upload_record_is_recognised(s3, models):
    proxy, store, direct = s3(FaultPlan(rules=[Rule("PUT", r"/upload\.json$", "lost")]))
    reg = Registry(store)
    up = reg.create_upload("m", {"model.onnx": {"size": models[0].stat().st_size, "sha256": _sha(models[0])}})
    t = up.targets["model.onnx"]
    httpx.put(t.url, content=models[0].read_bytes(), headers=t.headers).raise_for_status()
    assert reg.register_upload("m", up.upload_id).version == 1
    assert proxy.injected["lost"] == 1 and violations(direct) == []


# ---------------------------------------------------------------- B4: cleanup of a failed publish
def test_a_failed_cleanup_never_leaves_a_visible_version_without_its_model(s3, models):
    # the manifest's write commits but answers 500 every time; deleting it fails too
    plan = FaultPlan(
        rules=[
            Rule("PUT", r"/manifest\.json$", "commit500", times=100),
            Rule("DELETE", r"/manifest\.json$", "500", 100),
        ]
    )
    proxy, store, direct = s3(plan, s3_retry_attempts=3, s3_retry_seconds=5)
    with pytest.raises(StoreUnavailable) as failed:
        Registry(store).register_version("m", models[0])
    assert _clear(failed.value) and proxy.injected["500"] >= 1  # the cleanup's delete failed too
    assert violations(direct) == []  # the version is whole (its model stayed) or hidden, never half
    assert Registry(direct).get_version("m", 1).sha256 == _sha(models[0])


# ---------------------------------------------------------------- B5: bytes changed after their check
@pytest.mark.parametrize("store", ["local", "localstack"], indirect=True)
def test_bytes_uploaded_again_during_registration_are_never_published(store, models, monkeypatch):
    reg = Registry(store)
    good, other = models[0], models[1]
    up = reg.create_upload("m", {"model.onnx": {"size": good.stat().st_size, "sha256": _sha(good)}})
    _upload(reg, up, good)
    real_get_file = store.get_file

    def checked_then_replaced(key: str, dest: Path, **kw: Any) -> Any:
        info = real_get_file(key, dest, **kw)
        if "/uploads/" in key:  # the registry has its copy to validate; now the URL is used again
            _upload(reg, up, other)
        return info

    monkeypatch.setattr(store, "get_file", checked_then_replaced)
    with pytest.raises(Conflict, match="changed while it was being registered"):
        reg.register_upload("m", up.upload_id)
    monkeypatch.undo()
    assert reg.version_numbers("m") == [] and violations(store) == []


def _upload(reg: Registry, up: Any, path: Path) -> None:
    if up.targets:
        t = up.targets["model.onnx"]
        httpx.put(t.url, content=path.read_bytes(), headers=t.headers).raise_for_status()
    else:  # the local store's upload route takes any bytes of the declared size
        reg.receive_upload(up.upload_id, "model.onnx", up.token, path)


# ---------------------------------------------------------------- B6: alias changes applied once
@pytest.mark.parametrize("kind", ["lost", "commit500"])
def test_alias_changes_whose_answers_are_lost_are_applied_once(s3, models, kind):
    proxy, store, direct = s3(FaultPlan(rules=[Rule("PUT", r"/aliases/m/production\.json$", kind, times=6)]))
    reg = Registry(store)
    for m in models:
        Registry(direct).register_version("m", m)
    for v in (1, 2, 3, 1, 2, 3):
        assert reg.set_alias("m", "production", v).version == v
    assert proxy.injected[kind] == 6
    history = Registry(direct).alias_state("m", "production").history
    assert [e["to"] for e in history] == [1, 2, 3, 1, 2, 3]
    assert duplicate_history_entries(direct) == 0 and violations(direct) == []


def test_a_change_reported_failed_is_recognised_when_retried(s3, models):
    # every answer to the alias write is lost: the change lands, the caller hears a 503
    plan = FaultPlan(rules=[Rule("PUT", r"/aliases/m/production\.json$", "lost", times=3)])
    _, store, direct = s3(plan, s3_retry_attempts=3, s3_retry_seconds=5)
    Registry(direct).register_version("m", models[0])
    with pytest.raises(StoreUnavailable) as failed:
        Registry(store).set_alias("m", "production", 1, change_id="promote-1")
    assert _clear(failed.value)
    # the caller retries with the same change id: done, and recorded once
    state = Registry(store).set_alias("m", "production", 1, change_id="promote-1")
    assert state.version == 1 and [e["id"] for e in state.history] == ["promote-1"]


# ---------------------------------------------------------------- B7: timeouts and a retry budget
def test_a_silent_s3_fails_within_the_budget_in_words(s3):
    proxy, store, _ = s3(
        FaultPlan(rate=1.0, kinds=("delay",), delay_seconds=3.0),
        s3_read_timeout=0.5,
        s3_retry_attempts=3,
        s3_retry_seconds=30,
    )
    with pytest.raises(StoreUnavailable) as failed:
        store.get_bytes("anything")
    assert _clear(failed.value) and "read timeout" in str(failed.value)
    assert proxy.attempts("GET", r"/anything$") == 3  # each attempt ended at the read timeout


def test_every_call_keeps_its_retries_through_a_burst_of_503s(s3):
    proxy, store, _ = s3(FaultPlan(rate=1.0, kinds=("503",)), s3_retry_attempts=4, s3_retry_seconds=60)
    for i in range(12):  # botocore's shared quota let the first 7 calls retry, then none
        with pytest.raises(StoreUnavailable) as failed:
            store.get_bytes(f"k{i}")
        assert _clear(failed.value) and "503 SlowDown" in str(failed.value)
    assert [proxy.attempts("GET", rf"/k{i}$") for i in range(12)] == [4] * 12


def test_an_unavailable_store_is_a_503_in_words_over_http(s3, tmp_path):
    from modelbay.api.app import create_app
    from modelbay.client import ApiError, Client
    from tests.servers import running

    _, store, _ = s3(FaultPlan(rate=1.0, kinds=("503",)), s3_retry_attempts=2)
    settings = Settings(store_url=store.url, cache_dir=tmp_path / "server-cache", auth=False)
    with running(create_app(settings, store=store)) as url:
        r = httpx.get(f"{url}/registry/models")
        assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1
        assert r.json()["code"] == "store_unavailable" and r.json()["retryable"] is True
        with Client(url, api_key="", retry_attempts=2) as c, pytest.raises(ApiError) as failed:
            c.models()
    assert _clear(failed.value) and failed.value.status == 503
    assert "the model store is not answering" in str(failed.value) and "2 attempts" in str(failed.value)


# ---------------------------------------------------------------- random faults: the figures
@dataclass
class Tally:
    acknowledged: list[tuple[str, int, str]] = field(default_factory=list)  # (model, version, sha256)
    changes: list[str] = field(default_factory=list)  # acknowledged alias change ids
    failures: Counter[str] = field(default_factory=Counter)
    unclear: list[str] = field(default_factory=list)
    wrong_reads: list[str] = field(default_factory=list)
    ops: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def failed(self, what: str, e: BaseException) -> None:
        with self.lock:
            self.failures[what] += 1
            if not _clear(e):
                self.unclear.append(f"{what}: {type(e).__name__}: {e}")


def _retrying(call: Callable[[], Any], attempts: int = 4) -> Any:
    """What a caller does with a retryable failure: the same call (same change id) again."""
    for i in range(attempts):
        try:
            return call()
        except ModelbayError as e:
            if i == attempts - 1 or not _clear(e):
                raise
    raise AssertionError("unreachable")


def _fault_run(store: Any, client: Any, models: list[Path], tally: Tally, n: int) -> None:
    reg = Registry(store)
    shas = [_sha(m) for m in models]

    def pushes(worker: int) -> None:
        for i in range(n):
            m = (worker + i) % len(models)
            name = f"m{m}"
            try:
                if i % 2 and client is not None:  # over HTTP: the client's retries, the server's recognition
                    got = client.push(models[m], name)
                else:
                    got = reg.register_version(name, models[m])
                with tally.lock:
                    tally.acknowledged.append((name, got.version, got.sha256))
                    tally.ops["push"] += 1
            except Exception as e:
                tally.failed("push", e)

    def alias_changes(worker: int) -> None:
        for i in range(2 * n):
            with tally.lock:
                known = [(a, v) for a, v, _ in tally.acknowledged if a == "m0"]
            if not known:
                continue
            _, v = known[(worker + i * 7) % len(known)]
            change = f"w{worker}-{i}-{uuid.uuid4().hex[:6]}"
            try:
                _retrying(lambda v=v, change=change: reg.set_alias("m0", "production", v, change_id=change))
                with tally.lock:
                    tally.changes.append(change)
                    tally.ops["alias"] += 1
            except Exception as e:
                tally.failed("alias", e)

    def reads(worker: int) -> None:
        for i in range(2 * n):
            with tally.lock:
                known = list(tally.acknowledged)
            if not known:
                continue
            name, v, sha = known[(worker + i * 5) % len(known)]
            try:
                m = reg.get_version(name, v)
                data, _ = store.get_bytes(reg.layout.file(name, v, "model.onnx"))
                if m.sha256 != sha or hashlib.sha256(data).hexdigest() != sha or sha not in shas:
                    tally.wrong_reads.append(f"{name}@{v}")
                tally.ops["read"] += 1
            except Exception as e:
                tally.failed("read", e)

    threads = [threading.Thread(target=f, args=(w,)) for w in range(2) for f in (pushes, alias_changes, reads)]
    [t.start() for t in threads]
    [t.join() for t in threads]


@pytest.mark.parametrize(
    ("rate", "attempts"),
    [(0.10, 8), (0.25, 8), (0.25, 2)],
    ids=["10%", "25%", "25%-short-retry-budget"],  # the last one makes failures happen: they must be clear
)
def test_random_faults_lose_and_corrupt_nothing(s3, models, rate, attempts, serve_store):
    from modelbay.client import Client

    plan = FaultPlan(rate=rate, seed=int(rate * 100) + attempts, delay_seconds=0.2)
    proxy, store, direct = s3(plan, s3_retry_attempts=attempts)
    tally = Tally()
    for m in models[:2]:  # something to alias and read from the start
        got = Registry(direct).register_version("m0", m)
        tally.acknowledged.append(("m0", got.version, got.sha256))
    with Client(serve_store(store), retry_seconds=60) as client:
        _fault_run(store, client, models, tally, n=4 * SCALE)
    reg = Registry(direct)
    lost = [f"{name}@{v}" for name, v, sha in tally.acknowledged if _lost(reg, name, v, sha)]
    history = reg.alias_state("m0", "production").history if tally.changes else []
    recorded = Counter(e.get("id") for e in history)
    lost_changes = [c for c in tally.changes if recorded[c] != 1]
    report = {
        "rate": rate,
        "S3 attempts per call": attempts,
        "ops": dict(tally.ops),
        "faults injected": dict(proxy.injected),
        "requests": sum(proxy.requests.values()),
        "failures seen": dict(tally.failures),
        "acknowledged data lost": len(lost) + len(lost_changes),
        "corrupted or unverifiable versions": len(violations(direct)) + len(tally.wrong_reads),
        "duplicate history entries": duplicate_history_entries(direct),
        "unclear failures": len(tally.unclear),
    }
    print("fault run:", report)
    assert sum(proxy.injected.values()) > 0 and tally.ops["push"] > 0
    assert (lost, lost_changes, tally.wrong_reads) == ([], [], [])
    assert violations(direct) == [] and duplicate_history_entries(direct) == 0
    assert tally.unclear == []


def _lost(reg: Registry, name: str, v: int, sha: str) -> bool:
    try:
        m = reg.get_version(name, v)
        data, _ = reg.store.get_bytes(reg.layout.file(name, v, "model.onnx"))
    except ModelbayError:
        return True
    return m.sha256 != sha or hashlib.sha256(data).hexdigest() != sha


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()
