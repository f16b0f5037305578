"""Size and latency of an ONNX model, measured the way serving will run it."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from modelbay.convert.data import Feed


def batch_of(feed: Feed, n: int) -> Feed:
    """``n`` rows from ``feed``, repeating rows when it has fewer."""
    rows = len(next(iter(feed.values())))
    idx = np.arange(n) % rows
    return {k: v[idx] for k, v in feed.items()}


def latency_ms(path: Path, feed: Feed, repeats: int = 10, threads: int | None = None) -> float:
    """Median wall time of one run after a warm-up (median: other tenants share the CPU)."""
    from modelbay.convert.converter import session

    s = session(path, threads=threads)
    names = [i.name for i in s.get_inputs()]
    f = {n: feed[n] for n in names}
    s.run(None, f)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        s.run(None, f)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000.0)


def profile(path: Path, feed: Feed, batches: tuple[int, ...] = (1, 32), repeats: int = 10) -> dict:
    return {
        "size_bytes": Path(path).stat().st_size,
        "latency_ms": {f"b{b}": round(latency_ms(path, batch_of(feed, b), repeats), 3) for b in batches},
    }
