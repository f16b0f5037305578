"""Real skl2onnx models through V1 predict: the digits and sensitive-info example shapes.

Digits: LogisticRegression on sklearn's 8x8 digits (float [N, 64], pixels 0..16)
with ImagePreprocessing. Text: a TF-IDF + LogisticRegression pipeline taking a
string tensor [N, 1], converted without ZipMap so probabilities are a tensor.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from modelbay.manifest import ClassifierPostprocessing, StringPreprocessing, VersionMetadata
from modelbay.registry import Registry
from tests.inference_models import digits_metadata

pytest.importorskip("skl2onnx")
pytest.importorskip("sklearn")

TEXTS = [
    "my ssn is 123-45-6789",
    "card number 4111 1111 1111 1111",
    "lunch at noon?",
    "see you tomorrow",
    "password: hunter2",
    "the meeting moved to friday",
    "my iban is DE89 3704 0044",
    "nice weather today",
]
SENSITIVE = [1, 1, 0, 0, 1, 0, 1, 0]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.datasets import load_digits
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from modelbay.api.app import create_app
    from modelbay.settings import Settings
    from modelbay.storage.local import LocalStore
    from tests.servers import running

    tmp = tmp_path_factory.mktemp("sklearn")
    digits = load_digits()
    clf = LogisticRegression(max_iter=300).fit(digits.data[:1000], digits.target[:1000])
    onx = to_onnx(
        clf,
        initial_types=[("pixels", FloatTensorType([None, 64]))],
        options={id(clf): {"zipmap": False}},
        target_opset=17,
    )
    (tmp / "digits.onnx").write_bytes(onx.SerializeToString())
    text = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(TEXTS, SENSITIVE)
    # StringNormalizer defaults to the en_US.UTF-8 locale, which minimal images (this one, Lambda's
    # Amazon Linux 2023) lack: onnxruntime then refuses the model. C.UTF-8 is always there.
    onx = to_onnx(
        text,
        initial_types=[("text", StringTensorType([None, 1]))],
        options={id(text.steps[-1][1]): {"zipmap": False}, id(text.steps[0][1]): {"locale": "C.UTF-8"}},
        target_opset=17,
    )
    (tmp / "sensitive.onnx").write_bytes(onx.SerializeToString())

    store = LocalStore(tmp / "store")
    reg = Registry(store)
    reg.register_version("digits", tmp / "digits.onnx", digits_metadata(), aliases=["production"])
    reg.register_version(
        "sensitive",
        tmp / "sensitive.onnx",
        VersionMetadata(
            task="classifier",
            labels=["safe", "sensitive"],
            preprocessing=StringPreprocessing(input="text"),
            postprocessing=ClassifierPostprocessing(scores="probabilities", top_k=2),
        ),
    )
    with running(create_app(Settings(store_url=store.url, cache_dir=tmp / "cache", auth=False), store=store)) as url:
        yield url, clf, text, digits


def test_digits_predictions_match_sklearn(served):
    url, clf, _, digits = served
    images = digits.images[1000:1032]  # held out, 8x8 in 0..16
    r = httpx.post(f"{url}/v1/models/digits:predict", json={"instances": images.tolist()})
    assert r.status_code == 200, r.text
    got = [int(p["label"]) for p in r.json()["predictions"]]
    assert got == clf.predict(digits.data[1000:1032]).tolist()
    probs = clf.predict_proba(digits.data[1000:1001])[0]
    assert r.json()["predictions"][0]["score"] == pytest.approx(float(probs.max()), rel=1e-4)


def test_sensitive_info_classifier_takes_raw_strings(served):
    url, _, text, _ = served
    queries = ["my ssn is 987-65-4321", "lunch tomorrow?"]
    r = httpx.post(f"{url}/v1/models/sensitive:predict", json={"instances": queries})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    want = text.predict_proba(queries)
    for p, row in zip(preds, want):
        assert p["label"] == ["safe", "sensitive"][int(np.argmax(row))]
        assert p["score"] == pytest.approx(float(row.max()), rel=1e-4)
    # the same model over OIP with a BYTES tensor, both outputs (label and probabilities)
    req = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2, 1], "data": queries}]}
    r = httpx.post(f"{url}/v2/models/sensitive/infer", json=req)
    assert r.status_code == 200, r.text
    outs = {o["name"]: o for o in r.json()["outputs"]}
    assert outs["probabilities"]["shape"] == [2, 2]
    np.testing.assert_allclose(np.array(outs["probabilities"]["data"]).reshape(2, 2), want, rtol=1e-4)
