"""Isolation findings of the adversarial review (issue 11): each test is the attack, and fails without its fix.

F1  a tenant read another tenant's model through ONNX external data hidden in a
    model-local function's attribute default, resolved beside the model file in
    the disk cache every tenant shares. Closed twice: the validator walks every
    message of the protobuf, and sessions are built alone in a private directory.
F3  the local upload URL wrote a stranger's body to disk before it checked anything.
F8  names ending in a newline passed validation.
"""

from __future__ import annotations

import numpy as np
import pytest

from modelbay.api.app import create_app
from modelbay.auth import KeyStore
from modelbay.client import ApiError, Client
from modelbay.errors import InvalidModel, InvalidName
from modelbay.registry import Registry
from modelbay.settings import Settings
from modelbay.storage.local import LocalStore
from modelbay.validation import check_self_contained, inspect_onnx
from tests import malicious_models as mm
from tests.servers import running


def _status(call) -> tuple[int, str, str]:
    with pytest.raises(ApiError) as e:
        call()
    return e.value.status, e.value.code, e.value.message


# ------------------------------------------------------------------ F1: the validator
@pytest.mark.parametrize("kind", sorted(mm.SMUGGLED))
def test_every_smuggled_external_tensor_is_refused_by_the_walk(kind, tmp_path):
    """Wherever the tensor hides (or a field onnx does not know), the generic walk finds it."""
    model = mm.SMUGGLED[kind]("victim-blob")
    with pytest.raises(InvalidModel) as e:
        check_self_contained(model)
    assert e.value.status == 422 and "model." in e.value.details["where"]
    path = mm.save(model, tmp_path / "m.onnx")
    (tmp_path / "victim-blob").write_bytes(bytes(range(256)))  # the file it points at, right beside it
    with pytest.raises(InvalidModel):
        inspect_onnx(path, 1 << 20)


def test_the_walk_reaches_places_no_list_names(tmp_path):
    """Three levels of subgraph inside a function inside a model: found by descriptors, not by a list."""
    model = mm.function_subgraph_leak("x")
    with pytest.raises(InvalidModel) as e:
        check_self_contained(model)
    assert e.value.details["where"].startswith("model.functions[0].node[0].attribute")
    # and a clean model passes: the walk refuses what it should, not everything
    check_self_contained(mm.loop_model())


@pytest.fixture
def two_tenants(tmp_path):
    """A local server (in this process) with tenants acme (the victim) and globex (the attacker)."""
    store = LocalStore(tmp_path / "store")
    settings = Settings(store_url=store.url, cache_dir=tmp_path / "cache", auth=True)
    app = create_app(settings, store=store)
    keys = KeyStore(store)
    with running(app) as url:
        clients = {t: Client(url, keys.create(t, ["invoke", "manage"], name=t)[1]) for t in ("acme", "globex")}
        yield app, clients
        for c in clients.values():
            c.close()


def _attack(mlp_path, tmp_path, clients) -> tuple[str, bytes]:
    """The review's attack, step by step: returns (the victim's sha256, the attacker's model bytes)."""
    victim = clients["acme"].push(mlp_path, "secret-model")
    clients["acme"].infer("secret-model", {"x": np.ones((1, 4), np.float32)})  # its blob is now in the cache
    data = mm.with_sha_prefix(mm.function_default_leak, victim.sha256, victim.sha256[:2])
    (tmp_path / "evil.onnx").write_bytes(data)
    (tmp_path / victim.sha256).write_bytes(b"\0" * 256)  # the side file that made registration load it
    return victim.sha256, data


def test_the_cross_tenant_read_is_refused_at_registration(two_tenants, mlp_path, tmp_path):
    _, clients = two_tenants
    victim_sha, _ = _attack(mlp_path, tmp_path, clients)
    status, code, message = _status(
        lambda: clients["globex"].push(tmp_path / "evil.onnx", "evil", side_files={victim_sha: tmp_path / victim_sha})
    )
    assert (status, code) == (422, "invalid_model")
    assert "functions[0].attribute_proto[0]" in message and "external data" in message
    assert _status(lambda: clients["globex"].model("evil"))[0] == 404


