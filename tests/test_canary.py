"""Canary aliases: the split on the one alias writer (CAS, history, rollback), sticky routing in the engine,
guard rails that abort a bad version by themselves, over HTTP, the Lambda handler and the scheduled function."""

from __future__ import annotations

import collections
import json
import random
import threading
import time
from pathlib import Path

import httpx
import onnx
import pytest

from modelbay.auth.audit import AuditedRegistry, AuditLog
from modelbay.engine.resolve import Resolver
from modelbay.errors import Conflict, PreconditionFailed
from modelbay.guard import GUARD_ACTOR, check_all, enforce, evaluate
from modelbay.metrics import FeedbackEvent, InferenceEvent
from modelbay.metrics.memory import MemoryMetrics
from modelbay.registry import CANARY_INDEX, Registry, rollback_target
from modelbay.routing import ROUTE_HEADER, ROUTE_KEY_HEADER, to_canary
from modelbay.schemas import GuardRails
from modelbay.settings import Limits
from tests.apigw import LambdaContext, invoke, load_function
from tests.apigw import event as apigw_event
from tests.onnx_models import failing_mlp_model, make_mlp

# generous: these run beside other tests on a loaded machine
HTTP = httpx.Client(timeout=120)

ROOT = Path(__file__).resolve().parents[1]
BODY = {"instances": [[0.1, 0.2, 0.3, 0.4]]}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Three real ONNX files of one signature: a good v1, a good (different) v2, a v3 whose every run fails."""
    d = tmp_path_factory.mktemp("canary-models")
    make_mlp(d / "good1.onnx")
    make_mlp(d / "good2.onnx", seed=1)
    onnx.save(failing_mlp_model(), str(d / "bad.onnx"))
    return d / "good1.onnx", d / "good2.onnx", d / "bad.onnx"


def three_versions(store, models) -> Registry:
    reg = Registry(store)
    good1, good2, bad = models
    reg.register_version("m", good1, aliases=["production"])
    reg.register_version("m", good2)
    reg.register_version("m", bad)
    return reg


# ------------------------------------------------------------------ the alias document
def test_start_ramp_promote_keep_history_and_rollback_walks_back(store, models):
    reg = three_versions(store, models)
    s = reg.start_canary("m", "production", 2, 10, steps=[25, 50, 100])
    assert (s.version, s.canary.version, s.canary.percent, s.canary.steps) == (1, 2, 10, [25, 50, 100])
    assert reg.aliases("m") == {"production": 1}  # the stable version, as every older reader expects
    assert reg.locate("m").canary.version == 2 and reg.locate("m", "production").canary.percent == 10
    assert reg.ramp_canary("m", "production", 50).canary.percent == 50
    s = reg.promote_canary("m", "production")
    assert (s.version, s.canary) == (2, None)
    assert [(e["action"], e["from"], e["to"]) for e in s.history] == [
        ("set", None, 1),
        ("canary", 1, 1),
        ("ramp", 1, 1),
        ("promote", 1, 2),
    ]
    assert s.history[1]["canary"] == {"version": 2, "percent": 10}
    # a rollback undoes the promotion; the canary's start and ramp moved nothing and are passed over
    assert rollback_target(s.history) == 1
    assert reg.rollback("m", "production").version == 1


def test_abort_goes_back_to_stable_with_its_reason_and_a_running_canary_rolls_back_to_stable(store, models):
    reg = three_versions(store, models)
    reg.start_canary("m", "production", 3, 20)
    s = reg.abort_canary("m", "production", reason="looked wrong")
    assert (s.version, s.canary) == (1, None)
    assert s.history[-1]["action"] == "abort" and s.history[-1]["reason"] == "looked wrong"
    reg.start_canary("m", "production", 2, 20)
    assert rollback_target(reg.alias_state("m", "production").history) == 1
    s = reg.rollback("m", "production")
    assert (s.version, s.canary) == (1, None)


def test_canary_changes_are_compare_and_swap(store, models):
    reg = three_versions(store, models)
    with pytest.raises(PreconditionFailed):
        reg.start_canary("m", "production", 2, 10, expected=3)  # the stable version is 1
    reg.start_canary("m", "production", 2, 10, expected=1)
    with pytest.raises(Conflict):
        reg.start_canary("m", "production", 3, 10)  # one canary at a time
    with pytest.raises(PreconditionFailed):
        reg.abort_canary("m", "production", expected_canary=3)  # not the canary running
    with pytest.raises(Conflict):
        reg.delete_version("m", 2)  # a canary's version serves traffic: not deletable
    # a retried change (same id) is recognised, not applied twice
    a = reg.ramp_canary("m", "production", 30, change_id="ramp-30")
    b = reg.ramp_canary("m", "production", 30, change_id="ramp-30")
    assert len(a.history) == len(b.history)
    reg.promote_canary("m", "production", change_id="promote-1")
    assert reg.promote_canary("m", "production", change_id="promote-1").version == 2  # answered as done
    with pytest.raises(Conflict):
        reg.promote_canary("m", "production")  # no canary any more


def test_bad_canary_requests_are_4xx(store, models):
    reg = three_versions(store, models)
    from modelbay.errors import BadRequest, NotFound

    for bad in (0, 100, -5):
        with pytest.raises(BadRequest):
            reg.start_canary("m", "production", 2, bad)
    with pytest.raises(BadRequest):
        reg.start_canary("m", "production", 1, 10)  # the stable version itself
    with pytest.raises(BadRequest):
        reg.start_canary("m", "production", 2, 30, steps=[20])  # a ramp only climbs
    with pytest.raises(NotFound):
        reg.start_canary("m", "staging", 2, 10)  # no alias to split
    with pytest.raises(NotFound):
        reg.start_canary("m", "production", 9, 10)


@pytest.mark.parametrize("store", ["local", "localstack"], indirect=True)
def test_concurrent_canary_changes_lose_nothing(store, models):
    """Writers racing on one alias (ramps with distinct shares): every change lands once in the history,
    and the split is the last one's."""
    reg = three_versions(store, models)
    reg.start_canary("m", "production", 2, 1)
    shares = [2 + i for i in range(12)]
    errors: list[BaseException] = []

    def ramp(p: float) -> None:
        try:
            Registry(store).ramp_canary("m", "production", p, change_id=f"ramp-{p:g}")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=ramp, args=(p,)) for p in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    s = reg.alias_state("m", "production")
    ramps = [e for e in s.history if e["action"] == "ramp"]
    assert sorted(e["canary"]["percent"] for e in ramps) == shares
    assert len({e["id"] for e in ramps}) == len(shares)
    assert s.canary.percent == ramps[-1]["canary"]["percent"]


