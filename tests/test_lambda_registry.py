"""functions/registry/app.py driven with real API Gateway REST-proxy events, on S3 (moto server)."""

from __future__ import annotations

import hashlib
import json

import httpx

from tests.apigw import event, invoke, load_function

BOOT = "bootstrap-admin-key-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {BOOT}"}


def test_registry_lambda_upload_register_alias(s3_bucket, monkeypatch, mlp_path):
    monkeypatch.setenv("MODELBAY_STORE", f"s3://{s3_bucket}/mb")
    monkeypatch.setenv("MODELBAY_BOOTSTRAP_KEY", BOOT)
    fn = load_function("registry")
    data = mlp_path.read_bytes()
    decl = {"files": {"model.onnx": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}}}
    status, _, body = invoke(fn.handler, event("POST", "/registry/models/digits/uploads", body=decl, headers=AUTH))
    assert status == 201, body
    target = json.loads(body)["targets"]["model.onnx"]
    # the bytes go straight to S3, never through the Lambda payload
    assert httpx.put(target["url"], content=data, headers=target["headers"]).status_code == 200
    reg = {"upload_id": json.loads(body)["upload_id"], "aliases": ["production"]}
    status, _, body = invoke(fn.handler, event("POST", "/registry/models/digits/versions", body=reg, headers=AUTH))
    assert status == 201, body
    assert json.loads(body)["version"] == 1
    status, headers, body = invoke(fn.handler, event("GET", "/registry/models", headers=AUTH))
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body)["models"][0]["aliases"] == {"production": 1}


def test_registry_lambda_errors_are_json(s3_bucket, monkeypatch):
    monkeypatch.setenv("MODELBAY_STORE", f"s3://{s3_bucket}/mb")
    monkeypatch.setenv("MODELBAY_BOOTSTRAP_KEY", BOOT)
    fn = load_function("registry")
    for e, want in [
        (event("GET", "/registry/models/ghost/versions", headers=AUTH), 404),
        (
            event(
                "POST",
                "/registry/models/x/uploads",
                body="{broken",
                headers={"Content-Type": "application/json", **AUTH},
            ),
            400,
        ),
        (event("PUT", "/registry/models/BAD/aliases/production", body={"version": 1}, headers=AUTH), 400),
        # inference routes live in the other function
        (event("POST", "/v2/models/x/infer", body={}, headers=AUTH), 404),
    ]:
        status, _, body = invoke(fn.handler, e)
        assert status == want, (e["path"], status, body)
        assert json.loads(body)["error"]
