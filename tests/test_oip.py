"""Open Inference Protocol: the codec, and real OIP clients (tritonclient's HTTP client) against the local server."""

from __future__ import annotations

import contextlib
import gzip
import json
import struct
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from modelbay.errors import BadRequest
from modelbay.protocols import oip
from modelbay.registry import Registry
from modelbay.settings import Settings
from tests.inference_models import all_types, string_classifier
from tests.onnx_models import make_mlp
from tests.servers import running

WORDS = ["free", "money", "meeting", "lunch", "winner"]
TYPES = [
    "bool",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "int8",
    "int16",
    "int32",
    "int64",
    "float16",
    "float32",
    "float64",
    "string",
]


class Recorder:
    def __init__(self) -> None:
        self.events = []

    def record(self, event) -> None:
        self.events.append(event)


@contextlib.contextmanager
def serve(store, tmp_path: Path, mlp_path: Path, app_wrapper=None):
    """Registers the test models, then runs the full local server (management + inference)."""
    from modelbay.api.app import create_app
    from modelbay.manifest import VersionMetadata

    reg = Registry(store)
    reg.register_version("mlp", mlp_path, aliases=["production"])
    make_mlp(tmp_path / "mlp2.onnx", seed=7)
    reg.register_version("mlp", tmp_path / "mlp2.onnx", aliases=["staging"])
    path, _ = string_classifier(tmp_path / "spam.onnx", WORDS)
    reg.register_version("spam", path, VersionMetadata(labels=["ham", "spam"]))
    reg.register_version("types", all_types(tmp_path / "types.onnx"))
    # protocol tests: keys are covered by test_auth/test_tenants (the route sweep includes these routes)
    app = create_app(
        Settings(store_url=store.url, cache_dir=tmp_path / "cache", auth=False), store=store, metrics=Recorder()
    )
    with running(app_wrapper(app) if app_wrapper else app) as url:
        yield SimpleNamespace(url=url, app=app, events=app.state.metrics.events)


@pytest.fixture
def served(store, tmp_path, mlp_path):
    with serve(store, tmp_path, mlp_path) as s:
        yield s


@pytest.fixture
def local(tmp_path, mlp_path):
    """A fresh server: for tests that count events or change settings."""
    from modelbay.storage.local import LocalStore

    with serve(LocalStore(tmp_path / "store"), tmp_path, mlp_path) as s:
        yield s


@pytest.fixture(scope="module")
def shared(tmp_path_factory, mlp_path):
    """One server for this module's read-only tests."""
    from modelbay.storage.local import LocalStore

    tmp = tmp_path_factory.mktemp("oip")
    with serve(LocalStore(tmp / "store"), tmp, mlp_path) as s:
        s.tmp = tmp
        yield s


def _ort(path: Path, feeds):
    return ort.InferenceSession(str(path)).run(None, feeds)


# --------------------------------------------------------------------- codec
def test_codec_round_trips_every_datatype_binary_and_json():
    rng = np.random.default_rng(0)
    arrays = {
        "b": np.array([[True, False]]),
        "u8": np.array([[0, 255]], np.uint8),
        "u64": np.array([[2**63 + 5, 1]], np.uint64),
        "i8": np.array([[-128, 127]], np.int8),
        "i64": np.array([[-(2**40), 3]], np.int64),
        "f16": rng.standard_normal((1, 2)).astype(np.float16),
        "f32": rng.standard_normal((2, 3)).astype(np.float32),
        "f64": rng.standard_normal((1, 2)),
        "s": np.array([["héllo", ""]], dtype=object),
    }
    for binary in (True, False):
        body, headers = oip.encode_request(arrays, binary=binary, request_id="r1")
        req = oip.decode_request(body, headers.get(oip.HEADER))
        assert req.id == "r1" and req.binary_output == binary
        for k, a in arrays.items():
            assert req.inputs[k].dtype == (object if k == "s" else a.dtype)
            np.testing.assert_array_equal(req.inputs[k], a)