def test_sessions_are_built_alone_even_if_the_validator_missed_it(two_tenants, mlp_path, tmp_path, monkeypatch):
    """Second layer: with the walk switched off, the model still cannot see the file beside it, neither at
    registration (built in a private directory) nor when served from the shared cache."""
    import onnxruntime as ort

    from modelbay import validation

    app, clients = two_tenants
    victim_sha, data = _attack(mlp_path, tmp_path, clients)
    globex = clients["globex"]
    monkeypatch.setattr(validation, "check_self_contained", lambda model: None)
    status, code, message = _status(
        lambda: globex.push(tmp_path / "evil.onnx", "evil", side_files={victim_sha: tmp_path / victim_sha})
    )
    assert (status, code) == (422, "invalid_model") and "onnxruntime cannot load the model" in message
    assert str(tmp_path) not in message and "/tmp/" not in message

    monkeypatch.setattr(validation, "_try_session", lambda path: None)  # and the registration's session too
    evil = globex.push(tmp_path / "evil.onnx", "evil")
    assert evil.sha256[:2] == victim_sha[:2]
    with pytest.raises(ApiError) as e:
        globex.request("GET", "/v2/models/evil/ready")  # ready means loaded: the session is built now
    assert e.value.status == 503 and e.value.code == "load_failure"
    assert str(tmp_path) not in e.value.message and "blobs" not in e.value.message

    # the control: built where the cache keeps it, the same file does read the victim's model
    blob = app.state.engine.disk.path(evil.sha256)
    assert blob.read_bytes() == data and (blob.parent / victim_sha).exists()
    leaked = ort.InferenceSession(str(blob), providers=["CPUExecutionProvider"]).run(None, {})[0]
    assert leaked.tobytes() == (blob.parent / victim_sha).read_bytes()[:256]


def test_a_training_initializer_with_external_data_is_refused(two_tenants, tmp_path):
    _, clients = two_tenants
    path = mm.save(mm.training_info_leak("weights.bin"), tmp_path / "train.onnx")
    status, code, message = _status(lambda: clients["globex"].push(path, "trainer"))
    assert (status, code) == (422, "invalid_model") and "training_info" in message


def test_a_clean_model_with_functions_still_registers_and_serves(two_tenants, tmp_path):
    """The walk refuses external data, not functions or subgraphs: a Loop model registers and runs."""
    _, clients = two_tenants
    path = mm.save(mm.loop_model(), tmp_path / "loop.onnx")
    assert clients["acme"].push(path, "loop").version == 1
    out = clients["acme"].infer("loop", {"n": np.array(5, np.int64)})
    assert out.outputs["acc"].tolist() == [5.0]


# ------------------------------------------------------------------ F3: the local upload URL
def _asgi_put(app, path: str, query: str, headers: dict[str, str], chunks: int, chunk_size: int = 1 << 20):
    """PUT ``path`` on the ASGI app with a body of ``chunks`` chunks; returns (status, body, chunks read)."""
    import asyncio
    import json

    read = [0]
    sent: list[dict] = []

    async def receive():
        if read[0] >= chunks:
            return {"type": "http.request", "body": b"", "more_body": False}
        read[0] += 1
        return {"type": "http.request", "body": b"\0" * chunk_size, "more_body": read[0] < chunks}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body) if body else None, read[0]


@pytest.fixture
def upload_app(tmp_path, mlp_path):
    store = LocalStore(tmp_path / "store")
    app = create_app(Settings(store_url=store.url, cache_dir=tmp_path / "cache", auth=True), store=store)
    reg = Registry(store, "default")
    size = mlp_path.stat().st_size
    import hashlib

    session = reg.create_upload(
        "m", {"model.onnx": {"size": size, "sha256": hashlib.sha256(mlp_path.read_bytes()).hexdigest()}}
    )
    return app, session, size, store


def test_a_strangers_upload_is_refused_before_its_body_is_read(upload_app, tmp_path, monkeypatch):
    """No key, a made-up id and token, 300 MiB declared: refused with nothing read and nothing on disk."""
    import tempfile

    app, session, _, _ = upload_app
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    cases = [
        (f"/registry/uploads/{'0' * 24}/files/model.onnx", "token=made-up&tenant=default", 404),
        (f"/registry/uploads/{session.upload_id}/files/model.onnx", "token=made-up&tenant=default", 403),
        (f"/registry/uploads/{session.upload_id}/files/other.bin", f"token={session.token}&tenant=default", 400),
        ("/registry/uploads/not-an-id/files/model.onnx", "token=x&tenant=default", 404),
        (f"/registry/uploads/{session.upload_id}/files/model.onnx", "token=x&tenant=globex%0A", 400),
    ]
    for path, query, status in cases:
        got, body, read = _asgi_put(app, path, query, {"content-length": str(300 << 20)}, chunks=300)
        assert (got, read) == (status, 0), (path, query, body)
        assert body["error"]
    # the right id and token, but a Content-Length other than the declared size: refused unread too
    ok = f"token={session.token}&tenant=default"
    got, body, read = _asgi_put(
        app, f"/registry/uploads/{session.upload_id}/files/model.onnx", ok, {"content-length": str(300 << 20)}, 300
    )
    assert (got, read) == (400, 0) and "declared" in body["error"]
    assert list((tmp_path / "tmp").iterdir()) == []


