"""Text generation over HTTP in the shapes existing clients speak.

* OpenAI-compatible ``POST /openai/v1/completions`` and ``/openai/v1/chat/completions`` (the ``/openai``
  prefix as KServe puts it), with ``stream: true`` as server-sent events ending in ``data: [DONE]``.
  ``model`` takes ``name``, ``name:alias`` or ``name@version``.
* The Triton/KServe generate extension: ``POST /v2/models/{m}[/versions/{v}]/generate`` and
  ``/generate_stream``.

Everything that can refuse a request runs before the first byte (``GenerationService.start``), so a
refusal is a 4xx JSON body; a client that goes away mid-stream ends its generation at the next token.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..errors import BadRequest
from ..generation.loop import Piece
from ..generation.service import Ask, Generation, GenerationService
from ..refs import parse_ref
from .errors import render
from .inference_routes import call, invoker

router = APIRouter(tags=["generation"])


class _Sampling(BaseModel):
    # clients send fields modelbay does not use (logprobs, user, stream_options...): ignored, not refused
    model_config = ConfigDict(extra="ignore")
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    repetition_penalty: float | None = Field(None, gt=0)
    seed: int | None = Field(None, ge=0)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1)
    stream: bool = False

    def ask(self, **what: Any) -> Ask:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return Ask(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
            seed=self.seed,
            stop=stop,
            **what,
        )


class CompletionRequest(_Sampling):
    model: str = Field(max_length=300)
    prompt: str | list[str]


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str = Field(max_length=64)
    content: str


class ChatRequest(_Sampling):
    model: str = Field(max_length=300)
    messages: list[Message] = Field(min_length=1, max_length=256)
    max_completion_tokens: int | None = Field(None, ge=1)


def _service(request: Request) -> GenerationService:
    service: GenerationService = request.app.state.generation
    return service


async def _start(request: Request, model: str, ask: Ask, gone: Callable[[], bool]) -> Generation:
    tenant = invoker(request).tenant
    name, ref = parse_ref(model)
    return await call(request, tenant, _service(request).start, tenant, name, ref, ask, gone)


def _sse(payload: Any) -> bytes:
    return b"data: " + (payload if isinstance(payload, bytes) else orjson.dumps(payload)) + b"\n\n"


async def _pieces(request: Request, gen: Generation) -> AsyncIterator[list[Piece]]:
    """The generation's steps, each computed off the event loop; closes it however the stream ends."""
    tenant = invoker(request).tenant  # each step takes an admission slot of the caller's tenant
    try:
        while True:
            pieces = await call(request, tenant, gen.next_pieces)
            if pieces is None:
                return
            yield pieces
    except Exception as e:
        gen.close(e)
        raise
    finally:
        gen.close()


def _stream(
    request: Request, gen: Generation, chunks: Callable[[list[Piece]], list[Any]], first: list[Any]
) -> Response:
    async def body() -> AsyncIterator[bytes]:
        for c in first:
            yield _sse(c)
        try:
            async for pieces in _pieces(request, gen):
                for c in chunks(pieces):
                    yield _sse(c)
        except Exception as e:  # the status line is gone: the error travels as an event
            _, err, _ = render(e, f"{request.method} {request.url.path}")
            yield _sse({"error": err})
            return
        yield _sse(b"[DONE]")

    return StreamingResponse(body(), media_type="text/event-stream", headers=_headers(gen))


def _headers(gen: Generation) -> dict[str, str]:
    return {"x-model-name": gen.name, "x-model-version": str(gen.version), "cache-control": "no-cache"}


def _usage(gen: Generation) -> dict[str, int]:
    done = sum(gen.run.completion_tokens)
    return {
        "prompt_tokens": gen.run.prompt_tokens,
        "completion_tokens": done,
        "total_tokens": gen.run.prompt_tokens + done,
    }


async def _complete(request: Request, gen: Generation) -> list[str]:
    try:
        async for _ in _pieces(request, gen):
            pass
    finally:
        gen.close()
    return gen.texts


@router.post("/openai/v1/completions")
async def completions(body: CompletionRequest, request: Request) -> Response:
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    gen = await _start(request, body.model, body.ask(prompts=prompts), lambda: False)
    ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": ident, "object": "text_completion", "created": created, "model": body.model, "choices": choices}

    if body.stream:
        return _stream(
            request,
            gen,
            lambda pieces: [
                chunk([{"index": p.row, "text": p.text, "finish_reason": p.finish, "logprobs": None}]) for p in pieces
            ],
            [],
        )
    texts = await _complete(request, gen)
    out = chunk(
        [
            {"index": i, "text": t, "finish_reason": gen.finish.get(i, "length"), "logprobs": None}
            for i, t in enumerate(texts)
        ]
    )
    return JSONResponse({**out, "usage": _usage(gen)}, headers=_headers(gen))


@router.post("/openai/v1/chat/completions")
async def chat_completions(body: ChatRequest, request: Request) -> Response:
    messages = [m.model_dump() for m in body.messages]
    ask = body.ask(messages=messages)
    ask.max_tokens = body.max_completion_tokens or body.max_tokens
    gen = await _start(request, body.model, ask, lambda: False)
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": body.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }

    if body.stream:
        return _stream(
            request,
            gen,
            lambda pieces: [chunk({"content": p.text} if p.text else {}, p.finish) for p in pieces],
            [chunk({"role": "assistant", "content": ""}, None)],
        )
    texts = await _complete(request, gen)
    message = {"role": "assistant", "content": texts[0]}
    return JSONResponse(
        {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "choices": [
                {"index": 0, "message": message, "finish_reason": gen.finish.get(0, "length"), "logprobs": None}
            ],
            "usage": _usage(gen),
        },
        headers=_headers(gen),
    )


class GenerateRequest(_Sampling):
    """The Triton generate extension's body: ``text_input`` and ``parameters``."""

    text_input: str | list[str]
    parameters: _Sampling = Field(default_factory=_Sampling)


async def _generate(request: Request, name: str, version: str | None, stream: bool) -> Response:
    try:
        body = GenerateRequest.model_validate_json(await request.body())
    except ValueError as e:
        raise BadRequest(f"invalid generate request: {str(e).splitlines()[0]}") from None
    prompts = [body.text_input] if isinstance(body.text_input, str) else body.text_input
    ask = body.parameters.ask(prompts=prompts)
    tenant = invoker(request).tenant
    gen = await call(request, tenant, _service(request).start, tenant, name, version, ask, lambda: False)

    def out(text: str | list[str], finish: str | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {"model_name": gen.name, "model_version": str(gen.version), "text_output": text}
        if finish:
            d["finish_reason"] = finish
        return d

    if stream or body.parameters.stream:
        return _stream(request, gen, lambda pieces: [out(p.text, p.finish) for p in pieces if p.row == 0], [])
    texts = await _complete(request, gen)
    return JSONResponse(out(texts[0] if len(texts) == 1 else texts, gen.finish.get(0)), headers=_headers(gen))


@router.post("/v2/models/{name}/generate")
async def model_generate(name: str, request: Request) -> Response:
    return await _generate(request, name, None, False)


@router.post("/v2/models/{name}/versions/{version}/generate")
async def version_generate(name: str, version: str, request: Request) -> Response:
    return await _generate(request, name, version, False)


@router.post("/v2/models/{name}/generate_stream")
async def model_generate_stream(name: str, request: Request) -> Response:
    return await _generate(request, name, None, True)


@router.post("/v2/models/{name}/versions/{version}/generate_stream")
async def version_generate_stream(name: str, version: str, request: Request) -> Response:
    return await _generate(request, name, version, True)
