"""Resource and input findings of the adversarial review (issue 11), each as the attack that found it.

F2  a Loop whose trip count is an input held threads, health probes, other tenants and SIGTERM;
F4  ConstantOfShape(n) took (and kept) gigabytes for a 60-byte request;
F5  BYTES tensors were allocated by their declared shape before it was checked against the data;
F6  versions of hundreds of digits were 500s; F7 deeply nested JSON was a 500;
F9  values onnxruntime refuses at run time were 500s; F10 server paths and library internals in bodies;
F11 every unknown model name made a metrics series; and the smaller ones (an all-digit alias, a key that
expires at once, the feedback route's scope).

The F2 and F4 servers are real ``modelbay serve`` child processes: SIGTERM and the process-wide memory
cap are properties of a process. No assertion here is about speed: deadlines only stop a broken test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from modelbay.api.app import create_app
from modelbay.auth import KeyStore
from modelbay.errors import BadRequest, InvalidName
from modelbay.protocols import oip
from modelbay.registry import Registry
from modelbay.settings import Settings
from modelbay.storage.local import LocalStore
from tests import malicious_models as mm
from tests.servers import modelbay_serve_process, running

X = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _int64(name: str, value: int | list[int], shape: list[int] | None = None) -> dict:
    data = value if isinstance(value, list) else [value]
    return {"name": name, "datatype": "INT64", "shape": [] if shape is None else shape, "data": data}


def _child(store: Path, **env: object) -> contextlib.AbstractContextManager[tuple[str, subprocess.Popen[bytes]]]:
    """``modelbay serve`` on ``store`` in a child process, with settings in ``env``."""
    return modelbay_serve_process(store, env={k: str(v) for k, v in env.items()})


def _until(call: Callable[[], httpx.Response], done: Callable[[httpx.Response], bool]) -> httpx.Response:
    deadline = time.monotonic() + 120
    while True:
        r = call()
        if done(r):
            return r
        assert time.monotonic() < deadline, (r.status_code, r.text)
        time.sleep(0.05)


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# ------------------------------------------------------------------ F2: time and concurrency
def test_a_loop_model_cannot_hold_the_server(tmp_path, mlp_path):
    """Runs whose trip count is 10^15 fill their tenant's share (then 429) and the server's (then 503);
    health, management and another tenant's model answer meanwhile; SIGTERM still stops the server
    although those runs have minutes left of their time limit."""
    store = LocalStore(tmp_path / "store")
    loop = mm.save(mm.loop_model(), tmp_path / "loop.onnx")
    for tenant in ("acme", "globex"):
        Registry(store, tenant).register_version("spin", loop)
        Registry(store, tenant).register_version("mlp", mlp_path)
    keys = KeyStore(store)
    acme, globex = (keys.create(t, ["invoke", "manage"], name=t)[1] for t in ("acme", "globex"))
    spin = {"inputs": [_int64("n", 10**15)]}
    env = {
        "MODELBAY_INFERENCE_TIMEOUT_MS": 600_000,
        "MODELBAY_MAX_TENANT_INFERENCES": 2,
        "MODELBAY_MAX_INFERENCES": 3,
        "MODELBAY_SHUTDOWN_GRACE_SECONDS": 1,
    }
    # the pool is left last: the server must be stopped before it waits for the runs' answers
    with ThreadPoolExecutor(4) as pool, _child(tmp_path / "store", **env) as (url, proc):

        def post(key: str, model: str, body: dict) -> httpx.Response:
            return httpx.post(f"{url}/v2/models/{model}/infer", json=body, headers=_auth(key), timeout=600)

        def hang(key: str) -> httpx.Response | Exception:
            """A run of 10^15 iterations; refused while a probe holds the slot it wants, it tries again."""
            while True:
                try:
                    r = post(key, "spin", spin)
                except httpx.HTTPError as e:  # the server closed the connection as it exited
                    return e
                if r.status_code not in (429, 503) or proc.poll() is not None:
                    return r
                time.sleep(0.05)

        acme_runs = [pool.submit(hang, acme) for _ in range(2)]
        # acme's cheap model answers until both of its runs hold their slots, then acme is refused at once
        busy = _until(lambda: post(acme, "mlp", X), lambda r: r.status_code != 200)
        assert busy.status_code == 429 and busy.json()["code"] == "busy" and int(busy.headers["retry-after"]) >= 1
        assert httpx.get(f"{url}/v2/health/live", timeout=30).status_code == 200
        assert httpx.get(f"{url}/v2/health/ready", timeout=30).status_code == 200
        assert httpx.get(f"{url}/registry/models", headers=_auth(acme), timeout=30).status_code == 200
        assert post(globex, "mlp", X).status_code == 200
        assert not any(f.done() for f in acme_runs)  # all of that while acme's runs were still going

        globex_run = pool.submit(hang, globex)  # the server's third and last slot
        full = _until(lambda: post(globex, "mlp", X), lambda r: r.status_code != 200)
        assert full.status_code == 503 and full.json()["code"] == "busy" and "retry-after" in full.headers
        assert not any(f.done() for f in [*acme_runs, globex_run])

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(120)  # not the runs' 600 s: the shutdown terminated them
        for f in [*acme_runs, globex_run]:
            answer = f.result(timeout=60)
            assert isinstance(answer, Exception) or answer.status_code == 503, answer


def test_a_run_past_its_time_limit_is_terminated_and_answered_504(tmp_path):
    store = LocalStore(tmp_path / "store")
    Registry(store).register_version("spin", mm.save(mm.loop_model(), tmp_path / "loop.onnx"))
    settings = Settings(store_url=store.url, cache_dir=tmp_path / "cache", auth=False, inference_timeout_ms=300)
    app = create_app(settings, store=store)
    with running(app) as url:
        r = httpx.post(f"{url}/v2/models/spin/infer", json={"inputs": [_int64("n", 10**15)]}, timeout=120)
        assert r.status_code == 504 and r.json()["code"] == "timeout" and r.json()["limit_ms"] == 300
        r = httpx.post(f"{url}/v2/models/spin/infer", json={"inputs": [_int64("n", 7)]}, timeout=120)
        assert r.status_code == 200 and oip.decode_response(r.content)[1]["acc"].tolist() == [7.0]
    service = app.state.inference
    assert service.admission.in_flight == 0 and service.engine.runs.in_flight == 0
    assert Settings().inference_timeout_seconds == 30  # a limit by default, not only when configured
    # on Lambda (the stack passes the function's timeout), a run ends before the function does
    assert Settings(function_timeout_seconds=29).inference_timeout_seconds == 27.5
    assert Settings(function_timeout_seconds=10, inference_timeout_ms=60_000).inference_timeout_seconds == 60


def test_an_app_serves_again_after_a_shutdown(tmp_path, mlp_path):
    """Shutdown terminates the runs and drops the inference threads; the same app started again (another
    lifespan, as schemathesis and an embedding app do) serves again instead of a 500 or a 503."""
    from fastapi.testclient import TestClient

    store = LocalStore(tmp_path / "store")
    Registry(store).register_version("m", mlp_path)
    app = create_app(Settings(store_url=store.url, cache_dir=tmp_path / "cache", auth=False), store=store)
    for _ in range(3):
        with TestClient(app) as c:
            r = c.post("/v2/models/m/infer", json=X)
            assert r.status_code == 200, r.text


# ------------------------------------------------------------------ F4: memory
def test_memory_per_request_is_bounded_and_given_back(tmp_path):
    """ConstantOfShape(n): under the cap it runs and the process gives the memory back; over it, a 413 at
    once (the review's n = 10^9 took 20 s and kept 5 GB); an output past max_output_bytes is a 413 too."""
    store = LocalStore(tmp_path / "store")
    Registry(store).register_version("fill", mm.save(mm.constant_of_shape_model(), tmp_path / "cos.onnx"))
    whole = mm.constant_of_shape_model(output_whole=True)
    Registry(store).register_version("fill-out", mm.save(whole, tmp_path / "cos-out.onnx"))
    key = KeyStore(store).create("default", ["invoke"], name="t")[1]
    env = {"MODELBAY_INFERENCE_MEMORY_MB": 512, "MODELBAY_MAX_OUTPUT_BYTES": 16 << 20}
    with _child(tmp_path / "store", **env) as (url, proc):

        def fill(n: int, model: str = "fill") -> httpx.Response:
            body = {"inputs": [_int64("n", [n], [1])]}
            return httpx.post(f"{url}/v2/models/{model}/infer", json=body, headers=_auth(key), timeout=300)

        assert fill(1000).status_code == 200
        before = _rss(proc.pid)
        assert fill(1 << 26).status_code == 200  # 256 MiB of floats, under the 512 MiB cap
        assert _rss(proc.pid) - before < 128 << 20  # given back, not kept by the arena
        for n in (1 << 28, 10**9):  # 1 GiB and the review's 4 GB
            r = fill(n)
            assert r.status_code == 413 and r.json()["code"] == "memory_limit", r.text
            assert r.json()["limit"] == 512 << 20 and r.json()["requested"] >= 4 * n
        r = fill(1 << 23, "fill-out")  # a 32 MiB answer
        assert r.status_code == 413 and r.json()["code"] == "too_large" and r.json()["limit"] == 16 << 20
        assert fill(1000).status_code == 200 and _rss(proc.pid) - before < 128 << 20


def test_the_default_memory_cap_follows_the_deployment():
    assert Settings().inference_memory_bytes == 1024 << 20
    assert Settings(lambda_memory_mb=2048).inference_memory_bytes == 512 << 20
    assert Settings(inference_memory_mb=64).inference_memory_bytes == 64 << 20


# ------------------------------------------------------------------ F5: declared shapes
def test_bytes_tensors_are_not_allocated_by_their_declared_shape():
    """113 bytes declaring 134217728 BYTES elements: refused before anything of that size exists."""
    import json

    header = {"inputs": [{"name": "s", "datatype": "BYTES", "shape": [], "parameters": {"binary_data_size": 4}}]}
    tracemalloc.start()
    try:
        for shape in ([134217728], [1 << 40], [0, 1 << 62, 1 << 62], [2] * 40):
            header["inputs"][0]["shape"] = shape
            head = json.dumps(header).encode()
            with pytest.raises(BadRequest):
                oip.decode_request(head + b"\0\0\0\0", len(head))
            with pytest.raises(BadRequest):  # the same shapes with JSON data
                oip.decode_request(
                    json.dumps({"inputs": [{"name": "s", "datatype": "FP32", "shape": shape, "data": [1]}]}).encode()
                )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # the old decoder made a 1 GiB object array for the first one


@pytest.fixture
def served(tmp_path, mlp_path):
    """An in-process server with keys, an mlp (aliased production) and the failing-ops model."""
    store = LocalStore(tmp_path / "store")
    Registry(store).register_version("m", mlp_path, aliases=["production"])
    Registry(store).register_version("ops", mm.save(mm.failing_ops_model(), tmp_path / "ops.onnx"))
    settings = Settings(store_url=store.url, cache_dir=tmp_path / "cache", auth=True)
    app = create_app(settings, store=store)
    keys = KeyStore(store)
    admin = keys.create("default", ["invoke", "manage", "admin"], name="all", root=True)[1]
    with running(app) as url, httpx.Client(base_url=url, headers=_auth(admin), timeout=60) as http:
        http.url = url  # type: ignore[attr-defined]
        yield app, http, keys


def _no_internals(text: str, tmp_path: Path) -> None:
    for leak in (str(tmp_path), "/tmp/", "/root", "site-packages", ".cc:", ".h:", "onnxruntime_src", "::"):
        assert leak not in text, (leak, text)


def test_shapes_that_disagree_with_their_data_are_400(served):
    _, http, _ = served
    for t in (
        {"name": "x", "datatype": "FP32", "shape": [1 << 40], "data": [1.0]},
        {"name": "x", "datatype": "BYTES", "shape": [1 << 40], "data": ["a"]},
        {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0]},
        {"name": "x", "datatype": "FP32", "shape": [2, 1 << 62], "data": []},
        {"name": "x", "datatype": "FP32", "shape": [1] * 33, "data": [1.0]},
    ):
        r = http.post("/v2/models/m/infer", json={"inputs": [t]})
        assert r.status_code == 400 and r.json()["code"] == "bad_request", (t["shape"][:3], r.text)
    head = b'{"inputs":[{"name":"x","datatype":"BYTES","shape":[134217728],"parameters":{"binary_data_size":4}}]}'
    r = http.post(
        "/v2/models/m/infer",
        content=head + b"\0" * 4,
        headers={oip.HEADER: str(len(head)), "content-type": "application/octet-stream"},
    )
    assert r.status_code == 400


