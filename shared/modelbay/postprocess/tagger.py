"""Token scores -> entity spans with character offsets, as Hugging Face's token-classification pipeline groups
them (``aggregation_strategy`` first / simple / none), from the tokenizer's own offsets and word ids.

Words are the tokenizer's pre-tokenized words (``Encoding.word_ids``): punctuation is a word of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import BadRequest
from ..manifest import TaggerPostprocessing
from . import softmax

Unit = dict[str, Any]  # one labelled token or word: entity, score, start, end


def _tag(entity: str) -> tuple[str, str]:
    if entity.startswith(("B-", "I-")):
        return entity[0], entity[2:]
    return "I", entity  # a label without a prefix continues a run of itself


def group(units: list[Unit]) -> list[Unit]:
    """Adjacent units of one entity type form one span (a ``B-`` starts a new one); its score is the mean."""
    groups: list[list[Unit]] = []
    for u in units:
        bi, tag = _tag(u["entity"])
        if groups and bi != "B" and _tag(groups[-1][-1]["entity"])[1] == tag:
            groups[-1].append(u)
        else:
            groups.append([u])
    return [
        {
            "entity": _tag(g[0]["entity"])[1],
            "score": float(np.mean([u["score"] for u in g])),
            "start": g[0]["start"],
            "end": g[-1]["end"],
        }
        for g in groups
    ]


class TaggerPostprocessor:
    def __init__(self, post: TaggerPostprocessing, labels: list[str] | None) -> None:
        self.post = post
        self.labels = labels
        self.outputs = [post.scores]

    def _label(self, j: int) -> str:
        return self.labels[j] if self.labels and j < len(self.labels) else str(j)

    def units(self, probs: np.ndarray, enc: Any) -> list[Unit]:
        """The labelled tokens (``simple``/``none``) or words (``first``) of one text, special tokens left out."""
        out: list[Unit] = []
        last_word: int | None = None
        for t, (special, word, (start, end)) in enumerate(zip(enc.special_tokens_mask, enc.word_ids, enc.offsets)):
            if special or word is None or t >= len(probs):
                last_word = None
                continue
            if self.post.aggregation == "first" and word == last_word and out:
                out[-1]["end"] = end  # a later piece of the same word: the span grows, the label stays the first's
                continue
            j = int(np.argmax(probs[t]))
            unit: Unit = {"entity": self._label(j), "score": float(probs[t][j]), "start": start, "end": end}
            if self.post.aggregation == "none":
                unit["index"] = t
            out.append(unit)
            last_word = word
        return out

    def __call__(
        self, outputs: Mapping[str, np.ndarray], feeds: Mapping[str, np.ndarray], n: int, parameters: Mapping[str, Any]
    ) -> list[list[Unit]]:
        encodings = getattr(feeds, "encodings", None)
        texts = getattr(feeds, "texts", None)
        if encodings is None or texts is None:
            raise BadRequest("a tagger answers spans of raw text: send strings (V1 instances), not tensors")
        scores = np.asarray(outputs[self.post.scores], dtype=np.float64)
        if scores.ndim != 3:
            raise BadRequest(
                f"tagger output {self.post.scores!r} has shape {list(scores.shape)}, not [batch, seq, labels]"
            )
        probs = softmax(scores) if self.post.apply_softmax else scores
        ignore = set(self.post.ignore_labels)
        out = []
        for i in range(n):
            text = texts[i] if isinstance(texts[i], str) else texts[i][0]
            units = self.units(probs[i], encodings[i])
            spans = units if self.post.aggregation == "none" else group(units)
            out.append([{**s, "word": text[s["start"] : s["end"]]} for s in spans if s["entity"] not in ignore])
        return out
