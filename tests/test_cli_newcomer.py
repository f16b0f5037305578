"""The CLI where a new user met friction: key ids from a narrow table, options after the command, a silent
load generator, a server that minted a key next to the operator's, demo seeding with the time left."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from modelbay.cli import app

LOCAL = pytest.mark.parametrize("store", ["local"], indirect=True)


def invoke(*args: str, columns: int = 80):
    return CliRunner().invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": str(columns)})


@LOCAL
def test_keys_revoke_takes_a_unique_prefix(server, client):
    # until two keys share a first character (16 hex digits: 17 keys at most)
    made = [client.create_key(["invoke"], name=f"k{i}").key for i in range(3)]
    firsts: dict[str, list[str]] = {}
    listed_keys = client.keys(None)
    for k in listed_keys:
        firsts.setdefault(k.key_id[0], []).append(k.key_id)
    while not any(len(v) > 1 for v in firsts.values()):
        k = client.create_key(["invoke"], name="more")
        made.append(k.key)
        firsts.setdefault(k.key_id[0], []).append(k.key_id)
    listed = invoke("--url", server, "keys", "list").output
    victim = made[0].split("_")[1]
    assert victim in listed  # whole ids at 80 columns

    r = invoke("--url", server, "keys", "revoke", victim[:8])
    assert r.exit_code == 0 and f"revoked key {victim}" in " ".join(r.output.split())
    assert next(k for k in client.keys(None) if k.key_id == victim).state == "revoked"

    shared = next(v for v in firsts.values() if len(v) > 1)
    r = invoke("--url", server, "keys", "revoke", shared[0][0])
    assert r.exit_code == 2 and f"starts {len(shared)} keys" in r.output and "give more characters" in r.output
    r = invoke("--url", server, "keys", "revoke", "zz")
    assert r.exit_code == 2 and "no key starts with 'zz'" in r.output
    other = made[1].split("_")[1]
    r = invoke("--url", server, "keys", "revoke", f"mb_{other}_…")  # as `keys create` and the docs show a key
    assert r.exit_code == 0 and other in r.output


@LOCAL
def test_json_after_the_command_everywhere(server, client, mlp_path, tmp_path):
    client.push(mlp_path, "m", aliases=["production"])
    for args in (
        ["models"],
        ["versions", "m"],
        ["show", "m"],
        ["alias", "list", "m"],
        ["alias", "history", "m", "production"],
        ["keys", "list"],
        ["keys", "whoami"],
        ["tenants", "list"],
        ["audit"],
        ["metrics"],
        ["metrics", "m"],
        ["predict", "m", "--data", "[[1, 2, 3, 4]]"],
        ["push", str(mlp_path), "--name", "m"],
        ["metadata-schema"],
    ):
        r = invoke(*args, "--url", server, "--json")
        assert r.exit_code == 0, (args, r.output)
        json.loads(r.stdout)  # the result alone on stdout


@LOCAL
def test_bench_load_says_what_it_does_and_shows_progress_in_a_log(server, client, mlp_path, monkeypatch):
    """Not a terminal (a log, CI): a line every 5 s rather than a redrawn one, and the plan first."""
    import modelbay.cli.metrics as metrics_cli
    from modelbay.metrics.loadgen import LoadReport

    client.push(mlp_path, "m")
    real = metrics_cli.run_load

    def paced(factory, name, ref, on_tick=None, **kw):
        # the real load, then the ticks a 12 s run makes (the clock is not what this test is about)
        rep = real(factory, name, ref, **{**kw, "duration_s": 0.5})
        for t in (1.0, 3.0, 5.2, 7.0, 10.4, 12.0):
            on_tick(LoadReport(sent=int(t * 5), ok=int(t * 5), elapsed_s=t, hist=rep.hist))
        return rep

    monkeypatch.setattr(metrics_cli, "run_load", paced)
    r = invoke("--url", server, "bench-load", "m", "--rate", "5", "--duration", "12", "--concurrency", "1", columns=200)
    assert r.exit_code == 0, r.output
    lines = r.stderr.splitlines()
    assert lines[0] == "sending 5 req/s to m for 12 s from 1 threads (ctrl-c stops)"
    progress = [line for line in lines if "/12 s" in line]
    assert [p.split()[0] for p in progress] == ["5/12", "10/12"] and "26 sent" in progress[0]
    assert " sent " in r.stdout  # the summary


def test_serve_mints_no_key_when_a_bootstrap_key_is_set(tmp_path, monkeypatch):
    import uvicorn

    from modelbay.storage.local import LocalStore

    monkeypatch.setattr(uvicorn, "run", lambda api, **kw: None)
    monkeypatch.setattr("modelbay.cli.serve._start_sweeper", lambda *a: None)
    monkeypatch.setenv("MODELBAY_BOOTSTRAP_KEY", "operator-" + "x" * 40)
    r = invoke("serve", "--store", str(tmp_path / "s"), "--port", "18081", columns=200)
    assert r.exit_code == 0, r.output
    assert "MODELBAY_BOOTSTRAP_KEY is set: no admin key minted" in r.output
    assert list(LocalStore(tmp_path / "s").list("system/keys/")) == []
    monkeypatch.delenv("MODELBAY_BOOTSTRAP_KEY")
    monkeypatch.setenv("MODELBAY_BOOTSTRAP_KEY_SECRET", "arn:aws:secretsmanager:us-east-1:000000000000:secret:b")
    r = invoke("serve", "--store", str(tmp_path / "s"), "--port", "18081", columns=200)
    assert "MODELBAY_BOOTSTRAP_KEY_SECRET is set: no admin key minted" in r.output
    assert list(LocalStore(tmp_path / "s").list("system/keys/")) == []


def test_seed_status_lines_and_estimates():
    from modelbay.demo import SeedStatus, estimate

    assert [estimate(s) for s in (2, 12, 44, 89, 95, 200)] == [
        "almost done",
        "about 10 s left",
        "about 45 s left",
        "about 90 s left",
        "about 2 min left",
        "about 3 min left",
    ]
    st = SeedStatus("minilm", "building", "sensitivity /encoder/layer.0/attention", 4, 4, 130.0)
    # the estimate before the step: a narrow status line cuts the end, never the time left
    assert st.line() == "building minilm (4/4), about 2 min left: sensitivity /encoder/layer.0/attention"
    assert st.line(30.0).startswith("building minilm (4/4), about 30 s left")
    assert SeedStatus("mlp", "ready", "version 1 → production", 1, 4, 90.0).line() == (
        "mlp ready (1/4): version 1 → production"
    )
    assert SeedStatus.from_dict(json.loads(json.dumps(st.as_dict()))) == st


@LOCAL
def test_seed_demo_reports_progress_with_estimates_and_events(server, client, tmp_path):
    """`seed-demo --events`: a JSON status per step, the estimate shrinking to 0; the small examples from the
    shared cache (a cold build the first time on a machine)."""
    from modelbay.convert import examples

    for n in ("mlp", "pii"):
        examples.build(n)  # shared cache: built once per machine
    r = invoke("--url", server, "seed-demo", "--only", "mlp", "--only", "pii", "--events")
    assert r.exit_code == 0, r.output
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(e["model"], e["state"]) for e in events if e["state"] != "building"] == [
        ("mlp", "pushing"),
        ("mlp", "ready"),
        ("pii", "pushing"),
        ("pii", "ready"),
        ("", "done"),
    ]
    left = [e["remaining_s"] for e in events]
    assert left == sorted(left, reverse=True) and left[-1] == 0.0 and left[0] > 0
    assert {m.name for m in client.models()} == {"mlp", "pii"}
    # human output: one line per milestone on stderr, the result table on stdout
    r = invoke("--url", server, "seed-demo", "--only", "mlp")
    assert r.exit_code == 0 and ".. mlp already there (1/1)" in r.stderr and "present" in r.stdout


def test_build_times_are_remembered_and_stale_staging_is_swept(tmp_path):
    import os
    import time

    from modelbay.convert.examples import cache

    cache.record_build_seconds(tmp_path, "minilm", 140.04)
    cache.record_build_seconds(tmp_path, "mlp", 12.0)
    assert cache.build_seconds(tmp_path) == {"minilm": 140.0, "mlp": 12.0}
    (tmp_path / cache.TIMES_FILE).write_text("{not json")
    assert cache.build_seconds(tmp_path) == {}  # an estimate is not worth failing for
    killed = tmp_path / ".build-killed"
    killed.mkdir()
    (killed / "model.onnx").write_bytes(b"half")
    hours_ago = time.time() - cache.STALE_STAGING_SECONDS - 60
    os.utime(killed, (hours_ago, hours_ago))
    fresh = cache.staging(tmp_path)  # a new build sweeps what killed builds left
    assert not killed.exists() and fresh.is_dir() and fresh.name.startswith(".build-")
    assert cache.sweep(tmp_path) == []  # a build in progress is left alone