# ------------------------------------------------------------------ routing
def test_a_ten_percent_split_over_2000_requests_lands_within_bounds(local_store, models):
    three_versions(local_store, models).start_canary("m", "production", 2, 10)
    resolver = Resolver(local_store, Limits(), rng=random.Random(1234))
    random_sides = collections.Counter(resolver.route("default", "m")[1] for _ in range(2000))
    keyed = collections.Counter(resolver.route("default", "m", None, f"user-{i}")[1] for i in range(2000))
    # 10% of 2000 = 200; the standard deviation is 13.4: +-60 is a 4.5-sigma bound
    for sides in (random_sides, keyed):
        assert 140 <= sides["canary"] <= 260, sides
        assert sides["canary"] + sides["stable"] == 2000
    # an explicit version and an alias without a canary are not split
    assert resolver.route("default", "m", "3", "user-1")[0].version == 3
    assert resolver.route("default", "m", "3")[1] is None


def test_raising_the_share_only_moves_keys_onto_the_canary():
    keys = [f"k{i}" for i in range(1000)]
    at10 = {k for k in keys if to_canary("m", "production", 10, k)}
    at25 = {k for k in keys if to_canary("m", "production", 25, k)}
    assert at10 < at25


def _predict(url: str, headers: dict[str, str], key: str | None) -> httpx.Response:
    extra = {ROUTE_KEY_HEADER: key} if key else {}
    return HTTP.post(f"{url}/v1/models/m:predict", json=BODY, headers={**headers, **extra}, timeout=30)


