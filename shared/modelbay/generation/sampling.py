"""Choosing the next token from logits: greedy, temperature, top-k, top-p and a repetition penalty.

Each row has its own random generator seeded from the request's seed and the row's index, so the same
seed gives the same text whether a prompt runs alone or in a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0  # 0: greedy
    top_k: int = 0  # 0: off
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0 or self.top_k == 1

    def generators(self, rows: int) -> list[np.random.Generator]:
        return [np.random.default_rng(None if self.seed is None else [self.seed, i]) for i in range(rows)]


def penalize(logits: np.ndarray, seen: list[int], penalty: float) -> np.ndarray:
    """The CTRL paper's penalty, as transformers applies it: divide positive logits, multiply negative ones."""
    if penalty == 1.0 or not seen:
        return logits
    out = logits.copy()
    idx = np.unique(np.asarray(seen, dtype=np.int64))
    vals = out[idx]
    out[idx] = np.where(vals > 0, vals / penalty, vals * penalty)
    return out


def choose(logits: np.ndarray, params: Sampling, rng: np.random.Generator) -> int:
    """The next token of one row from its logits [vocab]."""
    logits = logits.astype(np.float64, copy=False)
    if params.greedy:
        return int(np.argmax(logits))
    scaled = logits / params.temperature
    if 0 < params.top_k < scaled.shape[0]:
        kth = np.partition(scaled, -params.top_k)[-params.top_k]
        scaled = np.where(scaled < kth, -np.inf, scaled)
    probs = np.exp(scaled - np.max(scaled))
    probs /= probs.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs)
        cum = np.cumsum(probs[order])
        # keep the smallest set whose mass reaches top_p (at least one token)
        cut = int(np.searchsorted(cum, params.top_p)) + 1
        keep = np.zeros_like(probs)
        keep[order[:cut]] = probs[order[:cut]]
        probs = keep / keep.sum()
    return int(rng.choice(probs.shape[0], p=probs))
