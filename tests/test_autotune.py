"""Session settings chosen by measurement: the search, its records, the operator's overrides, exact int8.

Every measurement here is injected and reads the options of the real session it is
given, so which candidate wins is decided by the test, never by this machine's load.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from modelbay.cpu_features import CpuFeatures
from modelbay.engine import Engine, EngineConfig
from modelbay.engine.autotune import Choice, Records, TuneConfig, Tuner, cpu_signature, label, search
from modelbay.engine.session import SessionConfig
from modelbay.registry import Registry
from modelbay.settings import Settings

LEVELS = {0: "disable", 1: "basic", 2: "extended", 99: "all"}


def options_of(session) -> tuple[str, bool, int]:
    """(level, spinning, threads) a real onnxruntime session was built with."""
    o = session.get_session_options()
    spin = o.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    return LEVELS[int(o.graph_optimization_level)], spin, o.intra_op_num_threads


class Scores:
    """A measurement function: runs/s looked up from the session's own options; remembers its calls."""

    def __init__(self, table=None, default: float = 100.0) -> None:
        self.table = table or {}
        self.default = default
        self.calls: list[tuple[str, bool, int]] = []

    def __call__(self, session, feeds, mode, seconds) -> float:
        assert feeds and all(isinstance(v, np.ndarray) for v in feeds.values())
        session.run(None, feeds)  # the inputs made from the signature really run
        key = options_of(session)
        self.calls.append(key)
        level, spin, threads = key
        score = self.default
        for (lv, sp, th), value in self.table.items():
            if lv in (None, level) and sp in (None, spin) and th in (None, threads):
                score = value
        return score


def _tuner(tmp_path: Path, mode="throughput", fixed=(), measure=None, budget_s=60.0) -> Tuner:
    return Tuner(
        TuneConfig(mode=mode, budget_s=budget_s, fixed=frozenset(fixed)),
        Records(tmp_path / "tuning"),
        measure=measure or Scores(),
        cpu="x86_64-test-avx2-2cpu",
    )


def test_search_keeps_the_fastest_candidate_of_each_knob_in_turn():
    built: list[SessionConfig] = []
    table = {"extended": 120.0, "all": 150.0}

    def build(c):
        built.append(c)
        return c

    def measure(session, feeds, mode, seconds):
        score = table.get(session.optimization, 100.0)
        return score * (1.5 if session.spinning else 1.0) * (0.5 if session.intra_op_threads == 1 else 1.0)

    base = SessionConfig(intra_op_threads=2, optimization="basic", spinning=False)
    best, session, scores = search(
        base, build, lambda s: {"x": 1}, mode="latency", measure=measure, effective=lambda c: c, cpus=2
    )
    assert (best.optimization, best.spinning, best.intra_op_threads) == ("all", True, 2)
    assert session is best  # the winner's own session is returned, not rebuilt
    assert scores == {
        "basic/nospin/2t": 100.0,
        "extended/nospin/2t": 120.0,
        "all/nospin/2t": 150.0,
        "all/spin/2t": 225.0,
        "all/spin/1t": 112.5,
    }
    assert len(built) == len(scores)


def test_a_candidate_within_the_noise_margin_does_not_replace_the_incumbent():
    base = SessionConfig(intra_op_threads=1, optimization="basic")
    best, _, scores = search(
        base,
        lambda c: c,
        lambda s: {},
        mode="latency",
        fixed={"spinning", "intra_op_threads"},
        measure=lambda s, f, m, t: {"basic": 100.0, "extended": 102.0, "all": 101.0}[s.optimization],
        effective=lambda c: c,
    )
    assert best.optimization == "basic" and set(scores) == {"basic/nospin/1t", "extended/nospin/1t", "all/nospin/1t"}


def test_search_stops_at_its_budget_with_the_best_so_far():
    now = [0.0]

    def measure(session, feeds, mode, seconds):
        now[0] += 1.0  # each measurement takes a second
        return 200.0 if session.optimization == "all" else 100.0

    best, _, scores = search(
        SessionConfig(intra_op_threads=2),
        lambda c: c,
        lambda s: {},
        mode="throughput",
        budget_s=1.5,
        measure=measure,
        effective=lambda c: c,
        clock=lambda: now[0],
        cpus=2,
    )
    assert best.optimization == "all" and len(scores) == 2  # base, then one candidate: the budget is spent


