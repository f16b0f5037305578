"""CloudWatch back ends: EMF log lines on Lambda, batched PutMetricData elsewhere, GetMetricData to read.

Every event is published under two dimension sets, (Tenant, Model, Version) and
(Tenant, Model), so one model can be charted whole or per version; CloudWatch
matches dimension sets exactly and does not roll them up itself. Latencies go in
as raw values, so CloudWatch itself computes p50/p95/p99.
"""

from __future__ import annotations

import atexit
import json
import logging
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, TextIO

from ..errors import StoreUnavailable
from . import ERROR_TYPES, PHASES, FeedbackEvent, InferenceEvent
from .series import ModelTotals, Series, Totals, empty_series, ratio

log = logging.getLogger("modelbay.metrics")

ERROR_METRIC = {t: "".join(p.title() for p in t.split("_")) + "Errors" for t in ERROR_TYPES}
PHASE_METRIC = {p: p.title() + "Latency" for p in PHASES}
COUNTS = ("Requests", "Instances", "Errors", *ERROR_METRIC.values(), "ColdStarts", "Feedback", "Labelled", "Correct")
MS = "Milliseconds"


def _dims(tenant: str, model: str, version: int | None) -> list[dict[str, str]]:
    d = [{"Name": "Tenant", "Value": tenant}, {"Name": "Model", "Value": model}]
    if version is not None:
        d.append({"Name": "Version", "Value": str(version)})
    return d


def _unavailable(operation: str, exc: Exception) -> StoreUnavailable:
    """The caller learns which call failed and AWS's error code; the message (ARNs, endpoints) goes to the log."""
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
    log.warning("CloudWatch %s failed: %s", operation, exc)
    return StoreUnavailable(f"CloudWatch {operation} failed ({code})", operation=operation)


def event_metrics(event: InferenceEvent) -> list[tuple[str, str, float]]:
    """(name, unit, value) for one inference."""
    out = [
        ("Requests", "Count", 1.0),
        ("Instances", "Count", float(event.instances)),
        ("Errors", "Count", 1.0 if event.error else 0.0),
        ("Latency", MS, event.total_ms),
    ]
    if event.error:
        out.append((ERROR_METRIC[event.error], "Count", 1.0))
    for p in PHASES:
        out.append((PHASE_METRIC[p], MS, getattr(event, f"{p}_ms")))
    out.append(("ColdStarts", "Count", 1.0 if event.cold_start else 0.0))
    if event.load_ms is not None:
        out.append(("ModelLoadTime", MS, event.load_ms))
    return out


def feedback_metrics(event: FeedbackEvent) -> list[tuple[str, str, float]]:
    out = [("Feedback", "Count", 1.0)]
    if event.correct is not None:
        out += [("Labelled", "Count", 1.0), ("Correct", "Count", 1.0 if event.correct else 0.0)]
    if event.score is not None:
        out.append(("FeedbackScore", "None", float(event.score)))
    return out


