"""The decode loop: one prefill for the whole batch, then one step per token with the KV cache kept.

A row ends at an end-of-sequence token, a stop sequence, its ``max_tokens`` or the model's context; the
batch ends when every row has, when the wall-time limit passes (its rows end with ``length``) or when the
caller says it is gone (``cancelled``). Ended rows ride along in the batch until the rest finish.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .decoder import Decoder
from .sampling import Sampling, choose, penalize
from .text import TextStream


@dataclass(frozen=True)
class Piece:
    """New text of one row; ``finish`` is set on the row's last piece: "stop" or "length"."""

    row: int
    text: str
    finish: str | None = None


@dataclass
class Run:
    """One batch's generation; iterate it for lists of pieces (one list per step)."""

    decoder: Decoder
    tokenizer: Any
    prompts: list[list[int]]
    sampling: Sampling
    max_tokens: int
    stop: Sequence[str] = ()
    eos: Sequence[int] = ()
    deadline: float | None = None  # time.monotonic() after which the batch stops
    cancelled: Callable[[], bool] = lambda: False
    run_options: Any = None
    # filled while running
    completion_tokens: list[int] = field(default_factory=list)
    ttft_ms: float | None = None
    decode_ms: float = 0.0
    steps: int = 0
    timed_out: bool = False
    tokens: list[list[int]] = field(default_factory=list)

    @property
    def prompt_tokens(self) -> int:
        return sum(len(p) for p in self.prompts)

    def __iter__(self) -> Iterator[list[Piece]]:
        n = len(self.prompts)
        streams = [TextStream(self.tokenizer, self.stop) for _ in range(n)]
        rngs = self.sampling.generators(n)
        self.tokens = [[] for _ in range(n)]
        self.completion_tokens = [0] * n
        done = [False] * n
        limit = self.decoder.spec.max_positions
        eos = set(self.eos)
        pad = self.decoder.spec.pad_token_id
        t0 = time.perf_counter()
        try:
            yield from self._steps(streams, rngs, done, limit, eos, pad, t0)
        finally:
            self.decode_ms = (time.perf_counter() - t0) * 1000

    def _steps(
        self,
        streams: list[TextStream],
        rngs: list[np.random.Generator],
        done: list[bool],
        limit: int | None,
        eos: set[int],
        pad: int | None,
        t0: float,
    ) -> Iterator[list[Piece]]:
        n = len(self.prompts)
        logits, cache = self.decoder.prefill(self.prompts, pad if pad is not None else 0, self.run_options)
        while True:
            pieces: list[Piece] = []
            chosen = np.zeros(n, dtype=np.int64)
            out_of_time = self.deadline is not None and time.monotonic() > self.deadline
            for i in range(n):
                if done[i]:
                    chosen[i] = next(iter(eos), 0)
                    continue
                row = penalize(logits[i], self.prompts[i] + self.tokens[i], self.sampling.repetition_penalty)
                tok = choose(row, self.sampling, rngs[i])
                chosen[i] = tok
                finish = None
                if tok in eos:
                    finish, text = "stop", streams[i].flush()
                else:
                    self.tokens[i].append(tok)
                    self.completion_tokens[i] += 1
                    text = streams[i].push(tok)
                    full = len(self.tokens[i]) >= self.max_tokens
                    ctx = limit is not None and len(self.prompts[i]) + len(self.tokens[i]) >= limit
                    if streams[i].stopped:
                        finish = "stop"
                    elif full or ctx or out_of_time:
                        finish, text = "length", text + streams[i].flush()
                        self.timed_out = self.timed_out or (out_of_time and not (full or ctx))
                done[i] = finish is not None
                if text or finish:
                    pieces.append(Piece(i, text, finish))
            self.steps += 1
            if self.ttft_ms is None:
                self.ttft_ms = (time.perf_counter() - t0) * 1000
            yield pieces
            if all(done) or self.cancelled():
                break
            logits, cache = self.decoder.step(chosen, cache, self.run_options)

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens over the whole batch per second of decoding (prefill included)."""
        total = sum(self.completion_tokens)
        return total / (self.decode_ms / 1000) if self.decode_ms > 0 else 0.0
