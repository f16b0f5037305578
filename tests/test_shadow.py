"""Shadow traffic: a sampled share of an alias's requests also runs on another version after the answer;
its failures never reach the caller; agreement, cosine and latency are compared; set on the alias by CAS."""

from __future__ import annotations

import random

import httpx
import numpy as np
import onnx
import pytest

from modelbay.engine import Engine, InferenceService
from modelbay.metrics.memory import MemoryMetrics
from modelbay.protocols import oip
from modelbay.registry import Registry, rollback_target
from modelbay.settings import Settings
from modelbay.shadow import ShadowRunner, compare
from tests.onnx_models import failing_mlp_model, make_mlp
from tests.servers import running

# generous: these run beside other tests on a loaded machine
HTTP = httpx.Client(timeout=120)

ROW = [0.1, 0.2, 0.3, 0.4]


@pytest.fixture
def versions(tmp_path):
    make_mlp(tmp_path / "a.onnx")
    make_mlp(tmp_path / "b.onnx", seed=3)
    onnx.save(failing_mlp_model(), str(tmp_path / "bad.onnx"))
    return tmp_path / "a.onnx", tmp_path / "b.onnx", tmp_path / "bad.onnx"


def _registry(store, versions) -> Registry:
    reg = Registry(store)
    a, b, bad = versions
    reg.register_version("m", a, aliases=["production"])  # v1
    reg.register_version("m", a)  # v2: the same weights
    reg.register_version("m", b)  # v3: other weights
    reg.register_version("m", bad)  # v4: every run fails
    return reg


def test_compare_rules():
    assert compare({"label": "cat", "score": 0.9}, {"label": "cat", "score": 0.6}).agree
    assert not compare([{"label": "cat"}], [{"label": "dog"}]).agree
    probs = compare([0.7, 0.2, 0.1], [0.5, 0.3, 0.2])
    assert probs.agree and probs.max_abs_diff == pytest.approx(0.2)
    emb = compare([1.0, 0.0, 0.0, 1.0], [1.0, 0.05, 0.0, 1.0])
    assert emb.agree and 0.99 < emb.cosine < 1
    assert not compare([1.0, 0.0], [0.0, 1.0]).agree
    assert not compare([1.0, 2.0], [1.0, 2.0, 3.0]).agree


def test_shadow_is_set_on_the_alias_kept_across_changes_and_passed_over_by_rollback(store, versions):
    reg = _registry(store, versions)
    s = reg.set_shadow("m", "production", 3, 0.5)
    assert (s.version, s.shadow.version, s.shadow.rate) == (1, 3, 0.5)
    assert reg.set_alias("m", "production", 2).shadow.version == 3  # moving the alias keeps its shadow
    s = reg.set_shadow("m", "production", None)
    assert s.shadow is None and s.history[-1]["action"] == "shadow"
    assert rollback_target(s.history) == 1  # the shadow changes moved nothing: the set 1 -> 2 is undone


def _service(store, tmp_path, rate_rng: int = 0) -> InferenceService:
    settings = Settings(store_url=store.url, cache_dir=tmp_path / "cache")
    return InferenceService(
        Engine(store, settings), MemoryMetrics(), settings, shadows=ShadowRunner(1000, random.Random(rate_rng))
    )


def test_a_failing_shadow_never_reaches_the_caller(local_store, versions, tmp_path):
    reg = _registry(local_store, versions)
    reg.set_shadow("m", "production", 4, 1.0)
    svc = _service(local_store, tmp_path)
    for _ in range(10):
        out = svc.predict("default", "m", None, b'{"instances": [[0.1, 0.2, 0.3, 0.4]]}')
        assert out.version == 1 and len(out.payload) == 1
    svc.shadows.drain()
    f = svc.shadows.figures("default", "m", "production")
    assert (f.version, f.runs, f.errors, f.compared) == (4, 10, 10, 0)
    assert svc.metrics.overview("default", ["m"], 0, 2e10)["m"].errors == 0  # the caller's figures are clean


def test_identical_shadow_agrees_and_a_different_one_is_measured_on_oip(local_store, versions, tmp_path):
    reg = _registry(local_store, versions)
    reg.set_shadow("m", "production", 2, 1.0)
    svc = _service(local_store, tmp_path)
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    svc.infer("default", "m", None, oip.InferRequest({"x": x}))
    svc.shadows.drain()
    f = svc.shadows.figures("default", "m", "production")
    assert (f.runs, f.compared, f.agreement, f.max_abs_diff) == (1, 8, 1.0, 0.0)
    reg.set_shadow("m", "production", 3, 1.0)
    svc.engine.resolver._refs.clear()  # (another process: it would see the change within alias_ttl)
    svc.infer("default", "m", None, oip.InferRequest({"x": x}))
    svc.shadows.drain()
    f = svc.shadows.figures("default", "m", "production")
    assert f.version == 3 and f.runs == 1 and f.compared == 8 and f.max_abs_diff > 0


def test_the_sampling_rate_is_honoured(local_store, versions, tmp_path):
    reg = _registry(local_store, versions)
    reg.set_shadow("m", "production", 2, 0.25)
    svc = _service(local_store, tmp_path, rate_rng=42)
    replay = random.Random(42)
    expected = sum(replay.random() < 0.25 for _ in range(200))
    for _ in range(200):
        svc.predict("default", "m", None, b'{"instances": [[0.1, 0.2, 0.3, 0.4]]}')
    svc.shadows.drain()
    assert svc.shadows.figures("default", "m", "production").runs == expected
    assert 25 <= expected <= 75


def test_shadow_over_http_and_cli(store, versions, tmp_path):
    from typer.testing import CliRunner

    from modelbay.api.app import create_app
    from modelbay.cli import app as cli

    _registry(store, versions)
    app = create_app(Settings(store_url=store.url, cache_dir=tmp_path / "cache", auth=False), store=store)
    with running(app) as url:
        run = CliRunner()
        r = run.invoke(cli, ["--url", url, "shadow", "start", "m", "--version", "4", "--rate", "1"])
        assert r.exit_code == 0, r.output
        for _ in range(5):
            r = HTTP.post(f"{url}/v1/models/m:predict", json={"instances": [ROW]})
            assert r.status_code == 200 and r.headers["x-model-version"] == "1"
        app.state.inference.shadows.drain()
        f = HTTP.get(f"{url}/registry/models/m/aliases/production/shadow").json()
        assert (f["version"], f["runs"], f["errors"]) == (4, 5, 5)
        r = run.invoke(cli, ["--url", url, "shadow", "status", "m"])
        assert r.exit_code == 0 and "errors" in r.output
        assert (
            HTTP.put(f"{url}/registry/models/m/aliases/production/shadow", json={"version": 4, "rate": 2}).status_code
            == 400
        )
        r = run.invoke(cli, ["--url", url, "shadow", "stop", "m"])
        assert r.exit_code == 0
        assert HTTP.get(f"{url}/registry/models/m/aliases/production/shadow").json()["version"] is None
