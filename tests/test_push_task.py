"""What a pushed model is for, as a new user pushes it: real scikit-learn and torch models through the CLI.

A classifier (``--task classifier``, ``--labels``, or an evaluation file with ``labels``) answers labels, scores
and top-k as the demo models do; scikit-learn models say their own inputs; ``module:factory`` imports from the
current directory; metadata mistakes are refused before the slow steps, saying what to change.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("modelbay.convert.pipeline")
pytest.importorskip("sklearn")
pytest.importorskip("skl2onnx")

from modelbay.errors import BadRequest

SHARED = str(Path(__file__).resolve().parents[1] / "shared")
# the registry's stores have their own tests: these run on the local one
LOCAL = pytest.mark.parametrize("store", ["local"], indirect=True)


@pytest.fixture
def modelbay_cli(tmp_path, server):
    """The `modelbay` console script as a user runs it: the current directory is NOT on its import path
    (unlike `python -m modelbay`), this tree's modelbay, the test server and its saved key."""
    script = tmp_path / "bin" / "modelbay"
    script.parent.mkdir()
    script.write_text("import sys\nfrom modelbay.cli import main\nsys.exit(main())\n")

    def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": SHARED, "COLUMNS": "100", "MODELBAY_URL": server}
        return subprocess.run(
            [sys.executable, str(script), *args],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
            cwd=cwd or tmp_path,
        )

    return run