def test_candidates_that_come_out_the_same_are_measured_once():
    """On a CPU whose int8 kernels saturate, exact_int8 raises basic to extended: one measurement for both."""
    calls = []

    def effective(c):
        return ("extended" if c.optimization == "basic" else c.optimization, c.spinning, c.intra_op_threads)

    search(
        SessionConfig(intra_op_threads=1, optimization="basic"),
        lambda c: c,
        lambda s: {},
        mode="latency",
        fixed={"spinning", "intra_op_threads"},
        measure=lambda s, f, m, t: calls.append(s.optimization) or 1.0,
        effective=effective,
    )
    assert set(calls) == {"basic", "all"}  # extended (what basic became) is not measured as a candidate


def test_tuner_builds_real_sessions_records_its_choice_and_reuses_it(tmp_path, mlp_path):
    scores = Scores({("all", None, None): 180.0, ("all", False, 1): 300.0})
    tuner = _tuner(tmp_path, measure=scores)
    base = SessionConfig(intra_op_threads=2, optimization="basic", spinning=False)
    session, choice = tuner.session(mlp_path, "ab" * 32, base)
    assert choice is not None and choice.source == "tuned" and choice.mode == "throughput"
    assert (choice.optimization, choice.spinning, choice.intra_op_threads) == ("all", False, 1)
    assert options_of(session) == ("all", False, 1)  # the session served is the winner's
    assert choice.measured["all/nospin/1t"] == 300.0 and len(set(scores.calls)) == len(choice.measured)
    record = json.loads(next((tmp_path / "tuning").glob("*.json")).read_text())
    assert record["optimization"] == "all" and record["cpu"] == "x86_64-test-avx2-2cpu"

    # a fresh tuner (a restarted process) on the same CPU reads the record: no measurement
    again = Scores()
    session2, choice2 = _tuner(tmp_path, measure=again).session(mlp_path, "ab" * 32, base)
    assert again.calls == [] and choice2 is not None and choice2.source == "recorded"
    assert options_of(session2) == ("all", False, 1)
    # another CPU signature, or another mode, tunes anew
    other = Scores()
    _tuner(tmp_path, mode="latency", measure=other).session(mlp_path, "ab" * 32, base)
    assert other.calls


def test_operator_settings_are_not_tuned_and_win_over_records(tmp_path, mlp_path):
    base = SessionConfig(intra_op_threads=2, optimization="extended", spinning=False)
    scores = Scores({("all", None, None): 500.0, (None, True, None): 900.0})
    session, choice = _tuner(tmp_path, fixed={"optimization"}, measure=scores).session(mlp_path, "cd" * 32, base)
    assert {level for level, _, _ in scores.calls} == {"extended"}
    assert options_of(session)[0] == "extended" and choice is not None and choice.spinning

    # a record made while nothing was fixed does not override what the operator fixes later
    Records(tmp_path / "tuning").put("ef" * 32, Choice("all", True, 1, "throughput", "x86_64-test-avx2-2cpu"))
    session, _ = _tuner(tmp_path, fixed={"spinning"}).session(mlp_path, "ef" * 32, base)
    assert options_of(session) == ("all", False, 1)

    # every knob fixed, or tuning off: the configured settings, nothing measured, nothing recorded
    for tuner in (_tuner(tmp_path, fixed={"optimization", "spinning", "intra_op_threads"}), _tuner(tmp_path, "off")):
        session, choice = tuner.session(mlp_path, "01" * 32, base)
        assert choice is None and options_of(session) == ("extended", False, 2)
    assert not list((tmp_path / "tuning").glob("0101*"))


