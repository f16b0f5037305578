"""Payload capture: exactly the sampled requests land, gzip'd JSON Lines under the tenant's capture prefix,
on both stores, through HTTP and the Lambda handler; a failing capture never reaches the caller."""

from __future__ import annotations

import gzip
import json
import random

import httpx
import numpy as np
import pytest

from modelbay.capture import CAPTURE_TAG, CaptureConfig, Capturer, export, write_config
from modelbay.engine import Engine, InferenceService
from modelbay.errors import StoreUnavailable
from modelbay.metrics.memory import MemoryMetrics
from modelbay.protocols import oip
from modelbay.registry import Registry
from modelbay.settings import Settings
from modelbay.storage.local import LocalStore
from tests.apigw import event, invoke, load_function
from tests.servers import running

# generous: these run beside other tests on a loaded machine
HTTP = httpx.Client(timeout=120)

ROW = [0.1, 0.2, 0.3, 0.4]


def _oip_body(request_id: str) -> dict:
    return {"id": request_id, "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ROW}]}


def test_http_captures_every_request_at_rate_one_with_ids_versions_inputs_and_outputs(store, mlp_path, tmp_path):
    from modelbay.api.app import create_app

    Registry(store).register_version("m", mlp_path, aliases=["production"])
    app = create_app(Settings(store_url=store.url, cache_dir=tmp_path / "cache", auth=False), store=store)
    with running(app) as url:
        assert HTTP.get(f"{url}/registry/models/m/capture").json()["sample_rate"] == 0  # off by default
        r = HTTP.put(f"{url}/registry/models/m/capture", json={"sample_rate": 1.0})
        assert r.status_code == 200, r.text
        ids = [f"req-{i}" for i in range(12)]
        for rid in ids:
            assert HTTP.post(f"{url}/v2/models/m/infer", json=_oip_body(rid)).status_code == 200
        for _ in range(5):
            assert HTTP.post(f"{url}/v1/models/m:predict", json={"instances": [ROW]}).status_code == 200
        assert app.state.inference.capture.flush() == 17
        got = HTTP.get(f"{url}/registry/models/m/capture/records", params={"since": "1h"}).json()["records"]
    assert len(got) == 17
    oip_records = [r for r in got if r["id"].startswith("req-")]
    assert sorted(r["id"] for r in oip_records) == sorted(ids)
    assert all(r["version"] == 1 and r["model"] == "m" and r["latency_ms"] > 0 for r in got)
    assert oip_records[0]["input"] == {"x": [pytest.approx(ROW)]}
    assert np.asarray(oip_records[0]["output"]["probabilities"]).shape == (1, 3)
    v1 = [r for r in got if not r["id"].startswith("req-")]
    assert v1[0]["input"] == [pytest.approx(ROW)] and len(v1[0]["output"]) == 1
    keys = [i.key for i in store.list("tenants/default/capture/m/")]
    assert keys and all(k.endswith(".jsonl.gz") and k.count("/") == 7 for k in keys)  # .../m/yyyy/mm/dd/file
    lines = gzip.decompress(store.get_bytes(keys[0])[0]).decode().splitlines()
    assert all(json.loads(line)["model"] == "m" for line in lines)


def _service(store, tmp_path, capturer: Capturer) -> InferenceService:
    settings = Settings(store_url=store.url, cache_dir=tmp_path / "cache")
    return InferenceService(Engine(store, settings), MemoryMetrics(), settings, capture=capturer)


def test_captured_files_hold_exactly_the_sampled_requests(local_store, mlp_path, tmp_path):
    Registry(local_store).register_version("m", mlp_path)
    write_config(local_store, "default", "m", CaptureConfig(sample_rate=0.3))
    svc = _service(local_store, tmp_path, Capturer(local_store, rng=random.Random(7)))
    replay = random.Random(7)  # the capturer draws once per request: the same draws say which were sampled
    expected = set()
    for i in range(200):
        svc.infer("default", "m", None, oip.InferRequest({"x": np.array([ROW], np.float32)}, id=f"r{i}"))
        if replay.random() < 0.3:
            expected.add(f"r{i}")
    svc.capture.flush()
    got = [r["id"] for r in export(local_store, "default", "m", since=0).records]
    assert sorted(got) == sorted(expected) and 30 <= len(got) <= 90


def test_inputs_or_outputs_only_and_the_buffer_is_bounded(local_store, mlp_path, tmp_path):
    Registry(local_store).register_version("m", mlp_path)
    write_config(local_store, "default", "m", CaptureConfig(sample_rate=1.0, inputs=False))
    svc = _service(local_store, tmp_path, Capturer(local_store, buffer_records=3))
    for _ in range(5):
        svc.predict("default", "m", None, json.dumps({"instances": [ROW]}).encode())
    assert svc.capture.dropped == 2
    assert svc.capture.flush() == 3
    records = export(local_store, "default", "m", since=0).records
    assert len(records) == 3 and all("input" not in r and "output" in r for r in records)


class _CaptureFails(LocalStore):
    def put_bytes(self, key, data, **kw):
        if "/capture/" in key:
            raise StoreUnavailable("the bucket is on fire")
        return super().put_bytes(key, data, **kw)


def test_a_failing_capture_never_reaches_the_caller(tmp_path, mlp_path):
    store = _CaptureFails(tmp_path / "store")
    Registry(store).register_version("m", mlp_path)
    write_config(store, "default", "m", CaptureConfig(sample_rate=1.0))
    svc = _service(store, tmp_path, Capturer(store))
    for _ in range(4):
        assert len(svc.predict("default", "m", None, json.dumps({"instances": [ROW]}).encode()).payload) == 1
    assert svc.capture.flush() == 0 and svc.capture.dropped == 4


def test_s3_capture_objects_carry_the_expiry_tag(moto_store, mlp_path, tmp_path):
    import boto3

    Registry(moto_store).register_version("m", mlp_path)
    write_config(moto_store, "default", "m", CaptureConfig(sample_rate=1.0))
    svc = _service(moto_store, tmp_path, Capturer(moto_store))
    svc.predict("default", "m", None, json.dumps({"instances": [ROW]}).encode())
    assert svc.capture.flush() == 1
    (info,) = moto_store.list("tenants/default/capture/m/")
    tags = boto3.client("s3").get_object_tagging(Bucket=moto_store.bucket, Key=moto_store._k(info.key))["TagSet"]
    key, value = CAPTURE_TAG.split("=")
    assert tags == [{"Key": key, "Value": value}]


def test_lambda_handler_captures(tmp_path, mlp_path, monkeypatch):
    store = LocalStore(tmp_path / "store")
    Registry(store).register_version("m", mlp_path)
    write_config(store, "default", "m", CaptureConfig(sample_rate=1.0))
    monkeypatch.setenv("MODELBAY_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("MODELBAY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MODELBAY_AUTH", "0")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "modelbay-inference")
    fn = load_function("inference")
    status, _, body = invoke(fn.handler, event("POST", "/v2/models/m/infer", body=_oip_body("lambda-1")))
    assert status == 200, body
    assert fn.app.state.inference.capture.flush() == 1
    (rec,) = export(store, "default", "m", since=0).records
    assert rec["id"] == "lambda-1" and rec["version"] == 1


def test_cli_capture_set_and_export(local_store, mlp_path, tmp_path):
    from typer.testing import CliRunner

    from modelbay.api.app import create_app
    from modelbay.cli import app as cli

    Registry(local_store).register_version("m", mlp_path)
    api = create_app(Settings(store_url=local_store.url, cache_dir=tmp_path / "cache", auth=False), store=local_store)
    with running(api) as url:
        run = CliRunner()
        r = run.invoke(cli, ["--url", url, "capture", "set", "m", "--sample", "1", "--no-outputs"])
        assert r.exit_code == 0 and "capturing 100.0% of requests (inputs)" in r.output, r.output
        for _ in range(3):
            HTTP.post(f"{url}/v1/models/m:predict", json={"instances": [ROW]})
        api.state.inference.capture.flush()
        out = tmp_path / "captured.jsonl"
        r = run.invoke(cli, ["--url", url, "capture", "export", "m", "--since", "15m", "-o", str(out)])
        assert r.exit_code == 0, r.output
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(lines) == 3 and all("output" not in rec for rec in lines)
        r = run.invoke(cli, ["--url", url, "capture", "set", "m", "--sample", "2"])
        assert r.exit_code == 2
        r = run.invoke(cli, ["--url", url, "capture", "export", "nope"])
        assert r.exit_code == 0  # an unknown model has captured nothing
