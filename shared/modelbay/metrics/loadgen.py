"""A load generator for any modelbay server: paced, concurrent predict calls with a client-side report.

Inputs are synthesised from the version's manifest (the same rules the TUI's
playground uses), so ``modelbay bench-load iris:production`` needs nothing else.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self

from ..errors import BadRequest, ModelbayError
from ..manifest import Manifest
from ..schemas import Resolution
from .histogram import bucket_of, percentiles


class PredictClient(Protocol):
    """What the load generator needs of ``modelbay.client.Client``."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def resolve(self, name: str, ref: str | int | None = None) -> Resolution: ...

    def predict(
        self,
        name: str,
        ref: str | int | None = None,
        instances: list[Any] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> Any: ...


_LOREM = (
    "the model answers quickly",
    "a terrible slow day",
    "what a wonderful result",
    "the service is down again",
    "fast and accurate predictions",
    "nothing works and I am upset",
)


def sample_instance(m: Manifest, rng: random.Random) -> Any:
    """One plausible instance for a version: text, an 8x8-style image, a row, or a raw tensor."""
    pre = m.preprocessing
    if pre is not None:
        if pre.kind in ("text", "string"):
            return rng.choice(_LOREM)
        if pre.kind == "image":
            img = [[rng.randint(0, int(pre.max_value)) for _ in range(pre.width)] for _ in range(pre.height)]
            return img if pre.channels == 1 else [[[v] * 3 for v in row] for row in img]
        if pre.kind == "tabular":
            if pre.columns:
                return {c: round(rng.uniform(0, 8), 3) for c in pre.columns}
            spec = next((i for i in m.inputs if i.name == pre.input), m.inputs[0])
            return _tensor(spec.shape[1:], "float32", rng)
    spec = m.inputs[0]
    return _tensor(spec.shape[1:], spec.dtype, rng)


def _tensor(shape: list, dtype: str, rng: random.Random) -> Any:
    if not shape:
        if dtype == "string":
            return rng.choice(_LOREM)
        if dtype.startswith(("int", "uint")):
            return rng.randint(0, 9)
        if dtype == "bool":
            return rng.random() < 0.5
        return round(rng.uniform(-1, 1), 4)
    n = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else 1
    return [_tensor(shape[1:], dtype, rng) for _ in range(n)]


@dataclass
class LoadReport:
    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # error code -> count
    elapsed_s: float = 0.0
    hist: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s else 0.0

    def latency(self) -> dict[str, float | None]:
        p50, p95, p99 = percentiles(self.hist, (50, 95, 99))
        return {"p50_ms": p50, "p95_ms": p95, "p99_ms": p99}

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "ok": self.ok,
            "errors": dict(self.errors),
            "elapsed_s": round(self.elapsed_s, 3),
            "rate_per_s": round(self.rate, 2),
            **self.latency(),
        }


def run_load(
    client_factory: Callable[[], PredictClient],
    name: str,
    ref: str | int | None,
    *,
    rate: float = 10.0,
    duration_s: float = 10.0,
    concurrency: int = 4,
    batch: int = 1,
    bad_fraction: float = 0.0,
    instances: list[Any] | None = None,
    seed: int = 0,
    stop: threading.Event | None = None,
    on_tick: Callable[[LoadReport], None] | None = None,
) -> LoadReport:
    """Send ``rate`` requests/s for ``duration_s`` from ``concurrency`` threads (rate <= 0: as fast as possible).

    ``bad_fraction`` of the requests are deliberately malformed, so error charts have something to show.
    """
    with client_factory() as c:
        manifest = c.resolve(name, ref).manifest  # what the server serves for this ref, by its rule
    if manifest is None:
        raise BadRequest(f"the server did not say what {name} stands for")
    rng = random.Random(seed)
    pool = instances or [sample_instance(manifest, rng) for _ in range(64)]
    report = LoadReport()
    lock = threading.Lock()
    stop = stop or threading.Event()
    start = time.perf_counter()
    deadline = start + duration_s
    interval = 1.0 / rate if rate > 0 else 0.0
    # paced: exactly rate x duration requests at start + k/rate (k counted, not summed: no float drift)
    budget = round(rate * duration_s) if rate > 0 else None
    issued = [0]

    def slot() -> float | None:
        with lock:
            k = issued[0]
            t = start + k * interval
            if (
                stop.is_set()
                or (budget is not None and k >= budget)
                or (budget is None and time.perf_counter() >= deadline)
            ):
                return None
            issued[0] = k + 1
            return t

    def worker(k: int) -> None:
        wrng = random.Random(seed * 1000 + k)
        with client_factory() as c:
            while (t := slot()) is not None:
                delay = t - time.perf_counter()
                if delay > 0 and stop.wait(delay):
                    return
                bad = wrng.random() < bad_fraction
                body = [{"not": "an instance"}] * batch if bad else [wrng.choice(pool) for _ in range(batch)]
                t0 = time.perf_counter()
                code = None
                try:
                    c.predict(name, ref, body)
                except ModelbayError as e:
                    code = e.code
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    report.sent += 1
                    if code is None:
                        report.ok += 1
                    else:
                        report.errors[code] = report.errors.get(code, 0) + 1
                    b = bucket_of(ms)
                    report.hist[b] = report.hist.get(b, 0) + 1
                    report.elapsed_s = time.perf_counter() - start

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(max(1, concurrency))]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(timeout=1.0)
        if on_tick:
            with lock:
                report.elapsed_s = time.perf_counter() - start
            on_tick(report)
    report.elapsed_s = time.perf_counter() - start
    return report