def test_codec_nested_and_flat_json_data_are_equal():
    flat = oip.decode_request(
        json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}]}).encode()
    )
    nested = oip.decode_request(
        json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]}).encode()
    )
    np.testing.assert_array_equal(flat.inputs["x"], nested.inputs["x"])
    assert flat.inputs["x"].dtype == np.float32


@pytest.mark.parametrize(
    "body,header,match",
    [
        (b"{not json", None, "malformed JSON"),
        (b"[1, 2]", None, "JSON object"),
        (b'{"inputs": []}', None, "non-empty"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2, 3]}]}', None, "needs 2 elements"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}]}', None, "non-negative"),
        (b'{"inputs": [{"name": "x", "datatype": "FP99", "shape": [1], "data": [1]}]}', None, "unsupported datatype"),
        (b'{"inputs": [{"name": "x", "datatype": "BF16", "shape": [1], "data": [1]}]}', None, "BF16"),
        (b'{"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [300]}]}', None, "outside the INT8"),
        (b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [1.5]}]}', None, "needs integers"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ["a"]}]}', None, "cannot hold strings"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3]]}]}', None, "ragged"),
        (b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": [1]}]}', None, "must be strings"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}', None, "neither"),
        (
            (
                b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]},'
                b' {"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}'
            ),
            None,
            "twice",
        ),
        (
            (
                b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}]}',
                b"\x00\x00\x80?",
            ),
            "auto",
            "runs past",
        ),
        (
            (
                b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 4}}]}',
                b"\x00\x00\x80?",
            ),
            "auto",
            "needs 8",
        ),
        (
            (
                b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}]}',
                b"\x00\x00\x80?\x00",
            ),
            "auto",
            "no input claims",
        ),
        (b'{"inputs": []}', "999", "the body has"),
        (b'{"inputs": []}', "abc", "must be an integer"),
        (
            (
                b'{"inputs": [{"name": "s", "datatype": "BYTES", "shape": [1],'
                b' "parameters": {"binary_data_size": 6}}]}',
                b"\x05\x00\x00\x00ab",
            ),
            "auto",
            "past the end",
        ),
        (
            (
                b'{"inputs": [{"name": "s", "datatype": "BYTES", "shape": [1],'
                b' "parameters": {"binary_data_size": 6}}]}',
                b"\x02\x00\x00\x00\xff\xfe",
            ),
            "auto",
            "not UTF-8",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "outputs": [{"x": 1}]}',
            None,
            "needs a 'name'",
        ),
    ],
)
def test_codec_rejects_malformed_requests(body, header, match):
    if header == "auto":
        header = str(len(body[0]))
        body = body[0] + body[1]
    with pytest.raises(BadRequest, match=match):
        oip.decode_request(body, header)


def test_classification_extension_strings():
    out = oip.classify(np.array([[0.1, 0.7, 0.2]], np.float32), 2, ["a", "b", "c"])
    assert out.tolist() == [["0.700000:1:b", "0.200000:2:c"]]


# ------------------------------------------------------- tritonclient, HTTP
def test_tritonclient_metadata_and_infer_binary_and_json(served, mlp_path):
    import tritonclient.http as th

    c = th.InferenceServerClient(served.url.removeprefix("http://"))
    assert c.is_server_live() and c.is_server_ready()
    assert "binary_tensor_data" in c.get_server_metadata()["extensions"]
    meta = c.get_model_metadata("mlp")
    assert meta["platform"] == "onnx_onnxv1" and meta["versions"] == ["1", "2"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]
    assert c.get_model_metadata("mlp", "staging")["versions"] == ["2"]
    assert c.is_model_ready("mlp") and c.is_model_ready("mlp", "2")
    assert not c.is_model_ready("ghost")

    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    want = _ort(mlp_path, {"x": x})[0]
    for binary in (True, False):
        inp = th.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        out = th.InferRequestedOutput("probabilities", binary_data=binary)
        res = c.infer("mlp", [inp], outputs=[out], request_id=f"req-{binary}")
        np.testing.assert_allclose(res.as_numpy("probabilities"), want, rtol=1e-6)
        r = res.get_response()
        assert r["id"] == f"req-{binary}" and r["model_version"] == "1" and r["model_name"] == "mlp"
    # no outputs named: tritonclient asks for all of them in binary
    res = c.infer("mlp", [inp], model_version="staging")
    assert res.get_response()["model_version"] == "2"
    assert res.as_numpy("probabilities").shape == (5, 3)
    c.close()


