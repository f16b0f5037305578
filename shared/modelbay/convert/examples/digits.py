"""A small CNN on sklearn's bundled handwritten digits (8x8, values 0..16), static int8."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelbay.convert.data import Dataset
from modelbay.convert.examples.fit import fit_classifier
from modelbay.manifest import ClassifierPostprocessing, ImagePreprocessing, VersionMetadata

LABELS = [str(i) for i in range(10)]


def make_cnn():
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def dataset(seed: int = 0):
    """Images scaled to 0..1 (the raw 0..16 / 16), NCHW; 20% held out, stratified."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    return train_test_split(x, d.target, test_size=0.2, random_state=seed, stratify=d.target)


def train(seed: int = 0):
    import torch

    torch.manual_seed(seed)
    xtr, xte, ytr, yte = dataset(seed)
    model = fit_classifier(make_cnn(), xtr, ytr, epochs=25, batch=64, lr=2e-3)
    return model, (xtr, xte, ytr, yte)


def metadata() -> VersionMetadata:
    return VersionMetadata(
        task="classifier",
        # inputs arrive as 0..16 (sklearn digits); *1/16 gives the 0..1 the CNN was trained on
        preprocessing=ImagePreprocessing(
            input="image",
            height=8,
            width=8,
            channels=1,
            layout="NCHW",
            scale=1.0 / 16.0,
            mean=[0.0],
            std=[1.0],
            max_value=16.0,
        ),
        postprocessing=ClassifierPostprocessing(scores="logits", apply_softmax=True),
        labels=LABELS,
        description="CNN on sklearn load_digits (8x8 grey, 0..16), static QDQ int8",
        tags={"example": "digits"},
    )


def build(work: Path, target: str = "arm64", progress=None):
    from modelbay.convert.pipeline import prepare

    model, (xtr, xte, _, yte) = train()
    calib = [{"image": xtr[i : i + 32]} for i in range(0, 320, 32)]
    evals = Dataset([{"image": xte[i : i + 120]} for i in range(0, len(xte), 120)], labels=yte)
    return prepare(
        model,
        name="digits",
        workdir=work,
        input_spec="image:float32:[batch,1,8,8]",
        output_names=["logits"],
        quantize_mode="static",
        eval_data=evals,
        calibration=calib,
        metadata=metadata(),
        target=target,
        progress=progress,
    )


def bench_feed() -> dict[str, np.ndarray]:
    return {"image": dataset()[1][:32]}