# ------------------------------------------------------------------ F6: versions
HUGE = ["9" * 250, str(2**53 + 1), "0", "00001", "١٢"]


@pytest.mark.parametrize("version", HUGE)
def test_versions_out_of_range_are_400_on_every_route(served, version):
    _, http, _ = served
    calls = [
        ("GET", f"/registry/models/m/versions/{version}", None),
        ("DELETE", f"/registry/models/m/versions/{version}", None),
        ("GET", f"/registry/models/m/resolve?ref={version}", None),
        ("GET", f"/v2/models/m/versions/{version}", None),
        ("GET", f"/v2/models/m/versions/{version}/ready", None),
        ("POST", f"/v2/models/m/versions/{version}/infer", X),
        ("GET", f"/v1/models/m/versions/{version}", None),
        ("POST", f"/v1/models/m/versions/{version}:predict", {"instances": [[1, 2, 3, 4]]}),
        ("GET", f"/registry/metrics/models/m?ref={version}", None),
        ("POST", "/registry/models/m/feedback", {"ref": version, "items": [{"correct": True}]}),
    ]
    for method, path, body in calls:
        r = http.request(method, path, json=body)
        assert r.status_code == 400, (method, path, r.status_code, r.text[:200])
        assert r.json()["error"]


@pytest.mark.parametrize("version", [10**250, 2**53 + 1, 0, -1])
def test_an_alias_cannot_point_at_a_version_out_of_range(served, version):
    _, http, _ = served
    r = http.put("/registry/models/m/aliases/staging", json={"version": version})
    assert r.status_code == 400, r.text


