"""Input drift: captured inputs of a window against a version's reference, feature by feature.

Two standard tests, with the thresholds stated here:

* PSI (population stability index) over the reference's decile bins: below 0.1 stable, 0.1-0.2 a
  moderate shift, 0.2 and above a significant one (the usual reading): a feature drifts at >= 0.2;
* two-sample Kolmogorov-Smirnov: the statistic D against its critical value at alpha = 0.05,
  ``c(alpha) * sqrt((n + m) / (n m))`` with ``c = sqrt(-ln(alpha / 2) / 2)`` = 1.358.

A feature has drifted when both say so (PSI alone flags tiny samples, KS alone flags huge ones); the
model has drifted when at least ``DRIFT_SHARE`` of its features did (Evidently's dataset rule).
numpy only: scipy (about 140 MB) would push the Lambda layer past Lambda's 250 MB; the tests check the
KS statistic against scipy's.

The reference (bin edges and proportions, and a sample for KS) is kept per version in
``tenants/<t>/drift/<model>/<version>.json``, built from rows (evaluation data) or from a captured window.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from .errors import BadRequest, NotFound
from .layout import check_name
from .storage import ObjectStore

PSI_THRESHOLD = 0.2
KS_ALPHA = 0.05
KS_C = math.sqrt(-math.log(KS_ALPHA / 2) / 2)
DRIFT_SHARE = 0.5
BINS = 10
MAX_FEATURES = 1024
MAX_SAMPLE = 2000
MIN_ROWS = 30
_EPS = 1e-4  # an empty bin counts as this share, so PSI stays finite


class FeatureReference(BaseModel):
    edges: list[float] = Field(description="interior bin edges (reference deciles)")
    proportions: list[float]
    sample: list[float] = Field(description="up to 2000 reference values, for Kolmogorov-Smirnov")
    mean: float


class DriftReference(BaseModel):
    model: str
    version: int
    rows: int
    created_at: float
    features: list[FeatureReference]


class FeatureDrift(BaseModel):
    feature: int
    psi: float
    ks: float
    ks_critical: float
    drifted: bool
    reference_mean: float
    current_mean: float


class DriftReport(BaseModel):
    model: str
    version: int
    window: str
    rows: int
    reference_rows: int
    drifted_features: int
    drift: bool
    thresholds: dict[str, float] = {"psi": PSI_THRESHOLD, "ks_alpha": KS_ALPHA, "drift_share": DRIFT_SHARE}
    features: list[FeatureDrift] = Field(description="most drifted first (by PSI)")


def reference_key(tenant: str, model: str, version: int) -> str:
    return f"tenants/{check_name(tenant, 'tenant')}/drift/{check_name(model, 'model name')}/{int(version)}.json"


def matrix(inputs: list[Any]) -> np.ndarray:
    """Rows of numbers -> [n, features]. Each item is one row, or a batch of rows (a V1 request's
    instances), or an OIP request's inputs with a single tensor whose first axis is the batch."""
    rows: list[np.ndarray] = []
    for item in inputs:
        if isinstance(item, dict):
            if len(item) != 1:
                continue
            item = next(iter(item.values()))
        try:
            arr = np.asarray(item, dtype=np.float64)
        except (TypeError, ValueError):  # text and other non-numeric inputs have no per-feature drift here
            continue
        if arr.ndim == 0:
            continue
        rows.extend(arr.reshape(1, -1) if arr.ndim == 1 else arr.reshape(arr.shape[0], -1))
    if not rows:
        return np.empty((0, 0))
    width = rows[0].shape[0]
    x = np.stack([r for r in rows if r.shape[0] == width])
    if x.shape[1] > MAX_FEATURES:
        raise BadRequest(f"inputs have {x.shape[1]} features; drift is computed for at most {MAX_FEATURES}")
    return x[np.isfinite(x).all(axis=1)]


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return np.maximum(counts / max(len(values), 1), _EPS)


def build_reference(model: str, version: int, x: np.ndarray, seed: int = 0) -> DriftReference:
    if x.ndim != 2 or x.shape[0] < MIN_ROWS:
        raise BadRequest(f"a drift reference needs at least {MIN_ROWS} numeric rows of one width", rows=len(x))
    rng = np.random.default_rng(seed)
    features = []
    for col in x.T:
        edges = np.unique(np.quantile(col, np.linspace(0, 1, BINS + 1)[1:-1]))
        sample = col if len(col) <= MAX_SAMPLE else rng.choice(col, MAX_SAMPLE, replace=False)
        features.append(
            FeatureReference(
                edges=edges.tolist(),
                proportions=_shares(col, edges).tolist(),
                sample=np.sort(sample).tolist(),
                mean=float(col.mean()),
            )
        )
    return DriftReference(model=model, version=version, rows=int(x.shape[0]), created_at=time.time(), features=features)


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
    a, b = np.sort(a), np.sort(b)
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, points, side="right") / len(a)
    cdf_b = np.searchsorted(b, points, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def compare(ref: DriftReference, x: np.ndarray, window: str) -> DriftReport:
    if x.ndim != 2 or x.shape[0] < MIN_ROWS:
        raise BadRequest(
            f"{x.shape[0] if x.ndim == 2 else 0} captured numeric rows in {window}: at least {MIN_ROWS} are needed",
            rows=int(x.shape[0]) if x.ndim == 2 else 0,
        )
    if x.shape[1] != len(ref.features):
        raise BadRequest(f"captured inputs have {x.shape[1]} features; the reference has {len(ref.features)}")
    out = []
    for i, (col, f) in enumerate(zip(x.T, ref.features, strict=True)):
        expected = np.asarray(f.proportions)
        actual = _shares(col, np.asarray(f.edges))
        psi = float(np.sum((actual - expected) * np.log(actual / expected)))
        sample = np.asarray(f.sample)
        ks = ks_statistic(sample, col)
        critical = KS_C * math.sqrt((len(sample) + len(col)) / (len(sample) * len(col)))
        out.append(
            FeatureDrift(
                feature=i,
                psi=psi,
                ks=ks,
                ks_critical=critical,
                drifted=psi >= PSI_THRESHOLD and ks > critical,
                reference_mean=f.mean,
                current_mean=float(col.mean()),
            )
        )
    drifted = sum(f.drifted for f in out)
    return DriftReport(
        model=ref.model,
        version=ref.version,
        window=window,
        rows=int(x.shape[0]),
        reference_rows=ref.rows,
        drifted_features=drifted,
        drift=drifted >= DRIFT_SHARE * len(out) and drifted > 0,
        features=sorted(out, key=lambda f: -f.psi),
    )


def save_reference(store: ObjectStore, tenant: str, ref: DriftReference) -> DriftReference:
    store.put_bytes(reference_key(tenant, ref.model, ref.version), ref.model_dump_json().encode())
    return ref


def load_reference(store: ObjectStore, tenant: str, model: str, version: int) -> DriftReference:
    try:
        return DriftReference.model_validate_json(store.get_bytes(reference_key(tenant, model, version))[0])
    except NotFound:
        raise NotFound(
            f"{model} version {version} has no drift reference: set one from evaluation rows or a captured window",
            model=model,
            version=version,
        ) from None
