"""Quantization with onnxruntime's tools, the accuracy gate, refusal and mixed precision."""

from __future__ import annotations

import logging
import tempfile

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from modelbay.convert.data import Dataset, FeedReader, load_dataset  # noqa: E402
from modelbay.convert.gate import GateFailed, GateThresholds  # noqa: E402
from modelbay.convert.pipeline import prepare  # noqa: E402
from modelbay.convert.quantize import TARGETS, options_for, quantize  # noqa: E402
from modelbay.errors import BadRequest  # noqa: E402
from modelbay.manifest import ClassifierPostprocessing, VersionMetadata  # noqa: E402


def fragile_model():
    """Layer 1 carries its signal in tiny weights next to one huge weight per row.

    Per-channel int8 gives each row one scale; the 1000-weight sets it to ~8, so
    every 0.01 weight rounds to 0 and the layer's output vanishes. The huge
    weight sits on an input that is always 0, so the fp32 model is well behaved.
    Layer 2 is ordinary, so keeping layer 1 in fp32 is enough.
    """
    torch.manual_seed(0)
    l1, l2 = torch.nn.Linear(32, 32), torch.nn.Linear(32, 4)
    with torch.no_grad():
        l1.weight.mul_(0.01)
        l1.weight[:, 0] = 1000.0
        l1.bias.zero_()
    return torch.nn.Sequential(l1, torch.nn.ReLU(), l2).eval()


def fragile_data(n=64):
    x = np.random.default_rng(0).standard_normal((n, 32)).astype(np.float32)
    x[:, 0] = 0.0
    return Dataset([{"x": x[i : i + 32]} for i in range(0, n, 32)])


def test_fragile_model_is_refused_with_numbers(tmp_path):
    with pytest.raises(GateFailed) as e:
        prepare(
            fragile_model(),
            name="fragile",
            workdir=tmp_path,
            input_spec="x:float32:[batch,32]",
            quantize_mode="dynamic",
            eval_data=fragile_data(),
            mixed_precision=False,
            measure=False,
            thresholds=GateThresholds(max_abs_error=1e-3),
        )
    gate = e.value.details["gate"]
    assert gate["passed"] is False and e.value.status == 422
    assert gate["int8"]["max_abs_error"] > 1e-3
    assert "max abs error" in e.value.message


