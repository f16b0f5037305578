"""The metrics and feedback endpoints through a real local server and through the registry Lambda."""

from __future__ import annotations

import json
import time

import pytest

from modelbay.client import ApiError, Client
from modelbay.metrics import InferenceEvent
from tests.apigw import event, invoke, load_function
from tests.servers import running_keyed as running


@pytest.fixture
def app_and_client(tmp_path, mlp_path):
    from modelbay.api.app import create_app
    from modelbay.settings import Settings
    from modelbay.storage.local import LocalStore

    store = LocalStore(tmp_path / "store")
    app = create_app(Settings(store_url=store.url, cache_dir=tmp_path / "cache"), store=store)
    with running(app) as url, Client(url) as c:
        c.push(mlp_path, "iris", aliases=["production"])
        c.push(mlp_path, "iris")
        yield app, c


def _traffic(app, version, n, errors=0, ms=10.0):
    now = time.time()
    for i in range(n):
        app.state.metrics.record(
            InferenceEvent(
                "iris",
                version,
                instances=1,
                total_ms=ms,
                inference_ms=ms / 2,
                error="internal" if i < errors else None,
                timestamp=now,
            )
        )


def test_model_metrics_overall_and_by_version(app_and_client):
    app, c = app_and_client
    _traffic(app, 1, 30, errors=3, ms=10.0)
    _traffic(app, 2, 10, ms=40.0)
    m = c.metrics("iris", window="15m", by_version=True)
    assert m.step == 60 and len(m.overall.timestamps) == 15
    assert m.overall.totals.requests == 40
    assert m.overall.totals.errors_by_type["internal"] == 3
    assert set(m.versions) == {"1", "2"}
    assert m.versions["1"].totals.error_rate == pytest.approx(0.1)
    assert m.versions["2"].totals.p50_ms == pytest.approx(40, rel=0.01)
    # one alias instead of the whole model
    prod = c.metrics("iris", window="15m", ref="production")
    assert prod.overall.version == 1 and prod.overall.totals.requests == 30
    over = c.metrics_overview("1h").models["iris"]
    assert over.requests == 40 and over.error_rate == pytest.approx(3 / 40)


def test_feedback_becomes_accuracy_per_version(app_and_client):
    _, c = app_and_client
    r = c.feedback(
        "iris",
        [
            {"prediction": "setosa", "label": "setosa"},
            {"prediction": {"label": "b"}, "label": "a"},
            {"correct": True},
            {"score": 0.25},
        ],
        ref="production",
    )
    assert r.model_dump() == {"model": "iris", "version": 1, "accepted": 4, "correct": 2, "labelled": 3}
    c.feedback("iris", [{"correct": False}] * 4, ref=2)
    m = c.metrics("iris", "15m", by_version=True)
    assert m.versions["1"].totals.accuracy == pytest.approx(2 / 3)
    assert m.versions["2"].totals.accuracy == 0.0
    assert m.versions["1"].totals.score == pytest.approx(0.25)


@pytest.mark.parametrize(
    "call,status,code",
    [
        (lambda c: c.metrics("iris", window="3d"), 400, "bad_request"),
        (lambda c: c.metrics("iris", window="1h", step="10s"), 400, "bad_request"),
        (lambda c: c.metrics("ghost"), 404, "not_found"),
        (lambda c: c.metrics("iris", ref="staging"), 404, "not_found"),
        (lambda c: c.feedback("iris", []), 400, "bad_request"),
        (lambda c: c.feedback("iris", [{"label": "x"}]), 400, "bad_request"),
        (lambda c: c.feedback("iris", [{"correct": True, "timestamp": 1.0}]), 400, "bad_request"),
        (lambda c: c.feedback("iris", [{"correct": True}], ref=9), 404, "not_found"),
        (
            lambda c: c.request(
                "POST", "/registry/models/iris/feedback", content=b"{nope", headers={"Content-Type": "application/json"}
            ),
            400,
            "bad_request",
        ),
    ],
)
def test_bad_metrics_requests_are_clear_4xx(app_and_client, call, status, code):
    _, c = app_and_client
    with pytest.raises(ApiError) as e:
        call(c)
    assert (e.value.status, e.value.code) == (status, code)
    assert e.value.message


def test_metrics_through_the_registry_lambda(tmp_path, monkeypatch):
    boot = "bootstrap-admin-key-for-metrics-tests-0123"
    auth = {"Authorization": f"Bearer {boot}"}
    monkeypatch.setenv("MODELBAY_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("MODELBAY_BOOTSTRAP_KEY", boot)
    fn = load_function("registry")
    status, _, body = invoke(fn.handler, event("GET", "/registry/metrics"))
    assert status == 401 and json.loads(body)["error"]  # keys are required on Lambda too
    status, headers, body = invoke(fn.handler, event("GET", "/registry/metrics", query={"window": "1h"}, headers=auth))
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body)["models"] == {}
    status, _, body = invoke(fn.handler, event("GET", "/registry/metrics/models/ghost", headers=auth))
    assert status == 404 and json.loads(body)["code"] == "not_found"
