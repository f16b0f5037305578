"""Generation as a service, transport-free: what the OpenAI-compatible routes, the CLI and the TUI call.

``start`` does everything that can refuse a request (resolve, load, template, tokenize, limits, a free
slot) before any token is produced, so a refusal is a 4xx with a JSON body rather than a broken stream.
The ``Generation`` it returns is then iterated for pieces of text; closing it (or finishing) frees the
slot and records one metrics event with the prompt and completion tokens and the time to first token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadRequest, Busy, TooLarge
from ..metrics import MetricsSink
from ..settings import Settings
from .decoder import Decoder
from .loop import Piece, Run
from .sampling import Sampling
from .text import render_chat

log = logging.getLogger("modelbay.generation")


@dataclass
class Ask:
    """One request: either ``prompts`` (completions) or ``messages`` (chat), and how to sample."""

    prompts: list[str] | None = None
    messages: list[dict[str, Any]] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


@dataclass
class Loaded:
    """What a served generator keeps beside its session: decoder and tokenizer, built once per load."""

    decoder: Decoder
    tokenizer: Any
    chat_template: Path | None


def _attached(model: Any) -> Loaded:
    spec = model.manifest.generation
    if model.manifest.task != "generator" or spec is None:
        raise BadRequest(f"{model.name} version {model.version} is not a text generation model", model=model.name)
    loaded: Loaded | None = model.extras.get("generation")
    if loaded is None:
        from tokenizers import Tokenizer

        tok_file = model.files.get(spec.tokenizer)
        if tok_file is None:
            raise BadRequest(f"{model.name} version {model.version} has no tokenizer file {spec.tokenizer!r}")
        template = model.files.get(spec.chat_template) if spec.chat_template else None
        loaded = Loaded(Decoder(model.session, spec), Tokenizer.from_file(str(tok_file)), template)
        model.extras["generation"] = loaded
    return loaded


def _number(value: Any, default: float, lo: float, hi: float, what: str) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise BadRequest(f"{what} must be a number from {lo} to {hi}", field=what)
    return float(value)


class Generation:
    """A started generation: iterate for lists of pieces; ``close`` ends it early."""

    def __init__(self, service: GenerationService, run: Run, tenant: str, name: str, version: int) -> None:
        self.service, self.run = service, run
        self.tenant, self.name, self.version = tenant, name, version
        self.started = time.perf_counter()
        self._closed = False
        self._iter: Iterator[list[Piece]] | None = None
        self.finish: dict[int, str] = {}
        self.texts = [""] * len(run.prompts)

    def __iter__(self) -> Iterator[list[Piece]]:
        try:
            for pieces in self.run:
                for p in pieces:
                    self.texts[p.row] += p.text
                    if p.finish:
                        self.finish[p.row] = p.finish
                yield pieces
        except Exception as e:
            self.close(e)
            raise
        finally:
            self.close()

    def next_pieces(self) -> list[Piece] | None:
        """One step, or None when done (for callers that step from another thread)."""
        if self._iter is None:
            self._iter = iter(self)
        return next(self._iter, None)

    def close(self, error: BaseException | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self.service._finished(self, error)

    def complete(self) -> list[str]:
        """Run to the end; the texts."""
        for _ in self:
            pass
        return self.texts


class GenerationService:
    def __init__(self, engine: Any, metrics: MetricsSink, settings: Settings | None = None) -> None:
        self.engine = engine
        self.metrics = metrics
        self.settings = settings or engine.settings
        self._slots = threading.BoundedSemaphore(self.settings.limits.max_concurrent_generations)

    def start(
        self,
        tenant: str,
        name: str,
        ref: str | int | None,
        ask: Ask,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Generation:
        limits = self.settings.limits
        t0 = time.perf_counter()
        model = self.engine.get(tenant, name, ref)
        loaded = _attached(model)
        spec = model.manifest.generation
        defaults = spec.defaults if spec is not None else {}
        texts = self._texts(ask, loaded, spec)
        if len(texts) > limits.max_prompts:
            raise TooLarge(
                f"{len(texts)} prompts; the limit is {limits.max_prompts} per request", limit=limits.max_prompts
            )
        rows = [list(loaded.tokenizer.encode(t, add_special_tokens=ask.messages is None).ids) for t in texts]
        for i, r in enumerate(rows):
            if not r:
                raise BadRequest(f"prompt {i} is empty once tokenized", prompt=i)
            if len(r) > limits.max_prompt_tokens:
                raise TooLarge(
                    f"prompt {i} is {len(r)} tokens; the limit is {limits.max_prompt_tokens}",
                    prompt=i,
                    tokens=len(r),
                    limit=limits.max_prompt_tokens,
                )
            if spec is not None and spec.max_positions is not None and len(r) >= spec.max_positions:
                raise TooLarge(f"prompt {i} is {len(r)} tokens; the model's context is {spec.max_positions}")
        max_tokens = ask.max_tokens if ask.max_tokens is not None else limits.max_new_tokens
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise BadRequest("max_tokens must be a positive integer", field="max_tokens")
        if max_tokens > limits.max_new_tokens:
            raise TooLarge(
                f"max_tokens {max_tokens} is over the limit of {limits.max_new_tokens}", limit=limits.max_new_tokens
            )
        sampling = self._sampling(ask, defaults)
        stop = ask.stop
        if len(stop) > 4 or any(not isinstance(s, str) or len(s) > 256 for s in stop):
            raise BadRequest("stop takes up to 4 strings of up to 256 characters", field="stop")
        if not self._slots.acquire(blocking=False):
            raise Busy(
                f"{limits.max_concurrent_generations} generations are running; retry shortly",
                limit=limits.max_concurrent_generations,
            )
        run = Run(
            loaded.decoder,
            loaded.tokenizer,
            rows,
            sampling,
            max_tokens,
            stop=stop,
            eos=spec.eos_token_ids if spec is not None else (),
            deadline=time.monotonic() + limits.generation_seconds,
            cancelled=cancelled,
        )
        gen = Generation(self, run, tenant, name, model.version)
        gen.started = t0
        return gen

    def _texts(self, ask: Ask, loaded: Loaded, spec: Any) -> list[str]:
        if (ask.prompts is None) == (ask.messages is None):
            raise BadRequest("give either prompts or messages")
        if ask.messages is not None:
            if not ask.messages:
                raise BadRequest("messages is empty", field="messages")
            for m in ask.messages:
                if (
                    not isinstance(m, dict)
                    or not isinstance(m.get("role"), str)
                    or not isinstance(m.get("content"), str)
                ):
                    raise BadRequest("each message needs a role and a string content", field="messages")
            return [render_chat(loaded.chat_template, ask.messages, spec.bos_token, spec.eos_token)]
        prompts = ask.prompts or []
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise BadRequest("prompt must be a string or a non-empty list of strings", field="prompt")
        return prompts

    @staticmethod
    def _sampling(ask: Ask, defaults: dict[str, Any]) -> Sampling:
        # the publisher's generation_config applies where the request is silent; do_sample false means greedy
        greedy_default = not defaults.get("do_sample", False)
        temperature = _number(
            ask.temperature, 0.0 if greedy_default else float(defaults.get("temperature", 1.0)), 0, 2, "temperature"
        )
        top_p = _number(ask.top_p, float(defaults.get("top_p", 1.0)), 0.0, 1.0, "top_p")
        top_k = _number(ask.top_k, float(defaults.get("top_k", 0) if not greedy_default else 0), 0, 1000, "top_k")
        penalty = _number(
            ask.repetition_penalty, float(defaults.get("repetition_penalty", 1.0)), 0.01, 10, "repetition_penalty"
        )
        if ask.seed is not None and (isinstance(ask.seed, bool) or not isinstance(ask.seed, int) or ask.seed < 0):
            raise BadRequest("seed must be a non-negative integer", field="seed")
        if top_p <= 0.0:
            raise BadRequest("top_p must be above 0", field="top_p")
        return Sampling(temperature, int(top_k), top_p, penalty, ask.seed)

    def _finished(self, gen: Generation, error: BaseException | None) -> None:
        self._slots.release()
        run = gen.run
        try:
            from ..engine.service import error_type
            from ..metrics import InferenceEvent

            self.metrics.record(
                InferenceEvent(
                    model=gen.name,
                    version=gen.version,
                    instances=len(run.prompts),
                    error=error_type(error) if error is not None else None,
                    total_ms=(time.perf_counter() - gen.started) * 1000,
                    inference_ms=run.decode_ms,
                    timestamp=time.time(),
                    tenant=gen.tenant,
                    prompt_tokens=run.prompt_tokens,
                    completion_tokens=sum(run.completion_tokens),
                    ttft_ms=run.ttft_ms,
                )
            )
        except Exception:  # a metrics sink must never fail a generation
            log.exception("metrics sink failed")