def test_mixed_precision_keeps_the_fragile_layer(tmp_path):
    res = prepare(
        fragile_model(),
        name="fragile",
        workdir=tmp_path,
        input_spec="x:float32:[batch,32]",
        quantize_mode="dynamic",
        eval_data=fragile_data(),
        measure=False,
        thresholds=GateThresholds(max_abs_error=1e-3),
    )
    q = res.metadata.quantization
    assert q.method == "mixed" and len(q.kept_fp32_nodes) == 1
    mixed = res.metadata.metrics["mixed_precision"]
    assert mixed["plain_int8"]["max_abs_error"] > 1e-3 >= res.gate.int8["max_abs_error"]
    # the kept node is the first (fragile) layer, and it really is float in the file
    # (the dynamic quantizer rewrites a Gemm as "<name>_MatMul" + Add)
    graph = onnx.load(str(res.int8_path)).graph
    first = onnx.load(str(res.fp32_path)).graph.node[0].name
    assert q.kept_fp32_nodes == [first]
    kept = [n for n in graph.node if n.name in (first, first + "_MatMul")]
    assert kept and kept[0].op_type in ("MatMul", "Gemm")
    assert mixed["ranking"][0][0] == q.kept_fp32_nodes[0]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A small MLP trained once on sklearn's digits, its eval/calibration files in a module directory."""
    tmp_path = tmp_path_factory.mktemp("classifier")
    torch.manual_seed(0)
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.data / 16.0).astype(np.float32), d.target
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.from_numpy(x[:1400])), torch.from_numpy(y[:1400])).backward()
        opt.step()
    np.savez(tmp_path / "eval.npz", x=x[1400:], labels=y[1400:])
    np.savez(tmp_path / "calib.npz", x=x[:256])
    meta = VersionMetadata(
        task="classifier", postprocessing=ClassifierPostprocessing(scores="logits"), labels=[str(i) for i in range(10)]
    )
    return model.eval(), meta, tmp_path


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_classifier_passes_gate_and_records_metrics(tmp_path, classifier, mode):
    model, meta, data = classifier
    res = prepare(
        model,
        name="c",
        workdir=tmp_path / "w",
        input_spec="x:float32:[batch,64]",
        output_names=["logits"],
        quantize_mode=mode,
        eval_data=data / "eval.npz",
        calibration=data / "calib.npz",
        metadata=meta,
    )
    m = res.metadata.metrics
    assert res.gate.passed and m["gate"]["metric"] == "accuracy"
    assert m["gate"]["fp32"]["accuracy"] > 0.85
    assert m["gate"]["extra"]["accuracy_drop_pt"] <= 0.5
    assert m["int8"]["size_bytes"] < m["fp32"]["size_bytes"]
    assert set(m["int8"]["latency_ms"]) == {"b1", "b32"}
    ops = {n.op_type for n in onnx.load(str(res.int8_path)).graph.node}
    assert ("QuantizeLinear" in ops) if mode == "static" else ("DynamicQuantizeLinear" in ops)
    assert res.metadata.quantization.method == mode and res.metadata.quantization.per_channel
    # the manifest says on what CPU the gate ran and for which target
    assert m["gate"]["extra"]["cpu"]["arch"] in ("x86_64", "arm64") and res.metadata.quantization.target_arch


def test_auto_picks_static_for_convolutions_and_needs_calibration(tmp_path):
    from modelbay.convert.examples.digits import make_cnn

    x = np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32)
    with pytest.raises(BadRequest, match="calibration"):
        prepare(
            make_cnn().eval(),
            name="cnn",
            workdir=tmp_path,
            input_spec="image:float32:[batch,1,8,8]",
            quantize_mode="auto",
            eval_data=Dataset([{"image": x}]),
        )


def test_quantization_leaves_no_temp_files(tmp_path, classifier, monkeypatch):
    model, meta, data = classifier
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    prepare(
        model,
        name="c",
        workdir=tmp_path / "w",
        input_spec="x:float32:[batch,64]",
        quantize_mode="static",
        output_names=["logits"],
        eval_data=data / "eval.npz",
        calibration=data / "calib.npz",
        metadata=meta,
        measure=False,
    )
    assert list(tmp.iterdir()) == []


def test_targets_differ_in_reduce_range(tmp_path, classifier):
    model, meta, data = classifier
    assert TARGETS["x86_64"].reduce_range and not TARGETS["arm64"].reduce_range
    res = prepare(
        model,
        name="c",
        workdir=tmp_path / "w",
        input_spec="x:float32:[batch,64]",
        output_names=["logits"],
        quantize_mode="dynamic",
        eval_data=data / "eval.npz",
        metadata=meta,
        target="x86_64",
        measure=False,
    )
    assert res.metadata.quantization.target_arch == "x86_64" and res.metadata.quantization.reduce_range
    with pytest.raises(BadRequest, match="unknown target"):
        options_for("mips")


