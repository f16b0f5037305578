"""Decoder language models end to end: tiny random-weight GPT-2 and Llama folders (save_pretrained) are
exported with their KV cache, verified against transformers, quantized behind the generation gate, pushed
through the client, and served over the OpenAI-compatible API to the official ``openai`` client."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pytest

from modelbay.convert.generation import GenerationGate, GenerationThresholds, prepare_causal_lm
from modelbay.convert.pipeline import publish
from modelbay.generation.service import Ask
from tests.lm_models import tiny_lm
from tests.servers import running

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Both tiny models prepared once: GPT-2 with auto quantization, Llama (chat template) in fp32."""
    root = tmp_path_factory.mktemp("lm")
    out = {}
    for arch, mode in (("gpt2", "auto"), ("llama", "none")):
        folder = tiny_lm(root / arch, arch)
        # random weights leave near-ties that 4-bit weights flip and 8-bit ones mostly keep
        loose = GenerationThresholds(max_perplexity_increase=0.10, min_agreement=0.5)
        out[arch] = (
            folder,
            prepare_causal_lm(folder, name=arch, workdir=root / f"{arch}-work", quantize_mode=mode, thresholds=loose),
        )
    return out


@pytest.fixture(scope="module")
def served(built, tmp_path_factory):
    """A keyed server with both models pushed through the client; yields (url, key)."""
    from modelbay.api.app import create_app
    from modelbay.auth import SCOPES, KeyStore
    from modelbay.client import Client
    from modelbay.settings import Limits, Settings
    from modelbay.storage.local import LocalStore

    root = tmp_path_factory.mktemp("lm-serve")
    store = LocalStore(root / "store")
    limits = Limits(max_new_tokens=64, max_prompt_tokens=400, max_prompts=4, max_concurrent_generations=2)
    settings = Settings(store_url=store.url, cache_dir=root / "cache", auth=True, limits=limits)
    key = KeyStore(store).create("default", SCOPES, name="tests", root=True)[1]
    app = create_app(settings, store=store)
    with running(app) as url, Client(url, key) as client:
        for _, prepared in built.values():
            publish(prepared, client=client, aliases=["production"])
        yield url, key, app


def _openai(served):
    url, key, _ = served
    return openai.OpenAI(base_url=f"{url}/openai/v1", api_key=key, max_retries=0)


def test_export_is_verified_against_transformers(built):
    for arch, (_, prepared) in built.items():
        conv = prepared.metadata.metrics["conversion"]
        assert conv["greedy_identical"] and conv["batched_identical"], arch
        assert conv["steps_compared"] >= conv["prompts"]
        assert conv["max_logit_error"] < 1e-3, arch
        spec = prepared.metadata.generation
        assert prepared.metadata.task == "generator" and spec is not None
        assert spec.num_layers == 2 and spec.eos_token_ids


def test_gate_refuses_int4_of_a_random_model_and_keeps_int8(built):
    """Random weights leave near-ties that 4-bit weights flip: auto falls back to int8, and says why."""
    meta = built["gpt2"][1].metadata
    assert meta.quantization is not None and meta.quantization.method == "dynamic"
    refused = meta.metrics["gate_refused"][0]
    assert refused["extra"]["variant"] == "int4" and not refused["passed"]
    assert meta.metrics["gate"]["passed"] and meta.metrics["gate"]["int8"]["greedy_agreement"] >= 0.5


def test_strict_gate_report_names_every_failure(built):
    _, prepared = built["gpt2"]
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(prepared.side_files["tokenizer.json"]))
    strict = GenerationThresholds(max_perplexity_increase=-1.0, min_agreement=1.1)
    report = GenerationGate(prepared.fp32_path, prepared.metadata.generation, tok, strict).check(
        prepared.int8_path, "int8"
    )
    assert not report.passed and len(report.failures) == 2
    assert "perplexity" in report.failures[0] and "agreement" in report.failures[1]
    assert report.margin < 0


def test_fp32_gate_of_itself_passes(built):
    _, prepared = built["llama"]
    from tokenizers import Tokenizer

    spec = prepared.metadata.generation
    tok = Tokenizer.from_file(str(prepared.side_files["tokenizer.json"]))
    gate = GenerationGate(prepared.fp32_path, spec, tok)
    report = gate.check(prepared.fp32_path, "fp32")
    assert report.passed and report.int8["greedy_agreement"] == 1.0
    assert report.int8["perplexity"] == pytest.approx(gate.fp32_ppl)
    assert np.isfinite(gate.fp32_ppl) and gate.fp32_ppl > 1


