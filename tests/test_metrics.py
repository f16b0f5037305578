"""Metrics back ends: the in-process store, CloudWatch (moto's server) through PutMetricData and EMF."""

from __future__ import annotations

import io
import json
import random
from datetime import UTC, datetime

import pytest

from modelbay.metrics import FeedbackEvent, InferenceEvent
from modelbay.metrics.cloudwatch import CloudWatchReader, EmfSink, PutMetricDataSink
from modelbay.metrics.memory import MemoryMetrics
from modelbay.metrics.series import plan

NOW = 1_790_000_000.0  # a fixed instant, so windows and buckets are deterministic


def _events(model="m", version=1, n=100, ts=NOW, error_every=10):
    """Latencies 1..n ms in shuffled order; every ``error_every``-th request a timeout."""
    lat = list(range(1, n + 1))
    random.Random(7).shuffle(lat)
    return [
        InferenceEvent(
            model,
            version,
            instances=2,
            total_ms=float(x),
            fetch_ms=0.5,
            preprocess_ms=1.0,
            inference_ms=x / 2,
            postprocess_ms=0.25,
            timestamp=ts - 30,
            error="timeout" if i % error_every == 0 else None,
            cold_start=i == 0,
            load_ms=120.0 if i == 0 else None,
        )
        for i, x in enumerate(lat)
    ]


