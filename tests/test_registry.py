"""Registry semantics on both stores: versions, visibility, aliases, deletion, uploads."""

from __future__ import annotations

import hashlib
import itertools
import threading
from pathlib import Path

import httpx
import pytest

from modelbay.errors import BadRequest, Conflict, InvalidModel, InvalidName, NotFound, PreconditionFailed, TooLarge
from modelbay.manifest import ClassifierPostprocessing, TabularPreprocessing, VersionMetadata
from modelbay.registry import Registry
from modelbay.settings import Limits
from tests.onnx_models import external_data_model, make_mlp


@pytest.fixture
def reg(store):
    return Registry(store, tenant="default")


def test_register_reads_signature_and_metadata(reg, mlp_path):
    meta = VersionMetadata(
        task="classifier",
        labels=["a", "b", "c"],
        description="toy",
        tags={"team": "ml"},
        preprocessing=TabularPreprocessing(input="x"),
        postprocessing=ClassifierPostprocessing(scores="probabilities"),
    )
    m = reg.register_version("iris", mlp_path, meta, actor="alice")
    assert m.version == 1
    assert m.sha256 == hashlib.sha256(mlp_path.read_bytes()).hexdigest()
    assert m.size == mlp_path.stat().st_size
    assert m.opset == {"ai.onnx": 17}
    assert m.producer["name"] == "modelbay-tests"
    assert [(t.name, t.dtype, t.shape) for t in m.inputs] == [("x", "float32", ["batch", 4])]
    assert [(t.name, t.dtype, t.shape) for t in m.outputs] == [("probabilities", "float32", ["batch", 3])]
    again = reg.get_version("iris", 1)
    assert again == m and again.labels == ["a", "b", "c"] and again.created_by == "alice"
    assert reg.store.head("tenants/default/models/iris/1/model.onnx") is not None  # Triton layout


def test_versions_increase_and_list(reg, mlp_path, tmp_path):
    reg.register_version("m", mlp_path)
    reg.register_version("m", make_mlp(tmp_path / "b.onnx", seed=1), side_files={"notes.txt": _file(tmp_path)})
    assert [m.version for m in reg.list_versions("m")] == [1, 2]
    assert reg.get_version("m", 2).files["notes.txt"].size == 5
    [summary] = reg.list_models()
    assert (summary.name, summary.latest_version, summary.version_count) == ("m", 2, 2)


def _file(tmp_path: Path) -> Path:
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    return p


# racing writers: S3 semantics need an S3 whose conditional writes are atomic (LocalStack, not moto)
@pytest.mark.parametrize("store", ["local", "localstack"], indirect=True)
def test_concurrent_registrations_get_distinct_versions(reg, mlp_path):
    results, errors = [], []

    def push():
        try:
            results.append(reg.register_version("hot", mlp_path).version)
        except Exception as e:  # pragma: no cover - the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=push) for _ in range(32)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    assert sorted(results) == list(range(1, 33))
    assert reg.version_numbers("hot") == list(range(1, 33))