# ---------------------------------------------------------------- reading
class CloudWatchReader:
    CACHE_SECONDS = 20.0  # data has 1-minute resolution; GetMetricData is billed per metric read

    def __init__(self, namespace: str = "modelbay", client: Any = None) -> None:
        self.namespace = namespace
        self._client = client
        self._cache: dict[tuple, tuple[float, Any]] = {}
        self._cache_lock = threading.Lock()
        self._percentiles_retry_at = 0.0
        self._percentiles_error = ""

    @property
    def client(self):
        if self._client is None:
            import boto3

            self._client = boto3.client("cloudwatch")
        return self._client

    def _cached(self, key: tuple, compute):
        """Dashboards poll every few seconds; answer repeats from memory for CACHE_SECONDS."""
        now = time.monotonic()
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit and hit[0] > now:
                return hit[1]
        value = compute()
        with self._cache_lock:
            if len(self._cache) > 256:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            self._cache[key] = (now + self.CACHE_SECONDS, value)
        return value

    def _query(
        self, queries: list[tuple[str, str, str, list[dict[str, str]]]], start: float, end: float, period: int
    ) -> dict[str, dict[float, float]]:
        """(id, metric, stat, dims) -> id -> {timestamp: value}; missing points are absent."""
        out: dict[str, dict[float, float]] = {q[0]: {} for q in queries}
        body = [
            {
                "Id": qid,
                "ReturnData": True,
                "MetricStat": {
                    "Metric": {"Namespace": self.namespace, "MetricName": metric, "Dimensions": dims},
                    "Period": period,
                    "Stat": stat,
                },
            }
            for qid, metric, stat, dims in queries
        ]
        try:
            for i in range(0, len(body), 500):
                kw: dict[str, Any] = {
                    "MetricDataQueries": body[i : i + 500],
                    "StartTime": datetime.fromtimestamp(start, UTC),
                    "EndTime": datetime.fromtimestamp(end, UTC),
                }
                while True:
                    r = self.client.get_metric_data(**kw)
                    for res in r["MetricDataResults"]:
                        for ts, v in zip(res.get("Timestamps", []), res.get("Values", [])):
                            if v is not None:
                                out[res["Id"]][ts.timestamp()] = v
                    if not r.get("NextToken"):
                        break
                    kw["NextToken"] = r["NextToken"]
        except Exception as e:
            raise _unavailable("GetMetricData", e) from None
        return out

    @staticmethod
    def _plan(dims) -> list[tuple[str, str, str, list[dict[str, str]]]]:
        q = [(f"c{i}", name, "Sum", dims) for i, name in enumerate(COUNTS)]
        q += [
            (f"a{i}", name, "Average", dims)
            for i, name in enumerate(("Latency", *PHASE_METRIC.values(), "ModelLoadTime", "FeedbackScore"))
        ]
        return q

    def _percentiles(
        self, dims, start: float, end: float, period: int, warnings: list[str]
    ) -> dict[str, dict[float, float]]:
        """Percentile statistics in their own call: emulators (moto) reject them, and
        then the counts and means are still worth showing."""
        q = [(f"p{p}", "Latency", f"p{p}", dims) for p in (50, 95, 99)]
        try:
            if time.time() < self._percentiles_retry_at:
                raise RuntimeError(self._percentiles_error)
            return self._query(q, start, end, period)
        except (StoreUnavailable, RuntimeError) as e:
            if time.time() >= self._percentiles_retry_at:
                self._percentiles_retry_at = time.time() + 300  # do not pay the failing call on every read
                self._percentiles_error = str(e).splitlines()[0]
            msg = f"latency percentiles unavailable from this CloudWatch endpoint: {self._percentiles_error}"
            if msg not in warnings:
                warnings.append(msg)
                log.warning(msg)
            return {qid: {} for qid, *_ in q}

    def series(self, tenant: str, model: str, version: int | None, start: float, end: float, step: int) -> Series:
        key = ("series", tenant, model, version, start, end, step)
        return self._cached(key, lambda: self._series(tenant, model, version, start, end, step)).model_copy(deep=True)

    def _series(self, tenant: str, model: str, version: int | None, start: float, end: float, step: int) -> Series:
        dims = _dims(tenant, model, version)
        q = self._plan(dims)
        warnings: list[str] = []
        per_step = self._query(q, start, end, step) | self._percentiles(dims, start, end, step, warnings)
        whole = self._query(q, start, end, int(end - start)) | self._percentiles(
            dims, start, end, int(end - start), warnings
        )
        s = empty_series(model, version, start, end, step)
        s.warnings = warnings
        n = len(s.timestamps)

        def at(qid: str) -> list[float | None]:
            vals: list[float | None] = [None] * n
            for ts, v in per_step[qid].items():
                i = int((ts - start) // step)
                if 0 <= i < n:
                    vals[i] = v
            return vals

        def count(name: str) -> list[int]:
            return [int(v or 0) for v in at(f"c{COUNTS.index(name)}")]

        avg_names = ("Latency", *PHASE_METRIC.values(), "ModelLoadTime", "FeedbackScore")
        s.requests = count("Requests")
        s.instances = count("Instances")
        s.rate_per_s = [r / step for r in s.requests]
        for t in ERROR_TYPES:
            s.errors[t] = count(ERROR_METRIC[t])
        errs = count("Errors")
        s.error_rate = [ratio(e, r) for e, r in zip(errs, s.requests)]
        s.p50_ms, s.p95_ms, s.p99_ms = at("p50"), at("p95"), at("p99")
        s.mean_ms = {"total": at("a0"), **{p: at(f"a{1 + i}") for i, p in enumerate(PHASES)}}
        s.cold_starts = count("ColdStarts")
        s.load_ms = at(f"a{avg_names.index('ModelLoadTime')}")
        s.feedback = count("Feedback")
        labelled, correct = count("Labelled"), count("Correct")
        s.accuracy = [ratio(c, lab) for c, lab in zip(correct, labelled)]
        s.score = at(f"a{avg_names.index('FeedbackScore')}")

        def one(qid: str) -> float | None:
            vals = list(whole[qid].values())
            return vals[0] if vals else None

        def total(name: str) -> int:
            return int(sum(whole[f"c{COUNTS.index(name)}"].values()))

        req = total("Requests")
        s.totals = Totals(
            requests=req,
            instances=total("Instances"),
            errors=total("Errors"),
            errors_by_type={t: total(ERROR_METRIC[t]) for t in ERROR_TYPES},
            error_rate=ratio(total("Errors"), req),
            rate_per_s=req / (end - start),
            p50_ms=one("p50"),
            p95_ms=one("p95"),
            p99_ms=one("p99"),
            mean_ms={"total": one("a0"), **{p: one(f"a{1 + i}") for i, p in enumerate(PHASES)}},
            cold_starts=total("ColdStarts"),
            load_ms=one(f"a{avg_names.index('ModelLoadTime')}"),
            feedback=total("Feedback"),
            accuracy=ratio(total("Correct"), total("Labelled")),
            score=one(f"a{avg_names.index('FeedbackScore')}"),
        )
        return s

    def versions(self, tenant: str, model: str, start: float, end: float) -> list[int]:
        return list(self._cached(("versions", tenant, model), lambda: self._versions(tenant, model)))

    def _versions(self, tenant: str, model: str) -> list[int]:
        found: set[int] = set()
        try:
            pages = self.client.get_paginator("list_metrics").paginate(
                Namespace=self.namespace,
                MetricName="Requests",
                Dimensions=[{"Name": "Tenant", "Value": tenant}, {"Name": "Model", "Value": model}],
            )
            for page in pages:
                for m in page["Metrics"]:
                    for d in m.get("Dimensions", []):
                        if d["Name"] == "Version" and d["Value"].isdigit():
                            found.add(int(d["Value"]))
        except Exception as e:
            raise _unavailable("ListMetrics", e) from None
        return sorted(found)

    def overview(self, tenant: str, models: list[str], start: float, end: float) -> dict[str, ModelTotals]:
        key = ("overview", tenant, tuple(models), start, end)
        return dict(self._cached(key, lambda: self._overview(tenant, models, start, end)))

    def _overview(self, tenant: str, models: list[str], start: float, end: float) -> dict[str, ModelTotals]:
        q = []
        for i, m in enumerate(models):
            dims = _dims(tenant, m, None)
            q += [(f"r{i}", "Requests", "Sum", dims), (f"e{i}", "Errors", "Sum", dims)]
        data = self._query(q, start, end, int(end - start)) if q else {}
        warnings: list[str] = []
        for i, m in enumerate(models):
            data[f"p{i}"] = self._percentiles(_dims(tenant, m, None), start, end, int(end - start), warnings)["p95"]
        out = {}
        for i, m in enumerate(models):
            req = int(sum(data[f"r{i}"].values()))
            err = int(sum(data[f"e{i}"].values()))
            p95 = list(data[f"p{i}"].values())
            out[m] = ModelTotals(
                requests=req,
                errors=err,
                error_rate=ratio(err, req),
                rate_per_s=req / (end - start),
                p95_ms=p95[0] if p95 else None,
            )
        return out


# ---------------------------------------------------------------- writing
class _CloudWatchBacked:
    def __init__(self, namespace: str, default_tenant: str, reader: CloudWatchReader | None) -> None:
        self.namespace = namespace
        self.default_tenant = default_tenant
        self.reader = reader or CloudWatchReader(namespace)

    def series(self, *a, **kw) -> Series:
        return self.reader.series(*a, **kw)

    def versions(self, *a, **kw) -> list[int]:
        return self.reader.versions(*a, **kw)

    def overview(self, *a, **kw) -> dict[str, ModelTotals]:
        return self.reader.overview(*a, **kw)


EMF_MAX_METRICS = 100  # per document


def emf_document(
    namespace: str,
    dimensions: dict[str, str],
    dimension_sets: list[list[str]],
    metrics: list[tuple[str, str, float]],
    timestamp_ms: int,
) -> dict[str, Any]:
    """One document of the published CloudWatch Embedded Metric Format.

    The metadata (``_aws``: Timestamp and one MetricDirective) names the
    dimension sets and the metrics; their values are the document's root
    members. Built here from the specification, not from a library's internals,
    so nothing else (a POWERTOOLS_SERVICE_NAME, say) can add a dimension.
    """
    if len(metrics) > EMF_MAX_METRICS:
        raise ValueError(f"an EMF document holds at most {EMF_MAX_METRICS} metrics, not {len(metrics)}")
    return {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": dimension_sets,
                    "Metrics": [{"Name": name, "Unit": unit, "StorageResolution": 60} for name, unit, _ in metrics],
                }
            ],
        },
        **dimensions,
        **{name: value for name, _, value in metrics},
    }


