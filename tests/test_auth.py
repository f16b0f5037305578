"""Scoped API keys: every route guarded, hashes only in the store, 401/403 as JSON, never a 500."""

from __future__ import annotations

import hashlib
import json
import re

import httpx
import pytest
from fastapi.testclient import TestClient

from modelbay.api.app import create_app, create_inference_app, create_registry_app
from modelbay.auth import KeyStore
from modelbay.auth.http import PUBLIC
from modelbay.client import ApiError, Client
from modelbay.settings import Settings
from modelbay.storage.local import LocalStore


def _app(tmp_path, factory=create_app, **kw):
    store = LocalStore(tmp_path / "store")
    settings = Settings(store_url=str(tmp_path / "store"), cache_dir=tmp_path / "cache", auth=True, **kw)
    if factory is create_app:
        return factory(settings, store=store), store
    settings.store_url = store.url
    return factory(settings), store


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


@pytest.mark.parametrize("factory", [create_app, create_registry_app, create_inference_app])
def test_every_route_of_every_app_needs_a_key(tmp_path, factory):
    app, _ = _app(tmp_path, factory)
    guarded = 0
    with TestClient(app) as c:
        for path, ops in app.openapi()["paths"].items():
            for method in ops:
                r = c.request(method.upper(), _fill(path))
                if path in PUBLIC:
                    assert r.status_code != 401, (method, path)
                    continue
                assert r.status_code == 401, (method, path, r.status_code, r.text)
                assert r.json()["code"] == "unauthorized" and r.json()["error"]
                guarded += 1
    # after the inference work lands, its /v1 and /v2 routes are swept here too
    assert guarded >= (0 if factory is create_inference_app else 15) and app.openapi()["paths"]


def test_a_route_that_forgets_its_dependency_is_still_guarded(tmp_path):
    app, store = _app(tmp_path)

    @app.get("/registry/forgotten")
    def forgotten():
        return {"leak": True}

    @app.post("/v2/forgotten")
    def forgotten_v2():
        return {"leak": True}

    _, invoke_key = KeyStore(store).create("default", ["invoke"])
    with TestClient(app) as c:
        assert c.get("/registry/forgotten").status_code == 401
        r = c.get("/registry/forgotten", headers={"Authorization": f"Bearer {invoke_key}"})
        assert r.status_code == 403 and r.json()["scope"] == "manage"  # the path's scope, without require()
        assert c.post("/v2/forgotten", headers={"x-api-key": invoke_key}).status_code == 200


def test_bad_credentials_are_401_json(tmp_path):
    app, store = _app(tmp_path)
    ks = KeyStore(store, cache_seconds=0)
    _, key = ks.create("default", ["manage"])
    _, other = ks.create("default", ["manage"])
    revoked_rec, revoked = ks.create("default", ["manage"])
    ks.revoke(revoked_rec.key_id)
    expired_rec, expired = ks.create("default", ["manage"], expires_in=1)
    ks.update(expired_rec.key_id, expires_at=1.0)
    wrong_secret = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    cases = {
        "Basic dXNlcjpwYXNz": "Bearer",
        "Bearer": "Bearer",
        "Bearer not-a-key": "unknown API key",
        f"Bearer {wrong_secret}": "unknown API key",
        f"Bearer mb_000000000000_{'x' * 43}": "unknown API key",
        f"Bearer {revoked}": "revoked",
        f"Bearer {expired}": "expired",
        f"Bearer {key}\x00": "malformed API key",
        "Bearer " + "A" * 10_000: "unknown API key",
    }
    with TestClient(app) as c:
        for header, why in cases.items():
            r = c.get("/registry/models", headers={"Authorization": header})
            assert r.status_code == 401, (header[:40], r.text)
            assert why in r.json()["error"], (header[:40], r.json())
        r = c.get("/registry/models", headers={"Authorization": f"Bearer {key}", "x-api-key": other})
        assert r.status_code == 401 and "different keys" in r.json()["error"]
        for headers in (
            {"Authorization": f"Bearer {key}"},
            {"x-api-key": key},
            {"Authorization": f"bearer {key}", "x-api-key": key},
        ):
            assert c.get("/registry/models", headers=headers).status_code == 200, headers