@pytest.fixture(scope="module")
def digits_357(tmp_path_factory):
    """LogisticRegression on scikit-learn's digits 3, 5 and 7 (class values, not indices), pickled."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    d = load_digits()
    keep = np.isin(d.target, [3, 5, 7])
    x, y = d.data[keep].astype(np.float32), d.target[keep]
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    clf = LogisticRegression(max_iter=500).fit(xtr, ytr)
    folder = tmp_path_factory.mktemp("digits357")
    with open(folder / "clf.pkl", "wb") as f:
        pickle.dump(clf, f)
    np.savez(folder / "eval.npz", x=xte, labels=yte)
    return folder, clf, xte, yte


@LOCAL
def test_sklearn_classifier_with_task_and_eval_answers_labels(modelbay_cli, client, digits_357):
    """The issue's command: no input spec (n_features_in_ says it), no traceback (the gate reads the
    probabilities, not skl2onnx's integer label), and predictions as the demo models give them."""
    folder, clf, xte, yte = digits_357
    r = modelbay_cli("push", str(folder / "clf.pkl"), "--name", "digits357", "--task", "classifier", "--eval",
                     str(folder / "eval.npz"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "(input x:float32:[batch,64] read from the model)" in r.stderr
    assert "predictions: label, score and top 5 from output 'probabilities'; 3 labels" in r.stderr
    m = client.version("digits357", 1)
    assert m.task == "classifier" and m.labels == ["3", "5", "7"]
    assert m.postprocessing.scores == "probabilities" and m.postprocessing.apply_softmax is False
    # the evaluation maps class values 3/5/7 to their columns: the accuracy is scikit-learn's own
    assert m.metrics["evaluation"]["accuracy"] == pytest.approx(clf.score(xte, yte), abs=1e-9)
    out = client.predict("digits357", None, xte[:8].tolist()).predictions
    assert [p["label"] for p in out] == [str(v) for v in clf.predict(xte[:8])]
    assert all(len(p["top_k"]) == 3 and p["score"] == pytest.approx(clf.predict_proba(xte[i : i + 1]).max(), abs=1e-4)
               for i, p in enumerate(out))  # fmt: skip


@LOCAL
def test_eval_labels_alone_make_a_classifier(modelbay_cli, client, digits_357):
    folder, _, xte, _ = digits_357
    r = modelbay_cli("push", str(folder / "clf.pkl"), "--name", "implied", "--eval", str(folder / "eval.npz"))
    assert r.returncode == 0, r.stderr
    m = client.version("implied", 1)
    assert m.task == "classifier" and m.metrics["evaluation"]["samples"] == len(xte)
    assert "accuracy" in m.metrics["evaluation"]  # not a max-abs-error over raw outputs


FACTORY = """import torch


def make_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
"""


@pytest.fixture
def my_pkg(tmp_path):
    """A user's project folder: my_pkg/nets.py with a factory, its weights, and evaluation data."""
    import torch

    work = tmp_path / "work"
    (work / "my_pkg").mkdir(parents=True)
    (work / "my_pkg" / "__init__.py").write_text("")
    (work / "my_pkg" / "nets.py").write_text(FACTORY)
    scope: dict = {}
    exec(FACTORY, scope)
    net = scope["make_net"]().eval()
    torch.save(net.state_dict(), work / "w.pt")
    x = np.random.default_rng(1).standard_normal((96, 20)).astype(np.float32)
    with torch.no_grad():
        logits = net(torch.from_numpy(x)).numpy()
    np.savez(work / "eval.npz", x=x, labels=logits.argmax(1))
    return work, x, logits


@LOCAL
def test_module_factory_from_the_current_directory_with_labels(modelbay_cli, client, my_pkg):
    work, x, logits = my_pkg
    r = modelbay_cli("push", "my_pkg.nets:make_net", "--state-dict", "w.pt", "-i", "x:float32:[batch,20]",
                     "--labels", "cat,dog,bird", "--name", "pets", cwd=work)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "with a softmax; 3 labels" in r.stderr
    out = client.predict("pets", None, x[:5].tolist()).predictions
    names = ["cat", "dog", "bird"]
    assert [p["label"] for p in out] == [names[i] for i in logits[:5].argmax(1)]
    for p, row in zip(out, logits[:5], strict=True):
        probs = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
        assert [t["label"] for t in p["top_k"]] == [names[i] for i in np.argsort(-probs)]
        assert p["score"] == pytest.approx(float(probs.max()), abs=1e-4)


@LOCAL
def test_a_torch_eval_file_with_labels_gates_on_accuracy(modelbay_cli, client, my_pkg):
    work, _, _ = my_pkg
    r = modelbay_cli("push", "my_pkg.nets:make_net", "--state-dict", "w.pt", "-i", "x:float32:[batch,20]",
                     "--eval", "eval.npz", "-q", "dynamic", "--name", "gated", cwd=work)  # fmt: skip
    assert r.returncode == 0, r.stderr
    gate = client.version("gated", 1).metrics["gate"]
    assert gate["task"] == "classifier" and gate["metric"] == "accuracy" and gate["fp32"]["accuracy"] == 1.0


@LOCAL
def test_a_missing_module_says_where_it_looked(modelbay_cli, my_pkg):
    work, _, _ = my_pkg
    r = modelbay_cli("push", "not_my_pkg.nets:make_net", "-i", "x:float32:[batch,20]", "--name", "x", cwd=work)
    assert r.returncode == 2 and "No module named 'not_my_pkg'" in r.stderr and f"looked in {work}" in r.stderr


def test_metadata_naming_a_missing_input_is_refused_before_conversion(monkeypatch, tmp_path):
    from modelbay.convert import pipeline
    from modelbay.manifest import TabularPreprocessing, VersionMetadata

    def no_conversion(*a, **kw):
        raise AssertionError("converted before checking the metadata")

    monkeypatch.setattr(pipeline, "convert", no_conversion)
    meta = VersionMetadata(task="classifier", preprocessing=TabularPreprocessing(input="features"))
    with pytest.raises(BadRequest) as e:
        pipeline.prepare("modelbay.convert.examples.mlp:make_mlp", name="m", workdir=tmp_path,
                         input_spec="x:float32:[batch,100]", metadata=meta, quantize_mode="none")  # fmt: skip
    assert e.value.message == (
        "metadata (before conversion): preprocessing.input names input 'features', which the model does not "
        "have: its inputs are ['x']; set preprocessing.input to one of them"
    )


@LOCAL
def test_an_output_name_push_can_set_is_checked_after_conversion_before_the_gate(modelbay_cli, client, my_pkg):
    work, _, _ = my_pkg
    meta = work / "meta.json"
    meta.write_text(json.dumps({"task": "classifier", "postprocessing": {"kind": "classifier", "scores": "logits"}}))
    args = ["push", "my_pkg.nets:make_net", "--state-dict", "w.pt", "-i", "x:float32:[batch,20]", "--metadata",
            str(meta), "--eval", "eval.npz", "-q", "dynamic", "--name", "named"]  # fmt: skip
    r = modelbay_cli(*args, cwd=work)
    said = " ".join(r.stderr.split())
    assert r.returncode == 2 and "metadata (after conversion): postprocessing.scores names output 'logits'" in said
    assert "or name the exported outputs with --output-name" in said
    assert "✓ convert" in said and "quantize" not in said  # refused before quantizing and gating
    assert client.models() == []
    r = modelbay_cli(*args, "--output-name", "logits", cwd=work)
    assert r.returncode == 0, r.stderr
    assert client.version("named", 1).postprocessing.scores == "logits"


def _embedder_without_token_types(path: Path, vocab: int = 64) -> Path:
    """input_ids, attention_mask [batch, seq] -> last_hidden_state: no token_type_ids input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = np.random.default_rng(0).standard_normal((vocab, 8)).astype(np.float32)
    ints = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in ("input_ids", "attention_mask")
    ]
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "input_ids"], ["last_hidden_state"])],
        "embedder",
        ints,
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", 8])],
        [numpy_helper.from_array(table, "table")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@LOCAL
def test_text_defaults_the_model_lacks_are_dropped_and_set_ones_refused_before_upload(modelbay_cli, client, tmp_path):
    from tests.inference_models import make_tokenizer

    onnx_path = _embedder_without_token_types(tmp_path / "emb.onnx")
    tok = make_tokenizer(tmp_path / "tokenizer.json")
    meta = {"task": "embedder", "preprocessing": {"kind": "text"},
            "postprocessing": {"kind": "embedder", "output": "last_hidden_state"}}  # fmt: skip
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    r = modelbay_cli("push", str(onnx_path), "--name", "emb", "--metadata", str(tmp_path / "meta.json"),
                     "--file", str(tok))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert client.version("emb", 1).preprocessing.token_type_ids is None  # the default the model lacks
    assert len(client.predict("emb", None, ["hello world"]).predictions[0]) == 8

    meta["preprocessing"]["token_type_ids"] = "token_type_ids"  # said outright: a mistake to point out
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    r = modelbay_cli("push", str(onnx_path), "--name", "emb", "--metadata", str(tmp_path / "meta.json"),
                     "--file", str(tok))  # fmt: skip
    assert r.returncode == 2
    assert "preprocessing.token_type_ids names input 'token_type_ids'" in r.stderr
    assert '(or "token_type_ids": null if the model takes none)' in " ".join(r.stderr.split())
    assert "upload" not in r.stderr.replace("--file", "")  # refused before any byte went up
    assert [v.version for v in client.versions("emb")] == [1]


@LOCAL
def test_metadata_schema_is_served_and_validates_what_push_takes(modelbay_cli, client, server):
    import jsonschema

    from modelbay.convert.examples import digits, minilm
    from modelbay.manifest import VersionMetadata

    schema = client.metadata_schema()
    assert schema == VersionMetadata.model_json_schema()
    for meta in (digits.metadata(), minilm.metadata()):
        jsonschema.validate(meta.model_dump(mode="json"), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"task": "painter"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"preprocessing": {"kind": "text", "tokenizr": "x"}}, schema)  # a typo is refused
    r = modelbay_cli("metadata-schema")
    assert r.returncode == 0 and json.loads(r.stdout) == schema
