"""The accuracy gate: an int8 model is published only if it stays close to fp32.

Classifiers: accuracy on labelled data (drop in percentage points), or top-1
agreement with fp32 without labels. Embedders: cosine similarity of int8 vs
reference embeddings, judged at the minimum (one ruined sentence is a bug a
mean hides). Raw models: max absolute error.

Every model runs in sessions whose int8 products are exact on any CPU
(``converter.session``), so the verdict does not depend on the machine the gate
runs on, and the quantize options make the target compute the same (see
``quantize``). Each report records the CPU it ran on (``extra["cpu"]``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelbay.convert.data import Dataset, Feed
from modelbay.cpu_features import EXACT_INT8_SESSION_CONFIG, detect
from modelbay.errors import InvalidModel
from modelbay.manifest import (
    ClassifierPostprocessing,
    EmbedderPostprocessing,
    TaggerPostprocessing,
    VersionMetadata,
)


class GateFailed(InvalidModel):
    """The quantized model lost too much accuracy; details carry the numbers."""

    code = "gate_failed"


@dataclass
class GateThresholds:
    max_accuracy_drop: float = 0.5  # percentage points, classifiers with labels
    min_agreement: float = 0.99  # top-1 agreement with fp32, classifiers without labels
    min_cosine: float = 0.99  # embedders: minimum over the evaluation set
    min_cosine_mean: float | None = None
    # raw outputs; None: 1% of the largest fp32 output magnitude
    max_abs_error: float | None = None


@dataclass
class GateReport:
    task: str
    metric: str
    fp32: dict[str, float]
    int8: dict[str, float]
    thresholds: dict[str, float]
    passed: bool
    failures: list[str]
    samples: int
    # the single number the mixed-precision search pushes up (>= 0 means pass)
    margin: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _run(path: Path, batches: list[Feed], output: str | None) -> list[np.ndarray]:
    from modelbay.convert.converter import session

    s = session(path)
    names = [i.name for i in s.get_inputs()]
    outputs = [o.name for o in s.get_outputs()]
    if output and output not in outputs:
        raise InvalidModel(f"the metadata names output {output!r}; the model's outputs are {outputs}")
    out_names = [output] if output else outputs[:1]
    missing = [n for n in names if n not in batches[0]]
    if missing:
        raise InvalidModel(f"evaluation data lacks model inputs {missing}")
    return [s.run(out_names, {n: b[n] for n in names})[0] for b in batches]


class Gate:
    """Scores quantized candidates against one fp32 baseline (computed once)."""

    def __init__(
        self,
        fp32_path: Path,
        data: Dataset,
        metadata: VersionMetadata,
        thresholds: GateThresholds | None = None,
    ):
        self.data = data
        self.meta = metadata
        self.th = thresholds or GateThresholds()
        post = metadata.postprocessing
        self.output = (
            post.output
            if isinstance(post, EmbedderPostprocessing)
            else (post.scores if isinstance(post, (ClassifierPostprocessing, TaggerPostprocessing)) else None)
        )
        self.task = metadata.task
        self.base = self._prepare(_run(fp32_path, data.batches, self.output))
        self.labels = self._label_indices()

    # -- outputs to comparable rows -------------------------------------------------
    def _prepare_subset(self, outs: list[np.ndarray], batches: list[int]) -> list[np.ndarray]:
        return self._prepare(outs, [self.data.batches[i] for i in batches])

    def _prepare(self, outs: list[np.ndarray], batches: list[Feed] | None = None) -> list[np.ndarray]:
        post = self.meta.postprocessing
        if not isinstance(post, EmbedderPostprocessing):
            return outs
        mask_name = getattr(self.meta.preprocessing, "attention_mask", None) or "attention_mask"
        res = []
        for o, b in zip(outs, batches if batches is not None else self.data.batches):
            o = o.astype(np.float64)
            if o.ndim == 3 and post.pooling == "mean":
                m = b.get(mask_name, np.ones(o.shape[:2]))[..., None].astype(np.float64)
                o = (o * m).sum(1) / np.maximum(m.sum(1), 1e-9)
            elif o.ndim == 3 and post.pooling == "cls":
                o = o[:, 0]
            res.append(o.reshape(len(o), -1))
        return res

    def _label_indices(self) -> np.ndarray | None:
        """Evaluation labels as class indices. Labels that are all among the model's label names (strings, or
        scikit-learn's class values such as 3, 5, 7) are looked up by name; other integers are indices."""
        y = self.data.labels
        if y is None:
            return None
        names = self.meta.labels or []
        index = {n: i for i, n in enumerate(names)}
        if y.dtype.kind in "UO" or (names and all(str(v) in index for v in y)):
            unknown = sorted({str(v) for v in y if str(v) not in index})
            if unknown:
                raise InvalidModel(f"evaluation labels {unknown[:5]} are not among the model's labels {names[:10]}")
            return np.array([index[str(v)] for v in y])
        if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
            raise InvalidModel(f"evaluation labels must be class indices or label names, not {y.dtype} values")
        return y.astype(np.int64)

    # -- per-row scores (higher is better) for the sensitivity search -------------------
    def row_scores(self, q_outs: list[np.ndarray]) -> np.ndarray:
        if self.task == "embedder":
            ref = self._reference()
            return np.concatenate([_cos(r, q) for r, q in zip(ref, q_outs)])
        if self.task == "classifier":
            fp = np.concatenate([o.argmax(-1) for o in self.base])
            q = np.concatenate([o.argmax(-1) for o in q_outs])
            return (fp == q).astype(np.float64)
        if self.task == "tagger":
            return self._token_agreement(q_outs)
        return -np.concatenate([np.abs(b - q).reshape(len(b), -1).max(1) for b, q in zip(self.base, q_outs)])

    def _reference(self) -> list[np.ndarray]:
        if self.data.reference is not None:
            return [r.astype(np.float64).reshape(len(r), -1) for r in self.data.reference]
        return self.base

    def outputs(self, q_path: Path) -> list[np.ndarray]:
        return self._prepare(_run(q_path, self.data.batches, self.output))

    # -- the verdict --------------------------------------------------------------------
    def check(self, q_path: Path) -> GateReport:
        q = self.outputs(q_path)
        n = len(self.data)
        if self.task == "embedder":
            report = self._embedder(q, n)
        elif self.task == "classifier":
            report = self._classifier(q, n)
        elif self.task == "tagger":
            report = self._tagger(q, n)
        else:
            report = self._raw(q, n)
        report.extra["cpu"] = detect().as_dict()
        report.extra["session_config"] = dict(EXACT_INT8_SESSION_CONFIG)
        return report

    def _embedder(self, q: list[np.ndarray], n: int) -> GateReport:
        ref = self._reference()
        cq = np.concatenate([_cos(r, x) for r, x in zip(ref, q)])
        cf = np.concatenate([_cos(r, x) for r, x in zip(ref, self.base)])
        th = {"min_cosine": self.th.min_cosine}
        fails = []
        if cq.min() < self.th.min_cosine:
            fails.append(f"min cosine {cq.min():.4f} < {self.th.min_cosine}")
        margin = float(cq.min() - self.th.min_cosine)
        if self.th.min_cosine_mean is not None:
            th["min_cosine_mean"] = self.th.min_cosine_mean
            if cq.mean() < self.th.min_cosine_mean:
                fails.append(f"mean cosine {cq.mean():.4f} < {self.th.min_cosine_mean}")
            margin = min(margin, float(cq.mean() - self.th.min_cosine_mean))
        against = "framework reference" if self.data.reference is not None else "onnx fp32"
        return GateReport(
            "embedder",
            "cosine",
            {"cosine_min": float(cf.min()), "cosine_mean": float(cf.mean())},
            {"cosine_min": float(cq.min()), "cosine_mean": float(cq.mean())},
            th,
            not fails,
            fails,
            n,
            margin,
            {"compared_against": against},
        )

    def _classifier(self, q: list[np.ndarray], n: int) -> GateReport:
        if any(o.ndim < 2 for o in self.base):
            raise InvalidModel(
                f"the classifier gate needs a score per class; output {self.output or 'the first'} has shape "
                f"{list(self.base[0].shape)} (name the scores output in the metadata's postprocessing, or --output)"
            )
        pf = np.concatenate([o.argmax(-1) for o in self.base])
        pq = np.concatenate([o.argmax(-1) for o in q])
        agree = float((pf == pq).mean())
        if self.labels is None:
            th = {"min_agreement": self.th.min_agreement}
            fails = [] if agree >= self.th.min_agreement else [f"top-1 agreement {agree:.4f} < {self.th.min_agreement}"]
            return GateReport(
                "classifier",
                "agreement",
                {"agreement": 1.0},
                {"agreement": agree},
                th,
                not fails,
                fails,
                n,
                agree - self.th.min_agreement,
            )
        if len(self.labels) != len(pf):
            raise InvalidModel(f"{len(self.labels)} labels for {len(pf)} evaluation samples")
        af, aq = float((pf == self.labels).mean()), float((pq == self.labels).mean())
        drop = 100.0 * (af - aq)
        th = {"max_accuracy_drop_pt": self.th.max_accuracy_drop}
        fails = (
            []
            if drop <= self.th.max_accuracy_drop + 1e-9
            else [
                f"accuracy {100 * aq:.2f}% vs fp32 {100 * af:.2f}%: drop {drop:.2f} pt > {self.th.max_accuracy_drop} pt"
            ]
        )
        return GateReport(
            "classifier",
            "accuracy",
            {"accuracy": af},
            {"accuracy": aq, "agreement": agree},
            th,
            not fails,
            fails,
            n,
            self.th.max_accuracy_drop - drop,
            {"accuracy_drop_pt": drop},
        )

    def _token_agreement(self, q: list[np.ndarray]) -> np.ndarray:
        """Per row: the share of its real (unpadded) tokens whose top label int8 keeps."""
        mask_name = getattr(self.meta.preprocessing, "attention_mask", None) or "attention_mask"
        rows = []
        for b, x, feed in zip(self.base, q, self.data.batches):
            m = feed.get(mask_name, np.ones(b.shape[:2])).astype(np.float64)
            same = (b.argmax(-1) == x.argmax(-1)).astype(np.float64)
            rows.append((same * m).sum(1) / np.maximum(m.sum(1), 1.0))
        return np.concatenate(rows)

    def _tagger(self, q: list[np.ndarray], n: int) -> GateReport:
        if any(o.ndim != 3 for o in self.base):
            raise InvalidModel(
                f"the tagger gate needs scores per token [batch, sequence, labels], not {self.base[0].shape}"
            )
        agree = float(self._token_agreement(q).mean())
        th = {"min_agreement": self.th.min_agreement}
        fails = [] if agree >= self.th.min_agreement else [f"token agreement {agree:.4f} < {self.th.min_agreement}"]
        return GateReport(
            "tagger",
            "token_agreement",
            {"token_agreement": 1.0},
            {"token_agreement": agree},
            th,
            not fails,
            fails,
            n,
            agree - self.th.min_agreement,
        )

    def _raw(self, q: list[np.ndarray], n: int) -> GateReport:
        err = max(float(np.abs(b - x).max(initial=0.0)) for b, x in zip(self.base, q))
        scale = max(float(np.abs(b).max(initial=0.0)) for b in self.base)
        limit = self.th.max_abs_error if self.th.max_abs_error is not None else 0.01 * scale
        fails = [] if err <= limit else [f"max abs error {err:.4g} > {limit:.4g}"]
        return GateReport(
            "raw",
            "max_abs_error",
            {"max_abs_error": 0.0, "output_max_abs": scale},
            {"max_abs_error": err},
            {"max_abs_error": limit},
            not fails,
            fails,
            n,
            limit - err,
        )


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def damage(gate: Gate, q_outs: list[np.ndarray], batches: list[int]) -> float:
    """How far a candidate drifts on some batches (higher is worse); for ranking nodes."""
    if gate.task == "embedder":
        ref = gate._reference()
        return float(1.0 - min(_cos(ref[i], q_outs[j]).min() for j, i in enumerate(batches)))
    errs = [
        np.abs(gate.base[i].astype(np.float64) - q_outs[j]).reshape(len(q_outs[j]), -1).max(1).mean()
        for j, i in enumerate(batches)
    ]
    return float(np.mean(errs))


def worst_batches(gate: Gate, q_outs: list[np.ndarray], max_rows: int = 64) -> list[int]:
    """Indices of the batches holding the rows the quantized model hurts most."""
    scores = gate.row_scores(q_outs)
    sizes = [len(next(iter(b.values()))) for b in gate.data.batches]
    owner = np.repeat(np.arange(len(sizes)), sizes)
    picked: list[int] = []
    rows = 0
    for r in np.argsort(scores, kind="stable"):
        b = int(owner[r])
        if b in picked:
            continue
        if picked and rows + sizes[b] > max_rows:
            break
        picked.append(b)
        rows += sizes[b]
    return picked