def test_tritonclient_every_datatype_and_strings(shared):
    import tritonclient.http as th

    c = th.InferenceServerClient(shared.url.removeprefix("http://"))
    rng = np.random.default_rng(2)
    data = {}
    for t in TYPES:
        if t == "string":
            data[t] = np.array([["a", "béta"], ["", "z"]], dtype=object)
        elif t == "bool":
            data[t] = rng.integers(0, 2, (2, 2)).astype(bool)
        else:
            data[t] = (rng.standard_normal((2, 2)) * 50).astype(t)
    for binary in (True, False):
        inputs = []
        for t, a in data.items():
            dt = th.np_to_triton_dtype(a.dtype) if t != "string" else "BYTES"
            i = th.InferInput(f"x_{t}", list(a.shape), dt)
            i.set_data_from_numpy(a, binary_data=binary)
            inputs.append(i)
        outs = [th.InferRequestedOutput(f"y_{t}", binary_data=binary) for t in TYPES]
        res = c.infer("types", inputs, outputs=outs)
        for t, a in data.items():
            got = res.as_numpy(f"y_{t}")
            if t == "string":
                got = np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else v, otypes=[object])(got)
            np.testing.assert_array_equal(got, a)


def test_tritonclient_string_classifier_and_classification(shared):
    import tritonclient.http as th

    c = th.InferenceServerClient(shared.url.removeprefix("http://"))
    text = np.array([["free"], ["meeting"], ["lunch"]], dtype=object)
    inp = th.InferInput("text", [3, 1], "BYTES")
    inp.set_data_from_numpy(text)
    res = c.infer("spam", [inp], outputs=[th.InferRequestedOutput("probabilities", class_count=1)])
    top = [v.decode() for v in res.as_numpy("probabilities").reshape(-1)]
    probs = _ort(shared.tmp / "spam.onnx", {"text": text})[0]
    for row, s in zip(probs, top):
        score, idx, label = s.split(":")
        assert int(idx) == int(np.argmax(row)) and label == ["ham", "spam"][int(idx)]
        assert float(score) == pytest.approx(float(row.max()), abs=1e-5)


def test_tritonclient_with_a_base_path(tmp_path, mlp_path):
    """Behind a stage prefix (as API Gateway puts one) the standard paths still work."""
    import tritonclient.http as th
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from modelbay.storage.local import LocalStore

    with serve(
        LocalStore(tmp_path / "store"), tmp_path, mlp_path, lambda app: Starlette(routes=[Mount("/prod", app=app)])
    ) as s:
        c = th.InferenceServerClient(s.url.removeprefix("http://") + "/prod")
        assert c.is_server_live() and c.get_model_metadata("mlp")["name"] == "mlp"
        inp = th.InferInput("x", [1, 4], "FP32")
        inp.set_data_from_numpy(np.ones((1, 4), np.float32))
        assert c.infer("mlp", [inp]).as_numpy("probabilities").shape == (1, 3)


def test_tritonclient_sees_clear_errors(shared):
    import tritonclient.http as th
    from tritonclient.utils import InferenceServerException

    c = th.InferenceServerClient(shared.url.removeprefix("http://"))
    inp = th.InferInput("x", [1, 5], "FP32")
    inp.set_data_from_numpy(np.ones((1, 5), np.float32))
    with pytest.raises(InferenceServerException, match=r"dimension 1 must be 4"):
        c.infer("mlp", [inp])


# ------------------------------------------------------------- raw HTTP
def _post(url, path, body, headers=None):
    if isinstance(body, dict):
        return httpx.post(url + path, json=body, headers=headers)
    return httpx.post(url + path, content=body, headers=headers)


X = {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}


