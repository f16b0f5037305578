"""functions/registry/app.py driven with real API Gateway REST-proxy events, on S3 (moto server)."""

from __future__ import annotations

import hashlib
import json

import httpx

from tests.apigw import event, invoke, load_function


def test_registry_lambda_upload_register_alias(s3_bucket, monkeypatch, mlp_path):
    monkeypatch.setenv("MODELBAY_STORE", f"s3://{s3_bucket}/mb")
    fn = load_function("registry")
    data = mlp_path.read_bytes()
    decl = {"files": {"model.onnx": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}}}
    status, _, body = invoke(fn.handler, event("POST", "/registry/models/digits/uploads", body=decl))
    assert status == 201, body
    target = json.loads(body)["targets"]["model.onnx"]
    # the bytes go straight to S3, never through the Lambda payload
    assert httpx.put(target["url"], content=data, headers=target["headers"]).status_code == 200
    reg = {"upload_id": json.loads(body)["upload_id"], "aliases": ["production"]}
    status, _, body = invoke(fn.handler, event("POST", "/registry/models/digits/versions", body=reg))
    assert status == 201, body
    assert json.loads(body)["version"] == 1
    status, headers, body = invoke(fn.handler, event("GET", "/registry/models"))
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body)["models"][0]["aliases"] == {"production": 1}


def test_registry_lambda_errors_are_json(s3_bucket, monkeypatch):
    monkeypatch.setenv("MODELBAY_STORE", f"s3://{s3_bucket}/mb")
    fn = load_function("registry")
    for e, want in [
        (event("GET", "/registry/models/ghost/versions"), 404),
        (event("POST", "/registry/models/x/uploads", body="{broken", headers={"Content-Type": "application/json"}), 400),
        (event("PUT", "/registry/models/BAD/aliases/production", body={"version": 1}), 400),
        (event("POST", "/v2/models/x/infer", body={}), 404),  # inference routes live in the other function
    ]:
        status, _, body = invoke(fn.handler, e)
        assert status == want, (e["path"], status, body)
        assert json.loads(body)["error"]
