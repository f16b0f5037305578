"""V1 predict over HTTP: text with its tokenizer, images, tabular rows, raw strings, raw tensors; clear 4xx."""

from __future__ import annotations

import base64
import contextlib
import io
import json
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

from modelbay.manifest import (
    EmbedderPostprocessing,
    TabularPreprocessing,
    TextPreprocessing,
    VersionMetadata,
)
from modelbay.registry import Registry
from modelbay.settings import Settings
from tests.inference_models import (
    digits_metadata,
    image_classifier,
    make_tokenizer,
    spam_metadata,
    string_classifier,
    text_embedder,
)
from tests.servers import running

WORDS = ["free", "money", "meeting", "lunch", "winner"]


def register_text(reg: Registry, tmp_path: Path, max_length: int = 12):
    from tokenizers import Tokenizer

    tok_path = make_tokenizer(tmp_path / "tokenizer.json")
    tok = Tokenizer.from_file(str(tok_path))
    path, table, types = text_embedder(tmp_path / "embedder.onnx", tok.get_vocab_size())
    meta = VersionMetadata(
        task="embedder",
        preprocessing=TextPreprocessing(max_length=max_length),
        postprocessing=EmbedderPostprocessing(output="last_hidden_state"),
    )
    reg.register_version("minilm", path, meta, {"tokenizer.json": tok_path}, aliases=["production"])
    return tok, table + types[0]  # single texts have token type 0 everywhere


@contextlib.contextmanager
def serve(store, tmp_path: Path, mlp_path: Path):
    from modelbay.api.app import create_app

    reg = Registry(store)
    tok, table = register_text(reg, tmp_path)
    img, weights = image_classifier(tmp_path / "digits.onnx")
    reg.register_version("digits", img, digits_metadata())
    spam, spam_w = string_classifier(tmp_path / "spam.onnx", WORDS)
    reg.register_version("spam", spam, spam_metadata())
    reg.register_version(
        "iris", mlp_path, VersionMetadata(preprocessing=TabularPreprocessing(input="x", columns=["a", "b", "c", "d"]))
    )
    reg.register_version("mlp", mlp_path, aliases=["production"])
    # protocol tests: keys are covered by test_auth/test_tenants (the route sweep includes these routes)
    app = create_app(Settings(store_url=store.url, cache_dir=tmp_path / "cache", auth=False), store=store)
    with running(app) as url:
        yield SimpleNamespace(url=url, app=app, tok=tok, table=table, weights=weights, spam_w=spam_w, mlp=mlp_path)


@pytest.fixture(scope="module")
def local(tmp_path_factory, mlp_path):
    """One server for the read-only tests of this module (tests that change limits restore them)."""
    from modelbay.storage.local import LocalStore

    tmp = tmp_path_factory.mktemp("v1")
    with serve(LocalStore(tmp / "store"), tmp, mlp_path) as s:
        s.tmp = tmp
        yield s


def predict(s, path: str, body) -> httpx.Response:
    return httpx.post(f"{s.url}/v1/models/{path}:predict", json=body)


def _embed(tok, table, text: str, max_length: int = 12) -> np.ndarray:
    tok = tok.__class__.from_str(tok.to_str())
    tok.enable_truncation(max_length)
    ids = tok.encode(text).ids
    v = table[ids].mean(axis=0)
    return v / np.linalg.norm(v)


def test_text_embedder_with_its_tokenizer(store, tmp_path, mlp_path):
    """The V1 path serves a text model with its tokenizer (local store and S3)."""
    with serve(store, tmp_path, mlp_path) as s:
        texts = ["hello world", "the quick brown fox jumps over the lazy dog and the cat sat on the mat"]
        r = predict(s, "minilm", {"instances": texts})
        assert r.status_code == 200, r.text
        assert r.headers["x-model-version"] == "1" and "inference;dur=" in r.headers["server-timing"]
        vectors = np.array(r.json()["predictions"])
        assert vectors.shape == (2, 8)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, rtol=1e-5)
        # the masked mean over the real tokens ([CLS] ... [SEP], truncated to 12), L2-normalised
        for text, v in zip(texts, vectors):
            np.testing.assert_allclose(v, _embed(s.tok, s.table, text), rtol=1e-5, atol=1e-6)
        # padding to the longest in the batch is masked out: alone or batched, the same vector
        alone = np.array(predict(s, "minilm", {"instances": [texts[0]]}).json()["predictions"][0])
        np.testing.assert_allclose(alone, vectors[0], rtol=1e-5, atol=1e-6)


def test_text_pairs_and_labels_route(local):
    r = predict(local, "minilm/labels/production", {"instances": [{"text": "hello", "text_pair": "world"}]})
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"][0]) == 8


