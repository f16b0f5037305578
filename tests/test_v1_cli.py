"""The Client's inference methods and `modelbay predict`, against a real local server."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from modelbay.cli import app
from modelbay.client import ApiError, Client
from modelbay.manifest import ClassifierPostprocessing, ImagePreprocessing, VersionMetadata
from modelbay.registry import Registry
from tests.inference_models import image_classifier
from tests.test_v1 import register_text


@pytest.fixture
def url(tmp_path, mlp_path, serve_store):
    from modelbay.storage.local import LocalStore

    store = LocalStore(tmp_path / "store")
    reg = Registry(store)
    register_text(reg, tmp_path)
    reg.register_version("mlp", mlp_path, aliases=["production"])
    img, _ = image_classifier(tmp_path / "digits.onnx")
    reg.register_version(
        "digits",
        img,
        VersionMetadata(
            task="classifier",
            labels=[f"digit-{i}" for i in range(10)],
            preprocessing=ImagePreprocessing(input="pixels", height=8, width=8, layout="flat", scale=1.0, max_value=16),
            postprocessing=ClassifierPostprocessing(scores="probabilities", top_k=3),
        ),
    )
    return serve_store(store)


def test_client_predict_infer_and_metadata(url, mlp_path):
    with Client(url) as c:
        p = c.predict("minilm", "production", ["hello world"])
        assert p.version == 1 and len(p.predictions[0]) == 8 and "inference" in p.server_timing
        assert c.predict("mlp", 1, [[1, 2, 3, 4]]).version == 1
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        want = ort.InferenceSession(str(mlp_path)).run(None, {"x": x})[0]
        for binary in (True, False):
            res = c.infer("mlp", {"x": x}, binary=binary, request_id="c1")
            assert res.version == 1 and res.id == "c1"
            np.testing.assert_allclose(res.outputs["probabilities"], want, rtol=1e-6)
        meta = c.model_metadata("mlp", "production")
        assert meta["inputs"][0] == {"name": "x", "datatype": "FP32", "shape": [-1, 4]}
        with pytest.raises(ApiError) as e:
            c.infer("mlp", {"x": x.astype(np.float64)})
        assert e.value.status == 400 and "FP64" in e.value.message


def _run(url, *args):
    r = CliRunner().invoke(app, ["--url", url, *args], catch_exceptions=False, env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    return r.output


def test_cli_predict_text_data_and_files(url, tmp_path):
    out = _run(url, "predict", "minilm:production", "--text", "hello world", "--text", "a dog")
    assert "minilm v1" in out and "hello world" in out and " 8 " in out
    res = json.loads(_run(url, "--json", "predict", "mlp@1", "--data", "[[1, 2, 3, 4]]"))
    assert res["version"] == 1 and len(res["predictions"][0]) == 3
    res = json.loads(_run(url, "--json", "predict", "mlp", "--data", '{"instances": [[0, 0, 0, 1]]}'))
    assert len(res["predictions"]) == 1
    from PIL import Image

    png = tmp_path / "seven.png"
    Image.fromarray(np.full((8, 8), 200, np.uint8), mode="L").save(png)
    texts = tmp_path / "texts.txt"
    texts.write_text("first line\n\nsecond line\n")
    out = _run(url, "predict", "digits", "--file", str(png), "--top-k", "2")
    assert "digit-" in out and "digits v1" in out and "seven.png" in out  # the file's name, not its base64
    res = json.loads(_run(url, "--json", "predict", "minilm", "--file", str(texts)))
    assert len(res["predictions"]) == 2


def test_cli_predict_errors_are_clear(url):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import modelbay

    # the subprocess must import this tree's modelbay, not the venv's installed one
    env = {**os.environ, "PYTHONPATH": str(Path(modelbay.__file__).parents[1])}

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "modelbay", "--url", url, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )

    # the caller's mistakes: exit 2, a message, no traceback
    r = cli("predict", "ghost", "--text", "hi")
    assert r.returncode == 2 and "404" in r.stderr and "no model named 'ghost'" in r.stderr
    r = cli("predict", "mlp", "--data", "[[1, 2]]")
    assert r.returncode == 2 and "dimension 1 must be 4" in r.stderr and "Traceback" not in r.stderr
    r = cli("predict", "mlp", "--data", "{oops")
    assert r.returncode == 2 and "--data is not JSON" in r.stderr
    r = cli("predict", "mlp")
    assert r.returncode == 2 and "nothing to predict" in r.stderr