def test_openai_client_completions_and_stream(served):
    client = _openai(served)
    full = client.completions.create(model="gpt2", prompt="The capital of France is", max_tokens=12, temperature=0)
    text = full.choices[0].text
    assert full.usage.completion_tokens >= 1 and full.usage.prompt_tokens >= 1
    assert full.choices[0].finish_reason in ("stop", "length")
    parts = [
        c.choices[0].text
        for c in client.completions.create(
            model="gpt2:production", prompt="The capital of France is", max_tokens=12, temperature=0, stream=True
        )
    ]
    assert len(parts) > 1 and "".join(parts) == text  # streamed token by token, same greedy text


def test_openai_client_chat_stream_uses_the_chat_template(served):
    client = _openai(served)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    full = client.chat.completions.create(model="llama@1", messages=messages, max_tokens=10, temperature=0)
    chunks = list(
        client.chat.completions.create(model="llama", messages=messages, max_tokens=10, temperature=0, stream=True)
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed == full.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_same_seed_same_text_and_batched_prompts(served):
    client = _openai(served)
    kw = {"model": "llama", "max_tokens": 16, "temperature": 1.0, "top_p": 0.9, "seed": 7}
    a = client.completions.create(prompt="Once upon a time", **kw).choices[0].text
    b = client.completions.create(prompt="Once upon a time", **kw).choices[0].text
    assert a == b
    both = client.completions.create(prompt=["Once upon a time", "Water boils at"], **kw)
    assert [c.index for c in both.choices] == [0, 1]
    assert both.choices[0].text == a  # batching does not change a row's text


def test_stop_sequence_is_never_streamed(served):
    client = _openai(served)
    base = client.completions.create(model="llama", prompt="Once upon a time", max_tokens=16, temperature=0)
    text = base.choices[0].text
    if len(text) < 4:
        pytest.skip("the random model ended at once")
    stop = text[2:4]
    cut = client.completions.create(model="llama", prompt="Once upon a time", max_tokens=16, temperature=0, stop=[stop])
    assert cut.choices[0].text == text[: text.find(stop)] and cut.choices[0].finish_reason == "stop"


def test_limits_answer_4xx_json(served):
    url, key, _ = served
    h = {"Authorization": f"Bearer {key}"}
    cases = [
        ({"model": "gpt2", "prompt": "hi", "max_tokens": 65}, 413),  # over max_new_tokens
        ({"model": "gpt2", "prompt": "xq" * 1000}, 413),  # over max_prompt_tokens
        ({"model": "gpt2", "prompt": ["a"] * 5}, 413),  # over max_prompts
        ({"model": "gpt2", "prompt": "hi", "temperature": 5}, 400),
        ({"model": "gpt2", "prompt": 3}, 400),
        ({"model": "nope", "prompt": "hi"}, 404),
        ({"model": "../x", "prompt": "hi"}, 400),
    ]
    for body, status in cases:
        r = httpx.post(f"{url}/openai/v1/completions", json=body, headers=h)
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"] and "Traceback" not in r.text
    r = httpx.post(
        f"{url}/openai/v1/chat/completions",
        json={"model": "gpt2", "messages": [{"role": "user", "content": "hi"}]},
        headers=h,
    )
    assert r.status_code == 400 and "chat template" in r.json()["error"]
    r = httpx.post(f"{url}/openai/v1/completions", json={"model": "gpt2", "prompt": "hi"})
    assert r.status_code == 401


def test_openai_errors_reach_the_client_as_exceptions(served):
    client = _openai(served)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="missing", prompt="x")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt2", messages=[{"role": "user", "content": "x"}])


def test_concurrency_limit_is_a_429_until_a_generation_ends(served):
    url, key, app = served
    service = app.state.generation
    held = [service.start("default", "gpt2", None, Ask(prompts=["Once"], max_tokens=4)) for _ in range(2)]
    h = {"Authorization": f"Bearer {key}"}
    busy = httpx.post(f"{url}/openai/v1/completions", json={"model": "gpt2", "prompt": "x"}, headers=h)
    assert busy.status_code == 429 and busy.json()["code"] == "busy"
    held[0].complete()  # finishing frees the slot
    held[1].close()  # and so does leaving early
    ok = httpx.post(f"{url}/openai/v1/completions", json={"model": "gpt2", "prompt": "x", "max_tokens": 2}, headers=h)
    assert ok.status_code == 200, ok.text


def test_a_client_that_leaves_mid_stream_frees_its_slot(served):
    url, key, app = served
    h = {"Authorization": f"Bearer {key}"}
    body = {"model": "gpt2", "prompt": "Once", "max_tokens": 64, "temperature": 0, "stream": True}
    for _ in range(4):  # more than the two slots: each early exit must give its slot back
        with httpx.stream("POST", f"{url}/openai/v1/completions", json=body, headers=h) as r:
            assert r.status_code == 200
            next(r.iter_lines())
    deadline = time.monotonic() + 10
    while app.state.generation._slots._value < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.state.generation._slots._value == 2


