"""Drift: a shifted input distribution raises PSI and KS over their thresholds, an unshifted one does not;
end to end from captured requests over HTTP, on both stores."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from scipy import stats

from modelbay import drift
from modelbay.errors import BadRequest
from modelbay.registry import Registry
from modelbay.settings import Settings
from tests.servers import running

# generous: these run beside other tests on a loaded machine
HTTP = httpx.Client(timeout=120)


def _rows(n: int, shift: float = 0.0, seed: int = 0, features: int = 4) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, features))
    x[:, 1:3] += shift  # features 1 and 2 move; 0 and 3 stay
    return x


def test_shifted_features_drift_and_unshifted_ones_do_not():
    ref = drift.build_reference("m", 1, _rows(1000, seed=1))
    same = drift.compare(ref, _rows(400, seed=2), "1h")
    assert not same.drift and same.drifted_features == 0
    assert all(f.psi < drift.PSI_THRESHOLD and f.ks <= f.ks_critical for f in same.features)
    moved = drift.compare(ref, _rows(400, shift=1.0, seed=3), "1h")
    assert moved.drift and moved.drifted_features == 2
    assert {f.feature for f in moved.features[:2]} == {1, 2}  # most drifted first
    assert all(f.psi > drift.PSI_THRESHOLD for f in moved.features[:2])
    assert {f.feature for f in moved.features if f.drifted} == {1, 2}


def test_ks_statistic_is_scipys():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal(700), rng.standard_normal(300) + 0.2
    assert drift.ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic)
    # and the stated critical value is the asymptotic one scipy's p-value crosses 0.05 at
    d_crit = drift.KS_C * np.sqrt((700 + 300) / (700 * 300))
    assert stats.kstwo.sf(d_crit, round(700 * 300 / 1000)) == pytest.approx(0.05, abs=0.01)


def test_inputs_the_reference_cannot_judge_are_refused():
    with pytest.raises(BadRequest):
        drift.build_reference("m", 1, _rows(5))
    ref = drift.build_reference("m", 1, _rows(100))
    with pytest.raises(BadRequest):
        drift.compare(ref, _rows(100, features=3), "1h")
    assert drift.matrix(["some text", {"a": 1, "b": 2}]).shape == (0, 0)


def test_drift_from_captured_requests_over_http(store, mlp_path, tmp_path):
    from modelbay.api.app import create_app

    Registry(store).register_version("m", mlp_path, aliases=["production"])
    app = create_app(Settings(store_url=store.url, cache_dir=tmp_path / "cache", auth=False), store=store)
    with running(app) as url:
        r = HTTP.get(f"{url}/registry/metrics/models/m/drift")
        assert r.status_code == 404 and "no drift reference" in r.json()["error"]
        ref_rows = _rows(500, seed=1).tolist()
        r = HTTP.put(f"{url}/registry/models/m/versions/1/drift-reference", json={"rows": ref_rows})
        assert r.status_code == 200, r.text
        assert r.json()["rows"] == 500
        HTTP.put(f"{url}/registry/models/m/capture", json={"sample_rate": 1.0}).raise_for_status()
        shifted = _rows(120, shift=1.5, seed=9).astype(np.float32)
        for i in range(0, 120, 4):  # batches of 4 instances: each captured request holds 4 rows
            body = {"instances": shifted[i : i + 4].tolist()}
            assert HTTP.post(f"{url}/v1/models/m:predict", json=body).status_code == 200
        app.state.inference.capture.flush()
        rep = HTTP.get(f"{url}/registry/metrics/models/m/drift", params={"window": "15m"}).json()
    assert rep["rows"] == 120 and rep["drift"] is True
    assert {f["feature"] for f in rep["features"] if f["drifted"]} == {1, 2}


def test_cli_drift_reference_and_report(local_store, mlp_path, tmp_path):
    from typer.testing import CliRunner

    from modelbay.api.app import create_app
    from modelbay.cli import app as cli

    Registry(local_store).register_version("m", mlp_path)
    api = create_app(Settings(store_url=local_store.url, cache_dir=tmp_path / "cache", auth=False), store=local_store)
    with running(api) as url:
        data = tmp_path / "eval.json"
        data.write_text(json.dumps(_rows(200, seed=4).tolist()))
        run = CliRunner()
        r = run.invoke(cli, ["--url", url, "drift-reference", "m", "-v", "1", "--data", str(data)])
        assert r.exit_code == 0 and "200 rows, 4 features" in r.output, r.output
        HTTP.put(f"{url}/registry/models/m/capture", json={"sample_rate": 1.0}).raise_for_status()
        HTTP.post(f"{url}/v1/models/m:predict", json={"instances": _rows(60, seed=8).tolist()})
        api.state.inference.capture.flush()
        r = run.invoke(cli, ["--url", url, "drift", "m", "--window", "15m"])
        assert r.exit_code == 0 and "no drift" in r.output, r.output
        r = run.invoke(cli, ["--url", url, "drift", "m", "--window", "nonsense"])
        assert r.exit_code == 2