def test_the_largest_version_is_a_404_not_a_500(served):
    _, http, _ = served
    for path in ("/registry/models/m/versions/9007199254740992", "/v2/models/m/versions/9007199254740992"):
        assert http.get(path).status_code == 404


# ------------------------------------------------------------------ F7: nesting
@pytest.mark.parametrize("depth", [100_000, 5_000, 999])
def test_deeply_nested_json_is_400(served, depth):
    _, http, _ = served
    deep_list = "[" * depth + "]" * depth
    for path, body in (
        ("/v2/models/m/infer", "[" * depth),
        ("/v1/models/m:predict", "[" * depth),
        (
            "/v2/models/m/infer",
            '{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ' + deep_list + "}]}",
        ),
        ("/v1/models/m:predict", '{"instances": ' + deep_list + "}"),
        ("/registry/models/m/uploads", '{"files": ' + deep_list + "}"),
        ("/registry/models/m/feedback", '{"items": ' + deep_list + "}"),
        ("/registry/keys", '{"scopes": ' + deep_list + "}"),
    ):
        r = http.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, (path, r.status_code, r.text[:200])
        assert r.json()["error"]


# ------------------------------------------------------------------ F9 and F10
@pytest.mark.parametrize(
    ("inputs", "op"),
    [
        ({"s": [3]}, "Reshape"),  # 4 values into 3
        ({"s": [-7]}, "Reshape"),
        ({"d": 0}, "Range"),  # a zero step
        ({"b": 0}, "Div"),  # an integer division by zero
    ],
)
def test_values_onnxruntime_refuses_at_run_time_are_422(served, tmp_path, inputs, op):
    _, http, _ = served
    feeds = {"s": [4], "d": 1, "a": 1, "b": 1, **inputs}
    body = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]},
            _int64("s", feeds["s"], [1]),
            _int64("d", feeds["d"]),
            _int64("a", feeds["a"]),
            _int64("b", feeds["b"]),
        ]
    }
    r = http.post("/v2/models/ops/infer", json=body)
    assert r.status_code == 422 and r.json()["code"] == "inference_failed" and r.json()["operator"] == op, r.text
    _no_internals(r.text, tmp_path)


