"""The engine: CPU detection, byte-bounded LRU, alias freshness, verified fetch, single-flight loads, prewarm."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from modelbay.engine import Engine, EngineConfig
from modelbay.engine.cpus import cgroup_quota, usable_cpus
from modelbay.engine.errors import LoadFailure
from modelbay.engine.lru import ByteLRU
from modelbay.engine.session import SessionConfig
from modelbay.engine.timing import Timings
from modelbay.errors import BadRequest, InvalidName, NotFound
from modelbay.registry import Registry
from modelbay.settings import Settings, SettingsError
from modelbay.storage.local import LocalStore
from tests.inference_models import fixed_batch_mlp
from tests.onnx_models import make_mlp


@pytest.fixture
def local_store(tmp_path):
    from modelbay.storage.local import LocalStore

    return LocalStore(tmp_path / "store")


def _engine(store, tmp_path, **config) -> Engine:
    settings = Settings(store_url=store.url, cache_dir=tmp_path / "cache")
    return Engine(store, settings, EngineConfig(**config))


def test_cgroup_v2_and_v1_quotas(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cgroup_quota(v2) == 1.5
    assert usable_cpus(v2) == min(2, usable_cpus(tmp_path / "none"))
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_quota(v2) is None
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("50000")
    (v1 / "cpu.cfs_period_us").write_text("100000")
    assert cgroup_quota(tmp_path / "v1") == 0.5
    assert usable_cpus(tmp_path / "v1") == 1
    (v1 / "cpu.cfs_quota_us").write_text("-1")
    assert cgroup_quota(tmp_path / "v1") is None


def test_session_config_is_explicit(monkeypatch):
    monkeypatch.setenv("MODELBAY_ORT_THREADS", "3")
    monkeypatch.setenv("MODELBAY_ORT_OPT", "all")
    c = SessionConfig.from_settings(Settings.from_env())
    assert (c.intra_op_threads, c.optimization, c.spinning) == (3, "all", False)
    with pytest.raises(ValueError):
        SessionConfig(optimization="fast")
    monkeypatch.setenv("MODELBAY_ORT_OPT", "fast")
    with pytest.raises(SettingsError, match="MODELBAY_ORT_OPT='fast'"):
        Settings.from_env()


def test_byte_lru_evicts_least_recent_by_bytes():
    lru = ByteLRU(100)
    lru.put("a", 1, 40)
    lru.put("b", 2, 40)
    assert lru.get("a") == 1  # a is now the most recent
    assert lru.put("c", 3, 40) == ["b"]
    assert lru.keys() == ["a", "c"] and lru.bytes == 80
    assert lru.put("huge", 4, 500) == ["a", "c"]  # alone over budget: kept anyway
    assert lru.get("huge") == 4 and len(lru) == 1


def test_resolves_versions_aliases_and_default(local_store, tmp_path):
    reg = Registry(local_store)
    make_mlp(tmp_path / "a.onnx", seed=0)
    make_mlp(tmp_path / "b.onnx", seed=1)
    reg.register_version("m", tmp_path / "a.onnx")
    reg.register_version("m", tmp_path / "b.onnx", aliases=["staging"])
    eng = _engine(local_store, tmp_path)
    assert eng.resolve("default", "m").version == 2  # no production: the latest
    assert eng.resolve("default", "m", "1").version == 1
    assert eng.resolve("default", "m", "staging").version == 2
    for ref, exc in [("9", NotFound), ("nope", NotFound), ("Bad Alias", InvalidName)]:
        with pytest.raises(exc):
            eng.resolve("default", "m", ref)
    with pytest.raises(NotFound, match="no model named 'ghost'"):
        eng.resolve("default", "ghost", "production")


def test_alias_promotion_takes_effect_after_the_ttl(local_store, tmp_path):
    reg = Registry(local_store)
    make_mlp(tmp_path / "a.onnx", seed=0)
    make_mlp(tmp_path / "b.onnx", seed=1)
    reg.register_version("m", tmp_path / "a.onnx", aliases=["production"])
    reg.register_version("m", tmp_path / "b.onnx")
    eng = _engine(local_store, tmp_path, alias_ttl=0.3)
    assert eng.resolve("default", "m", "production").version == 1
    assert eng.resolve("default", "m").version == 1
    # another process's change (its own store object): this one hears nothing, its TTL decides
    Registry(LocalStore(local_store.root)).set_alias("m", "production", 2)
    # within the TTL no store read: the old answer
    assert eng.resolve("default", "m", "production").version == 1
    time.sleep(0.35)
    assert eng.resolve("default", "m", "production").version == 2
    assert eng.resolve("default", "m").version == 2


def test_fetch_verifies_sha256_and_caches_on_disk(local_store, tmp_path, mlp_path):
    m = Registry(local_store).register_version("m", mlp_path)
    eng = _engine(local_store, tmp_path)
    t = Timings.start()
    model = eng.get("default", "m", None, t)
    assert t.cold_start and t.load_ms > 0 and eng.loads == 1
    cached = eng.disk.path(m.sha256)
    assert cached.read_bytes() == mlp_path.read_bytes()
    # a second engine (a warm restart) reuses the verified file without the store
    eng2 = _engine(local_store, tmp_path)
    local_store.delete("tenants/default/models/m/1/model.onnx")
    assert eng2.get("default", "m").version == 1
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(
        model.run({"x": x})["probabilities"], eng2.get("default", "m").run({"x": x})["probabilities"]
    )


def test_tampered_store_object_is_a_load_failure(local_store, tmp_path, mlp_path):
    Registry(local_store).register_version("m", mlp_path)
    path = local_store._path("tenants/default/models/m/1/model.onnx")
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    eng = _engine(local_store, tmp_path)
    with pytest.raises(LoadFailure, match="sha256"):
        eng.get("default", "m")
    assert not any((tmp_path / "cache").rglob("*.onnx"))


def test_concurrent_cold_requests_load_once(local_store, tmp_path, mlp_path, monkeypatch):
    Registry(local_store).register_version("m", mlp_path)
    eng = _engine(local_store, tmp_path)
    from modelbay.engine import autotune as session_builder  # where the engine's loads build sessions

    real = session_builder.build_session
    calls = []

    def slow_build(path, config, scratch=None):
        calls.append(path)
        time.sleep(0.2)  # widen the window in which the other threads arrive
        return real(path, config, scratch)

    monkeypatch.setattr(session_builder, "build_session", slow_build)
    results, barrier = [], threading.Barrier(8)

    def worker():
        barrier.wait()
        results.append(eng.get("default", "m"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and eng.loads == 1
    assert len(results) == 8 and all(r is results[0] for r in results)


def test_session_cache_is_bounded_by_bytes(local_store, tmp_path):
    reg = Registry(local_store)
    for i in range(3):
        make_mlp(tmp_path / f"{i}.onnx", seed=i)
        reg.register_version(f"m{i}", tmp_path / f"{i}.onnx")
    size = (tmp_path / "0.onnx").stat().st_size
    eng = _engine(local_store, tmp_path, session_cache_bytes=2 * size * 2 + 10)  # room for two
    for i in range(3):
        eng.get("default", f"m{i}")
    assert [k[1] for k in eng.sessions.keys()] == ["m1", "m2"]  # noqa: SIM118  (ByteLRU, not a dict)
    eng.get("default", "m0")  # evicted: loads again
    assert eng.loads == 4


def test_prewarm_from_env_never_raises(local_store, tmp_path, mlp_path, monkeypatch):
    Registry(local_store).register_version("m", mlp_path, aliases=["production"])
    monkeypatch.setenv("MODELBAY_PREWARM", "m:production, m@1, ghost, BAD NAME")
    settings = Settings.from_env(store_url=local_store.url, cache_dir=tmp_path / "cache")
    eng = Engine(local_store, settings)
    out = eng.prewarm()
    assert out["m:production"] == 1 and out["m@1"] == 1
    assert "no model named 'ghost'" in out["ghost"] and "invalid" in out["BAD NAME"]
    assert eng.loads == 1  # both refs are the same version


def test_fixed_batch_one_models_run_instance_by_instance(local_store, tmp_path):
    Registry(local_store).register_version("fixed", fixed_batch_mlp(tmp_path / "f.onnx"))
    eng = _engine(local_store, tmp_path)
    model = eng.get("default", "fixed")
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    out = model.run({"x": x})["probabilities"]
    assert out.shape == (3, 3)
    np.testing.assert_allclose(out[1], model.run({"x": x[1:2]})["probabilities"][0], rtol=1e-6)


def test_check_instances_limits(local_store, tmp_path, mlp_path):
    from modelbay.engine import InferenceService
    from modelbay.errors import TooLarge
    from modelbay.metrics import NullSink
    from modelbay.protocols.v1 import PredictRequest

    Registry(local_store).register_version("m", mlp_path)
    eng = _engine(local_store, tmp_path)
    eng.settings.limits.max_instances = 4
    service = InferenceService(eng, NullSink())
    with pytest.raises(TooLarge):
        service.predict("default", "m", None, PredictRequest([[0, 0, 0, 0]] * 5))
    with pytest.raises(BadRequest, match="no instances"):
        service.predict("default", "m", None, PredictRequest([]))
    assert len(service.predict("default", "m", None, PredictRequest([[0, 0, 0, 0]] * 4)).payload) == 4


def test_a_deleted_version_stops_serving_after_the_ttl(local_store, tmp_path):
    reg = Registry(local_store)
    make_mlp(tmp_path / "a.onnx", seed=0)
    make_mlp(tmp_path / "b.onnx", seed=1)
    reg.register_version("m", tmp_path / "a.onnx")
    reg.register_version("m", tmp_path / "b.onnx")
    eng = _engine(local_store, tmp_path, alias_ttl=0.2)
    assert eng.resolve("default", "m", "1").version == 1
    Registry(LocalStore(local_store.root)).delete_version("m", 1)  # by another process
    assert eng.resolve("default", "m", 1).version == 1  # within the TTL: no store read
    time.sleep(0.25)
    with pytest.raises(NotFound, match="deleted"):
        eng.resolve("default", "m", "1")
    assert eng.resolve("default", "m").version == 2


def test_inference_timeout_is_a_504(local_store, tmp_path):
    import onnx

    from modelbay.engine.errors import InferenceTimeout
    from tests.onnx_models import mlp_model

    # wide layers and a large batch: a run of tens of milliseconds
    onnx.save(mlp_model(n_in=512, n_hidden=4096, n_out=512), str(tmp_path / "slow.onnx"))
    Registry(local_store).register_version("slow", tmp_path / "slow.onnx")
    eng = _engine(local_store, tmp_path, inference_timeout_ms=1)
    model = eng.get("default", "slow")
    with pytest.raises(InferenceTimeout) as e:
        model.run({"x": np.ones((2048, 512), np.float32)})
    assert e.value.status == 504
    eng2 = _engine(local_store, tmp_path, inference_timeout_ms=60_000)
    assert eng2.get("default", "slow").run({"x": np.ones((2, 512), np.float32)})["probabilities"].shape == (2, 512)


def test_disk_cache_prunes_least_recent_beyond_its_budget(local_store, tmp_path):
    import hashlib
    import os

    from modelbay.engine.diskcache import DiskCache

    cache = DiskCache(tmp_path / "dc", max_bytes=1500)
    shas = []
    for i in range(3):
        data = bytes([i]) * 1000
        shas.append(hashlib.sha256(data).hexdigest())
        local_store.put_bytes(f"k{i}", data)
    cache.fetch(local_store, "k0", shas[0])
    cache.fetch(local_store, "k1", shas[1])
    # over budget, but both fetched moments ago (maybe about to become sessions): nothing pruned
    assert [cache.path(s).exists() for s in shas[:2]] == [True, True]
    for i in (0, 1):
        os.utime(cache.path(shas[i]), (1000 + i, 1000 + i))
    path, downloaded = cache.fetch(local_store, "k2", shas[2])
    assert downloaded and path.read_bytes() == bytes([2]) * 1000
    # the fetch pruned the least recent old blobs until under budget
    assert [cache.path(s).exists() for s in shas] == [False, False, True]
    assert cache.fetch(local_store, "k2", shas[2]) == (path, False)  # a hit: no download


class _Recorder:
    def __init__(self) -> None:
        self.events = []

    def record(self, event) -> None:
        self.events.append(event)


def _service(store, tmp_path):
    from modelbay.engine import InferenceService

    return InferenceService(_engine(store, tmp_path), _Recorder())


def _body(x) -> bytes:
    import json

    return json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}
    ).encode()


def test_the_service_records_one_event_per_call_success_or_failure(local_store, tmp_path, mlp_path, monkeypatch):
    """Every outcome is accounted by the service itself, its error type taken from the exception."""
    from modelbay.engine.model import LoadedModel
    from modelbay.protocols.v1 import PredictRequest

    Registry(local_store, tenant="acme").register_version("mlp", mlp_path, aliases=["production"])
    svc = _service(local_store, tmp_path)
    x = np.ones((2, 4), np.float32)
    ok = svc.infer("acme", "mlp", None, _body(x))
    assert ok.version == 1 and ok.timings.version == 1 and ok.timings.inference_ms > 0
    assert [name for name, _, _ in ok.payload.outputs] == ["probabilities"]
    assert svc.predict("acme", "mlp", "production", PredictRequest([[1, 2, 3, 4]])).version == 1
    failures = [
        (lambda: svc.infer("acme", "ghost", None, _body(x)), NotFound),
        (lambda: svc.infer("acme", "mlp", None, b"{not json"), BadRequest),  # decoded inside: still counted
        (lambda: svc.predict("acme", "mlp", "1", PredictRequest([[1, 2, 3]])), BadRequest),
    ]
    for call, kind in failures:
        with pytest.raises(kind):
            call()

    def broken(self, feeds, outputs=None):
        raise RuntimeError("a bug of ours at /srv/modelbay/engine.py")

    monkeypatch.setattr(LoadedModel, "run", broken)
    with pytest.raises(RuntimeError):  # the caller still sees the exception; the event is written first
        svc.infer("acme", "mlp", "1", _body(x))
    got = [(e.tenant, e.model, e.version, e.instances, e.error) for e in svc.metrics.events]
    # a name nobody serves gets no series (metrics cardinality stays bounded by the registry)
    assert got == [
        ("acme", "mlp", 1, 2, None),
        ("acme", "mlp", 1, 1, None),
        ("acme", "mlp", 1, 0, "bad_request"),  # resolved before the body was decoded
        ("acme", "mlp", 1, 1, "bad_request"),
        ("acme", "mlp", 1, 2, "internal"),
    ]
    assert all(e.total_ms > 0 and e.timestamp > 0 for e in svc.metrics.events)


def test_a_load_failure_is_counted_as_one_and_names_no_server_path(local_store, tmp_path, mlp_path):
    """onnxruntime names the file it could not parse; the client gets its file name, not the server's path."""
    from modelbay.engine.service import error_type

    m = Registry(local_store).register_version("mlp", mlp_path)
    svc = _service(local_store, tmp_path)
    blob = svc.engine.disk.path(m.sha256)  # a cached file is trusted as verified: corrupt it there
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"not an onnx model")
    with pytest.raises(LoadFailure) as e:
        svc.infer("default", "mlp", None, _body(np.ones((1, 4), np.float32)))
    assert "cannot load it" in e.value.message and str(tmp_path) not in str(e.value.to_body())
    assert "model.onnx" in e.value.message  # the file, by its name (built alone in a private directory)
    assert error_type(e.value) == "load_failure" and svc.metrics.events[-1].error == "load_failure"


def test_a_run_that_fails_inside_onnxruntime_is_a_422_without_its_internals(local_store, tmp_path):
    """Inputs that pass the signature but break a kernel (a Reshape to a fixed size): the caller's values
    are at fault, so a 4xx; onnxruntime's message names its source files and C++ symbols, the client gets
    the model, the kind of node and onnxruntime's sentence only."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from modelbay.engine.errors import InferenceFailed

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "reshape-to-3",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        [numpy_helper.from_array(np.array([3], np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "reshape.onnx"))
    Registry(local_store).register_version("reshape", tmp_path / "reshape.onnx")
    svc = _service(local_store, tmp_path)
    with pytest.raises(InferenceFailed) as e:
        svc.infer("default", "reshape", None, _body(np.ones((1, 4), np.float32)))
    body = e.value.to_body()
    assert e.value.status == 422
    assert body == {
        "error": "reshape version 1 failed on these inputs (its Reshape node): The input tensor cannot be "
        "reshaped to the requested shape. Input shape:{1,4}, requested shape:{3}",
        "code": "inference_failed",
        "model": "reshape",
        "version": 1,
        "operator": "Reshape",
    }
    assert svc.metrics.events[-1].error == "inference_failed"  # a 422 to the caller; counts against a canary