def test_dataset_formats_and_reader(tmp_path):
    a = np.arange(12, dtype=np.float64).reshape(6, 2)
    np.save(tmp_path / "a.npy", a)
    ds = load_dataset(tmp_path / "a.npy", ["x"])
    assert ds.batches[0]["x"].dtype == np.float32 and len(ds) == 6 and ds.labels is None
    folder = tmp_path / "f"
    folder.mkdir()
    np.savez(folder / "1.npz", x=a[:4], labels=np.arange(4))
    np.savez(folder / "2.npz", x=a[4:], labels=np.arange(2))
    ds = load_dataset(folder, ["x"])
    assert len(ds.batches) == 2 and list(ds.labels) == [0, 1, 2, 3, 0, 1]
    reader = FeedReader(ds.batches)
    assert [len(reader.get_next()["x"]) for _ in range(2)] == [4, 2] and reader.get_next() is None
    reader.rewind()
    assert reader.get_next() is not None
    with pytest.raises(BadRequest, match="missing arrays"):
        load_dataset(folder / "1.npz", ["input_ids", "attention_mask"])
    with pytest.raises(BadRequest, match="no such file"):
        load_dataset(tmp_path / "missing.npz", ["x"])


def test_quantize_without_calibration_is_bad_request(tmp_path, classifier):
    model, _, _ = classifier
    from modelbay.convert.converter import convert

    c = convert(model, tmp_path / "m.onnx", input_spec="x:float32:[batch,64]")
    with pytest.raises(BadRequest, match="calibration"):
        quantize(c.onnx_path, tmp_path / "q.onnx", "static", TARGETS["arm64"], None)


def test_metadata_naming_a_missing_output_is_a_clear_error(tmp_path, classifier):
    """Refused after the export and before quantization, saying the outputs there are and how to name them."""
    from modelbay.errors import BadRequest

    model, meta, data = classifier
    with pytest.raises(BadRequest, match=r"outputs are \['.+'\]; .* or name the exported outputs with --output-name"):
        prepare(
            model,
            name="c",
            workdir=tmp_path / "w",
            input_spec="x:float32:[batch,64]",
            quantize_mode="dynamic",
            eval_data=data / "eval.npz",
            metadata=meta,
            measure=False,
        )


_SIDE_EFFECTS = """
import json, logging, sys, warnings
from pathlib import Path
import numpy as np, torch, torch.onnx, onnxscript, onnxruntime.quantization.shape_inference
from modelbay.convert.data import Dataset
from modelbay.convert.pipeline import prepare
from modelbay.convert.quantize import compact_kept, options_for, quantize

NAMES = ("torch.onnx", "torch.export", "onnxscript", "onnxruntime.quantization", "transformers")
def state():
    root = logging.getLogger()
    return [root.level, len(root.handlers), len(root.filters), len(warnings.filters),
            [logging.getLogger(n).level for n in NAMES]]

work = Path(sys.argv[1])
before = state()
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
x = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)
# one torch export, then both quantizers (static pre-processes, dynamic nags about it)
res = prepare(model, name="t", workdir=work / "s", input_spec="x:float32:[batch,16]", quantize_mode="static",
              eval_data=Dataset([{"x": x}]), calibration=[{"x": x}], measure=False)
quantize(res.fp32_path, work / "dynamic.onnx", "dynamic", options_for("arm64"))
kept = compact_kept(Path(sys.argv[2]), ["mm"], work / "compact.onnx")  # imports matmul_nbits_quantizer
after = state()
with warnings.catch_warnings(record=True) as caught:
    warnings.warn("still shown", FutureWarning)
print(json.dumps({"before": before, "after": after, "kept": kept, "shown": [str(w.message) for w in caught]}))
"""


def test_converting_and_quantizing_leave_logging_and_warnings_as_they_were(tmp_path):
    """No global side effects: root logger level/handlers, logger levels and warning filters unchanged."""
    import json
    import subprocess
    import sys

    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])],
        [w],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "mm.onnx"))
    r = subprocess.run(
        [sys.executable, "-c", _SIDE_EFFECTS, str(tmp_path), str(tmp_path / "mm.onnx")],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PYTHONPATH": ":".join(sys.path)},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["kept"] == ["mm"]
    assert out["after"] == out["before"]
    assert out["before"][:2] == [logging.WARNING, 0]  # a fresh interpreter: no handler, WARNING
    assert out["shown"] == ["still shown"]
    assert "Please consider to run pre-processing" not in r.stderr