@pytest.mark.parametrize("store", ["local", "localstack"], indirect=True)
def test_concurrent_alias_changes_are_all_recorded(reg, mlp_path):
    for _ in range(4):
        reg.register_version("m", mlp_path)

    def flip(i):
        reg.set_alias("m", "production", 1 + i % 4, actor=f"w{i}")

    threads = [threading.Thread(target=flip, args=(i,)) for i in range(24)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    history = reg.alias_state("m", "production").history
    assert sorted(e["by"] for e in history) == sorted(f"w{i}" for i in range(24))
    # the history is a chain: each change starts where the previous one ended
    assert history[0]["from"] is None
    assert all(a["to"] == b["from"] for a, b in itertools.pairwise(history))
    assert reg.alias_version("m", "production") == history[-1]["to"]


@pytest.mark.parametrize("name", ["../etc", "a/b", "", "Upper", ".hidden", "a..b", "x" * 65, "sp ace"])
def test_bad_names_are_refused(reg, mlp_path, name):
    with pytest.raises(InvalidName):
        reg.register_version(name, mlp_path)


def test_invalid_models_are_refused_and_leave_nothing(reg, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"definitely not protobuf \x00\xff" * 10)
    with pytest.raises(InvalidModel):
        reg.register_version("m", junk)
    with pytest.raises(InvalidModel, match="external data"):
        reg.register_version("m", external_data_model(tmp_path / "ext.onnx", "../../etc/passwd"))
    truncated = tmp_path / "trunc.onnx"
    truncated.write_bytes(make_mlp(tmp_path / "full.onnx").read_bytes()[:-40])
    with pytest.raises(InvalidModel):
        reg.register_version("m", truncated)
    assert reg.list_models() == []


def test_model_size_limit(store, mlp_path):
    reg = Registry(store, limits=Limits(max_model_bytes=100))
    with pytest.raises(TooLarge):
        reg.register_version("m", mlp_path)


def test_too_new_opset_is_refused(reg, tmp_path):
    from modelbay.validation import ort_max_opset
    from tests.onnx_models import mlp_model

    model = mlp_model()
    model.opset_import[0].version = ort_max_opset() + 1
    path = tmp_path / "new.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(InvalidModel):
        reg.register_version("m", path)


def test_metadata_must_match_the_model(reg, mlp_path):
    with pytest.raises(BadRequest, match="nope"):
        reg.register_version("m", mlp_path, VersionMetadata(preprocessing=TabularPreprocessing(input="nope")))
    with pytest.raises(BadRequest, match="labels"):
        reg.register_version(
            "m",
            mlp_path,
            VersionMetadata(
                task="classifier", labels=["a", "b"], postprocessing=ClassifierPostprocessing(scores="probabilities")
            ),
        )
    assert reg.list_models() == []


def test_failed_publish_leaves_no_version(reg, mlp_path, monkeypatch):
    real_put = reg.store.put_bytes

    def failing_put(key, data, **kw):
        if key.endswith("manifest.json"):
            raise OSError("disk full")
        return real_put(key, data, **kw)

    monkeypatch.setattr(reg.store, "put_bytes", failing_put)
    with pytest.raises(OSError):
        reg.register_version("m", mlp_path)
    monkeypatch.undo()
    assert reg.list_models() == [] and reg.version_numbers("m") == []
    # the number stays reserved; the next version is 2, not a reuse of 1
    assert reg.register_version("m", mlp_path).version == 2


def test_aliases_history_and_rollback(reg, mlp_path):
    for _ in range(3):
        reg.register_version("m", mlp_path)
    reg.set_alias("m", "production", 1, actor="a")
    reg.set_alias("m", "production", 2, actor="b")
    reg.set_alias("m", "production", 3, actor="c")
    assert reg.resolve("m").version == 3  # no ref: production
    assert reg.resolve("m", "production").version == 3
    assert reg.resolve("m", "2").version == 2
    assert reg.rollback("m", "production", actor="d").version == 2
    assert reg.rollback("m", "production").version == 1
    with pytest.raises(Conflict):
        reg.rollback("m", "production")  # 1 was the first: nothing earlier
    h = reg.alias_state("m", "production").history
    assert [(e["from"], e["to"], e["action"]) for e in h] == [
        (None, 1, "set"),
        (1, 2, "set"),
        (2, 3, "set"),
        (3, 2, "rollback"),
        (2, 1, "rollback"),
    ]
    assert h[3]["by"] == "d"


def test_alias_compare_and_swap(reg, mlp_path):
    reg.register_version("m", mlp_path)
    reg.register_version("m", mlp_path)
    reg.set_alias("m", "staging", 1, expected=None)
    with pytest.raises(PreconditionFailed):
        reg.set_alias("m", "staging", 2, expected=None)
    reg.set_alias("m", "staging", 2, expected=1)
    with pytest.raises(NotFound):
        reg.set_alias("m", "staging", 7)
    reg.delete_alias("m", "staging")
    assert reg.aliases("m") == {}
    with pytest.raises(NotFound):
        reg.resolve("m", "staging")


def test_delete_version_refused_while_aliased(reg, mlp_path):
    reg.register_version("m", mlp_path)
    reg.register_version("m", mlp_path)
    reg.set_alias("m", "production", 1)
    with pytest.raises(Conflict, match="production"):
        reg.delete_version("m", 1)
    reg.delete_version("m", 2)
    assert reg.version_numbers("m") == [1]
    with pytest.raises(NotFound):
        reg.get_version("m", 2)
    assert reg.register_version("m", mlp_path).version == 3  # 2 is never reused


def test_resolve_without_alias_gives_latest(reg, mlp_path):
    reg.register_version("m", mlp_path)
    reg.register_version("m", mlp_path)
    assert reg.resolve("m").version == 2
    with pytest.raises(NotFound):
        reg.resolve("ghost")


def test_locate_is_the_one_rule_for_what_a_reference_names(reg, mlp_path):
    """A bare name: 'production' when set, else the latest; a number: itself; an alias: its version."""
    from modelbay.engine.resolve import Resolver

    reg.register_version("m", mlp_path, aliases=["staging"])
    reg.register_version("m", mlp_path)
    found = reg.locate("m")
    assert (found.version, found.alias, found.ref) == (2, None, None)
    reg.set_alias("m", "production", 1)
    for ref in (None, ""):
        assert (reg.locate("m", ref).version, reg.locate("m", ref).alias) == (1, "production")
    assert (reg.locate("m", "2").version, reg.locate("m", 2).alias) == (2, None)
    assert (reg.locate("m", "staging").version, reg.locate("m", "staging").alias) == (1, "staging")
    engine = Resolver(reg.store, reg.limits)  # the engine asks the same function, so they agree
    assert [engine.resolve("default", "m", r).version for r in (None, "2", "staging")] == [1, 2, 1]
    with pytest.raises(NotFound, match="has no alias 'canary'"):
        reg.locate("m", "canary")
    with pytest.raises(NotFound, match="no model named 'ghost'"):
        reg.locate("ghost", "canary")
    with pytest.raises(InvalidName):
        reg.locate("m", "Bad Alias")
    assert reg.resolution("m").manifest.version == 1


def _declare(path: Path) -> dict:
    data = path.read_bytes()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_upload_then_register(reg, mlp_path, tmp_path):
    session = reg.create_upload("up", {"model.onnx": _declare(mlp_path)})
    if session.targets:  # S3: a real presigned PUT against moto's server
        t = session.targets["model.onnx"]
        r = httpx.put(t.url, content=mlp_path.read_bytes(), headers=t.headers)
        assert r.status_code == 200, r.text
    else:
        reg.receive_upload(session.upload_id, "model.onnx", session.token, mlp_path)
    m = reg.register_upload("up", session.upload_id, aliases=["production"])
    assert m.version == 1 and reg.aliases("up") == {"production": 1}
    # the staged bytes are gone; the record and its version stay (until the upload expires) to answer retries
    staged = {i.key.rsplit("/", 1)[-1] for i in reg.store.list(reg.layout.upload(session.upload_id))}
    assert staged == {"upload.json", "version.json"}
    assert reg.register_upload("up", session.upload_id, aliases=["production"]) == m
    assert reg.version_numbers("up") == [1] and len(reg.alias_state("up", "production").history) == 1
    reg.sweep(older_than=-1)
    with pytest.raises(NotFound):
        reg.register_upload("up", session.upload_id)


def test_upload_with_wrong_sha_is_refused(reg, mlp_path):
    decl = _declare(mlp_path) | {"sha256": "0" * 64}
    session = reg.create_upload("up", {"model.onnx": decl})
    if session.targets:
        t = session.targets["model.onnx"]
        httpx.put(t.url, content=mlp_path.read_bytes(), headers=t.headers).raise_for_status()
    else:
        reg.receive_upload(session.upload_id, "model.onnx", session.token, mlp_path)
    with pytest.raises(InvalidModel, match="sha256"):
        reg.register_upload("up", session.upload_id)
    assert reg.list_models() == []


def test_sweep_removes_expired_uploads_and_abandoned_versions(reg, mlp_path):
    reg.create_upload("up", {"model.onnx": _declare(mlp_path)})
    # an abandoned version: claim and model written, manifest never
    reg.store.put_bytes("tenants/default/models/up/1/.claim", b"{}")
    reg.store.put_bytes("tenants/default/models/up/1/model.onnx", b"partial")
    removed = reg.sweep(older_than=-1)
    assert (removed["uploads"], removed["abandoned_files"]) == (1, 1)
    assert reg.register_version("up", mlp_path).version == 2
