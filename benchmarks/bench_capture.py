"""What payload capture and canary routing cost per request, measured on the in-process service.

python benchmarks/bench_capture.py [N]

Prints the median per-request time of a V1 predict on a small MLP with capture off, at 100% (inputs and
outputs), and with the alias split by a canary; then what writing one batch of captured records costs
(off the request path: the writer thread's work).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT)]

from modelbay.capture import CaptureConfig, Capturer, write_config  # noqa: E402
from modelbay.engine import Engine, InferenceService  # noqa: E402
from modelbay.metrics.memory import MemoryMetrics  # noqa: E402
from modelbay.registry import Registry  # noqa: E402
from modelbay.settings import Settings  # noqa: E402
from modelbay.storage.local import LocalStore  # noqa: E402
from tests.onnx_models import make_mlp  # noqa: E402


def per_request_us(svc: InferenceService, body: bytes, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        svc.predict("default", "m", None, body, route_key=None)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main(n: int = 5000) -> None:
    tmp = Path(tempfile.mkdtemp())
    store = LocalStore(tmp / "store")
    make_mlp(tmp / "m.onnx")
    reg = Registry(store)
    reg.register_version("m", tmp / "m.onnx", aliases=["production"])
    reg.register_version("m", tmp / "m.onnx")
    settings = Settings(store_url=store.url, cache_dir=tmp / "cache")
    capturer = Capturer(store, flush_seconds=3600, buffer_records=n * 2, batch_records=n * 2)
    svc = InferenceService(Engine(store, settings), MemoryMetrics(), settings, capture=capturer)
    body = json.dumps({"instances": [[0.1, 0.2, 0.3, 0.4]]}).encode()
    per_request_us(svc, body, 200)  # warm
    off = per_request_us(svc, body, n)
    write_config(store, "default", "m", CaptureConfig(sample_rate=1.0))
    capturer._configs.clear()
    on = per_request_us(svc, body, n)
    t0 = time.perf_counter()
    written = capturer.flush()
    flush_ms = (time.perf_counter() - t0) * 1000
    write_config(store, "default", "m", CaptureConfig(sample_rate=0.0))
    capturer._configs.clear()
    reg.start_canary("m", "production", 2, 10)
    svc.engine.resolver._refs.clear()
    split = per_request_us(svc, body, n)
    print(f"V1 predict, median of {n}: capture off {off:.1f} us, capture 100% {on:.1f} us (+{on - off:.1f} us)")
    print(f"with a 10% canary split: {split:.1f} us (+{split - off:.1f} us vs no split)")
    print(
        f"writer thread: {written} records in one gzip'd batch in {flush_ms:.1f} ms "
        f"({flush_ms * 1000 / written:.1f} us each)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