class EmfSink(_CloudWatchBacked):
    """One EMF JSON line on stdout per event: Lambda ships it to CloudWatch Logs, which makes the metrics."""

    def __init__(
        self,
        namespace: str = "modelbay",
        default_tenant: str = "default",
        reader: CloudWatchReader | None = None,
        stream: TextIO | None = None,
    ) -> None:
        super().__init__(namespace, default_tenant, reader)
        self.stream = stream

    def _emit(
        self, tenant: str | None, model: str, version: int | None, ts: float, metrics: list[tuple[str, str, float]]
    ) -> None:
        dims = {"Tenant": tenant or self.default_tenant, "Model": model}
        sets = [["Tenant", "Model"]]
        if version is not None:
            dims["Version"] = str(version)
            sets = [["Tenant", "Model", "Version"], ["Tenant", "Model"]]
        doc = emf_document(self.namespace, dims, sets, metrics, int(ts * 1000))
        stream = self.stream or sys.stdout
        stream.write(json.dumps(doc, separators=(",", ":")) + "\n")
        stream.flush()

    def record(self, event: InferenceEvent) -> None:
        try:
            self._emit(event.tenant, event.model, event.version, event.timestamp or time.time(), event_metrics(event))
        except Exception:  # metrics must never fail a prediction
            log.exception("EMF metrics for %s failed", event.model)

    def record_feedback(self, event: FeedbackEvent) -> None:
        self._emit(event.tenant, event.model, event.version, event.timestamp or time.time(), feedback_metrics(event))

    def flush(self) -> None:
        return None