def test_scopes(tmp_path):
    app, store = _app(tmp_path)
    ks = KeyStore(store)
    keys = {s: ks.create("default", [s])[1] for s in ("invoke", "manage", "admin")}
    want = {  # path -> status for invoke, manage, admin keys
        ("GET", "/registry/models"): (403, 200, 403),
        ("GET", "/registry/keys"): (403, 403, 200),
        ("GET", "/registry/audit"): (403, 403, 200),
        ("GET", "/registry/whoami"): (200, 200, 200),
        ("GET", "/v2/health/live"): (200, 200, 200),
    }
    with TestClient(app) as c:
        for (method, path), statuses in want.items():
            got = tuple(
                c.request(method, path, headers={"x-api-key": keys[s]}).status_code
                for s in ("invoke", "manage", "admin")
            )
            assert got == statuses, (path, got)
        r = c.get("/registry/models", headers={"x-api-key": keys["invoke"]})
        assert r.json() == {"error": "this key lacks the 'manage' scope", "code": "forbidden", "scope": "manage"}


def test_keys_are_stored_only_as_hashes(tmp_path, auth_headers, server, store):
    with Client(server, auth_headers["Authorization"].split()[1]) as admin:
        made = admin.create_key(["invoke"], name="ci")
    secret = made.key.split("_", 2)[2]
    blobs = [store.get_bytes(i.key)[0] for i in store.list("system/keys/")]
    assert len(blobs) >= 2  # the fixtures' admin keys and this one
    assert all(secret.encode() not in b and made.key.encode() not in b for b in blobs)
    rec = json.loads(store.get_bytes(f"system/keys/{made.key_id}.json")[0])
    assert rec["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    assert "secret_sha256" not in made and "secret_sha256" not in admin_list(server, auth_headers)[0]


def admin_list(server, auth_headers):
    return httpx.get(f"{server}/registry/keys", headers=auth_headers).json()["keys"]


def test_key_lifecycle_over_http(client, server):
    made = client.create_key(["invoke", "manage"], name="deployer", expires_in_days=30)
    assert made.key.startswith(f"mb_{made.key_id}_") and made.expires_at > made.created_at
    with Client(server, made.key) as c:
        assert c.whoami().model_dump() == {
            "tenant": "default",
            "scopes": ["invoke", "manage"],
            "key_id": made.key_id,
            "root": False,
        }
        assert c.models() == []
        with pytest.raises(ApiError) as e:
            c.keys()
        assert (e.value.status, e.value.code) == (403, "forbidden")
    ids = {k.key_id: k for k in client.keys()}  # noqa: SIM118  (Client.keys(): API keys, not a dict)
    assert ids[made.key_id].active and ids[made.key_id].name == "deployer"
    revoked = client.revoke_key(made.key_id)
    assert revoked.active is False and revoked.revoked_by == client.whoami().key_id
    # the local server's cache is 30 s; revocation clears it
    with Client(server, made.key) as c, pytest.raises(ApiError) as e:
        c.models()
    assert (e.value.status, e.value.code) == (401, "unauthorized")
    for bad, status in ([["root"]], 400), ([[]], 400):
        with pytest.raises(ApiError) as e:
            client.create_key(*bad)
        assert e.value.status == status
    with pytest.raises(ApiError) as e:
        client.revoke_key("../../etc")
    assert e.value.status == 404
    actions = [r.action for r in client.audit(action="key.")]
    assert actions[:2] == ["key.revoke", "key.create"]


def test_bootstrap_key_from_env_and_from_secrets_manager(tmp_path, s3_endpoint):
    import boto3

    boot = "operator-bootstrap-key-0123456789abcdef"
    app, _ = _app(tmp_path, bootstrap_key=boot)
    with TestClient(app) as c:
        w = c.get("/registry/whoami", headers={"x-api-key": boot}).json()
        assert w == {"tenant": "default", "scopes": ["admin", "invoke", "manage"], "key_id": "bootstrap", "root": True}
        assert c.get("/registry/whoami", headers={"x-api-key": boot + "x"}).status_code == 401

    arn = boto3.client("secretsmanager").create_secret(Name=f"mb-boot-{tmp_path.name}", SecretString=boot)["ARN"]
    app, _ = _app(tmp_path / "sm", bootstrap_key_secret=arn)
    with TestClient(app) as c:
        assert c.get("/registry/whoami", headers={"Authorization": f"Bearer {boot}"}).json()["root"] is True
        r = c.post("/registry/keys", json={"scopes": ["invoke"]}, headers={"x-api-key": boot})
        assert r.status_code == 201 and r.json()["created_by"] == "bootstrap"


def test_an_unreadable_bootstrap_secret_is_a_clear_503_not_a_500(tmp_path, s3_endpoint, monkeypatch, caplog):
    """The secret missing (or the role not allowed to read it): a 503 that says what cannot be checked, the
    secret's name only in the log, minted keys unaffected; read again once it exists."""
    import boto3

    from modelbay.auth import http

    monkeypatch.setattr(http, "SECRET_RETRY_S", 0.0)
    name = f"mb-boot-missing-{tmp_path.name}"
    boot = "operator-bootstrap-key-0123456789abcdef"
    app, store = _app(tmp_path, bootstrap_key_secret=name)
    minted = KeyStore(store).create("default", ["manage"], name="ops")[1]
    with TestClient(app) as c:
        for _ in range(2):  # the failure is not cached as "no bootstrap key"
            r = c.get("/registry/whoami", headers={"x-api-key": boot})
            assert r.status_code == 503 and r.json()["code"] == "credentials_unavailable", r.text
            assert "bootstrap key" in r.json()["error"] and name not in r.text and int(r.headers["retry-after"]) >= 1
        assert name in caplog.text and "ResourceNotFoundException" in caplog.text
        assert c.get("/registry/whoami", headers={"x-api-key": minted}).status_code == 200
        boto3.client("secretsmanager").create_secret(Name=name, SecretString=boot)
        assert c.get("/registry/whoami", headers={"x-api-key": boot}).json()["root"] is True


def test_lambda_rejects_missing_and_bad_keys_with_json(s3_bucket, monkeypatch):
    from tests.apigw import event, invoke, load_function

    monkeypatch.setenv("MODELBAY_STORE", f"s3://{s3_bucket}/mb")
    monkeypatch.setenv("MODELBAY_BOOTSTRAP_KEY", "lambda-bootstrap-key-0123456789")
    fn = load_function("registry")
    for headers, want in [
        ({}, 401),
        ({"x-api-key": "nope"}, 401),
        ({"Authorization": "Bearer mb_0123456789ab_" + "a" * 43}, 401),
        ({"x-api-key": "lambda-bootstrap-key-0123456789"}, 200),
    ]:
        status, hdrs, body = invoke(fn.handler, event("GET", "/registry/models", headers=headers))
        assert status == want, (headers, body)
        assert hdrs["content-type"] == "application/json" and json.loads(body)


def test_usage_plan_mirror_on_api_gateway(tmp_path, s3_endpoint):
    """On AWS every key is also an API Gateway key in the stack's usage plan (moto's API Gateway here)."""
    import boto3

    gw = boto3.client("apigateway")
    api = gw.create_rest_api(name="modelbay")["id"]
    plan = gw.create_usage_plan(
        name=f"plan-{tmp_path.name}",
        throttle={"rateLimit": 10, "burstLimit": 20},
        quota={"limit": 1000, "period": "DAY"},
    )["id"]
    boot = "operator-bootstrap-key-0123456789abcdef"
    app, _ = _app(tmp_path, bootstrap_key=boot, usage_plan=f"plan-{tmp_path.name}")
    with TestClient(app) as c:
        made = c.post("/registry/keys", json={"scopes": ["invoke"]}, headers={"x-api-key": boot}).json()
        gw_key = gw.get_api_key(apiKey=made["gateway_key_id"], includeValue=True)
        assert gw_key["value"] == made["key"] and gw_key["enabled"]
        assert [k["id"] for k in gw.get_usage_plan_keys(usagePlanId=plan)["items"]] == [made["gateway_key_id"]]
        c.delete(f"/registry/keys/{made['key_id']}", headers={"x-api-key": boot})
        assert gw.get_usage_plan_keys(usagePlanId=plan)["items"] == []
        with pytest.raises(gw.exceptions.NotFoundException):
            gw.get_api_key(apiKey=made["gateway_key_id"])
    assert api


def test_serve_first_run_saves_a_key_the_client_uses(tmp_path):
    """The real ``modelbay serve``: its first start on a store mints a root key, saves it for its URL and says so."""
    from modelbay.auth import credentials
    from tests.servers import modelbay_serve

    log = tmp_path / "serve.log"
    with modelbay_serve(tmp_path / "s", log=log) as url, Client(url) as c:
        assert c.whoami().root is True  # no key given: it comes from the credentials file
    assert "created the admin key" in log.read_text()
    assert oct(credentials.path().stat().st_mode & 0o777) == "0o600"
    with modelbay_serve(tmp_path / "s", log=log):  # a restart: the store has its key
        pass
    assert "created the admin key" not in log.read_text()
    assert len(list(LocalStore(tmp_path / "s").list("system/keys/"))) == 1

    with modelbay_serve(tmp_path / "s2", "--no-auth", log=log) as url:
        assert httpx.get(f"{url}/registry/models").status_code == 200
    assert "WARNING: --no-auth" in log.read_text()


def test_keys_cli(client, server):
    from typer.testing import CliRunner

    from modelbay.cli import app as cli

    run = CliRunner()
    base = ["--url", server, "--api-key", client.api_key]
    r = run.invoke(cli, base + ["--json", "keys", "create", "-s", "invoke", "-s", "manage", "-n", "ci"])
    assert r.exit_code == 0, r.output
    made = json.loads(r.stdout)
    r = run.invoke(cli, base + ["--json", "keys", "list"])
    listed = {k["key_id"]: k for k in json.loads(r.stdout)}
    assert listed[made["key_id"]]["scopes"] == ["invoke", "manage"] and "key" not in listed[made["key_id"]]
    assert run.invoke(cli, base + ["keys", "list"]).exit_code == 0
    r = run.invoke(cli, ["--url", server, "--api-key", made["key"], "keys", "whoami"])
    assert r.exit_code == 0 and made["key_id"] in r.output
    r = run.invoke(cli, base + ["keys", "revoke", made["key_id"]])
    assert r.exit_code == 0 and "revoked" in r.output
    r = run.invoke(cli, base + ["--json", "audit", "--action", "key."])
    assert [e["action"] for e in json.loads(r.stdout)][:2] == ["key.revoke", "key.create"]


def test_request_bodies_are_capped_with_413_json(tmp_path):
    from modelbay.settings import Limits
    from tests.onnx_models import make_mlp

    store = LocalStore(tmp_path / "store")
    limits = Limits()
    limits.max_body_bytes = 4096
    app = create_app(Settings(store_url=store.url, cache_dir=tmp_path / "c", auth=True, limits=limits), store=store)
    _, key = KeyStore(store).create("default", ["manage", "admin", "invoke"])
    h = {"x-api-key": key}
    big = {"scopes": ["invoke"], "name": "x" * 5000}
    with TestClient(app) as c:
        r = c.post("/registry/keys", json=big, headers=h)
        assert r.status_code == 413 and r.json()["code"] == "too_large"

        def chunks():  # no Content-Length: the count happens while the body streams
            for _ in range(10):
                yield b"x" * 1000

        r = c.post("/registry/models/m/uploads", content=chunks(), headers={**h, "content-type": "application/json"})
        assert r.status_code == 413 and r.json()["code"] == "too_large"
        # the local upload URL streams models past the JSON cap, under the model-size limit
        data = make_mlp(tmp_path / "wide.onnx", n_hidden=256).read_bytes()
        assert len(data) > 4096
        up = c.post(
            "/registry/models/m/uploads",
            headers=h,
            json={"files": {"model.onnx": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}}},
        ).json()
        assert c.put(up["targets"]["model.onnx"]["url"], content=data).status_code == 204
        assert c.post("/registry/models/m/versions", headers=h, json={"upload_id": up["upload_id"]}).status_code == 201