def _png(pixels: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_image_classifier_nested_lists_and_png(local):
    rng = np.random.default_rng(0)
    digit = rng.integers(0, 17, (8, 8)).astype(np.float32)  # sklearn digits range 0..16
    r = predict(local, "digits", {"instances": [digit.tolist()], "parameters": {"top_k": 2}})
    assert r.status_code == 200, r.text
    p = r.json()["predictions"][0]
    logits = digit.reshape(1, -1) @ local.weights
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert p["label"] == str(int(np.argmax(probs))) and len(p["top_k"]) == 2
    assert p["score"] == pytest.approx(float(probs.max()), rel=1e-5)
    # the same picture as a 0..255 PNG, 16x16: decoded, resized to 8x8 and rescaled to 0..16
    img = np.kron(digit * 255 / 16, np.ones((2, 2)))
    r = predict(local, "digits", {"instances": [_png(img), {"b64": _png(img)}]})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert preds[0] == preds[1] and len(preds[0]["top_k"]) == 3
    assert preds[0]["label"] == p["label"]


def test_string_classifier_and_tabular_rows(local):
    import onnxruntime as ort

    r = predict(local, "spam", {"instances": ["free money", "lunch", "meeting"]})
    assert r.status_code == 200, r.text
    want = ort.InferenceSession(str(local.tmp / "spam.onnx")).run(
        None, {"text": np.array([["free money"], ["lunch"], ["meeting"]], dtype=object)}
    )[0]
    for p, row in zip(r.json()["predictions"], want):
        assert p["label"] == ["ham", "spam"][int(np.argmax(row))]
        assert p["score"] == pytest.approx(float(row.max()), rel=1e-5)
    rows = [{"a": 1, "b": 2, "c": 3, "d": 4}, [5, 6, 7, 8]]
    r = predict(local, "iris", {"instances": rows})
    assert r.status_code == 200, r.text
    x = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32)
    want = ort.InferenceSession(str(local.mlp)).run(None, {"x": x})[0]
    np.testing.assert_allclose(np.array(r.json()["predictions"]), want, rtol=1e-5)


def test_raw_model_rows_and_columnar_inputs(local):
    import onnxruntime as ort

    x = [[1, 2, 3, 4], [0, 0, 0, 1]]
    want = ort.InferenceSession(str(local.mlp)).run(None, {"x": np.array(x, np.float32)})[0]
    for body in ({"instances": x}, {"inputs": x}, {"inputs": {"x": x}}):
        r = predict(local, "mlp", body)
        assert r.status_code == 200, (body, r.text)
        np.testing.assert_allclose(np.array(r.json()["predictions"]), want, rtol=1e-5)
    assert predict(local, "mlp/versions/1", {"instances": x}).status_code == 200


def test_model_status(local):
    st = httpx.get(f"{local.url}/v1/models/mlp").json()
    assert st["model_version_status"][0]["state"] == "AVAILABLE" and st["version"] == 1
    assert httpx.get(f"{local.url}/v1/models/mlp").headers["x-model-version"] == "1"
    assert httpx.get(f"{local.url}/v1/models/mlp/labels/production").json()["version"] == 1
    assert httpx.get(f"{local.url}/v1/models/ghost").status_code == 404


@pytest.mark.parametrize(
    "path,body,status,match",
    [
        ("minilm", {"instances": [42]}, 400, "instance 0: expected a string"),
        ("minilm", {"instances": []}, 400, "no instances"),
        ("minilm", {"instances": "hello"}, 400, "must be a list"),
        ("minilm", {"text": "hello"}, 400, 'missing "instances"'),
        ("minilm", [1, 2], 400, "JSON object"),
        ("mlp", {"instances": [[1, 2, 3, 4], [1, 2]]}, 400, "same shape"),
        ("mlp", {"instances": [[1, 2, 3]]}, 400, "dimension 1 must be 4"),
        ("mlp", {"instances": [["a", "b", "c", "d"]]}, 400, "expected numbers"),
        ("iris", {"instances": [{"a": 1, "b": 2, "c": 3}]}, 400, "missing columns ['d']"),
        ("iris", {"instances": [{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}]}, 400, "unknown columns ['e']"),
        ("digits", {"instances": ["not base64!"]}, 400, "not valid base64"),
        ("digits", {"instances": [base64.b64encode(b"not an image").decode()]}, 400, "not a readable PNG/JPEG"),
        ("digits", {"instances": [[[1, 2], [3, 4]]]}, 400, "pixel array of shape [2, 2]"),
        ("digits", {"instances": [[[0] * 8] * 8], "parameters": {"top_k": 0}}, 400, "top_k"),
        ("spam", {"instances": [["free"]]}, 400, "expected a string"),
        ("ghost", {"instances": [1]}, 404, "no model named 'ghost'"),
        ("mlp/labels/canary", {"instances": [[1, 2, 3, 4]]}, 404, "no alias 'canary'"),
        ("mlp/versions/7", {"instances": [[1, 2, 3, 4]]}, 404, "no version 7"),
        ("mlp/versions/latest", {"instances": [[1, 2, 3, 4]]}, 400, "use /labels/latest"),
    ],
)
def test_bad_predict_requests_are_clear_4xx(local, path, body, status, match):
    r = predict(local, path, body)
    assert r.status_code == status, r.text
    assert match in r.json()["error"]


def test_malformed_json_and_limits(local):
    limits = local.app.state.settings.limits
    saved = (limits.max_instances, limits.max_body_bytes)
    try:
        _limits(local)
    finally:
        limits.max_instances, limits.max_body_bytes = saved


def _limits(local):
    r = httpx.post(
        f"{local.url}/v1/models/mlp:predict", content=b'{"instances": [', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]
    local.app.state.settings.limits.max_instances = 3
    r = predict(local, "mlp", {"instances": [[1, 2, 3, 4]] * 4})
    assert r.status_code == 413 and "limit is 3" in r.json()["error"]
    local.app.state.settings.limits.max_body_bytes = 100
    r = predict(local, "minilm", {"instances": ["x" * 200]})
    assert r.status_code == 413


def test_non_finite_predictions_are_standard_json(local):
    """A NaN input runs through to NaN outputs: the answer says null, which every JSON parser reads,
    not Python's bare NaN."""
    r = httpx.post(
        f"{local.url}/v1/models/mlp:predict",
        content=b'{"instances": [[NaN, 1, 2, 3], [0, 1, 2, 3]]}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 200, r.text

    def strict(token):
        raise AssertionError(f"non-standard JSON token {token}")

    rows = json.loads(r.content, parse_constant=strict)["predictions"]
    assert rows[0] == [None, None, None] and all(isinstance(v, float) for v in rows[1])