class PutMetricDataSink(_CloudWatchBacked):
    """Buffers events in memory; a background thread sends them as a few PutMetricData calls.

    Events in the same minute and dimensions are merged: counts summed, latencies
    as Values/Counts so CloudWatch can still compute percentiles.
    """

    MAX_DATUMS = 500  # per call; CloudWatch accepts 1000 and 1 MB
    MAX_VALUES = 150  # distinct values per datum

    def __init__(
        self,
        namespace: str = "modelbay",
        default_tenant: str = "default",
        reader: CloudWatchReader | None = None,
        interval_s: float = 10.0,
        client: Any = None,
    ) -> None:
        super().__init__(namespace, default_tenant, reader)
        self._client = client
        self._lock = threading.Lock()
        self._pending: list[tuple[str, str, int | None, float, list[tuple[str, str, float]]]] = []
        self.interval_s = interval_s
        self._thread: threading.Thread | None = None

    @property
    def client(self):
        if self._client is None:
            import boto3

            self._client = boto3.client("cloudwatch")
        return self._client

    def _start(self) -> None:
        if self._thread is None and self.interval_s > 0:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="modelbay-metrics")
            self._thread.start()
            atexit.register(self._flush_at_exit)  # only a sink with pending work holds on to the process

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval_s)
            try:
                self.flush()
            except Exception:
                log.exception("PutMetricData failed; the batch is dropped")

    def _add(self, tenant, model, version, ts, metrics) -> None:
        with self._lock:
            self._pending.append((tenant or self.default_tenant, model, version, ts or time.time(), metrics))
            self._start()

    def record(self, event: InferenceEvent) -> None:
        self._add(event.tenant, event.model, event.version, event.timestamp, event_metrics(event))

    def record_feedback(self, event: FeedbackEvent) -> None:
        self._add(event.tenant, event.model, event.version, event.timestamp, feedback_metrics(event))

    def _flush_at_exit(self) -> None:
        try:
            self.flush()
        except Exception as e:
            log.warning("final PutMetricData flush failed: %s", e)

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        # (dims, minute, metric, unit) -> value -> count
        merged: dict[tuple, dict[float, float]] = defaultdict(lambda: defaultdict(float))
        for tenant, model, version, ts, metrics in pending:
            minute = int(ts // 60) * 60
            dim_sets = [(tenant, model, None)] + ([(tenant, model, version)] if version is not None else [])
            for dims in dim_sets:
                for name, unit, value in metrics:
                    if unit == "Count":
                        merged[(dims, minute, name, unit)][0.0] += value  # summed below
                    else:
                        merged[(dims, minute, name, unit)][round(value, 3)] += 1
        datums = []
        for (dims, minute, name, unit), values in merged.items():
            base = {
                "MetricName": name,
                "Dimensions": _dims(*dims),
                "Unit": unit,
                "Timestamp": datetime.fromtimestamp(minute, UTC),
            }
            if unit == "Count":
                datums.append({**base, "Value": values[0.0]})
                continue
            items = sorted(values.items())
            for i in range(0, len(items), self.MAX_VALUES):
                chunk = items[i : i + self.MAX_VALUES]
                datums.append({**base, "Values": [v for v, _ in chunk], "Counts": [c for _, c in chunk]})
        for i in range(0, len(datums), self.MAX_DATUMS):
            self.client.put_metric_data(Namespace=self.namespace, MetricData=datums[i : i + self.MAX_DATUMS])
