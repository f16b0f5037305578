"""Sample data for checks, calibration and the gate: .npy, .npz or a folder of them.

An ``.npz`` holds one array per model input (keyed by input name, batch first)
and optionally ``labels``; a single ``.npy`` feeds a single-input model. A folder
is read in name order, each file being one batch. Strings (for text pipelines)
come as unicode arrays and are turned into the object arrays onnxruntime wants.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from modelbay.errors import BadRequest

Feed = dict[str, np.ndarray]
LABELS_KEY = "labels"


@dataclass
class Dataset:
    """Batches of model inputs, with labels and/or reference outputs when known."""

    batches: list[Feed]
    labels: np.ndarray | None = None
    # outputs of the original framework model (e.g. PyTorch embeddings), per batch
    reference: list[np.ndarray] | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(next(iter(b.values()))) for b in self.batches)


def _fix(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "U":
        return a.astype(object)
    if a.dtype == np.float64:
        return a.astype(np.float32)
    return a


def _read_file(path: Path, input_names: list[str]) -> tuple[Feed, np.ndarray | None]:
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            if len(input_names) != 1:
                raise BadRequest(f"{path.name}: a .npy file feeds a single-input model; this one has {input_names}")
            return {input_names[0]: _fix(arr)}, None
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            missing = [n for n in input_names if n not in keys]
            if missing and len(input_names) == 1 and len(keys - {LABELS_KEY}) == 1:
                feed = {input_names[0]: _fix(z[next(iter(keys - {LABELS_KEY}))])}
            elif missing:
                raise BadRequest(f"{path.name}: missing arrays for inputs {missing} (has {sorted(keys)})")
            else:
                feed = {n: _fix(z[n]) for n in input_names}
            labels = z[LABELS_KEY] if LABELS_KEY in keys else None
            return feed, labels
    except BadRequest:
        raise
    except (OSError, ValueError) as e:
        raise BadRequest(f"cannot read samples from {path}: {e}") from None


def load_dataset(path: str | Path, input_names: list[str]) -> Dataset:
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix in (".npy", ".npz"))
        if not files:
            raise BadRequest(f"{p}: no .npy or .npz files")
    elif p.is_file() and p.suffix in (".npy", ".npz"):
        files = [p]
    elif p.exists():
        raise BadRequest(f"{p}: samples must be .npy, .npz or a folder of them")
    else:
        raise BadRequest(f"{p}: no such file or folder")
    batches, labels = [], []
    for f in files:
        feed, lab = _read_file(f, input_names)
        n = {len(v) for v in feed.values()}
        if len(n) != 1:
            raise BadRequest(f"{f.name}: inputs disagree on batch size {sorted(n)}")
        if lab is not None and len(lab) != n.pop():
            raise BadRequest(f"{f.name}: {len(lab)} labels for a batch of another size")
        batches.append(feed)
        labels.append(lab)
    known = [lab for lab in labels if lab is not None]
    if known and len(known) != len(labels):
        raise BadRequest(f"{p}: some files have labels and some do not")
    return Dataset(batches, np.concatenate(known) if known else None)


class FeedReader(CalibrationDataReader):
    """onnxruntime's calibration protocol over our batches."""

    def __init__(self, batches: list[Feed]):
        self._batches = batches
        self._it: Iterator[Feed] = iter(batches)

    def get_next(self) -> Feed | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._batches)
