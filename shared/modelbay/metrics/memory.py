"""The local server's metrics: per (tenant, model, version, minute) buckets in memory.

``record`` is a dict lookup and a few additions under one lock, no I/O. Buckets
older than the retention (24 h by default) are dropped once a minute.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from . import ERROR_TYPES, PHASES, FeedbackEvent, InferenceEvent
from .histogram import bucket_of, merge, percentiles
from .series import ModelTotals, Series, Totals, empty_series, ratio


class Bucket:
    __slots__ = (
        "cold_starts",
        "correct",
        "errors",
        "feedback",
        "hist",
        "instances",
        "labelled",
        "load_ms",
        "loads",
        "requests",
        "score_sum",
        "scored",
        "sum_ms",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.instances = 0
        self.errors: dict[str, int] = {}
        self.sum_ms = {"total": 0.0, **{p: 0.0 for p in PHASES}}
        self.hist: dict[int, int] = {}
        self.cold_starts = 0
        self.load_ms = 0.0
        self.loads = 0
        self.feedback = 0
        self.labelled = 0
        self.correct = 0
        self.scored = 0
        self.score_sum = 0.0

    def add(self, other: Bucket) -> None:
        self.requests += other.requests
        self.instances += other.instances
        for k, n in other.errors.items():
            self.errors[k] = self.errors.get(k, 0) + n
        for k, v in other.sum_ms.items():
            self.sum_ms[k] += v
        merge(self.hist, other.hist)
        self.cold_starts += other.cold_starts
        self.load_ms += other.load_ms
        self.loads += other.loads
        self.feedback += other.feedback
        self.labelled += other.labelled
        self.correct += other.correct
        self.scored += other.scored
        self.score_sum += other.score_sum


Key = tuple[str, str, "int | None", int]


class MemoryMetrics:
    def __init__(self, retention_s: float = 24 * 3600, default_tenant: str = "default", clock=time.time) -> None:
        self.retention_s = retention_s
        self.default_tenant = default_tenant
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[Key, Bucket] = {}
        self._pruned_minute = 0

    # ------------------------------------------------------------ writing
    def _bucket(self, tenant: str | None, model: str, version: int | None, ts: float) -> Bucket:
        minute = int(ts // 60)
        if minute > self._pruned_minute:  # once per minute of real time, not per late event
            self._prune(minute)
        key = (tenant or self.default_tenant, model, version, minute)
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = Bucket()
        return b

    def _prune(self, minute: int) -> None:
        self._pruned_minute = minute
        oldest = minute - int(self.retention_s // 60)
        for key in [k for k in self._buckets if k[3] < oldest]:
            del self._buckets[key]

    def record(self, event: InferenceEvent) -> None:
        ts = event.timestamp or self.clock()
        with self._lock:
            b = self._bucket(event.tenant, event.model, event.version, ts)
            b.requests += 1
            b.instances += event.instances
            if event.error:
                b.errors[event.error] = b.errors.get(event.error, 0) + 1
            s = b.sum_ms
            s["total"] += event.total_ms
            s["fetch"] += event.fetch_ms
            s["preprocess"] += event.preprocess_ms
            s["inference"] += event.inference_ms
            s["postprocess"] += event.postprocess_ms
            k = bucket_of(event.total_ms)
            b.hist[k] = b.hist.get(k, 0) + 1
            if event.cold_start:
                b.cold_starts += 1
            if event.load_ms is not None:
                b.load_ms += event.load_ms
                b.loads += 1

    def record_feedback(self, event: FeedbackEvent) -> None:
        ts = event.timestamp or self.clock()
        with self._lock:
            b = self._bucket(event.tenant, event.model, event.version, ts)
            b.feedback += 1
            if event.correct is not None:
                b.labelled += 1
                b.correct += int(event.correct)
            if event.score is not None:
                b.scored += 1
                b.score_sum += event.score

    def flush(self) -> None:
        return None

    # ------------------------------------------------------------ reading
    def _collect(
        self, tenant: str, model: str, version: int | None, start: float, end: float, step: int
    ) -> dict[int, Bucket]:
        """Step index -> summed bucket, for the matching keys (all versions when version is None)."""
        lo, hi = int(start // 60), int(end // 60)
        out: dict[int, Bucket] = defaultdict(Bucket)
        with self._lock:
            for (t, m, v, minute), b in self._buckets.items():
                if t != tenant or m != model or not lo <= minute < hi:
                    continue
                if version is not None and v != version:
                    continue
                out[int((minute * 60 - start) // step)].add(b)
        return out

    def series(self, tenant: str, model: str, version: int | None, start: float, end: float, step: int) -> Series:
        s = empty_series(model, version, start, end, step)
        steps = self._collect(tenant, model, version, start, end, step)
        total = Bucket()
        for i, b in steps.items():
            total.add(b)
            _fill(s, i, b, step)
        s.totals = _totals(total, end - start)
        return s

    def versions(self, tenant: str, model: str, start: float, end: float) -> list[int]:
        lo, hi = int(start // 60), int(end // 60)
        with self._lock:
            found = {
                v
                for (t, m, v, minute) in self._buckets
                if t == tenant and m == model and v is not None and lo <= minute < hi
            }
        return sorted(found)

    def overview(self, tenant: str, models: list[str], start: float, end: float) -> dict[str, ModelTotals]:
        lo, hi = int(start // 60), int(end // 60)
        wanted = set(models)
        acc: dict[str, Bucket] = {m: Bucket() for m in models}
        with self._lock:
            for (t, m, _v, minute), b in self._buckets.items():
                if t == tenant and m in wanted and lo <= minute < hi:
                    acc[m].add(b)
        out = {}
        for m, b in acc.items():
            errors = sum(b.errors.values())
            p95 = percentiles(b.hist, [95])[0]
            out[m] = ModelTotals(
                requests=b.requests,
                errors=errors,
                error_rate=ratio(errors, b.requests),
                rate_per_s=b.requests / (end - start),
                p95_ms=p95,
            )
        return out


def _fill(s: Series, i: int, b: Bucket, step: int) -> None:
    if not 0 <= i < len(s.timestamps):
        return
    s.requests[i] = b.requests
    s.instances[i] = b.instances
    s.rate_per_s[i] = b.requests / step
    errors = 0
    for t in ERROR_TYPES:
        n = b.errors.get(t, 0)
        s.errors[t][i] = n
        errors += n
    s.error_rate[i] = ratio(errors, b.requests)
    s.p50_ms[i], s.p95_ms[i], s.p99_ms[i] = percentiles(b.hist, (50, 95, 99))
    for k, v in b.sum_ms.items():
        s.mean_ms[k][i] = ratio(v, b.requests)
    s.cold_starts[i] = b.cold_starts
    s.load_ms[i] = ratio(b.load_ms, b.loads)
    s.feedback[i] = b.feedback
    s.accuracy[i] = ratio(b.correct, b.labelled)
    s.score[i] = ratio(b.score_sum, b.scored)


def _totals(b: Bucket, span: float) -> Totals:
    errors = sum(b.errors.values())
    p50, p95, p99 = percentiles(b.hist, (50, 95, 99))
    return Totals(
        requests=b.requests,
        instances=b.instances,
        errors=errors,
        errors_by_type={t: b.errors.get(t, 0) for t in ERROR_TYPES},
        error_rate=ratio(errors, b.requests),
        rate_per_s=b.requests / span if span else 0.0,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        mean_ms={k: ratio(v, b.requests) for k, v in b.sum_ms.items()},
        cold_starts=b.cold_starts,
        load_ms=ratio(b.load_ms, b.loads),
        feedback=b.feedback,
        accuracy=ratio(b.correct, b.labelled),
        score=ratio(b.score_sum, b.scored),
    )