def test_http_sticky_keys_reach_the_version_the_rule_names_on_v1_and_oip(store, server, models, auth_headers):
    three_versions(store, models).start_canary("m", "production", 2, 30)
    served: dict[str, set[str]] = collections.defaultdict(set)
    for i in range(60):
        key = f"customer-{i}"
        expected = "canary" if to_canary("m", "production", 30, key) else "stable"
        for _ in range(2):
            r = _predict(server, auth_headers, key)
            assert r.status_code == 200, r.text
            assert r.headers[ROUTE_HEADER] == expected
            served[key].add(r.headers["x-model-version"])
        oip = HTTP.post(
            f"{server}/v2/models/m/infer",
            json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4]}]},
            headers={**auth_headers, ROUTE_KEY_HEADER: key},
            timeout=30,
        )
        assert oip.status_code == 200, oip.text
        assert oip.json()["model_version"] == next(iter(served[key]))
        served[key].add(oip.headers["x-model-version"])
    assert all(len(v) == 1 for v in served.values()), "a key reached two versions"
    versions = collections.Counter(next(iter(v)) for v in served.values())
    assert set(versions) == {"1", "2"}
    # an explicit version is never split, and says so by having no route header
    r = HTTP.post(f"{server}/v1/models/m/versions/3:predict", json=BODY, headers=auth_headers, timeout=30)
    assert r.headers["x-model-version"] == "3" and ROUTE_HEADER not in r.headers


