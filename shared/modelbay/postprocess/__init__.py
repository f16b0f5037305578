"""Output tensors -> predictions: top labels for classifiers, pooled vectors for embedders, raw otherwise."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from ..errors import BadRequest
from ..manifest import ClassifierPostprocessing, EmbedderPostprocessing, Manifest, TextPreprocessing


class Postprocessor(Protocol):
    outputs: list[str]  # the outputs session.run must compute

    def __call__(
        self, outputs: Mapping[str, np.ndarray], feeds: Mapping[str, np.ndarray], n: int, parameters: Mapping[str, Any]
    ) -> list[Any]: ...


def build_postprocessor(manifest: Manifest) -> Postprocessor:
    post = manifest.postprocessing
    if post is None:
        return RawPostprocessor([o.name for o in manifest.outputs])
    if post.kind == "classifier":
        return ClassifierPostprocessor(post, manifest.labels)
    if post.kind == "tagger":
        from .tagger import TaggerPostprocessor

        return TaggerPostprocessor(post, manifest.labels)
    pre = manifest.preprocessing
    mask = pre.attention_mask if isinstance(pre, TextPreprocessing) else None
    return EmbedderPostprocessor(post, mask)


def _jsonable(a: np.ndarray) -> Any:
    if a.dtype.kind in "OS":
        return (
            np.vectorize(lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else v, otypes=[object])(
                a
            ).tolist()
            if a.size
            else a.tolist()
        )
    return a.tolist()


class RawPostprocessor:
    def __init__(self, outputs: list[str]) -> None:
        self.outputs = outputs

    def __call__(self, outputs, feeds, n, parameters) -> list[Any]:
        per: dict[str, Any] = {}
        for name in self.outputs:
            a = outputs[name]
            # outputs without the batch axis (e.g. a scalar) go to every instance whole
            per[name] = _jsonable(a) if a.ndim and a.shape[0] == n else [_jsonable(a)] * n
        if len(self.outputs) == 1:
            return per[self.outputs[0]]
        return [{name: per[name][i] for name in self.outputs} for i in range(n)]


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warning for large negative logits


def top_k(parameters: Mapping[str, Any], default: int) -> int:
    k = parameters.get("top_k", default)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise BadRequest("parameters.top_k must be a positive integer")
    return k


class ClassifierPostprocessor:
    def __init__(self, post: ClassifierPostprocessing, labels: list[str] | None) -> None:
        self.post = post
        self.labels = labels
        self.outputs = [post.scores]

    def __call__(self, outputs, feeds, n, parameters) -> list[dict[str, Any]]:
        scores = np.asarray(outputs[self.post.scores], dtype=np.float64)
        if scores.ndim == 1:
            scores = scores.reshape(n, -1)
        scores = scores.reshape(scores.shape[0], -1)
        if self.post.apply_softmax:
            scores = softmax(scores)
        elif self.post.apply_sigmoid:
            scores = sigmoid(scores)
        k = min(top_k(parameters, self.post.top_k), scores.shape[1])
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        labels = self.labels
        out = []
        for row, idx in zip(scores, order):
            top = [{"label": labels[j] if labels else str(j), "score": float(row[j])} for j in idx]
            pred: dict[str, Any] = {"label": top[0]["label"], "score": top[0]["score"], "top_k": top}
            if self.post.apply_sigmoid:  # multi-label: every class over the threshold, best first
                pred["labels"] = [
                    labels[j] if labels else str(j)
                    for j in np.argsort(-row, kind="stable")
                    if row[j] >= self.post.threshold
                ]
            out.append(pred)
        return out


class EmbedderPostprocessor:
    def __init__(self, post: EmbedderPostprocessing, mask_input: str | None) -> None:
        self.post = post
        self.mask_input = mask_input
        self.outputs = [post.output]

    def __call__(self, outputs, feeds, n, parameters) -> list[list[float]]:
        x = np.asarray(outputs[self.post.output], dtype=np.float32)
        if x.ndim == 3 and self.post.pooling == "mean":
            mask = feeds.get(self.mask_input) if self.mask_input else None
            m = (np.ones(x.shape[:2], dtype=np.float32) if mask is None else mask.astype(np.float32))[..., None]
            x = (x * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        elif x.ndim == 3 and self.post.pooling == "cls":
            x = x[:, 0]
        if self.post.normalize:
            x = x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)
        return x.tolist()