def test_negative_and_overflowing_sizes_are_4xx(tmp_path):
    store = LocalStore(tmp_path / "store")
    Registry(store).register_version("fill", mm.save(mm.constant_of_shape_model(), tmp_path / "cos.onnx"))
    app = create_app(Settings(store_url=store.url, cache_dir=tmp_path / "cache", auth=False), store=store)
    with running(app) as url:
        for n in (-5, -(2**63)):
            r = httpx.post(f"{url}/v2/models/fill/infer", json={"inputs": [_int64("n", [n], [1])]}, timeout=60)
            assert r.status_code == 422 and r.json()["operator"] == "ConstantOfShape", r.text
            _no_internals(r.text, tmp_path)


def test_error_bodies_name_no_server_path(served, tmp_path):
    """A model onnxruntime refuses at registration (its message names the temporary path), a corrupt
    cache entry (the cache path), and render() itself cutting any absolute path of a message."""
    from onnx import TensorProto, helper

    from modelbay.api.errors import render
    from modelbay.errors import ModelbayError

    app, http, _ = served
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "typeerr",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [1])],
    )
    bad = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    bad.ir_version = 8
    from modelbay.client import ApiError, Client

    with Client(http.url, http.headers["authorization"].split()[1]) as c, pytest.raises(ApiError) as e:
        c.push(mm.save(bad, tmp_path / "typeerr.onnx"), "typeerr")
    assert e.value.status == 422 and "Type Error" in e.value.message and "model.onnx" in e.value.message
    _no_internals(e.value.message, tmp_path)

    manifest = Registry(app.state.store).resolve("m")
    blob = app.state.engine.disk.path(manifest.sha256)
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(b"not a model")
    r = http.post("/v2/models/m/infer", json=X)
    assert r.status_code == 503 and r.json()["code"] == "load_failure"
    _no_internals(r.text, tmp_path)

    _, body, _ = render(ModelbayError(f"failed at {tmp_path}/cache/blobs/ab/abcdef and /usr/lib/x.so"))
    assert body["error"] == "failed at abcdef and x.so"
    _, body, _ = render(BadRequest("invalid version 'latest': use /labels/latest for an alias"))
    assert body["error"].endswith("use /labels/latest for an alias")  # this API's own paths stay