def test_tune_settings_from_the_environment(monkeypatch):
    for var in ("MODELBAY_ORT_OPT", "MODELBAY_ORT_SPIN", "MODELBAY_ORT_THREADS", "AWS_LAMBDA_FUNCTION_NAME"):
        monkeypatch.delenv(var, raising=False)
    local = TuneConfig.from_settings(Settings.from_env())
    assert local.mode == "throughput" and local.fixed == frozenset() and local.budget_s == 2.0
    assert SessionConfig.from_settings(Settings.from_env()).optimization == "basic"  # the starting point

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "fn")
    assert TuneConfig.from_settings(Settings.from_env()).mode == "off"  # would lengthen every cold start
    monkeypatch.setenv("MODELBAY_ORT_TUNE", "latency")
    monkeypatch.setenv("MODELBAY_ORT_TUNE_BUDGET_MS", "500")
    monkeypatch.setenv("MODELBAY_ORT_SPIN", "0")
    monkeypatch.setenv("MODELBAY_ORT_THREADS", "1")
    c = TuneConfig.from_settings(Settings.from_env())
    assert (c.mode, c.budget_s, c.fixed) == ("latency", 0.5, frozenset({"spinning", "intra_op_threads"}))


def test_records_survive_junk_and_are_keyed_by_cpu_and_mode(tmp_path):
    records = Records(tmp_path)
    choice = Choice("extended", False, 2, "latency", "arm64-0x41-dotprod-2cpu", {"a": 1.0})
    records.put("f" * 64, choice)
    assert records.get("f" * 64, "arm64-0x41-dotprod-2cpu", "latency") == Choice(
        **{**choice.as_dict(), "source": "recorded"}
    )
    assert records.get("f" * 64, "arm64-0x41-dotprod-2cpu", "throughput") is None
    assert records.get("f" * 64, "x86_64-AuthenticAMD-avx2-2cpu", "latency") is None
    for junk in ("{", '{"version": 1, "optimization": "turbo", "spinning": 0, "intra_op_threads": 1}', "[]"):
        next(tmp_path.glob("*.json")).write_text(junk)
        assert records.get("f" * 64, "arm64-0x41-dotprod-2cpu", "latency") is None
    assert not list(tmp_path.glob("*.tmp"))


def test_cpu_signature_names_what_decides_the_kernels():
    zen5 = CpuFeatures("x86_64", "AuthenticAMD", "EPYC", avx2=True, avx512=True, avx512_vnni=True, avx_vnni=True)
    haswell = CpuFeatures("x86_64", "GenuineIntel", "Xeon E5", avx2=True)
    graviton = CpuFeatures("arm64", "0x41", "0xd0c", dotprod=True)
    assert cpu_signature(zen5, 2) == "x86_64-AuthenticAMD-avx2-avx512-vnni-2cpu"
    assert cpu_signature(haswell, 2) == "x86_64-GenuineIntel-avx2-2cpu"
    assert cpu_signature(graviton, 1) == "arm64-0x41-dotprod-1cpu"
    assert cpu_signature(zen5, 2) != cpu_signature(zen5, 4)


def test_engine_serves_the_tuned_session_and_says_what_it_picked(local_store, tmp_path, mlp_path):
    m = Registry(local_store).register_version("m", mlp_path)
    settings = Settings(store_url=local_store.url, cache_dir=tmp_path / "cache")
    engine = Engine(local_store, settings, EngineConfig(tune=TuneConfig(mode="latency", budget_s=60.0)))
    scores = Scores({("extended", None, None): 200.0, ("extended", True, None): 400.0})
    engine.tuner.measure = scores
    model = engine.get("default", "m")
    assert model.tuning is not None and model.tuning["optimization"] == "extended" and model.tuning["spinning"]
    assert options_of(model.session)[:2] == ("extended", True)
    x = np.ones((2, 4), np.float32)
    assert model.run({"x": x})["probabilities"].shape[0] == 2
    assert list((tmp_path / "cache" / "tuning").glob(f"{m.sha256}.*.latency.json"))
    # without tuning the engine says nothing was tuned
    plain = Engine(local_store, settings, EngineConfig(alias_ttl=0))
    assert plain.get("default", "m").tuning is None