@pytest.mark.parametrize(
    "path,body,status,match",
    [
        ("/v2/models/mlp/infer", {"inputs": [{**X, "datatype": "FP64"}]}, 400, "is FP64; the model takes FP32"),
        ("/v2/models/mlp/infer", {"inputs": [{**X, "shape": [4], "data": [1, 2, 3, 4]}]}, 400, "rank 2"),
        ("/v2/models/mlp/infer", {"inputs": [{**X, "shape": [2, 2]}]}, 400, "dimension 1 must be 4"),
        ("/v2/models/mlp/infer", {"inputs": [{**X, "name": "y"}]}, 400, "unknown input 'y'"),
        (
            "/v2/models/types/infer",
            {"inputs": [{"name": "x_bool", "datatype": "BOOL", "shape": [1, 2], "data": [True, False]}]},
            400,
            "missing input",
        ),
        ("/v2/models/mlp/infer", {"inputs": [X], "outputs": [{"name": "nope"}]}, 400, "unknown output 'nope'"),
        ("/v2/models/ghost/infer", {"inputs": [X]}, 404, "no model named 'ghost'"),
        ("/v2/models/mlp/versions/9/infer", {"inputs": [X]}, 404, "no version 9"),
        ("/v2/models/mlp/versions/canary/infer", {"inputs": [X]}, 404, "no alias 'canary'"),
        ("/v2/models/mlp/versions/Bad!/infer", {"inputs": [X]}, 400, "invalid alias"),
        ("/v2/models/mlp/infer", b"{broken", 400, "malformed JSON"),
        ("/v2/models/ghost", None, 404, "no model named"),
    ],
)
def test_bad_requests_are_clear_4xx(shared, path, body, status, match):
    r = httpx.get(shared.url + path) if body is None else _post(shared.url, path, body)
    assert r.status_code == status, r.text
    assert match in r.json()["error"] and isinstance(r.json()["error"], str)


def test_malformed_binary_and_oversized_bodies(local):
    header = json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "parameters": {"binary_data_size": 16}}]}
    ).encode()
    r = _post(
        local.url,
        "/v2/models/mlp/infer",
        header + b"\x00" * 12,
        {oip.HEADER: str(len(header)), "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 400 and "runs past" in r.json()["error"]
    local.app.state.settings.limits.max_body_bytes = 1000
    r = _post(local.url, "/v2/models/mlp/infer", b"x" * 2000, {"Content-Type": "application/octet-stream"})
    assert r.status_code == 413 and "limit is 1000" in r.json()["error"]
    bomb = gzip.compress(b"{" + b" " * 100_000 + b"}")
    r = _post(local.url, "/v2/models/mlp/infer", bomb, {"Content-Encoding": "gzip"})
    assert r.status_code == 413 and "decompressed" in r.json()["error"]


def test_gzip_request_binary_response_and_headers(shared, mlp_path):
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    body, headers = oip.encode_request({"x": x}, ["probabilities"], request_id="g1")
    r = _post(
        shared.url,
        "/v2/models/mlp/versions/production/infer",
        gzip.compress(body),
        {**headers, "Content-Encoding": "gzip"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["x-model-version"] == "1"
    timing = r.headers["server-timing"]
    for part in ("fetch;dur=", "preprocess;dur=", "inference;dur=", "postprocess;dur="):
        assert part in timing
    meta, outs = oip.decode_response(r.content, r.headers[oip.HEADER])
    assert meta["id"] == "g1"
    np.testing.assert_allclose(outs["probabilities"], _ort(mlp_path, {"x": x})[0], rtol=1e-6)


def test_one_metrics_event_per_request(local):
    _post(local.url, "/v2/models/mlp/infer", {"inputs": [X]})
    _post(local.url, "/v2/models/mlp/infer", {"inputs": [X]})
    _post(local.url, "/v2/models/mlp/infer", {"inputs": [{**X, "datatype": "INT64"}]})
    _post(local.url, "/v2/models/ghost/infer", {"inputs": [X]})
    ev = local.events
    # "ghost" is served by no one: no event, so no series (else every unknown name would make one)
    assert [(e.model, e.version, e.error, e.cold_start) for e in ev] == [
        ("mlp", 1, None, True),
        ("mlp", 1, None, False),
        ("mlp", 1, "bad_request", False),
    ]
    assert ev[0].load_ms > 0 and ev[0].instances == 1 and ev[1].load_ms is None
    assert all(e.total_ms >= e.inference_ms >= 0 for e in ev)


def test_error_after_resolution_names_the_version(shared):
    r = _post(shared.url, "/v2/models/mlp/versions/staging/infer", {"inputs": [{**X, "datatype": "INT64"}]})
    assert r.status_code == 400 and r.headers["x-model-version"] == "2"


def test_invoke_scope_is_required(local):
    from modelbay.auth import Principal

    local.app.state.authenticate = lambda request: Principal("default", frozenset({"manage"}), "k1")
    r = _post(local.url, "/v2/models/mlp/infer", {"inputs": [X]})
    assert r.status_code == 403 and "invoke" in r.json()["error"]
    assert httpx.get(local.url + "/v2/models/mlp").status_code == 403
    assert httpx.get(local.url + "/v2/health/live").status_code == 200


def test_binary_bytes_output_layout(shared):
    body, headers = oip.encode_request({"x_string": np.array([["ab", "c"]], dtype=object)}, None)
    r = _post(shared.url, "/v2/models/types/infer", body, headers)
    assert r.status_code == 400  # the other inputs are missing; a string-only model follows
    req = {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 1], "data": ["free"]}],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 2}}],
        "parameters": {"binary_data_output": True},
    }
    r = _post(shared.url, "/v2/models/spam/infer", req)
    hl = int(r.headers[oip.HEADER])
    blob = r.content[hl:]
    (n,) = struct.unpack_from("<I", blob)
    assert blob[4 : 4 + n].decode().count(":") == 2


