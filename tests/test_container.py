"""modelbay's container images, built and run for real (podman or docker; infra/container).

The server image: `modelbay serve` on a read-only root as uid 10001, a model pushed through its
API and predicted over OIP and V1, its HEALTHCHECK, SIGTERM, and a cold start on the same store.
The Lambda image: the zip's handlers under awslambdaric, polling a Runtime API written here,
answering real API Gateway REST-proxy events from a store directory mounted into it.

The images are built once per input hash (infra/container/images.py; the first build takes a
few minutes, later runs reuse them). Skipped, saying why, only where no container engine works.
Timings are printed and written to build/container/measurements.json, never asserted.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from tests.apigw import event, invoke
from tests.containers import RuntimeAPI, built_images, container, no_timers, volume, wait_ready
from tests.servers import free_port

pytestmark = pytest.mark.container
SIZE_LIMIT = 500 * 1000 * 1000  # bytes, uncompressed; measured ~393 MB (Debian bookworm base ~124 MB)
ROWS = [[0.5, -1.0, 2.0, 0.25], [1.5, 0.0, -0.5, 3.0]]
FLAT = [v for row in ROWS for v in row]
MEASUREMENTS = Path(__file__).resolve().parents[1] / "build" / "container" / "measurements.json"


def record(**values: float | str) -> None:
    print(" ".join(f"{k}={v}" for k, v in values.items()))
    MEASUREMENTS.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(MEASUREMENTS.read_text())
    except (OSError, ValueError):
        data = {}
    MEASUREMENTS.write_text(json.dumps({**data, **values}, indent=1))


@pytest.fixture(scope="session")
def images():
    t0 = time.monotonic()
    imgs = built_images()
    if imgs.built:
        record(image_build_seconds=round(time.monotonic() - t0, 1))
    return imgs


@pytest.fixture(scope="module")
def expected(mlp_path):
    sess = ort.InferenceSession(str(mlp_path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": np.array(ROWS, dtype=np.float32)})[0]


def test_image_sizes_are_bounded(images):
    sizes = {
        "base": images.engine.size(images.base),
        "server": images.engine.size(images.server),
        "lambda": images.engine.size(images.lambda_),
    }
    record(**{f"{k}_image_mb": round(v / 1e6, 1) for k, v in sizes.items()})
    assert sizes["server"] < SIZE_LIMIT and sizes["lambda"] < SIZE_LIMIT, sizes


def test_images_hold_no_torch_and_no_conversion_extras(images):
    probe = (
        "import importlib.util as u; print([m for m in ('torch', 'transformers', 'skl2onnx', 'textual') "
        "if u.find_spec(m)])"
    )
    for image in (images.server, images.lambda_):
        r = images.engine(
            "run",
            "--rm",
            "--network",
            "none",
            *no_timers(images.engine),
            "--entrypoint",
            "/opt/venv/bin/python",
            image,
            "-c",
            probe,
        )
        assert r.stdout.strip() == "[]", (image, r.stdout, r.stderr)


# ------------------------------------------------------------------ the server image
def serve(images, port: int, key: str, cache: str, store: str):
    e = images.engine
    return container(
        e,
        images.server,
        *e.read_only,
        "-v",
        f"{cache}:/cache",
        "-v",
        f"{store}:/srv/modelbay/store",
        "-e",
        f"PORT={port}",
        "-e",
        f"MODELBAY_BOOTSTRAP_KEY={key}",
    )


def predict_both(url: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    headers = {"x-api-key": key}
    v1 = httpx.post(f"{url}/v1/models/mlp:predict", json={"instances": ROWS}, headers=headers, timeout=60)
    assert v1.status_code == 200, v1.text
    oip = httpx.post(
        f"{url}/v2/models/mlp/infer",
        headers=headers,
        timeout=60,
        json={"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": FLAT}]},
    )
    assert oip.status_code == 200, oip.text
    (out,) = oip.json()["outputs"]
    assert out["name"] == "probabilities" and out["shape"] == [2, 3]
    return np.array(v1.json()["predictions"]), np.array(out["data"]).reshape(out["shape"])


@pytest.fixture(scope="module")
def server(images, mlp_path):
    """The server image on a store volume, with a model pushed through its API by modelbay's client."""
    from modelbay.client import Client

    key, port = secrets.token_urlsafe(32), free_port()
    with volume(images.engine) as cache, volume(images.engine) as store, serve(images, port, key, cache, store) as name:
        url = f"http://127.0.0.1:{port}"
        wait_ready(images.engine, name, f"{url}/v2/health/ready")
        with Client(url, key) as c:
            pushed = c.push(mlp_path, "mlp", aliases=["production"])
        yield {"name": name, "url": url, "key": key, "store": store, "version": pushed.version}


