"""KServe's REST client (InferenceRESTClient, v1 and v2) against a local modelbay server. Not collected by pytest.

kserve is too heavy to be a dev dependency (Kubernetes client, gRPC, its own
FastAPI pin), so this runs by hand with two interpreters:

    python3 -m venv /tmp/kserve-venv && /tmp/kserve-venv/bin/pip install kserve
    python tests/kserve_interop.py serve 8791 &                      # the project venv
    /tmp/kserve-venv/bin/python tests/kserve_interop.py check http://127.0.0.1:8791

It checks the root and a base path (/serving), JSON and binary tensors, BYTES,
V1 predict and both readiness probes. Last run: kserve 0.21.0, all passing.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import threading
from pathlib import Path


def serve(port: int) -> None:
    root = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(root / "shared"), str(root)]
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from modelbay.api.app import create_app
    from modelbay.registry import Registry
    from modelbay.settings import Settings
    from modelbay.storage.local import LocalStore
    from tests.inference_models import spam_metadata, string_classifier
    from tests.onnx_models import make_mlp
    from tests.servers import running

    d = Path(tempfile.mkdtemp(prefix="kserve-interop-"))
    store = LocalStore(d / "store")
    reg = Registry(store)
    reg.register_version("mlp", make_mlp(d / "mlp.onnx"), aliases=["production"])
    path, _ = string_classifier(d / "spam.onnx", ["free", "money", "meeting"])
    reg.register_version("spam", path, spam_metadata())
    # keys off: a protocol check (KServe's client sends none); keys are tested in test_auth/test_tenants
    app = create_app(Settings(store_url=str(d / "store"), cache_dir=d / "cache", auth=False), store=store)
    with running(Starlette(routes=[Mount("/serving", app=app), Mount("", app=app)]), port=port) as url:
        print(f"modelbay on {url} and {url}/serving; ctrl-c stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


async def check(url: str) -> None:
    import numpy as np
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
    from kserve.protocol.infer_type import RequestedOutput

    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    for base in (url, url + "/serving"):
        v2 = InferenceRESTClient(RESTConfig(protocol="v2"))
        assert await v2.is_server_live(base) and await v2.is_server_ready(base)
        assert await v2.is_model_ready(base, "mlp")
        results = []
        for binary in (False, True):
            i = InferInput("x", [2, 4], "FP32")
            i.set_data_from_numpy(x, binary_data=binary)
            outs = [RequestedOutput("probabilities", {"binary_data": True})] if binary else None
            res = await v2.infer(
                base, InferRequest("mlp", [i], request_id="k1", request_outputs=outs), model_name="mlp"
            )
            assert res.id == "k1"
            results.append(res.outputs[0].as_numpy())
        np.testing.assert_allclose(results[0], results[1])
        s = InferInput("text", [2, 1], "BYTES")
        s.set_data_from_numpy(np.array([["free"], ["meeting"]], dtype=object))
        res = await v2.infer(base, InferRequest("spam", [s]), model_name="spam")
        assert res.outputs[0].as_numpy().shape == (2, 2)
        await v2.close()
        v1 = InferenceRESTClient(RESTConfig(protocol="v1"))
        assert await v1.is_model_ready(base, "mlp")
        res = await v1.infer(base, {"instances": x.tolist()}, model_name="mlp")
        np.testing.assert_allclose(np.array(res["predictions"]), results[0], rtol=1e-6)
        res = await v1.infer(base, {"instances": ["free money"]}, model_name="spam")
        assert res["predictions"][0]["label"] in ("ham", "spam")
        await v1.close()
        print(f"{base}: v2 JSON, v2 binary, v2 BYTES, v1 predict, readiness: ok")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        asyncio.run(check(sys.argv[2]))
