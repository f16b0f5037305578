"""The management API over real HTTP (uvicorn) on both stores, through modelbay's client."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from modelbay.client import ApiError
from modelbay.manifest import ClassifierPostprocessing, VersionMetadata
from tests.onnx_models import external_data_model, make_mlp


def test_push_list_alias_rollback(client, mlp_path, tmp_path):
    meta = VersionMetadata(
        task="classifier",
        labels=["a", "b", "c"],
        postprocessing=ClassifierPostprocessing(scores="probabilities"),
        description="first",
    )
    seen = []
    m1 = client.push(mlp_path, "iris", meta, aliases=["production"], progress=lambda d, t: seen.append((d, t)))
    assert m1.version == 1 and m1.labels == ["a", "b", "c"]
    assert seen[-1] == (mlp_path.stat().st_size, mlp_path.stat().st_size)
    tok = tmp_path / "tokenizer.json"
    tok.write_text('{"not": "really a tokenizer"}')
    m2 = client.push(make_mlp(tmp_path / "b.onnx", seed=3), "iris", side_files={"tokenizer.json": tok})
    assert m2.files["tokenizer.json"].sha256 == hashlib.sha256(tok.read_bytes()).hexdigest()
    [summary] = client.models()
    assert (summary.name, summary.latest_version, summary.aliases) == ("iris", 2, {"production": 1})
    assert [v.version for v in client.versions("iris")] == [1, 2]
    assert client.version("iris", "production").version == 1
    s = client.set_alias("iris", "production", 2)
    assert s.version == 2 and s.history[-1]["from"] == 1 and s.updated_by
    s = client.rollback("iris", "production")
    assert s.version == 1 and s.history[-1]["action"] == "rollback"
    assert [e["to"] for e in client.alias_history("iris", "production").history] == [1, 2, 1]


def test_resolve_answers_what_the_inference_routes_serve(client, mlp_path, tmp_path):
    """One rule, asked of the server: a bare name is 'production' when set, else the latest version."""
    client.push(mlp_path, "iris")
    client.push(make_mlp(tmp_path / "b.onnx", seed=3), "iris")
    r = client.resolve("iris")
    assert (r.version, r.alias, r.ref) == (2, None, None) and r.manifest.version == 2
    client.set_alias("iris", "production", 1)
    r = client.resolve("iris")
    assert (r.version, r.alias) == (1, "production") and r.manifest.version == 1
    assert client.predict("iris", None, [[1, 2, 3, 4]]).version == r.version  # what inference serves
    assert client.resolve("iris", "2").version == 2 and client.resolve("iris", 2).alias is None
    assert client.resolve("iris", "production").alias == "production"
    for ref, status, code in [
        ("staging", 404, "not_found"),
        ("9", 404, "not_found"),
        ("Bad Alias", 400, "invalid_name"),
    ]:
        with pytest.raises(ApiError) as e:
            client.resolve("iris", ref)
        assert (e.value.status, e.value.code) == (status, code)
    with pytest.raises(ApiError) as e:
        client.resolve("ghost")
    assert e.value.status == 404 and "no model named 'ghost'" in e.value.message


def test_errors_are_json_4xx(client, server, mlp_path, tmp_path, auth_headers):
    client.push(mlp_path, "m", aliases=["production"])
    cases = [
        (lambda: client.version("m", 9), 404, "not_found"),
        (lambda: client.model("ghost"), 404, "not_found"),
        (lambda: client.set_alias("m", "production", 1, expected_version=5), 412, "precondition_failed"),
        (lambda: client.delete_version("m", 1), 409, "conflict"),
        (lambda: client.rollback("m", "production"), 409, "conflict"),
        (lambda: client.push(mlp_path, "Bad Name"), 400, "invalid_name"),
        (lambda: client.push(external_data_model(tmp_path / "e.onnx", "/etc/passwd"), "m"), 422, "invalid_model"),
    ]
    for call, status, code in cases:
        with pytest.raises(ApiError) as e:
            call()
        assert (e.value.status, e.value.code) == (status, code), e.value.message
        assert e.value.message
    json_headers = {"content-type": "application/json", **auth_headers}
    raw = [
        httpx.post(f"{server}/registry/models/m/uploads", content=b"{not json", headers=json_headers),
        httpx.post(
            f"{server}/registry/models/m/uploads",
            json={"files": {"model.onnx": {"size": -1, "sha256": "x"}}},
            headers=auth_headers,
        ),
        httpx.post(f"{server}/registry/models/m/versions", json={"upload_id": "nope"}, headers=auth_headers),
        httpx.put(f"{server}/registry/models/m/aliases/production", json={"version": "one"}, headers=auth_headers),
        httpx.get(f"{server}/registry/models/m/versions/..%2F..%2Fetc", headers=auth_headers),
        httpx.get(f"{server}/no/such/route", headers=auth_headers),
    ]
    for r in raw:
        assert 400 <= r.status_code < 500 and r.status_code not in (401, 403), (r.request.url, r.status_code, r.text)
        assert r.json()["error"], r.text
    assert [v.version for v in client.versions("m")] == [1]  # nothing lost, nothing half-made


def test_local_upload_url_needs_its_token(serve_store, mlp_path, tmp_path):
    from modelbay.auth import SCOPES, KeyStore
    from modelbay.client import Client
    from modelbay.storage.local import LocalStore

    store = LocalStore(tmp_path / "store")
    key = KeyStore(store).create("default", SCOPES)[1]
    auth_headers = {"Authorization": f"Bearer {key}"}
    server = serve_store(store)
    client = Client(server, key)
    data = mlp_path.read_bytes()
    up = client._json(
        "POST",
        "/registry/models/m/uploads",
        json={"files": {"model.onnx": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}}},
    )
    assert "token" not in up  # it travels only in the upload URL
    url = up["targets"]["model.onnx"]["url"]
    bad = url.split("?")[0] + "?token=forged&tenant=default"
    r = httpx.put(bad, content=data)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert httpx.put(url, content=data[:10]).status_code == 400  # size differs from the declaration
    assert httpx.put(url, content=data).status_code == 204
    r = httpx.post(f"{server}/registry/models/m/versions", json={"upload_id": up["upload_id"]}, headers=auth_headers)
    assert r.status_code == 201 and r.json()["version"] == 1


def test_multipart_upload_on_s3(serve_store, s3_bucket, tmp_path):
    from modelbay.client import Client
    from modelbay.storage.s3 import S3Store

    client = Client(serve_store(S3Store(s3_bucket, multipart_threshold=5 * 1024**2, part_size=5 * 1024**2)))
    big = tmp_path / "big.onnx"
    # a real model padded past the 5 MiB multipart threshold by a large initializer
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from tests.onnx_models import mlp_model

    model = mlp_model()
    model.graph.initializer.append(numpy_helper.from_array(np.ones((1600, 1000), np.float32), "unused"))
    onnx.save(model, str(big))
    m = client.push(big, "big")
    assert m.size == big.stat().st_size > 5 * 1024**2
