"""bench-load against a real server: the traffic it sends is what the metrics endpoint reports."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from modelbay.cli import app
from modelbay.client import Client
from modelbay.manifest import TabularPreprocessing, VersionMetadata
from modelbay.metrics.loadgen import sample_instance


@pytest.fixture
def served(tmp_path, mlp_path):
    from modelbay.api.app import create_app
    from modelbay.settings import Settings
    from modelbay.storage.local import LocalStore
    from tests.servers import running_keyed as running

    store = LocalStore(tmp_path / "store")
    with (
        running(create_app(Settings(store_url=store.url, cache_dir=tmp_path / "cache"), store=store)) as url,
        Client(url) as c,
    ):
        c.push(mlp_path, "iris", aliases=["production"])
        c.push(
            mlp_path,
            "iris",
            VersionMetadata(preprocessing=TabularPreprocessing(input="x", columns=["a", "b", "c", "d"])),
        )
        yield url, c


def test_bench_load_traffic_shows_up_in_metrics(served):
    url, c = served
    r = CliRunner().invoke(
        app,
        [
            "--url",
            url,
            "--json",
            "bench-load",
            "iris:production",
            "--rate",
            "40",
            "--duration",
            "1.5",
            "--concurrency",
            "3",
            "--bad",
            "0.25",
        ],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output[r.output.index("{") :])
    # paced, not timed: exactly rate x duration requests, the last one not sent before its slot at 59/40 s
    # (a bound the pacing guarantees on any machine; how fast a loaded machine keeps up is not asserted)
    assert rep["sent"] == 60 and rep["ok"] + sum(rep["errors"].values()) == 60
    assert rep["elapsed_s"] >= 59 / 40
    # the workers' seeded draws put 8..17 bad requests among 60 whichever worker sends which
    assert set(rep["errors"]) <= {"bad_request"} and 5 <= rep["errors"].get("bad_request", 0) <= 25
    assert rep["p50_ms"] is not None

    m = c.metrics("iris", "5m", by_version=True)
    t = m.overall.totals
    assert t.requests == 60 and t.errors_by_type["bad_request"] == rep["errors"]["bad_request"]
    assert t.cold_starts == 1 and t.load_ms > 0 and t.p95_ms > 0
    assert m.versions["1"].totals.requests == 60 and "2" not in m.versions


def test_sampled_instances_are_accepted_by_the_server(served):
    import random

    _, c = served
    for ref in ("1", "2"):
        m = c.version("iris", ref)
        inst = sample_instance(m, random.Random(0))
        assert len(c.predict("iris", ref, [inst, inst]).predictions) == 2
    assert isinstance(sample_instance(c.version("iris", 2), random.Random(0)), dict)  # tabular: named columns


def test_cli_metrics_and_feedback_commands(served, tmp_path):
    url, _ = served
    items = tmp_path / "fb.json"
    items.write_text(json.dumps([{"prediction": "a", "label": "a"}, {"correct": False}]))
    run = CliRunner()
    r = run.invoke(app, ["--url", url, "feedback", "iris:production", str(items)], catch_exceptions=False)
    assert r.exit_code == 0 and "1/2 correct" in r.output
    r = run.invoke(
        app, ["--url", url, "--json", "metrics", "iris", "--by-version", "-w", "15m"], catch_exceptions=False
    )
    assert r.exit_code == 0
    assert json.loads(r.output)["versions"]["1"]["totals"]["accuracy"] == 0.5
    r = run.invoke(app, ["--url", url, "metrics"], catch_exceptions=False)
    assert r.exit_code == 0 and "iris" in r.output


def test_bare_name_load_follows_what_the_server_serves(served):
    """A bare name is 'production' (v1, plain rows) on the server: the generator asks, so its samples fit v1,
    not the latest version (v2, named columns)."""
    from modelbay.metrics.loadgen import run_load

    url, c = served
    rep = run_load(lambda: Client(url), "iris", None, rate=20, duration_s=0.5, concurrency=2)
    assert rep.sent == 10 and rep.ok == 10, rep.as_dict()
    m = c.metrics("iris", "5m", by_version=True)
    assert set(m.versions) == {"1"} and m.versions["1"].totals.requests == 10