# ------------------------------------------------------------------ F11: metrics cardinality
def test_unknown_model_names_make_no_metrics_series(served):
    app, http, _ = served
    metrics = app.state.metrics
    http.post("/v2/models/m/infer", json=X)
    before = len(metrics._buckets)
    for i in range(300):
        assert http.post(f"/v2/models/ghost-{i}/infer", json=X).status_code == 404
        assert http.post(f"/v1/models/ghost-{i}:predict", json={"instances": [[1, 2, 3, 4]]}).status_code == 404
        assert http.post(f"/v2/models/m/versions/{i + 2}/infer", json=X).status_code == 404
    assert len(metrics._buckets) == before
    # a served version's failures still count
    assert http.post("/v2/models/m/infer", json={"inputs": [{**X["inputs"][0], "shape": [1, 3]}]}).status_code == 400
    series = metrics.series("default", "m", None, time.time() - 600, time.time() + 60, 60)
    assert series.totals.errors_by_type["bad_request"] == 1


# ------------------------------------------------------------------ the smaller ones
def test_an_all_digit_alias_is_refused(served, tmp_path, mlp_path):
    from modelbay.refs import parse_ref

    app, http, _ = served
    for alias in ("123", "0", "9007199254740993"):
        r = http.put(f"/registry/models/m/aliases/{alias}", json={"version": 1})
        assert r.status_code == 400 and r.json()["code"] == "invalid_name", r.text
        with pytest.raises(InvalidName):
            Registry(app.state.store).register_version("m", mlp_path, aliases=[alias])
        with pytest.raises(InvalidName):
            parse_ref(f"m:{alias}")
    assert http.put("/registry/models/m/aliases/v123", json={"version": 1}).status_code == 200


def test_key_lifetimes_are_bounded(served):
    _, http, _ = served
    for days in (1e-300, 0.5 / 24, 1e-9, 3651, 1e300):
        r = http.post("/registry/keys", json={"scopes": ["invoke"], "expires_in_days": days})
        assert r.status_code == 400, (days, r.text)
    r = http.post("/registry/keys", json={"scopes": ["invoke"], "expires_in_days": 1 / 24})
    assert r.status_code == 201
    key = r.json()["key"]
    assert httpx.get(f"{http.url}/v2/models/m", headers=_auth(key)).status_code == 200


def test_feedback_needs_invoke_and_only_invoke(served):
    """Decided: feedback is the ground truth an application sends for its own predictions, so the key it
    predicts with may send it; a management key without invoke may not."""
    _, http, keys = served
    invoke = keys.create("default", ["invoke"], name="app")[1]
    manage = keys.create("default", ["manage"], name="ops")[1]
    body = {"items": [{"correct": True}]}
    r = httpx.post(f"{http.url}/registry/models/m/feedback", json=body, headers=_auth(invoke))
    assert r.status_code == 202, r.text
    r = httpx.post(f"{http.url}/registry/models/m/feedback", json=body, headers=_auth(manage))
    assert r.status_code == 403 and "invoke" in r.json()["error"]
    # the invoke key reaches nothing else under /registry
    assert httpx.get(f"{http.url}/registry/models", headers=_auth(invoke)).status_code == 403
    assert httpx.get(f"{http.url}/registry/models/m/feedback/x", headers=_auth(invoke)).status_code == 403