def test_memory_percentiles_over_known_latencies():
    mm = MemoryMetrics(clock=lambda: NOW)
    for e in _events(n=1000):
        mm.record(e)
    start, end, step = plan("15m", now=NOW)
    s = mm.series("default", "m", None, start, end, step)
    t = s.totals
    # nearest rank over 1..1000 ms: 500, 950, 990; the histogram keeps them within 1%
    assert t.p50_ms == pytest.approx(500, rel=0.01)
    assert t.p95_ms == pytest.approx(950, rel=0.01)
    assert t.p99_ms == pytest.approx(990, rel=0.01)
    assert (t.requests, t.instances, t.errors, t.errors_by_type["timeout"]) == (1000, 2000, 100, 100)
    assert t.error_rate == pytest.approx(0.1)
    assert t.mean_ms["total"] == pytest.approx(500.5)
    assert t.mean_ms["inference"] == pytest.approx(250.25)
    assert t.mean_ms["fetch"] == pytest.approx(0.5)
    assert (t.cold_starts, t.load_ms) == (1, 120.0)
    # all in the last full minute: one non-empty step, with the same numbers
    i = s.timestamps.index((NOW - 30) // 60 * 60)
    assert s.requests[i] == 1000 and s.rate_per_s[i] == pytest.approx(1000 / 60)
    assert s.p95_ms[i] == pytest.approx(950, rel=0.01)
    assert sum(s.requests) == 1000


def test_memory_versions_side_by_side_and_feedback_accuracy():
    mm = MemoryMetrics(clock=lambda: NOW)
    for e in _events(version=3, n=50) + _events(version=4, n=20, error_every=2):
        mm.record(e)
    mm.record(InferenceEvent("m", None, error="not_found", timestamp=NOW - 10))
    for i in range(10):
        mm.record_feedback(FeedbackEvent("m", 3, correct=i < 9, timestamp=NOW - 5))
        mm.record_feedback(FeedbackEvent("m", 4, correct=i < 6, score=0.5, timestamp=NOW - 5))
    start, end, step = plan("1h", now=NOW)
    assert mm.versions("default", "m", start, end) == [3, 4]
    v3, v4 = (mm.series("default", "m", v, start, end, step) for v in (3, 4))
    whole = mm.series("default", "m", None, start, end, step)
    assert (v3.totals.requests, v4.totals.requests, whole.totals.requests) == (50, 20, 71)
    assert v3.totals.accuracy == pytest.approx(0.9) and v4.totals.accuracy == pytest.approx(0.6)
    assert v4.totals.score == pytest.approx(0.5) and v3.totals.score is None
    assert whole.totals.errors_by_type["not_found"] == 1
    assert v4.totals.error_rate == pytest.approx(0.5)
    over = mm.overview("default", ["m", "other"], start, end)
    assert over["m"].requests == 71 and over["other"].requests == 0 and over["other"].error_rate is None
    # another tenant sees nothing
    assert mm.series("acme", "m", None, start, end, step).totals.requests == 0


def test_memory_keeps_24h_at_minute_resolution_then_forgets():
    now = [NOW]
    mm = MemoryMetrics(clock=lambda: now[0])
    mm.record(InferenceEvent("m", 1, total_ms=5.0, timestamp=NOW - 23.5 * 3600))
    mm.record(InferenceEvent("m", 1, total_ms=5.0, timestamp=NOW))
    start, end, step = plan("24h", step="1m", now=NOW)
    s = mm.series("default", "m", 1, start, end, step)
    assert len(s.timestamps) == 1440 and step == 60 and s.totals.requests == 2
    now[0] = NOW + 3600  # an hour later the 23.5 h old minute has aged out
    mm.record(InferenceEvent("m", 1, total_ms=5.0))
    start, end, step = plan("24h", now=now[0])
    assert mm.series("default", "m", 1, start, end, step).totals.requests == 2


@pytest.mark.parametrize("window,step", [("2d", None), ("1h", "30s"), ("bogus", None), ("24h", "1m0")])
def test_plan_refuses_bad_windows(window, step):
    from modelbay.errors import BadRequest

    with pytest.raises(BadRequest):
        plan(window, step, now=NOW)


def _recent_ts() -> float:
    # CloudWatch (and moto) only keep recent data points; use the real clock
    import time

    return time.time()


def test_cloudwatch_putmetricdata_round_trip(s3_endpoint):
    now = _recent_ts()
    reader = CloudWatchReader(namespace=f"mb-test-{int(now)}")
    sink = PutMetricDataSink(namespace=reader.namespace, reader=reader, interval_s=0)
    for e in _events(version=1, n=40, ts=now) + _events(version=2, n=10, ts=now, error_every=5):
        sink.record(e)
    sink.record_feedback(FeedbackEvent("m", 2, correct=True, timestamp=now))
    sink.record_feedback(FeedbackEvent("m", 2, correct=False, timestamp=now))
    sink.flush()
    start, end, step = plan("15m", now=now)
    whole = sink.series("default", "m", None, start, end, step)
    t = whole.totals
    assert (t.requests, t.instances, t.errors) == (50, 100, 6)
    assert t.errors_by_type == {
        "bad_request": 0,
        "not_found": 0,
        "load_failure": 0,
        "inference_failed": 0,
        "internal": 0,
        "timeout": 6,
    }
    assert t.mean_ms["total"] == pytest.approx((sum(range(1, 41)) + sum(range(1, 11))) / 50)
    assert t.cold_starts == 2 and t.load_ms == pytest.approx(120.0)
    assert sum(whole.requests) == 50
    v2 = sink.series("default", "m", 2, start, end, step)
    assert v2.totals.requests == 10 and v2.totals.accuracy == pytest.approx(0.5)
    assert sink.versions("default", "m", start, end) == [1, 2]
    assert sink.overview("default", ["m"], start, end)["m"].requests == 50
    # moto stores raw values but refuses percentile statistics: we say so instead of failing
    assert whole.totals.p95_ms is None and any("percentiles" in w for w in whole.warnings)


def _ingest_emf(line: str, cw) -> None:
    """What CloudWatch Logs does with an EMF line: one PutMetricData per dimension set."""
    blob = json.loads(line)
    meta = blob["_aws"]["CloudWatchMetrics"][0]
    ts = datetime.fromtimestamp(blob["_aws"]["Timestamp"] / 1000, UTC)
    for dim_names in meta["Dimensions"]:
        dims = [{"Name": d, "Value": blob[d]} for d in dim_names]
        data = []
        for m in meta["Metrics"]:
            v = blob[m["Name"]]
            values = v if isinstance(v, list) else [v]
            data.append(
                {"MetricName": m["Name"], "Dimensions": dims, "Unit": m["Unit"], "Timestamp": ts, "Values": values}
            )
        cw.put_metric_data(Namespace=meta["Namespace"], MetricData=data)


def test_emf_lines_carry_both_dimension_sets_and_read_back(s3_endpoint, monkeypatch):
    import boto3

    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "would-add-a-dimension")
    now = _recent_ts()
    out = io.StringIO()
    sink = EmfSink(namespace=f"mb-emf-{int(now)}", stream=out, default_tenant="acme")
    for e in _events(version=7, n=20, ts=now):
        sink.record(e)
    sink.record(InferenceEvent("m", None, error="bad_request", total_ms=1.0, timestamp=now))
    lines = out.getvalue().splitlines()
    assert len(lines) == 21  # one line per request, no network call
    first = json.loads(lines[0])
    assert first["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Tenant", "Model", "Version"], ["Tenant", "Model"]]
    assert (first["Tenant"], first["Model"], first["Version"]) == ("acme", "m", "7")
    assert "service" not in first
    cw = boto3.client("cloudwatch")
    for line in lines:
        _ingest_emf(line, cw)
    start, end, step = plan("15m", now=now)
    t = sink.series("acme", "m", None, start, end, step).totals
    assert (t.requests, t.errors, t.errors_by_type["bad_request"], t.errors_by_type["timeout"]) == (21, 3, 1, 2)
    assert sink.series("acme", "m", 7, start, end, step).totals.requests == 20


# The CloudWatch Embedded Metric Format specification (docs.aws.amazon.com, "Specification: Embedded
# metric format"): the units a MetricDefinition may name, and the members each object may hold.
SPEC_UNITS = {
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
}