def test_lambda_handler_routes_by_key(tmp_path, models, monkeypatch):
    from modelbay.storage.local import LocalStore

    store = LocalStore(tmp_path / "store")
    three_versions(store, models).start_canary("m", "production", 2, 50)
    monkeypatch.setenv("MODELBAY_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("MODELBAY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MODELBAY_AUTH", "0")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "modelbay-inference")
    fn = load_function("inference")
    for i in range(20):
        key = f"device-{i}"
        status, headers, body = invoke(
            fn.handler, apigw_event("POST", "/v1/models/m:predict", body=BODY, headers={ROUTE_KEY_HEADER: key})
        )
        assert status == 200, body
        want = "canary" if to_canary("m", "production", 50, key) else "stable"
        assert headers[ROUTE_HEADER] == want
        assert headers["x-model-version"] == ("2" if want == "canary" else "1")


# ------------------------------------------------------------------ guard rails
def _events(metrics: MemoryMetrics, version: int, n: int, *, errors: int = 0, ms: float = 5.0, at: float) -> None:
    for i in range(n):
        metrics.record(
            InferenceEvent(
                model="m",
                version=version,
                instances=1,
                error="internal" if i < errors else None,
                total_ms=ms,
                timestamp=at,
                tenant="default",
            )
        )


def _guarded(store, models, **rails) -> tuple[Registry, float]:
    reg = three_versions(store, models)
    guard = GuardRails(window="5m", min_requests=10, **rails)
    s = reg.start_canary("m", "production", 3, 20, guard=guard)
    return AuditedRegistry(store, audit=AuditLog(store)), s.canary.since


def test_an_erroring_canary_is_aborted_with_the_reason_in_history_and_audit(store, models):
    reg, t0 = _guarded(store, models, max_error_rate=0.05)
    metrics = MemoryMetrics()
    _events(metrics, 1, 40, at=t0 + 1)
    _events(metrics, 3, 9, errors=9, at=t0 + 1)
    assert evaluate(metrics, reg, "m", "production", now=t0 + 2).state == "waiting"  # 9 < min_requests
    _events(metrics, 3, 3, errors=1, at=t0 + 2)
    v = enforce(metrics, reg, "m", "production", now=t0 + 3)
    assert v.state == "breached" and "error rate" in v.reasons[0] and v.canary["errors"] == 10
    s = reg.alias_state("m", "production")
    assert (s.version, s.canary) == (1, None)
    last = s.history[-1]
    assert last["action"] == "abort" and last["by"] == GUARD_ACTOR and "error rate 83.3%" in last["reason"]
    (record,) = AuditLog(store).list("default", action="alias.abort")
    assert record["actor"] == GUARD_ACTOR and "guard rail breached" in record["reason"]
    # a second checker acting on the same verdict changes nothing more
    assert enforce(metrics, reg, "m", "production", now=t0 + 4).state == "none"
    assert len(reg.alias_state("m", "production").history) == len(s.history)


def test_client_errors_do_not_count_against_a_canary(store, models):
    reg, t0 = _guarded(store, models, max_error_rate=0.05)
    metrics = MemoryMetrics()
    for _ in range(30):
        metrics.record(InferenceEvent("m", 3, error="bad_request", timestamp=t0 + 1, tenant="default"))
    assert enforce(metrics, reg, "m", "production", now=t0 + 2).state == "holding"
    assert reg.alias_state("m", "production").canary is not None


def test_slow_canary_and_inaccurate_canary_trip_their_rails(store, models):
    reg, t0 = _guarded(store, models, max_p95_ratio=2.0)
    metrics = MemoryMetrics()
    _events(metrics, 1, 50, ms=4.0, at=t0 + 1)
    _events(metrics, 3, 20, ms=40.0, at=t0 + 1)
    v = enforce(metrics, reg, "m", "production", now=t0 + 2)
    assert v.state == "breached" and "p95" in v.reasons[0]

    reg2, t1 = _guarded(store, models, min_accuracy=0.9)  # the first canary is gone: a new one on the same store
    s = reg2.alias_state("m", "production")
    canary = s.canary.version
    m2 = MemoryMetrics()
    _events(m2, canary, 20, at=t1 + 1)
    for i in range(20):
        m2.record_feedback(FeedbackEvent("m", canary, correct=i < 10, timestamp=t1 + 1, tenant="default"))
    v = enforce(m2, reg2, "m", "production", now=t1 + 2)
    assert v.state == "breached" and "accuracy 50.0%" in v.reasons[0]


def test_a_canary_that_holds_climbs_its_ramp_and_is_promoted(store, models):
    reg = three_versions(store, models)
    guard = GuardRails(max_error_rate=0.1, min_requests=10)
    t0 = reg.start_canary("m", "production", 2, 10, guard=guard, steps=[50, 100]).canary.since
    metrics = MemoryMetrics()
    _events(metrics, 2, 10, at=t0 + 1)
    assert enforce(metrics, reg, "m", "production", now=t0 + 2).state == "ramped"
    s = reg.alias_state("m", "production")
    assert s.canary.percent == 50 and s.history[-1]["by"] == GUARD_ACTOR
    # the ramp restarted the count: nothing new served, so no verdict yet
    assert evaluate(metrics, reg, "m", "production", now=t0 + 3).canary["requests"] <= 10
    _events(metrics, 2, 10, at=s.canary.since + 61)
    assert enforce(metrics, reg, "m", "production", now=s.canary.since + 62).state == "promoted"
    assert reg.alias_state("m", "production").version == 2


def test_guard_rails_abort_a_bad_version_end_to_end_over_http(store, server, models, auth_headers):
    from modelbay.client import Client

    three_versions(store, models)
    with Client(server, auth_headers["Authorization"].split()[1]) as c:
        c.start_canary("m", "production", 3, 50, guard=GuardRails(max_error_rate=0.2, min_requests=10))
        served = collections.Counter()
        for i in range(40):
            r = _predict(server, auth_headers, f"k{i}")
            served[(r.headers["x-model-version"], r.status_code)] += 1
        assert served[("3", 422)] >= 10 and served[("1", 200)] >= 10, served
        assert c.canary_status("m", "production").state == "breached"
        v = c.check_canary("m", "production")
        assert v.state == "breached"
        s = c.alias_history("m", "production")
        assert (s.version, s.canary) == (1, None) and "guard rail breached" in s.history[-1]["reason"]
        # every key is back on the stable version at once (the change is heard in this process)
        assert {_predict(server, auth_headers, f"k{i}").headers["x-model-version"] for i in range(40)} == {"1"}


def test_the_local_servers_background_task_aborts_by_itself(tmp_path, models):
    """The server's own checker (every 0.1 s here) acts without anyone asking; waits on the outcome, not a time."""
    from modelbay.api.app import create_app
    from modelbay.settings import Settings
    from modelbay.storage.local import LocalStore
    from tests.servers import running

    store = LocalStore(tmp_path / "store")
    reg = three_versions(store, models)
    reg.start_canary("m", "production", 3, 50, guard=GuardRails(max_error_rate=0.2, min_requests=5))
    settings = Settings(store_url=store.url, cache_dir=tmp_path / "cache", auth=False, canary_check_seconds=0.1)
    with running(create_app(settings, store=store)) as url:
        for i in range(30):
            _predict(url, {}, f"k{i}")
        deadline = time.monotonic() + 60
        while reg.alias_state("m", "production").canary is not None:
            assert time.monotonic() < deadline, "the background check never aborted the canary"
            time.sleep(0.1)
    assert reg.alias_state("m", "production").history[-1]["by"] == GUARD_ACTOR


def test_scheduled_function_with_an_eventbridge_event_aborts_and_forgets_finished_canaries(
    tmp_path, models, monkeypatch
):
    from modelbay.storage.local import LocalStore

    store = LocalStore(tmp_path / "store")
    reg = three_versions(store, models)
    t0 = reg.start_canary("m", "production", 3, 20, guard=GuardRails(max_error_rate=0.1, min_requests=5)).canary.since
    monkeypatch.setenv("MODELBAY_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("MODELBAY_METRICS", "memory")
    fn = load_function("canary")
    _events(fn.metrics, 3, 10, errors=5, at=t0 + 1)
    event = json.loads((ROOT / "infra/events/schedule.json").read_text())
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    out = fn.handler(event, LambdaContext())
    assert out["checked"] == 1 and out["verdicts"][0]["state"] == "breached"
    s = reg.alias_state("m", "production")
    assert s.canary is None and s.history[-1]["by"] == GUARD_ACTOR
    assert AuditLog(store).list("default", action="alias.abort")
    # the mark stays while young (a canary may be starting), and goes once old
    assert [i.key for i in store.list(CANARY_INDEX)] == [f"{CANARY_INDEX}default/m/production"]
    assert check_all(store, fn.metrics, now=time.time() + 3600) == []
    assert list(store.list(CANARY_INDEX)) == []


def test_http_canary_routes_refuse_bad_input_with_4xx(store, server, models, auth_headers):
    three_versions(store, models)
    base = f"{server}/registry/models/m/aliases/production/canary"
    for body in ({"version": 2, "percent": 0}, {"version": 2, "percent": 100}, {"version": "x", "percent": 5}, {}):
        r = HTTP.post(base, json=body, headers=auth_headers)
        assert r.status_code == 422 or r.status_code == 400, r.text
        assert "error" in r.json() or "detail" in r.json()
    r = HTTP.post(base, json={"version": 2, "percent": 10, "guard": {"max_error_rate": 7}}, headers=auth_headers)
    assert 400 <= r.status_code < 500
    r = HTTP.post(f"{base}/abort", headers=auth_headers)
    assert r.status_code == 409 and "no canary" in r.json()["error"]
    r = HTTP.post(f"{base}/ramp", json={}, headers=auth_headers)
    assert r.status_code == 400
    r = HTTP.get(base, headers=auth_headers)
    assert r.status_code == 200 and r.json()["state"] == "none"


def test_cli_canary_start_status_abort(store, server, models, admin_key):
    from typer.testing import CliRunner

    from modelbay.cli import app

    three_versions(store, models)
    run = CliRunner()
    common = ["--url", server, "--api-key", admin_key]
    r = run.invoke(
        app, [*common, "canary", "start", "m", "--version", "2", "--percent", "10", "--max-error-rate", "0.1"]
    )
    assert r.exit_code == 0, r.output
    assert "canary 2 (10%)" in r.output
    r = run.invoke(app, [*common, "canary", "status", "m"])
    assert r.exit_code == 0 and "waiting" in r.output, r.output
    r = run.invoke(app, [*common, "--json", "canary", "abort", "m", "--reason", "not today"])
    assert r.exit_code == 0 and json.loads(r.output)["canary"] is None
    r = run.invoke(app, [*common, "alias", "history", "m", "production"])
    assert "not today" in r.output and "canary 2 at 10%" in r.output
    r = run.invoke(app, [*common, "canary", "promote", "m"])
    assert r.exit_code == 2 and "no canary" in r.output
