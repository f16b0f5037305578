"""Tenant isolation: tenant A cannot list, read, alias, upload to, delete or infer tenant B's models,
nor see B's keys or audit records. Runs on the local store and on S3 (moto server)."""

from __future__ import annotations

import hashlib
import re

import httpx
import numpy as np
import pytest

from modelbay.client import ApiError, Client


@pytest.fixture
def tenants(client, server):
    """Tenants a and b created by the root key, each with one key of every scope."""
    out = {}
    for t in ("a", "b"):
        assert client.create_tenant(t, f"tenant {t}").name == t
        out[t] = Client(server, client.create_key(["invoke", "manage", "admin"], tenant=t, name=f"{t}-all").key)
    yield out
    for c in out.values():
        c.close()


def _status(call) -> tuple[int, str]:
    with pytest.raises(ApiError) as e:
        call()
    return e.value.status, e.value.code


def test_tenant_cannot_touch_another_tenants_models(tenants, mlp_path, store, server):
    a, b = tenants["a"], tenants["b"]
    b.push(mlp_path, "secret-model", aliases=["production"])
    assert [m.name for m in b.models()] == ["secret-model"]
    assert a.models() == []
    assert _status(lambda: a.model("secret-model")) == (404, "not_found")
    assert _status(lambda: a.version("secret-model", 1)) == (404, "not_found")
    assert _status(lambda: a.version("secret-model", "production")) == (404, "not_found")
    assert _status(lambda: a.aliases("secret-model")) == (404, "not_found")
    assert _status(lambda: a.set_alias("secret-model", "production", 1)) == (404, "not_found")
    assert _status(lambda: a.rollback("secret-model", "production")) == (404, "not_found")
    assert _status(lambda: a.delete_alias("secret-model", "production")) == (404, "not_found")
    assert _status(lambda: a.delete_version("secret-model", 1)) == (404, "not_found")
    # a push under the same name lands in a's namespace: b's model is untouched
    assert a.push(mlp_path, "secret-model").version == 1
    assert [v.version for v in b.versions("secret-model")] == [1]
    assert b.aliases("secret-model") == {"production": 1}
    keys = [i.key for i in store.list("tenants/")]
    assert any(k.startswith("tenants/a/models/secret-model/1/") for k in keys)
    assert any(k.startswith("tenants/b/models/secret-model/1/") for k in keys)


def test_tenant_cannot_redirect_an_upload_into_another_tenant(tenants, mlp_path, store):
    if not hasattr(store, "root"):
        pytest.skip("S3 presigned URLs name their key; the server receives nothing")
    a, b = tenants["a"], tenants["b"]
    data = mlp_path.read_bytes()
    decl = {"files": {"model.onnx": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}}}
    up = a._json("POST", "/registry/models/m/uploads", json=decl)
    url = up["targets"]["model.onnx"]["url"]
    assert "tenant=a" in url
    for forged in (url.replace("tenant=a", "tenant=b"), url.replace("tenant=a", "tenant=..%2Fb")):
        r = httpx.put(forged, content=data)
        assert r.status_code in (400, 403, 404) and r.json()["error"], (forged, r.text)
    assert httpx.put(url, content=data).status_code == 204
    # b cannot register a's upload: the id is looked up in b's namespace
    assert (
        _status(lambda: b._json("POST", "/registry/models/m/versions", json={"upload_id": up["upload_id"]}))[0] == 404
    )
    assert a._json("POST", "/registry/models/m/versions", json={"upload_id": up["upload_id"]})["version"] == 1
    assert b.models() == []


def test_tenant_admin_is_confined_to_its_tenant(tenants, client):
    a, b = tenants["a"], tenants["b"]
    b_key = b.create_key(["invoke"], name="b-invoke")
    assert b_key.tenant == "b"
    assert all(k.tenant == "a" for k in a.keys())  # noqa: SIM118  (Client.keys(): API keys, not a dict)
    assert _status(lambda: a.keys(tenant="b")) == (403, "forbidden")
    assert _status(lambda: a.keys(all_tenants=True)) == (403, "forbidden")
    assert _status(lambda: a.revoke_key(b_key.key_id)) == (404, "not_found")
    assert _status(lambda: a.create_key(["admin"], tenant="b")) == (403, "forbidden")
    assert _status(lambda: a.create_key(["admin"], root=True)) == (403, "forbidden")
    assert _status(lambda: a.create_tenant("c")) == (403, "forbidden")
    assert [t.name for t in a.tenants()] == ["a"]
    assert _status(lambda: a.audit(tenant="b")) == (403, "forbidden")
    assert all(r.tenant == "a" for r in a.audit())
    # the root key sees everything
    assert {"a", "b", "default"} <= {t.name for t in client.tenants()}
    assert {k.tenant for k in client.keys(all_tenants=True)} >= {"a", "b", "default"}
    assert any(r.action == "key.create" and r.target == b_key.key_id for r in client.audit(tenant="b"))
    assert _status(lambda: client.create_key(["invoke"], tenant="nobody")) == (404, "not_found")
    assert _status(lambda: client.create_tenant("a")) == (412, "precondition_failed")
    assert _status(lambda: client.create_tenant("../x")) == (400, "invalid_name")


def test_alias_changes_are_audited_per_tenant(tenants, mlp_path):
    b = tenants["b"]
    b.push(mlp_path, "m", aliases=["production"])
    b.push(mlp_path, "m")
    b.set_alias("m", "production", 2)
    b.rollback("m", "production")
    recs = b.audit(action="alias.")
    assert [(r.action, r.target, r.details["version"]) for r in recs] == [
        ("alias.rollback", "m:production", 1),
        ("alias.set", "m:production", 2),
        ("alias.set", "m:production", 1),
    ]
    whoami = b.whoami()
    assert {r.actor for r in recs} == {whoami.key_id}
    assert tenants["a"].audit(action="alias.") == []


def test_tenant_cannot_infer_another_tenants_model(tenants, mlp_path, server):
    """Runs once the inference routes exist (the inference work); skips on the foundation alone."""
    spec = httpx.get(f"{server}/openapi.json").json()["paths"]
    infer = next((p for p in spec if re.fullmatch(r"/v2/models/\{[^}]+\}/infer", p)), None)
    if infer is None:
        pytest.skip("no /v2/models/{name}/infer route in this build")
    a, b = tenants["a"], tenants["b"]
    b.push(mlp_path, "scorer", aliases=["production"])
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": np.ones(4, np.float32).tolist()}]}
    path = re.sub(r"\{[^}]+\}", "scorer", infer)
    assert b.request("POST", path, json=body).status_code == 200
    with pytest.raises(ApiError) as e:
        a.request("POST", path, json=body)
    assert e.value.status == 404


def test_metrics_are_kept_per_tenant(tenants, mlp_path):
    a, b = tenants["a"], tenants["b"]
    b.push(mlp_path, "shared-name", aliases=["production"])
    a.push(mlp_path, "shared-name", aliases=["production"])
    x = np.ones((2, 4), np.float32)
    for _ in range(3):
        b.infer("shared-name", {"x": x}, ref="production")
    a.infer("shared-name", {"x": x}, ref="production")
    requests = lambda c: c.metrics("shared-name", window="1h").overall.totals.requests  # noqa: E731
    assert (requests(a), requests(b)) == (1, 3)
