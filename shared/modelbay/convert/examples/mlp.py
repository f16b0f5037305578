"""The module:factory + state_dict path: a small MLP on a synthetic 10-class task."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelbay.convert.data import Dataset
from modelbay.convert.examples.fit import fit_classifier
from modelbay.manifest import ClassifierPostprocessing, TabularPreprocessing, VersionMetadata

FACTORY = "modelbay.convert.examples.mlp:make_mlp"
LABELS = [f"class_{i}" for i in range(10)]


def make_mlp():
    import torch.nn as nn

    return nn.Sequential(nn.Linear(100, 50), nn.ReLU(), nn.Linear(50, 10))


def dataset(seed: int = 0):
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    x, y = make_classification(
        n_samples=3000,
        n_features=100,
        n_informative=40,
        n_redundant=20,
        n_classes=10,
        n_clusters_per_class=1,
        class_sep=1.5,
        random_state=seed,
    )
    return train_test_split(x.astype(np.float32), y, test_size=0.2, random_state=seed, stratify=y)


def train(state_path: Path, seed: int = 0):
    import torch

    torch.manual_seed(seed)
    xtr, xte, ytr, yte = dataset(seed)
    model = fit_classifier(make_mlp(), xtr, ytr, epochs=60, batch=128, lr=3e-3)
    torch.save(model.state_dict(), state_path)
    return xtr, xte, ytr, yte


def metadata() -> VersionMetadata:
    return VersionMetadata(
        task="classifier",
        preprocessing=TabularPreprocessing(input="x"),
        postprocessing=ClassifierPostprocessing(scores="logits", apply_softmax=True),
        labels=LABELS,
        description="MLP 100-50-10 (module:factory + state_dict) on a synthetic 10-class task",
        tags={"example": "mlp"},
    )


def build(work: Path, target: str = "arm64", progress=None):
    from modelbay.convert.pipeline import prepare

    state = work / "mlp_state.pt"
    _, xte, _, yte = train(state)
    evals = Dataset([{"x": xte[i : i + 100]} for i in range(0, len(xte), 100)], labels=yte)
    return prepare(
        FACTORY,
        name="mlp",
        workdir=work,
        state_dict=state,
        input_spec="x:float32:[batch,100]",
        output_names=["logits"],
        quantize_mode="dynamic",
        eval_data=evals,
        metadata=metadata(),
        target=target,
        progress=progress,
    )


def bench_feed() -> dict[str, np.ndarray]:
    return {"x": dataset()[1][:32]}
