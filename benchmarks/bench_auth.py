"""What API-key authentication costs per request.

    python benchmarks/bench_auth.py

KeyStore.verify with the record cached (every warm request) and uncached (a store
read: the first request of a key per cache period), and the warm Lambda inference
handler with keys against the same handler with MODELBAY_AUTH=off: server
metadata (routed) and infer on a small MLP (the fast path that skips routing).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT)]


def per_call_us(fn, n: int) -> tuple[float, float]:
    samples = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(samples), min(samples)


def main() -> None:
    from modelbay.auth import SCOPES, KeyStore
    from modelbay.storage.local import LocalStore

    tmp = Path(tempfile.mkdtemp(prefix="bench-auth-"))
    store = LocalStore(tmp / "store")
    ks = KeyStore(store)
    _, key = ks.create("default", SCOPES)
    cold = KeyStore(store, cache_seconds=0)
    rows = [
        ("verify, cached record", *per_call_us(lambda: ks.verify(key), 20000)),
        ("verify, store read (local dir)", *per_call_us(lambda: cold.verify(key), 2000)),
    ]

    os.environ.update(MODELBAY_STORE=str(tmp / "store"), MODELBAY_CACHE_DIR=str(tmp / "cache"))
    from modelbay.registry import Registry
    from tests.apigw import event, invoke, load_function
    from tests.onnx_models import make_mlp

    Registry(store).register_version("mlp", make_mlp(tmp / "mlp.onnx"), aliases=["production"])
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    keyed_fn = load_function("inference")
    os.environ["MODELBAY_AUTH"] = "off"
    open_fn = load_function("inference")
    del os.environ["MODELBAY_AUTH"]
    for path, e_body in (("/v2", None), ("/v2/models/mlp/infer", body)):
        method = "POST" if e_body else "GET"
        with_key = event(method, path, body=e_body, headers={"x-api-key": key})
        without = event(method, path, body=e_body)
        assert invoke(keyed_fn.handler, with_key)[0] == 200 and invoke(open_fn.handler, without)[0] == 200
        assert invoke(keyed_fn.handler, without)[0] == 401
        rows += [
            (f"Lambda {method} {path}, auth off", *per_call_us(partial(invoke, open_fn.handler, without), 2000)),
            (f"Lambda {method} {path}, keyed", *per_call_us(partial(invoke, keyed_fn.handler, with_key), 2000)),
        ]
    width = max(len(r[0]) for r in rows)
    print(f"{'':{width}}  median µs   best µs")
    for name, med, best in rows:
        print(f"{name:{width}}  {med:9.1f}  {best:8.1f}")


if __name__ == "__main__":
    main()
