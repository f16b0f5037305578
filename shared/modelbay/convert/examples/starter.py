"""Files to try ``modelbay push`` and ``predict`` with, as the README uses them: ``modelbay examples files DIR``.

* ``model.onnx``: an iris classifier exported with skl2onnx, as you would export your own
* ``iris.pkl``: the same classifier, pickled: push converts it (its inputs come from ``n_features_in_``)
* ``my_pkg/nets.py`` + ``w.pt`` + ``eval.npz``: a torch MLP as ``module:factory``, its trained weights and
  labelled evaluation data for the accuracy gate (the ``mlp`` example's model and data)
* ``seven.png``: a handwritten 7 from scikit-learn's digits, bright ink on black as the digits model learnt

Everything is real and small; writing them takes a few seconds (the MLP trains).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from modelbay.convert.examples import mlp

NETS = '''"""A 100-50-10 MLP: `modelbay push my_pkg.nets:make_net --state-dict w.pt -i 'x:float32:[batch,100]'`."""

import torch.nn as nn


def make_net() -> nn.Module:
    return nn.Sequential(nn.Linear(100, 50), nn.ReLU(), nn.Linear(50, 10))
'''
IRIS_LABELS = ["setosa", "versicolor", "virginica"]


def write(dest: str | Path) -> list[Path]:
    """Write the files into ``dest`` (created if needed); return their paths. Existing files are replaced."""
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    return [*_iris(out), *_mlp(out), _seven(out / "seven.png")]


def _iris(out: Path) -> list[Path]:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris()
    x = iris.data.astype(np.float32)
    clf = LogisticRegression(max_iter=500).fit(x, iris.target)
    with open(out / "iris.pkl", "wb") as f:
        pickle.dump(clf, f)
    onx = to_onnx(clf, x[:1], options={id(clf): {"zipmap": False}}, target_opset={"": 18, "ai.onnx.ml": 3})
    (out / "model.onnx").write_bytes(onx.SerializeToString())
    return [out / "model.onnx", out / "iris.pkl"]


def _mlp(out: Path) -> list[Path]:
    pkg = out / "my_pkg"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(NETS)
    _, xte, _, yte = mlp.train(out / "w.pt")
    np.savez(out / "eval.npz", x=xte, labels=yte)
    return [pkg / "nets.py", out / "w.pt", out / "eval.npz"]


def _seven(path: Path) -> Path:
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    seven = d.images[int(np.flatnonzero(d.target == 7)[0])]  # 8x8, 0..16, bright strokes
    Image.fromarray(np.round(seven * 255 / 16).astype(np.uint8)).save(path)
    return path