def test_inference_fast_paths_authenticate_first_on_lambda(tmp_path, monkeypatch):
    """The Lambda entry adds the inference fast paths after create_app: the gate still runs first."""
    from tests.apigw import event, invoke, load_function

    boot = "inference-bootstrap-key-0123456789abcdef"
    monkeypatch.setenv("MODELBAY_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("MODELBAY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MODELBAY_BOOTSTRAP_KEY", boot)
    fn = load_function("inference")
    _, manage_only = KeyStore(fn.store).create("default", ["manage"])
    for path in ("/v1/models/m/versions/x1:predict", "/v2/models/m/infer", "/v2/models/m/versions/x1/infer"):
        e = event("POST", path, body={"instances": [1]})
        assert invoke(fn.handler, e)[0] == 401, path  # before any validation of the path or body
        status, _, body = invoke(
            fn.handler, event("POST", path, body={"instances": [1]}, headers={"x-api-key": manage_only})
        )
        assert status == 403 and json.loads(body)["scope"] == "invoke", (path, body)
        status, _, body = invoke(fn.handler, event("POST", path, body={"instances": [1]}, headers={"x-api-key": boot}))
        assert status in (400, 404), (path, status, body)


def test_gate_body_limit_and_routes_answer_through_one_renderer(tmp_path, monkeypatch):
    """401 from the gate, 413 from the body limit, 4xx from routes: one function renders them, one shape."""
    from modelbay.api import errors
    from modelbay.settings import Limits

    rendered = []
    real = errors.render

    def spy(exc, where=""):
        out = real(exc, where)
        rendered.append((type(exc).__name__, out[0]))
        return out

    monkeypatch.setattr(errors, "render", spy)
    store = LocalStore(tmp_path / "store")
    app = create_app(
        Settings(store_url=store.url, cache_dir=tmp_path / "c", limits=Limits(max_body_bytes=4096)), store=store
    )
    _, key = KeyStore(store).create("default", ["manage", "admin", "invoke"])
    h = {"x-api-key": key}
    with TestClient(app) as c:
        answers = [
            c.get("/registry/models"),  # no key: the gate
            c.post("/registry/keys", content=b"x" * 5000, headers={**h, "content-type": "application/json"}),
            c.get("/registry/models/ghost/versions", headers=h),  # a ModelbayError from a route
            c.post("/registry/keys", content=b"{broken", headers={**h, "content-type": "application/json"}),
            c.get("/nowhere", headers=h),  # Starlette's own 404
            c.post(
                "/v2/models/ghost/infer",
                json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]},
                headers=h,
            ),
        ]
    assert [r.status_code for r in answers] == [401, 413, 404, 400, 404, 404]
    assert rendered == [
        ("Unauthorized", 401),
        ("TooLarge", 413),
        ("NotFound", 404),
        ("RequestValidationError", 400),
        ("HTTPException", 404),
        ("NotFound", 404),
    ]
    for r in answers:
        body = r.json()
        assert r.headers["content-type"] == "application/json", r.request.url
        assert isinstance(body["error"], str) and body["error"] and isinstance(body["code"], str), body
    assert [r.json()["code"] for r in answers] == [
        "unauthorized",
        "too_large",
        "not_found",
        "bad_request",
        "not_found",
        "not_found",
    ]


def test_a_500_names_nothing_of_the_server(tmp_path, monkeypatch):
    """A bug of ours, wherever it surfaces (a route, the gate, an inference), answers a bare 500."""
    secret = "/srv/modelbay/internal/state.db"
    app, store = _app(tmp_path)
    _, key = KeyStore(store).create("default", ["manage", "invoke"])

    @app.get("/registry/boom")
    def boom():
        raise OSError(2, "No such file or directory", secret)

    def broken(*args, **kw):
        raise KeyError(secret)

    monkeypatch.setattr(app.state.inference, "infer", broken)
    with TestClient(app, raise_server_exceptions=False) as c:
        answers = [
            c.get("/registry/boom", headers={"x-api-key": key}),
            c.post("/v2/models/m/infer", content=b"{}", headers={"x-api-key": key}),
        ]
        app.state.authenticate = lambda request: (_ for _ in ()).throw(RuntimeError(secret))
        answers.append(c.get("/registry/models", headers={"x-api-key": key}))
    for r in answers:
        assert r.status_code == 500 and r.json() == {"error": "internal error", "code": "internal"}, r.text
        assert secret not in r.text and "Traceback" not in r.text
