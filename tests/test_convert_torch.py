"""Conversion from each accepted source, checked against the framework's own outputs."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from modelbay.convert.converter import convert  # noqa: E402
from modelbay.errors import BadRequest, InvalidModel  # noqa: E402

FACTORY = "modelbay.convert.examples.mlp:make_mlp"
SPEC = "x:float32:[batch,100]"


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(100, 50), torch.nn.ReLU(), torch.nn.Linear(50, 10)).eval()


def _run(path, **feed):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)


def _input_dims(path):
    m = onnx.load(str(path))
    return {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in m.graph.input}


def test_factory_with_state_dict_exports_dynamic_batch(tmp_path):
    model = _mlp()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    res = convert(FACTORY, tmp_path / "m.onnx", input_spec=SPEC, state_dict=tmp_path / "w.pt", output_names=["logits"])
    assert res.kind == "torch_module" and res.exporter.startswith("torch.export")
    assert res.check.within and res.check.max_abs_error < 1e-4
    assert _input_dims(res.onnx_path) == {"x": ["batch", 100]}
    x = np.random.default_rng(1).standard_normal((7, 100)).astype(np.float32)
    (y,) = _run(res.onnx_path, x=x)
    np.testing.assert_allclose(y, model(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


def test_torchscript_uses_torchscript_exporter(tmp_path):
    model = _mlp()
    torch.jit.save(torch.jit.script(model), tmp_path / "ts.pt")
    res = convert(tmp_path / "ts.pt", tmp_path / "ts.onnx", input_spec=SPEC)
    assert res.kind == "torchscript" and res.exporter == "torchscript"
    x = np.ones((5, 100), np.float32)
    np.testing.assert_allclose(_run(res.onnx_path, x=x)[0], model(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


def test_exported_program_gets_spec_axis_names(tmp_path):
    model = _mlp()
    batch = torch.export.Dim("b")
    ep = torch.export.export(model, (torch.randn(4, 100),), dynamic_shapes=({0: batch},))
    torch.export.save(ep, tmp_path / "m.pt2")
    res = convert(tmp_path / "m.pt2", tmp_path / "ep.onnx", input_spec=SPEC)
    assert res.kind == "exported_program"
    assert _input_dims(res.onnx_path)["x"] == ["batch", 100]
    assert res.check.max_abs_error < 1e-4


def test_sklearn_pipeline_pickle(tmp_path):
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    d = load_digits()
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(d.data, d.target)
    (tmp_path / "p.pkl").write_bytes(pickle.dumps(pipe))
    x = d.data[:50].astype(np.float32)
    res = convert(tmp_path / "p.pkl", tmp_path / "p.onnx", input_spec="x:float32:[batch,64]", samples=[{"x": x}])
    assert res.kind == "sklearn" and res.check.label_agreement == 1.0
    label, proba = _run(res.onnx_path, x=x)
    np.testing.assert_array_equal(label, pipe.predict(x))
    np.testing.assert_allclose(proba, pipe.predict_proba(x), atol=1e-4)


def test_onnx_is_taken_as_is(tmp_path):
    first = convert(_mlp(), tmp_path / "a.onnx", input_spec=SPEC)
    res = convert(first.onnx_path, tmp_path / "b.onnx")
    assert res.kind == "onnx" and res.check is None
    assert (tmp_path / "b.onnx").read_bytes() == (tmp_path / "a.onnx").read_bytes()


def test_check_reports_drift_beyond_tolerance(tmp_path):
    # a real conversion differs from PyTorch by float rounding; with a zero
    # tolerance the check must refuse it and say by how much
    from modelbay.convert.examples.digits import make_cnn

    torch.manual_seed(0)
    with pytest.raises(InvalidModel) as e:
        convert(make_cnn().eval(), tmp_path / "c.onnx", input_spec="image:float32:[batch,1,8,8]", atol=0.0, rtol=0.0)
    assert e.value.details["check"]["max_abs_error"] > 0
    assert "max abs error" in e.value.message


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        (dict(model="nope.pt2"), BadRequest, "no such model file"),
        (dict(model="no_such_module_xyz:make"), BadRequest, "cannot import"),
        (dict(model=FACTORY, input_spec="x:float99:[batch,100]"), BadRequest, "dtype"),
        (dict(model=FACTORY, input_spec="x:float32"), BadRequest, "name:dtype"),
        (dict(model=FACTORY), BadRequest, "input spec"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path, kwargs, error, text):
    model = kwargs.pop("model")
    with pytest.raises(error, match=text):
        convert(model, tmp_path / "x.onnx", **kwargs)


def test_wrong_state_dict_and_bare_state_dict(tmp_path):
    torch.save(torch.nn.Linear(3, 3).state_dict(), tmp_path / "other.pt")
    with pytest.raises(InvalidModel, match="does not fit"):
        convert(FACTORY, tmp_path / "x.onnx", input_spec=SPEC, state_dict=tmp_path / "other.pt")
    with pytest.raises(BadRequest, match="state_dict"):
        convert(tmp_path / "other.pt", tmp_path / "x.onnx", input_spec=SPEC)
    (tmp_path / "m.txt").write_text("hello")
    with pytest.raises(BadRequest, match="unknown model format"):
        convert(tmp_path / "m.txt", tmp_path / "x.onnx")


def test_core_package_never_imports_torch():
    code = (
        "import sys, modelbay.convert, modelbay.convert.pipeline, modelbay.cli, "
        "modelbay.convert.examples, modelbay.convert.gate; "
        "bad = [m for m in ('torch', 'transformers', 'sklearn', 'skl2onnx') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": ":".join(sys.path)})


def test_example_input_instead_of_spec(tmp_path):
    x = np.random.default_rng(2).standard_normal((3, 100)).astype(np.float32)
    res = convert(_mlp(), tmp_path / "e.onnx", example={"x": x})
    assert _input_dims(res.onnx_path) == {"x": ["batch", 100]}
    assert res.inputs[0].dtype == "float32" and res.check.samples == 3
    with pytest.raises(BadRequest, match="batch axis"):
        convert(_mlp(), tmp_path / "e1.onnx", example={"x": x[:1]})


def test_exported_program_without_spec_uses_its_example_inputs(tmp_path):
    ep = torch.export.export(_mlp(), (torch.randn(4, 100),), dynamic_shapes=({0: torch.export.Dim("n")},))
    torch.export.save(ep, tmp_path / "m.pt2")
    res = convert(tmp_path / "m.pt2", tmp_path / "m.onnx")
    # nn.Sequential.forward names its argument "input"
    assert [s.name for s in res.inputs] == ["input"] and res.check.samples == 4
    (y,) = _run(res.onnx_path, input=np.zeros((9, 100), np.float32))
    assert y.shape == (9, 10)
