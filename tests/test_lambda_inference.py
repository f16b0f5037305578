"""functions/inference/app.py driven with real API Gateway REST-proxy events on S3 (moto server).

The same requests also go over HTTP to the local server, so both adapters
answer alike; and tritonclient reaches the Lambda handler through a stand-in
for API Gateway that serves it under a stage prefix, as `sam local start-api` would.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from modelbay.protocols import oip
from modelbay.registry import Registry
from modelbay.storage.s3 import S3Store
from tests.apigw import event as _event
from tests.apigw import invoke, load_function
from tests.servers import running
from tests.test_v1 import register_text

KEY = "lambda-inference-bootstrap-key-0123456789"  # the stack's bootstrap key (MODELBAY_BOOTSTRAP_KEY)


def event(*args, headers=None, **kw):
    """Every request carries a key, as a client's would (Authorization and x-api-key)."""
    return _event(*args, headers={"x-api-key": KEY, **(headers or {})}, **kw)


@pytest.fixture(scope="module")
def deployed(s3_endpoint, tmp_path_factory, mlp_path):
    """A bucket with models, and the inference function imported as Lambda's init phase would."""
    import uuid

    import boto3

    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("lambda")
    # a fresh bucket: with --dist worksteal this module fixture may be set up twice in one worker
    bucket = f"mb-lambda-inference-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    store = S3Store(bucket, "mb")
    reg = Registry(store)
    reg.register_version("mlp", mlp_path, aliases=["production"])
    register_text(reg, tmp)
    mp.setenv("MODELBAY_STORE", f"s3://{bucket}/mb")
    mp.setenv("MODELBAY_CACHE_DIR", str(tmp / "cache"))
    mp.setenv("MODELBAY_PREWARM", "mlp:production")
    mp.setenv("MODELBAY_BOOTSTRAP_KEY", KEY)
    mp.setenv("AWS_LAMBDA_FUNCTION_NAME", "modelbay-inference")
    fn = load_function("inference")
    mp.delenv("AWS_LAMBDA_FUNCTION_NAME")
    yield fn, store, tmp
    mp.undo()


@pytest.fixture(scope="module")
def http_server(deployed):
    from modelbay.api.app import create_app
    from modelbay.settings import Settings

    _, store, tmp = deployed
    app = create_app(Settings(store_url=store.url, cache_dir=tmp / "http-cache", bootstrap_key=KEY), store=store)
    with running(app) as url:
        yield url


@pytest.fixture(params=["lambda", "http"])
def call(request, s3_endpoint, deployed):
    """(method, path, body, headers) -> (status, headers, body bytes), through either adapter."""
    fn = deployed[0]
    if request.param == "lambda":
        return lambda method, path, body=None, headers=None: invoke(
            fn.handler, event(method, path, body=body, headers=headers)
        )
    url = request.getfixturevalue("http_server")

    def over_http(method, path, body=None, headers=None):
        kw = {"json": body} if isinstance(body, dict) else {"content": body}
        r = httpx.request(method, url + path, headers={"x-api-key": KEY, **(headers or {})}, **kw)
        return r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.content

    return over_http


def test_prewarm_loaded_the_model_in_the_init_phase(s3_endpoint, deployed):
    fn = deployed[0]
    engine = fn.app.state.engine
    assert engine.loads == 1 and fn.app.state.inline_inference
    status, headers, _ = invoke(
        fn.handler,
        event(
            "POST",
            "/v2/models/mlp/infer",
            body={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]},
        ),
    )
    assert status == 200 and "load;dur" not in headers["server-timing"]  # warm from the first request


def test_oip_json_and_binary(call, mlp_path):
    x = np.random.default_rng(3).standard_normal((4, 4)).astype(np.float32)
    want = ort.InferenceSession(str(mlp_path)).run(None, {"x": x})[0]
    status, headers, body = call("GET", "/v2/models/mlp")
    assert status == 200 and json.loads(body)["inputs"][0]["shape"] == [-1, 4]
    status, headers, body = call(
        "POST",
        "/v2/models/mlp/infer",
        {"id": "j", "inputs": [{"name": "x", "datatype": "FP32", "shape": [4, 4], "data": x.tolist()}]},
    )
    assert status == 200, body
    assert headers["x-model-version"] == "1" and "inference;dur=" in headers["server-timing"]
    np.testing.assert_allclose(np.array(json.loads(body)["outputs"][0]["data"]).reshape(4, 3), want, rtol=1e-6)
    # binary tensors: the request body goes base64 in the event, the response comes back base64
    req, hdrs = oip.encode_request({"x": x}, ["probabilities"], request_id="b")
    status, headers, body = call("POST", "/v2/models/mlp/versions/production/infer", req, hdrs)
    assert status == 200, body
    assert headers["content-type"] == "application/octet-stream"
    meta, outs = oip.decode_response(body, headers[oip.HEADER.lower()])
    assert meta["id"] == "b"
    np.testing.assert_allclose(outs["probabilities"], want, rtol=1e-6)