def test_kserve_generate_extension(served):
    url, key, _ = served
    h = {"Authorization": f"Bearer {key}"}
    body = {"text_input": "The capital of France is", "parameters": {"max_tokens": 8, "temperature": 0}}
    r = httpx.post(f"{url}/v2/models/gpt2/generate", json=body, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["model_name"] == "gpt2" and isinstance(r.json()["text_output"], str)
    events = []
    with httpx.stream("POST", f"{url}/v2/models/gpt2/versions/1/generate_stream", json=body, headers=h) as s:
        assert s.status_code == 200
        for line in s.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    assert "".join(e["text_output"] for e in events) == r.json()["text_output"]


def test_cli_generate_streams_and_chat_keeps_the_conversation(served):
    from typer.testing import CliRunner

    from modelbay.cli import app as cli

    url, key, _ = served
    client = _openai(served)
    want = client.completions.create(model="gpt2", prompt="Once upon", max_tokens=8, temperature=0).choices[0].text
    runner = CliRunner()
    base = ["--url", url, "--api-key", key]
    r = runner.invoke(cli, [*base, "generate", "gpt2", "Once upon", "--max-tokens", "8", "--temperature", "0"])
    assert r.exit_code == 0, r.output
    assert want in r.stdout and "tokens/s" in r.output
    r = runner.invoke(cli, [*base, "--json", "generate", "gpt2", "Once upon", "-m", "8", "-T", "0"])
    assert json.loads(r.stdout)["text"] == want
    r = runner.invoke(cli, [*base, "chat", "llama", "-m", "4", "-T", "0"], input="hello\nand again\n\n")
    assert r.exit_code == 0 and r.stdout.count("llama> ") == 2, r.output
    r = runner.invoke(cli, [*base, "generate", "nope", "x"])
    assert r.exit_code == 2 and "nope" in r.output


def test_tui_playground_chat_streams_and_keeps_the_conversation(served, tmp_path):
    import asyncio

    from textual.widgets import Input, Static

    from modelbay.auth import credentials
    from modelbay_tui.app import ModelbayApp
    from tests.pilot import until

    url, key, _ = served
    credentials.save_key([url], key)
    want = _openai(served).chat.completions.create(model="llama", messages=[{"role": "user", "content": "hello"}])
    app = ModelbayApp(url=url, profiles_path=tmp_path / "profiles.json", upload_root=tmp_path, health_every=0.2)

    async def script(pilot):
        await until(pilot, lambda: app.screen.query_one("#models").row_count == 2)
        app.open_playground("llama")
        await until(pilot, lambda: type(app.screen).__name__ == "PlaygroundScreen" and app.screen.kind == "chat")
        screen = app.screen
        screen.query_one("#pg-text", Input).value = "hello"
        await pilot.press("enter")
        await until(pilot, lambda: "tokens/s" in str(screen.query_one("#pg-latency", Static).render()), 30)
        assert screen.messages[-1] == {"role": "assistant", "content": want.choices[0].message.content}
        assert "user: hello" in str(screen.query_one("#pg-result", Static).render())
        # the second turn carries the first
        screen.query_one("#pg-text", Input).value = "and again"
        await pilot.press("enter")
        await until(pilot, lambda: len(screen.messages) == 4, 30)
        assert app.ui_errors == []

    async def main():
        async with app.run_test(size=(100, 30)) as pilot:
            await script(pilot)

    asyncio.run(main())


def test_lambda_handler_answers_completions_buffered(served, monkeypatch, tmp_path):
    """The inference function behind API Gateway's REST proxy: buffered answers, the stream in one body."""
    from tests.apigw import event, invoke, load_function

    _, key, app = served
    ask = {"model": "gpt2", "prompt": "Once upon", "max_tokens": 6, "temperature": 0}
    want = _openai(served).completions.create(**ask).choices[0].text
    monkeypatch.setenv("MODELBAY_STORE", app.state.store.url)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MODELBAY_MAX_NEW_TOKENS", "64")
    handler = load_function("inference").handler
    h = {"Authorization": f"Bearer {key}"}
    status, _, body = invoke(handler, event("POST", "/openai/v1/completions", body=ask, headers=h))
    assert status == 200, body
    assert json.loads(body)["choices"][0]["text"] == want
    status, headers, body = invoke(
        handler, event("POST", "/openai/v1/completions", body={**ask, "stream": True}, headers=h)
    )
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = [json.loads(x[6:]) for x in body.decode().split("\n\n") if x.startswith("data: {")]
    assert "".join(e["choices"][0]["text"] for e in events) == want and body.endswith(b"data: [DONE]\n\n")
    status, _, body = invoke(
        handler, event("POST", "/openai/v1/completions", body={**ask, "max_tokens": 65}, headers=h)
    )
    assert status == 413 and json.loads(body)["code"] == "too_large"