def test_oip_batch_is_bounded_by_max_instances(local):
    local.app.state.settings.limits.max_instances = 8
    body, headers = oip.encode_request({"x": np.zeros((9, 4), np.float32)}, None)
    r = _post(local.url, "/v2/models/mlp/infer", body, headers)
    assert r.status_code == 413 and "9 instances; the limit is 8" in r.json()["error"]
    body, headers = oip.encode_request({"x": np.zeros((8, 4), np.float32)}, None)
    assert _post(local.url, "/v2/models/mlp/infer", body, headers).status_code == 200


def test_a_corrupt_stored_model_is_a_503_load_failure(local):
    store = local.app.state.store
    path = store._path("tenants/default/models/mlp/2/model.onnx")
    path.write_bytes(b"\x00" * path.stat().st_size)  # same size, wrong bytes: the sha256 check catches it
    r = _post(local.url, "/v2/models/mlp/versions/2/infer", {"inputs": [X]})
    assert r.status_code == 503 and r.json()["code"] == "load_failure" and "sha256" in r.json()["error"]
    assert r.headers["x-model-version"] == "2"
    assert (local.events[-1].error, local.events[-1].version) == ("load_failure", 2)
    assert _post(local.url, "/v2/models/mlp/versions/1/infer", {"inputs": [X]}).status_code == 200


def test_a_model_onnxruntime_cannot_load_is_a_503_naming_no_server_path(local):
    """The cached file is corrupt (the disk cache trusts what it verified once): the 503 names the
    version and the file, never the server's cache directory; the event counts a load failure."""
    engine = local.app.state.engine
    m = engine.resolve("default", "mlp", "2")
    blob = engine.disk.path(m.sha256)
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(b"not an onnx model")
    r = _post(local.url, "/v2/models/mlp/versions/2/infer", {"inputs": [X]})
    assert r.status_code == 503 and r.json()["code"] == "load_failure", r.text
    assert "cannot load it" in r.json()["error"] and "/" not in r.json()["error"]
    assert str(engine.disk.root) not in r.text
    assert r.headers["x-model-version"] == "2" and "total;dur=" in r.headers["server-timing"]
    assert (local.events[-1].error, local.events[-1].version) == ("load_failure", 2)