def test_v1_text_predict(call):
    status, _, body = call("POST", "/v1/models/minilm:predict", {"instances": ["hello world", "a dog"]})
    assert status == 200, body
    vectors = np.array(json.loads(body)["predictions"])
    assert vectors.shape == (2, 8)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize(
    "method,path,body,headers,status",
    [
        (
            "POST",
            "/v2/models/ghost/infer",
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]},
            None,
            404,
        ),
        ("POST", "/v2/models/mlp/infer", b"{broken", {"Content-Type": "application/json"}, 400),
        (
            "POST",
            "/v2/models/mlp/infer",
            (
                b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], '
                b'"parameters": {"binary_data_size": 16}}]}\x00\x00'
            ),
            {oip.HEADER: "91"},
            400,
        ),
        ("POST", "/v1/models/mlp:predict", {"instances": [[1, 2, 3, 4]] * 300}, None, 413),
        ("POST", "/v1/models/mlp/labels/canary:predict", {"instances": [[1, 2, 3, 4]]}, None, 404),
        ("GET", "/v2/models/mlp/versions/12", None, None, 404),
    ],
)
def test_errors_are_json_4xx(call, method, path, body, headers, status):
    got, _, raw = call(method, path, body, headers)
    assert got == status, raw
    assert isinstance(json.loads(raw)["error"], str)


def test_registry_routes_are_not_in_the_inference_function(s3_endpoint, deployed):
    status, _, body = invoke(deployed[0].handler, event("GET", "/registry/models"))
    assert status == 404 and json.loads(body)["error"]


def _api_gateway(handler, stage: str):
    """A stand-in for API Gateway's REST proxy: HTTP in, a proxy event to the handler, HTTP out."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    # one thread with its own event loop, one request at a time: Lambda's runtime loop
    sandbox = ThreadPoolExecutor(1, initializer=lambda: asyncio.set_event_loop(asyncio.new_event_loop()))

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        path = scope["path"]
        if not path.startswith(f"/{stage}/"):
            await send({"type": "http.response.start", "status": 403, "headers": []})
            await send({"type": "http.response.body", "body": b'{"message":"Missing Authentication Token"}'})
            return
        headers = {k.decode().title(): v.decode() for k, v in scope["headers"]}
        query = dict(httpx.QueryParams(scope["query_string"].decode())) or None
        e = event(scope["method"], path[len(stage) + 1 :], body=body or None, headers=headers, query=query)
        e["requestContext"]["stage"] = stage
        status, hdrs, raw = await asyncio.get_running_loop().run_in_executor(sandbox, invoke, handler, e)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in hdrs.items() if k != "content-length"],
            }
        )
        await send({"type": "http.response.body", "body": raw})

    return app


def test_tritonclient_through_api_gateway_stage(s3_endpoint, deployed, mlp_path):
    import tritonclient.http as th

    with running(_api_gateway(deployed[0].handler, "Prod")) as url:
        c = th.InferenceServerClient(url.removeprefix("http://") + "/Prod")
        assert c.is_server_live()
        assert c.get_model_metadata("mlp", "production")["versions"] == ["1"]
        x = np.ones((2, 4), np.float32)
        want = ort.InferenceSession(str(mlp_path)).run(None, {"x": x})[0]
        for binary in (True, False):
            i = th.InferInput("x", [2, 4], "FP32")
            i.set_data_from_numpy(x, binary_data=binary)
            res = c.infer("mlp", [i], outputs=[th.InferRequestedOutput("probabilities", binary_data=binary)])
            np.testing.assert_allclose(res.as_numpy("probabilities"), want, rtol=1e-6)
        c.close()


def test_the_function_is_create_apps_inference_app_and_accounts_every_request(s3_endpoint, deployed, capsys):
    """functions/inference/app.py only chooses the role: the routes are create_app's inference variant, its
    engine is the one prewarmed in init, and the service writes one EMF line per invocation of a served version,
    failures too; a name nobody serves gets none (else each made-up name would be a CloudWatch metric)."""
    from modelbay.api.app import create_app
    from modelbay.settings import Settings

    fn, store, tmp = deployed
    reference = create_app(Settings(store_url=store.url, cache_dir=tmp / "ref-cache"), store=store, management=False)
    assert set(fn.app.openapi()["paths"]) == set(reference.openapi()["paths"])
    assert fn.app.state.inference.engine is fn.engine and fn.app.state.inline_inference
    capsys.readouterr()
    ok = invoke(fn.handler, event("POST", "/v1/models/mlp:predict", body={"instances": [[1, 2, 3, 4]] * 3}))
    missing = invoke(
        fn.handler,
        event(
            "POST",
            "/v2/models/ghost/infer",
            body={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]},
        ),
    )
    bad = invoke(fn.handler, event("POST", "/v1/models/mlp:predict", body={"instances": [[1, 2, 3]]}))
    assert (ok[0], missing[0], bad[0]) == (200, 404, 400)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert [(d["Model"], d.get("Version"), d["Requests"], d["Instances"], d["Errors"]) for d in lines] == [
        ("mlp", "1", 1, 3, 0),
        ("mlp", "1", 1, 1, 1),
    ]
    assert lines[1]["BadRequestErrors"] == 1 and lines[0]["Tenant"] == "default"
