"""``modelbay convert`` as a user runs it: files out, numbers shown, errors without tracebacks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

from modelbay.cli import app as cli  # noqa: E402
from modelbay.manifest import VersionMetadata  # noqa: E402

FACTORY = "modelbay.convert.examples.mlp:make_mlp"


@pytest.fixture
def app():
    return cli


@pytest.fixture
def mlp_files(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(100, 50), torch.nn.ReLU(), torch.nn.Linear(50, 10)).eval()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    x = np.random.default_rng(0).standard_normal((64, 100)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", x=x)
    return tmp_path


def test_convert_and_quantize_writes_models_and_metadata(app, mlp_files):
    out = mlp_files / "out"
    r = CliRunner().invoke(
        app,
        [
            "convert",
            FACTORY,
            "--state-dict",
            str(mlp_files / "w.pt"),
            "-i",
            "x:float32:[batch,100]",
            "--quantize",
            "dynamic",
            "--eval",
            str(mlp_files / "eval.npz"),
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    paths = json.loads(r.stdout.strip().splitlines()[-1])
    meta = VersionMetadata.model_validate_json((out / "metadata.json").read_text())
    assert meta.quantization.method in ("dynamic", "mixed") and meta.metrics["gate"]["passed"]
    assert (out / "model.fp32.onnx").is_file() and paths["int8"].endswith("model.int8.onnx")
    assert "accuracy gate" in r.output and "max abs error" in r.output
    assert "✓ convert" in r.output and "✓ quantize" in r.output and "✓ gate" in r.output  # typed stages, shown


def test_gate_failure_shows_numbers_and_no_traceback(app, mlp_files):
    r = CliRunner().invoke(
        app,
        [
            "convert",
            FACTORY,
            "--state-dict",
            str(mlp_files / "w.pt"),
            "-i",
            "x:float32:[batch,100]",
            "--quantize",
            "dynamic",
            "--eval",
            str(mlp_files / "eval.npz"),
            "--max-abs-error",
            "0",
            "--no-mixed-precision",
            "--out",
            str(mlp_files / "o2"),
        ],
    )
    assert r.exit_code == 2
    assert "gate_failed" in r.output and "max_abs_error" in r.output and "FAIL" in r.output
    assert "✗ gate" in r.output
    assert ("Traceback" not in r.output and r.exception is None) or isinstance(r.exception, SystemExit)


@pytest.mark.parametrize(
    "argv, text",
    [
        (["convert", "missing.pt2"], "no such model file"),
        (["convert", FACTORY, "--metadata", "missing.json"], "missing.json"),
        (["convert", FACTORY, "-i", "x:float32:[batch,100]", "--quantize", "int4"], "dynamic, static, auto or none"),
        (["convert", FACTORY, "-i", "x:float32:[batch,100]", "--quantize", "dynamic"], "evaluation data"),
        (["examples", "build", "resnet"], "no example"),
    ],
)
def test_bad_input_exits_with_a_message(app, tmp_path, argv, text):
    r = CliRunner().invoke(app, argv + (["--out", str(tmp_path / "o")] if argv[0] == "convert" else []))
    assert r.exit_code == 2, r.output
    assert text in r.output and "Traceback" not in r.output