def test_tuned_int8_sessions_compute_what_the_gate_measured(tmp_path):
    """Whatever level tuning picks, int8 products stay exact: the same outputs as the gate's session."""
    import onnx

    from modelbay.convert.converter import session as gate_session
    from modelbay.convert.quantize import options_for, quantize
    from tests.onnx_models import saturating_mlp

    model, x = saturating_mlp()  # int8 weights whose U8S8 products overflow int16 without VNNI
    onnx.save(model, str(tmp_path / "fp32.onnx"))
    q = tmp_path / "int8.onnx"
    quantize(tmp_path / "fp32.onnx", q, "dynamic", options_for("arm64"), [{"x": x}])
    want = gate_session(q).run(None, {"x": x})
    for level in ("basic", "extended", "all"):
        for spin in (False, True):
            scores = Scores({(level, spin, None): 1000.0})
            session, _choice = _tuner(tmp_path / f"{level}{spin}", measure=scores).session(
                q, "12" * 32, SessionConfig(intra_op_threads=1)
            )
            got = session.run(None, {"x": x})
            for a, b in zip(want, got):
                np.testing.assert_array_equal(a, b, err_msg=label(SessionConfig(1, level, spin)))


def test_a_graph_the_sample_inputs_cannot_run_is_served_untuned(tmp_path, mlp_path):
    """Inputs made from a signature do not suit every graph: the load must not fail for tuning."""
    tuner = Tuner(
        TuneConfig(mode="latency", budget_s=60.0),
        Records(tmp_path / "tuning"),
        measure=Scores(),
        cpu="x86_64-test-avx2-2cpu",
        feeds=lambda session: {"x": np.ones((1, 3), np.float32)},  # the MLP takes 4 features: onnxruntime refuses
    )
    session, choice = tuner.session(mlp_path, "99" * 32, SessionConfig(intra_op_threads=1, optimization="extended"))
    assert choice is None and options_of(session) == ("extended", False, 1)
    assert session.run(None, {"x": np.ones((1, 4), np.float32)})[0].shape[0] == 1
    assert not list((tmp_path / "tuning").glob("*.json"))  # tried again at the next load, not remembered as tuned


def test_the_model_status_route_says_what_tuning_picked(local_store, tmp_path, mlp_path):
    from starlette.testclient import TestClient

    from modelbay.api.app import create_app

    Registry(local_store).register_version("m", mlp_path)
    settings = Settings(store_url=local_store.url, cache_dir=tmp_path / "cache", auth=False)
    engine = Engine(local_store, settings, EngineConfig(tune=TuneConfig(mode="throughput", budget_s=60.0)))
    engine.tuner.measure = Scores({("all", None, None): 300.0})
    with TestClient(create_app(settings, local_store, engine=engine)) as http:
        assert http.get("/v1/models/m").json()["tuning"] is None  # not loaded yet: nothing measured here
        infer = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
        assert http.post("/v2/models/m/infer", json=infer).status_code == 200
        tuning = http.get("/v1/models/m").json()["tuning"]
    assert tuning["optimization"] == "all" and tuning["mode"] == "throughput" and tuning["source"] == "tuned"
    assert tuning["measured"]["all/nospin/" + str(tuning["intra_op_threads"]) + "t"] == 300.0


def test_a_burst_of_load_during_one_measurement_does_not_pick_the_slower_candidate():
    """The candidate is slower, but the incumbent's first measurement met a burst: pairs see through it."""
    rates = {"basic": [100.0, 40.0, 100.0, 100.0] + [100.0] * 3, "all": [90.0] * 3}  # basic: base, then pairs

    def measure(session, feeds, mode, seconds):
        return rates[session.optimization].pop(0)

    best, _, scores = search(
        SessionConfig(intra_op_threads=1, optimization="basic"),
        lambda c: c,
        lambda s: {},
        mode="latency",
        fixed={"spinning", "intra_op_threads"},
        measure=lambda s, f, m, t: measure(s, f, m, t) if s.optimization != "extended" else 10.0,
        effective=lambda c: c,
    )
    assert best.optimization == "basic"  # 90/40 once, 90/100 twice: the median ratio is 0.9
    assert scores["all/nospin/1t"] == 90.0
