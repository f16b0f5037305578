"""What recording a metric costs on the request path, per back end, and what reading 24 h costs.

python benchmarks/metrics_record.py [N]
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "shared")]

from modelbay.metrics import InferenceEvent  # noqa: E402
from modelbay.metrics.cloudwatch import EmfSink, PutMetricDataSink  # noqa: E402
from modelbay.metrics.memory import MemoryMetrics  # noqa: E402
from modelbay.metrics.series import plan  # noqa: E402


class _Discard:
    def put_metric_data(self, **kw) -> None:
        return None


def per_call_us(fn, events) -> float:
    t0 = time.perf_counter()
    for e in events:
        fn(e)
    return (time.perf_counter() - t0) / len(events) * 1e6


def main(n: int = 100_000) -> None:
    now = time.time()
    events = [
        InferenceEvent(
            f"m{i % 5}",
            1 + i % 3,
            1,
            total_ms=1 + (i * 37) % 500,
            fetch_ms=0.1,
            preprocess_ms=0.2,
            inference_ms=0.5 + i % 7,
            postprocess_ms=0.1,
            error="bad_request" if i % 50 == 0 else None,
            timestamp=now + i * 0.01,
        )
        for i in range(n)
    ]
    history = [
        InferenceEvent(f"m{i % 5}", 1 + i % 3, 1, total_ms=1 + (i * 37) % 500, timestamp=now - (i % 1440) * 60)
        for i in range(n)
    ]
    mem = MemoryMetrics()
    for e in events[:1000]:  # warm up
        mem.record(e)
    print(f"memory sink record:        {per_call_us(mem.record, events):7.2f} µs/event  ({n} events)")
    for e in history:  # fill a day so reads below scan 24 h of buckets
        mem.record(e)
    emf = EmfSink(stream=io.StringIO())
    k = min(n, 20_000)
    for e in events[:500]:
        emf.record(e)
    print(f"EMF sink record:           {per_call_us(emf.record, events[:k]):7.2f} µs/event  (JSON line to a buffer)")
    pmd = PutMetricDataSink(interval_s=0, client=_Discard())
    print(
        f"PutMetricData sink record: {per_call_us(pmd.record, events):7.2f} µs/event  (buffered; flush is a "
        f"background thread)"
    )
    for window in ("1h", "24h"):
        start, end, step = plan(window, now=now)
        t0 = time.perf_counter()
        s = mem.series("default", "m1", None, start, end, step)
        dt = (time.perf_counter() - t0) * 1000
        print(f"memory series {window:>4} (all versions, {len(s.timestamps)} points): {dt:7.1f} ms")
    print(f"resident buckets: {len(mem._buckets)}  (5 models x 3 versions x 1440 minutes max)")


if __name__ == "__main__":
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