def test_server_serves_a_pushed_model_over_oip_and_v1(server, expected):
    assert server["version"] == 1
    v1, oip = predict_both(server["url"], server["key"])
    np.testing.assert_allclose(v1, expected, rtol=1e-5)
    np.testing.assert_allclose(oip, expected, rtol=1e-5)
    denied = httpx.post(f"{server['url']}/v2/models/mlp/infer", json={"inputs": []}, timeout=30)
    assert denied.status_code == 401 and denied.json()["error"]  # keys are on in the image


def test_server_is_non_root_pid1_on_a_read_only_root(images, server):
    def sh(script: str, *user: str):
        return images.engine("exec", *user, server["name"], "sh", "-c", script, check=False)

    assert sh("id -u").stdout.strip() == "10001"
    # exec form all the way: modelbay itself is PID 1 and receives SIGTERM, not a shell
    cmdline = sh("tr '\\0' ' ' < /proc/1/cmdline").stdout
    assert "-m modelbay serve" in cmdline and cmdline.startswith("/opt/venv/bin/python"), cmdline
    root_mount = [line.split() for line in sh("cat /proc/self/mounts").stdout.splitlines() if line.split()[1] == "/"]
    assert root_mount and "ro" in root_mount[-1][3].split(","), root_mount
    for path in ("/probe", "/opt/venv/probe", "/etc/passwd", "/opt/modelbay/serve.sh"):
        assert sh(f"echo x >> {path}").returncode != 0, path
        # even root inside the container cannot write: the filesystem, not permissions, refuses
        r = sh(f"echo x >> {path}", "--user", "0")
        assert r.returncode != 0 and "Read-only file system" in r.stderr, (path, r.stderr)
    assert sh("echo x > /cache/probe && rm /cache/probe").returncode == 0  # the one writable place


def test_server_healthcheck_probes_oip_readiness(images, server):
    e = images.engine
    config = e("inspect", "--format", "{{json .Config.Healthcheck}}", server["name"]).stdout
    assert "/opt/modelbay/healthcheck.py" in config, config
    if e.name == "podman":  # docker runs it on its own schedule only
        assert e("healthcheck", "run", server["name"], check=False).returncode == 0


def test_server_stops_on_sigterm_and_cold_starts_on_the_same_store(images, server, expected):
    """A second container on the store the first one filled (fresh cache): time to first prediction.
    `stop` sends SIGTERM; exit code 0 means uvicorn shut down by itself (SIGKILL would be 137)."""
    e = images.engine
    port = free_port()
    with volume(e) as cache:
        t0 = time.monotonic()
        with serve(images, port, server["key"], cache, server["store"]) as name:
            url = f"http://127.0.0.1:{port}"
            wait_ready(e, name, f"{url}/v2/health/ready")
            ready = time.monotonic() - t0
            _, oip = predict_both(url, server["key"])
            first = time.monotonic() - t0
            np.testing.assert_allclose(oip, expected, rtol=1e-5)
            t1 = time.monotonic()
            e("stop", "-t", "30", name, timeout=60)
            stopped = time.monotonic() - t1
            code = e("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
            assert code == "0", f"exit code {code} after SIGTERM"
    record(
        server_cold_start_ready_s=round(ready, 2),
        server_cold_start_first_prediction_s=round(first, 2),
        server_sigterm_stop_s=round(stopped, 2),
    )


# ------------------------------------------------------------------ the Lambda image
@pytest.fixture(scope="module")
def lambda_store(tmp_path_factory, mlp_path):
    """A store directory with a model and an API key, made on the host as any modelbay would."""
    from modelbay.auth import SCOPES, KeyStore
    from modelbay.registry import Registry
    from modelbay.storage.local import LocalStore

    root = tmp_path_factory.mktemp("lambda-image") / "store"
    store = LocalStore(root)
    Registry(store).register_version("mlp", mlp_path, aliases=["production"])
    key = KeyStore(store).create("default", SCOPES, name="lambda image", root=True)[1]
    # The function runs as another uid (10001). LocalStore takes lock files even to read, so the
    # directory is mounted writable; the Lambda's own writes go to /tmp only (its cache).
    for d, _dirs, files in os.walk(root):
        os.chmod(d, 0o777)
        for f in files:
            os.chmod(os.path.join(d, f), 0o666)
    return root, key


def run_lambda(images, store: Path, handler: str, runtime: RuntimeAPI):
    e = images.engine
    return container(
        e,
        images.lambda_,
        *e.read_only,
        "-v",
        f"{store}:/store",
        "-e",
        f"AWS_LAMBDA_RUNTIME_API={runtime.address}",
        "-e",
        "AWS_LAMBDA_FUNCTION_NAME=modelbay-test",
        "-e",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024",
        "-e",
        "AWS_REGION=us-east-1",
        "-e",
        "MODELBAY_STORE=/store",
        command=(handler,),
    )


@pytest.fixture
def runtime():
    api = RuntimeAPI()
    yield api
    api.close()


def call(runtime: RuntimeAPI, *args, **kw) -> tuple[int, dict, bytes]:
    return invoke(lambda e, _ctx: runtime.invoke(e), event(*args, **kw))


def test_lambda_image_inference_answers_api_gateway_events(images, lambda_store, runtime, expected):
    store, key = lambda_store
    t0 = time.monotonic()
    with run_lambda(images, store, "functions.inference.app.handler", runtime):
        status, _, body = call(runtime, "GET", "/v2/health/ready")
        first = time.monotonic() - t0
        assert status == 200, body
        auth = {"x-api-key": key}
        status, _, body = call(runtime, "GET", "/v2/models/mlp", headers=auth)
        assert status == 200 and json.loads(body)["name"] == "mlp", body
        t1 = time.monotonic()
        status, _, body = call(
            runtime,
            "POST",
            "/v2/models/mlp/infer",
            headers=auth,
            body={"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": FLAT}]},
        )
        first_infer = time.monotonic() - t1
        assert status == 200, body
        (out,) = json.loads(body)["outputs"]
        np.testing.assert_allclose(np.array(out["data"]).reshape(out["shape"]), expected, rtol=1e-5)
        status, _, body = call(runtime, "POST", "/v1/models/mlp:predict", headers=auth, body={"instances": ROWS})
        assert status == 200, body
        np.testing.assert_allclose(np.array(json.loads(body)["predictions"]), expected, rtol=1e-5)
        status, _, body = call(runtime, "POST", "/v1/models/mlp:predict", body={"instances": ROWS})
        assert status == 401 and json.loads(body)["error"], body  # no key: refused, as in the zip
    record(lambda_image_init_and_first_event_s=round(first, 2), lambda_image_first_inference_s=round(first_infer, 2))