def assert_emf_spec(doc: dict) -> None:
    """A document CloudWatch Logs will turn into metrics, checked member by member against the spec."""
    meta = doc["_aws"]
    assert set(meta) <= {"Timestamp", "CloudWatchMetrics"} and isinstance(meta["Timestamp"], int)
    assert meta["CloudWatchMetrics"], "at least one MetricDirective"
    for directive in meta["CloudWatchMetrics"]:
        assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
        assert isinstance(directive["Namespace"], str) and 1 <= len(directive["Namespace"]) <= 1024
        for dim_set in directive["Dimensions"]:
            assert 1 <= len(dim_set) <= 30
            for d in dim_set:  # a dimension is a root member holding a string
                assert isinstance(doc[d], str) and doc[d], d
        assert 1 <= len(directive["Metrics"]) <= 100
        for m in directive["Metrics"]:
            assert set(m) <= {"Name", "Unit", "StorageResolution"}
            assert m.get("Unit", "None") in SPEC_UNITS and m.get("StorageResolution", 60) in (1, 60)
            value = doc[m["Name"]]  # a metric is a root member holding a number (or up to 100 of them)
            values = value if isinstance(value, list) else [value]
            assert 1 <= len(values) <= 100 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
            ), m["Name"]


def test_emf_line_follows_the_published_spec_and_leaves_powertools_alone(tmp_path):
    """The line is written from the specification: it needs no Powertools module, adds no ``service``
    dimension and leaves POWERTOOLS_SERVICE_NAME to whoever else uses Powertools in the function."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = """
import importlib.abc, io, json, os, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "aws_lambda_powertools":
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
from modelbay.metrics import InferenceEvent
from modelbay.metrics.cloudwatch import EmfSink
out = io.StringIO()
sink = EmfSink(namespace="mb-spec", stream=out, default_tenant="acme")
sink.record(InferenceEvent("m", 3, instances=2, error="load_failure", total_ms=12.5, cold_start=True,
                           load_ms=40.0, timestamp=1790000000.25))
sink.record(InferenceEvent("m", None, error="bad_request", total_ms=1.0, timestamp=1790000001.0))
print(json.dumps({"lines": out.getvalue().splitlines(), "service": os.environ.get("POWERTOOLS_SERVICE_NAME")}))
"""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "POWERTOOLS_SERVICE_NAME": "checkout", "PYTHONPATH": str(root / "shared")}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout)
    assert got["service"] == "checkout" and len(got["lines"]) == 2
    docs = [json.loads(line) for line in got["lines"]]
    for doc in docs:
        assert_emf_spec(doc)
        assert "service" not in doc and doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "mb-spec"
    versioned, unresolved = docs
    assert versioned["_aws"]["Timestamp"] == 1790000000250
    assert versioned["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
        ["Tenant", "Model", "Version"],
        ["Tenant", "Model"],
    ]
    assert (versioned["Tenant"], versioned["Model"], versioned["Version"]) == ("acme", "m", "3")
    assert (versioned["Requests"], versioned["Errors"], versioned["LoadFailureErrors"]) == (1, 1, 1)
    assert (versioned["Latency"], versioned["ModelLoadTime"], versioned["ColdStarts"]) == (12.5, 40.0, 1)
    units = {m["Name"]: m["Unit"] for m in versioned["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units["Latency"] == "Milliseconds" and units["Requests"] == "Count"
    # a request that failed before resolving a version is published under (Tenant, Model) only
    assert unresolved["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Tenant", "Model"]]
    assert "Version" not in unresolved and unresolved["BadRequestErrors"] == 1


def test_powertools_metrics_keep_their_service_after_the_emf_sink_ran(monkeypatch, capsys):
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "checkout")
    EmfSink(stream=io.StringIO()).record(InferenceEvent("m", 1, total_ms=1.0))
    theirs = Metrics(namespace="their-app")
    theirs.add_metric(name="Orders", unit=MetricUnit.Count, value=1)
    theirs.flush_metrics()
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["service"] == "checkout" and ["service"] in line["_aws"]["CloudWatchMetrics"][0]["Dimensions"]


def test_the_running_minute_is_rated_over_its_elapsed_seconds():
    from modelbay.metrics.series import settle_rates

    mm = MemoryMetrics(clock=lambda: NOW)
    minute = NOW // 60 * 60
    for i in range(30):
        mm.record(InferenceEvent("m", 1, 1, total_ms=1.0, timestamp=minute + 1 + i * 0.3))  # 30 in 10 s
    mm.record(InferenceEvent("m", 1, 1, total_ms=1.0, timestamp=minute - 30))
    now = minute + 10
    start, end, step = plan("5m", now=now)
    s = settle_rates(mm.series("default", "m", None, start, end, step), now)
    assert s.rate_per_s[-1] == pytest.approx(3.0)  # 30 requests over the 10 s so far, not over 60
    assert s.rate_per_s[-2] == pytest.approx(1 / 60)
    assert s.totals.rate_per_s == pytest.approx(31 / (now - start))


def test_cloudwatch_failures_name_the_call_not_the_endpoint():
    """A 503 from the metrics back end says which call failed and AWS's error code; endpoints and ARNs
    in botocore's message stay in the server log."""
    import boto3
    from botocore.config import Config

    from modelbay.errors import StoreUnavailable

    client = boto3.client(
        "cloudwatch",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )
    reader = CloudWatchReader(client=client)
    with pytest.raises(StoreUnavailable) as e:
        reader.versions("default", "m", NOW - 60, NOW)
    assert e.value.to_body() == {
        "error": "CloudWatch ListMetrics failed (EndpointConnectionError)",
        "code": "store_unavailable",
        "operation": "ListMetrics",
    }
