"""One exported decoder graph and its KV cache: prefill a batch of prompts, then one token per row per step.

Prompts of different lengths are left-padded: the attention mask hides the padding and the position
ids count only real tokens, so a row's logits do not depend on the rows batched with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..manifest import GenerationSpec

_NP = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(bfloat16)": np.float32}


def past_names(layers: int) -> list[str]:
    return [f"past_key_values.{i}.{k}" for i in range(layers) for k in ("key", "value")]


def present_names(layers: int) -> list[str]:
    return [f"present.{i}.{k}" for i in range(layers) for k in ("key", "value")]


@dataclass
class Cache:
    """What a batch carries between steps."""

    mask: np.ndarray  # [batch, past + new] int64, 0 over left padding
    past: list[np.ndarray]  # present.* of the last run, in ``past_names`` order

    @property
    def length(self) -> int:
        return int(self.mask.shape[1])


class Decoder:
    def __init__(self, session: Any, spec: GenerationSpec) -> None:
        self.session = session
        self.spec = spec
        inputs = {i.name: i for i in session.get_inputs()}
        self.past_names = past_names(spec.num_layers)
        self.present_names = present_names(spec.num_layers)
        missing = [n for n in ["input_ids", "attention_mask", *self.past_names] if n not in inputs]
        if missing:
            raise ValueError(f"the graph lacks the decoder inputs {missing[:4]}")
        self.positions = "position_ids" in inputs
        self.dtype = _NP.get(inputs[self.past_names[0]].type, np.float32)
        self.outputs = ["logits", *self.present_names]

    def _run(self, ids: np.ndarray, mask: np.ndarray, past: list[np.ndarray], run_options: Any = None) -> Cache:
        feed: dict[str, np.ndarray] = {"input_ids": ids, "attention_mask": mask}
        if self.positions:
            # positions count real tokens only: left padding must not shift a row
            pos = np.cumsum(mask, axis=1) - 1
            feed["position_ids"] = np.maximum(pos[:, -ids.shape[1] :], 0).astype(np.int64)
        feed.update(zip(self.past_names, past))
        out = self.session.run(self.outputs, feed, run_options)
        self.last_logits = out[0]
        return Cache(mask, out[1:])

    def prefill(self, rows: list[list[int]], pad_id: int = 0, run_options: Any = None) -> tuple[np.ndarray, Cache]:
        """Logits of every row's last prompt token [batch, vocab], and the cache after the prompts."""
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, width - len(r) :] = r
            mask[i, width - len(r) :] = 1
        s = self.spec
        empty = np.zeros((len(rows), s.num_kv_heads, 0, s.head_dim), dtype=self.dtype)
        cache = self._run(ids, mask, [empty] * len(self.past_names), run_options)
        return self.last_logits[:, -1, :], cache

    def step(self, tokens: np.ndarray, cache: Cache, run_options: Any = None) -> tuple[np.ndarray, Cache]:
        """Feed one token per row; the logits of the next one [batch, vocab]."""
        mask = np.concatenate([cache.mask, np.ones((cache.mask.shape[0], 1), dtype=np.int64)], axis=1)
        new = self._run(tokens.reshape(-1, 1).astype(np.int64), mask, cache.past, run_options)
        return self.last_logits[:, -1, :], new

    def logits(self, ids: list[int]) -> np.ndarray:
        """Logits at every position of one sequence [len, vocab] (perplexity, verification)."""
        self.prefill([ids])
        return np.asarray(self.last_logits[0], dtype=np.float32)