def test_an_upload_stops_at_its_declared_size(upload_app, tmp_path, mlp_path):
    """Chunked (no Content-Length) and longer than declared: the server stops reading past the declared size."""
    app, session, size, store = upload_app
    path = f"/registry/uploads/{session.upload_id}/files/model.onnx"
    got, body, read = _asgi_put(app, path, f"token={session.token}&tenant=default", {}, chunks=300)
    assert got == 413 and body["code"] == "too_large"
    assert read <= size // (1 << 20) + 2  # at most the chunk that crossed the declared size
    assert [i.key for i in store.list(f"tenants/default/uploads/{session.upload_id}/files/")] == []
    # the real bytes, at their declared size, are accepted
    with running(app) as url:
        import httpx

        r = httpx.put(f"{url}{path}?token={session.token}&tenant=default", content=mlp_path.read_bytes())
        assert r.status_code == 204, r.text


# ------------------------------------------------------------------ F8: names
@pytest.mark.parametrize("bad", ["secret-model\n", "production\n", "globex\n", "a\nb", "x\r", "x\t", "x\x00"])
def test_names_with_control_characters_are_refused_everywhere(bad, tmp_path, mlp_path):
    from modelbay.layout import Layout, check_file_name, check_name
    from modelbay.refs import parse_ref

    store = LocalStore(tmp_path / "store")
    with pytest.raises(InvalidName):
        check_name(bad)
    with pytest.raises(InvalidName):
        check_file_name(bad.replace("-", "") + "json")
    with pytest.raises(InvalidName):
        Layout(bad)  # a tenant
    with pytest.raises(InvalidName):
        Registry(store).register_version(bad, mlp_path)
    Registry(store).register_version("m", mlp_path)
    with pytest.raises(InvalidName):
        Registry(store).set_alias("m", bad, 1)
    with pytest.raises(InvalidName):
        parse_ref(f"m:{bad}")
    with pytest.raises(InvalidName):
        KeyStore(store).create(bad, ["invoke"])
    assert [i.key for i in store.list("tenants/default/aliases/")] == []


def test_names_ending_in_a_newline_are_refused_over_http(two_tenants, mlp_path):
    """Percent-encoded in the path, the newline reaches the server: 400 (or 404/405 for paths no route has)."""
    _, clients = two_tenants
    acme = clients["acme"]
    acme.push(mlp_path, "secret-model")
    for call in (
        lambda: acme.push(mlp_path, "secret-model%0A"),
        lambda: acme.set_alias("secret-model", "production%0A", 1),
        lambda: acme.version("secret-model%0A", 1),
        lambda: acme.request("POST", "/v2/models/secret-model%0A/infer", json={"inputs": []}),
    ):
        status, code, _ = _status(call)
        assert status == 400 and code == "invalid_name", (status, code)
    assert [m.name for m in acme.models()] == ["secret-model"] and acme.aliases("secret-model") == {}


def test_every_validation_pattern_is_matched_whole():
    """Every regex used to validate is compiled without ``^...$`` and used with fullmatch: ``$`` would
    accept a trailing newline. Read from the source, so a new pattern is checked too."""
    import re
    from pathlib import Path

    import modelbay

    root = Path(modelbay.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        text = path.read_text()
        for m in re.finditer(r"re\.compile\((r?[\"'])(.*?)\1", text):
            if m.group(2).endswith("$"):
                offenders.append(f"{path.relative_to(root)}: {m.group(0)[:80]}")
        for m in re.finditer(r"\b([A-Z_]+_RE|_?[A-Z]+)\.match\(", text):
            offenders.append(f"{path.relative_to(root)}: {m.group(0)}")
    assert offenders == []
