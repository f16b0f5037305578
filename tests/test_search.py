"""int4 weight-only quantization and the variant search (``--optimize auto``) on real models.

A digits MLP (sklearn's load_digits, trained here) goes through ``prepare(optimize=...)``: every candidate is
recorded, the chosen one passed the gate and is the best by the objective among those that passed, an
over-pruned variant is refused by the gate, and a threshold nothing can meet refuses the push. No timing is
asserted: latencies are recorded, never compared to a number.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

from modelbay.cli import app as cli  # noqa: E402
from modelbay.convert.converter import convert, session  # noqa: E402
from modelbay.convert.data import Dataset  # noqa: E402
from modelbay.convert.examples.fit import fit_classifier  # noqa: E402
from modelbay.convert.gate import Gate, GateFailed, GateThresholds  # noqa: E402
from modelbay.convert.pipeline import prepare  # noqa: E402
from modelbay.convert.quantize import Int4Options, int4_candidates, quantize_int4  # noqa: E402
from modelbay.convert.search import SearchOptions, parse_duration, parse_ratios  # noqa: E402
from modelbay.errors import BadRequest, InvalidModel  # noqa: E402
from modelbay.manifest import ClassifierPostprocessing, VersionMetadata  # noqa: E402
from modelbay.units import search_summary  # noqa: E402

nn = torch.nn
SPEC = "x:float32:[batch,64]"


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    return train_test_split(x, d.target, test_size=0.3, random_state=0, stratify=d.target)


def make_mlp():
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


@pytest.fixture(scope="module")
def mlp(digits, tmp_path_factory):
    xtr, _, ytr, _ = digits
    torch.manual_seed(0)
    return fit_classifier(make_mlp(), xtr, ytr, epochs=25, batch=64, lr=3e-3)


@pytest.fixture
def evals(digits):
    _, xte, _, yte = digits
    return Dataset([{"x": xte[i : i + 90]} for i in range(0, len(xte), 90)], labels=yte)


@pytest.fixture
def calib(digits):
    xtr = digits[0]
    return Dataset([{"x": xtr[i : i + 100]} for i in range(0, 400, 100)])


def meta() -> VersionMetadata:
    return VersionMetadata(task="classifier", postprocessing=ClassifierPostprocessing(scores="logits"))


def run(mlp, evals, calib, tmp_path, options: SearchOptions, thresholds: GateThresholds | None = None):
    return prepare(
        mlp,
        name="digits",
        workdir=tmp_path,
        input_spec=SPEC,
        output_names=["logits"],
        quantize_mode="dynamic",
        eval_data=evals,
        calibration=calib,
        metadata=meta(),
        thresholds=thresholds,
        optimize=options,
    )


def onnx_accuracy(path, evals) -> float:
    s = session(path)
    pred = np.concatenate([s.run(None, b)[0].argmax(1) for b in evals.batches])
    return float((pred == evals.labels).mean())


def test_int4_has_matmulnbits_and_the_gate_judges_it_honestly(mlp, evals, tmp_path):
    fp32 = tmp_path / "fp32.onnx"
    convert(mlp, fp32, input_spec=SPEC, output_names=["logits"], samples=evals.batches[:1])
    assert int4_candidates(fp32) == 3  # three Gemm (2-D Linear), rewritten as MatMul for MatMulNBits
    q = quantize_int4(fp32, tmp_path / "int4.onnx", Int4Options(block_size=16))
    ops = [n.op_type for n in onnx.load(str(q)).graph.node]
    assert ops.count("MatMulNBits") == 3 and "Gemm" not in ops
    assert q.stat().st_size < fp32.stat().st_size / 3
    drop = 100 * (onnx_accuracy(fp32, evals) - onnx_accuracy(q, evals))  # measured here, independently of the gate
    for limit, verdict in ((drop + 0.01, True), (drop - 0.01, False)):
        report = Gate(fp32, evals, meta(), GateThresholds(max_accuracy_drop=limit)).check(q)
        assert report.passed is verdict
        assert report.extra["accuracy_drop_pt"] == pytest.approx(drop)


def test_int4_refuses_a_model_without_matmuls(tmp_path):
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    onnx.save(helper.make_model(g), str(tmp_path / "relu.onnx"))
    with pytest.raises(InvalidModel, match="no MatMul"):
        quantize_int4(tmp_path / "relu.onnx", tmp_path / "q.onnx")


def test_search_records_every_candidate_and_picks_the_best_that_passes(mlp, evals, calib, tmp_path):
    opts = SearchOptions(prune_ratios=(0.1, 0.97, 0.99), repeats=2)
    prep = run(mlp, evals, calib, tmp_path, opts, GateThresholds(max_accuracy_drop=3.0))
    table = prep.metadata.metrics["search"]
    rows = {r["name"]: r for r in table["candidates"]}
    assert list(rows)[:3] == ["fp32", "int8 dynamic", "int4"]
    assert rows["fp32"]["status"] == "baseline"
    # over-pruned: 97% of the hidden neurons gone fails the gate, and the larger ratio is not tried
    assert rows["pruned 0.97 fp32"]["status"] == "failed" and "drop" in rows["pruned 0.97 fp32"]["note"]
    assert rows["pruned 0.99"]["status"] == "skipped" and "0.97 failed" in rows["pruned 0.99"]["note"]
    assert not any(n.startswith("pruned 0.97 int") for n in rows)
    assert rows["pruned 0.1 fp32"]["status"] == "passed" and "linear 192->173" in rows["pruned 0.1 fp32"]["note"]
    assert table["pruning"]["ratios"]["0.1"]["params_after"] < table["pruning"]["ratios"]["0.1"]["params_before"]
    measured = [r for r in rows.values() if r["status"] in ("baseline", "passed", "failed")]
    assert all(r["size_bytes"] > 0 and set(r["latency_ms"]) == {"b1", "b32"} for r in measured)
    passed = [r for r in rows.values() if r["status"] == "passed"]
    chosen = rows[table["chosen"]]
    assert chosen["status"] == "passed"
    assert chosen["latency_ms"]["b32"] == min(r["latency_ms"]["b32"] for r in passed)
    # the registered file is the chosen candidate, and the gate's numbers are its own
    assert prep.model_path.stat().st_size == chosen["size_bytes"]
    assert prep.metadata.metrics["gate"]["passed"] and prep.metadata.metrics["gate"]["int8"] == pytest.approx(
        chosen["gate"], abs=1e-6
    )
    q = prep.metadata.quantization
    assert q is not None and q.extra["variant"] == chosen["name"]
    # the candidates' files are swept; the work folder holds the export and the chosen variant
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.fp32.onnx", "model.opt.onnx"]
    assert table["cpu"]["arch"]


def test_objective_size_picks_the_smallest_passing(mlp, evals, calib, tmp_path):
    # a loose gate (5 points) so that every variant of this small model passes and the objective alone decides
    opts = SearchOptions(objective="size", prune_ratios=(0.1,), repeats=1)
    prep = run(mlp, evals, calib, tmp_path, opts, GateThresholds(max_accuracy_drop=5.0))
    table = prep.metadata.metrics["search"]
    passed = [r for r in table["candidates"] if r["status"] == "passed"]
    chosen = next(r for r in passed if r["name"] == table["chosen"])
    assert chosen["size_bytes"] == min(r["size_bytes"] for r in passed)
    assert any(r["size_bytes"] > chosen["size_bytes"] for r in passed)  # a real choice among several
    # int4 of the pruned model is smaller than int8 and int4 of the full one: the known-better variant wins
    assert table["chosen"] == "pruned 0.1 int4"
    assert prep.metadata.quantization.method == "int4"
    assert prep.metadata.quantization.extra["pruning"]["ratio"] == 0.1


def test_nothing_passes_refuses_with_the_table(mlp, evals, calib, tmp_path):
    impossible = GateThresholds(max_accuracy_drop=-50.0)  # a 50-point gain over fp32
    with pytest.raises(GateFailed) as e:
        run(mlp, evals, calib, tmp_path, SearchOptions(prune_ratios=(0.25, 0.5), repeats=1), impossible)
    search = e.value.details["search"]
    statuses = {r["name"]: r["status"] for r in search["candidates"]}
    assert statuses["fp32"] == "baseline" and "passed" not in statuses.values()
    assert statuses["pruned 0.5"] == "skipped"
    assert "chosen" not in search


def test_onnx_sources_search_without_pruning(mlp, evals, tmp_path):
    fp32 = tmp_path / "given.onnx"
    convert(mlp, fp32, input_spec=SPEC, output_names=["logits"], samples=evals.batches[:1])
    prep = prepare(
        fp32, name="d", workdir=tmp_path / "w", eval_data=evals, metadata=meta(), optimize=SearchOptions(repeats=1)
    )
    table = prep.metadata.metrics["search"]
    assert "no PyTorch modules" in table["pruning"]["skipped"]
    assert not any(r["prune_ratio"] for r in table["candidates"])


def test_budget_skips_what_it_did_not_reach(mlp, evals, calib, tmp_path):
    opts = SearchOptions(prune_ratios=(0.25,), budget_s=1e-3, repeats=1)
    with pytest.raises(GateFailed) as e:  # the budget ran out before the first candidate: nothing passed
        run(mlp, evals, calib, tmp_path, opts)
    rows = e.value.details["search"]["candidates"]
    assert all(r["status"] == "skipped" and "budget" in r["note"] for r in rows[1:])


def test_option_parsing():
    assert parse_duration("10m") == 600 and parse_duration("90s") == 90 and parse_duration(5) == 5
    assert parse_ratios("0.5, 0.25") == (0.25, 0.5) and parse_ratios("") == ()
    for bad in ("soon", "-1m"):
        with pytest.raises(BadRequest):
            parse_duration(bad)
    with pytest.raises(BadRequest):
        parse_ratios("half")
    with pytest.raises(BadRequest):
        SearchOptions(prune_ratios=(1.0,))
    with pytest.raises(BadRequest):
        SearchOptions(objective="speed")  # type: ignore[arg-type]


@pytest.mark.parametrize("store", ["local"], indirect=True)
def test_push_optimize_auto_prints_and_registers_the_table(server, mlp, digits, tmp_path):
    torch.save(mlp.state_dict(), tmp_path / "w.pt")
    _, xte, _, yte = digits
    np.savez(tmp_path / "eval.npz", x=xte, labels=yte)
    args = [
        "--url",
        server,
        "push",
        "tests.test_search:make_mlp",
        "--state-dict",
        str(tmp_path / "w.pt"),
        "-i",
        SPEC,
        "--name",
        "digits",
        "--eval",
        str(tmp_path / "eval.npz"),
        "--optimize",
        "auto",
        "--prune-ratios",
        "0.1",
        "--objective",
        "size",
    ]
    r = CliRunner().invoke(cli, args, env={"COLUMNS": "120"})
    assert r.exit_code == 0, r.output
    assert "variant search (objective size)" in r.output and "pruned 0.1 fp32" in r.output
    shown = json.loads(CliRunner().invoke(cli, ["--url", server, "--json", "show", "digits"]).output)
    names = [c["name"] for c in shown["metrics"]["search"]["candidates"]]
    assert names[0] == "fp32" and shown["metrics"]["search"]["chosen"] in names
    # the TUI's version line says the same (modelbay.units.search_summary)
    line = search_summary(shown["metrics"])
    assert line is not None and line.startswith(f"search: {shown['metrics']['search']['chosen']} (")
    assert search_summary({}) is None
    bad = CliRunner().invoke(cli, [*args[:-4], "--optimize", "everything"])
    assert bad.exit_code == 2 and "--optimize must be int8 or auto" in bad.output