def test_lambda_image_management_lists_models(images, lambda_store, runtime):
    store, key = lambda_store
    with run_lambda(images, store, "functions.registry.app.handler", runtime):
        status, _, body = call(runtime, "GET", "/registry/models", headers={"x-api-key": key})
        assert status == 200, body
        assert [m["name"] for m in json.loads(body)["models"]] == ["mlp"], body


# ------------------------------------------------------------------ Kubernetes and KServe (static)
def test_k8s_and_kserve_manifests_match_the_image():
    """No cluster here: the manifests are checked against what the image expects (port, uid,
    writable /cache, read-only root, OIP probes, a store URL)."""
    import re

    import yaml

    root = Path(__file__).resolve().parents[1]
    containerfile = (root / "infra/container/Containerfile").read_text()
    server = containerfile[containerfile.index("AS server\n") : containerfile.index("AS lambda\n")]
    port = int(re.search(r"\bPORT=(\d+)", server).group(1))
    uid = int(re.search(r"^USER (\d+):", server, re.MULTILINE).group(1))
    cache = re.search(r"XDG_CACHE_HOME=(\S+)", server).group(1)
    docs = [
        d
        for f in ("modelbay.yaml", "kserve-inferenceservice.yaml")
        for d in yaml.safe_load_all((root / "infra/k8s" / f).read_text())
    ]
    pods = {
        d["kind"]: d["spec"]["template"]["spec"] if d["kind"] == "Deployment" else d["spec"]["predictor"]
        for d in docs
        if d["kind"] in ("Deployment", "InferenceService")
    }
    assert set(pods) == {"Deployment", "InferenceService"}
    assert {d["kind"] for d in docs} >= {"ServiceAccount", "Service"}
    for kind, pod in pods.items():
        assert pod["serviceAccountName"] == "modelbay"
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == uid
        (c,) = pod["containers"]
        assert c["ports"][0]["containerPort"] == port, kind
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, kind
        assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready", kind
        assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live", kind
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert cache in mounts and any(v["name"] == mounts[cache] and "emptyDir" in v for v in pod["volumes"]), kind
        env = {e["name"]: e for e in c["env"]}
        assert env["MODELBAY_STORE"]["value"].startswith("s3://"), kind
        assert "MODELBAY_BOOTSTRAP_KEY" in env and "value" not in env["MODELBAY_BOOTSTRAP_KEY"]  # from a Secret
    (svc,) = [d for d in docs if d["kind"] == "Service"]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    assert svc["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
