"""Evaluation data as users have it, for model folders.

Text: a ``.txt`` file (one sentence a line), or a ``.csv`` / ``.jsonl`` with a ``text`` column and an optional
``label`` column (classifiers are then scored on accuracy). Images: a folder with one subfolder per class,
named by label. Without ``--eval``, a built-in general-purpose sample (hand-written sentences across registers;
scikit-learn's handwritten digits as RGB images), and the manifest says which was used.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from modelbay.errors import BadRequest

MAX_ROWS = 10_000
MAX_FILE_BYTES = 64 * 1024**2
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
BUILTIN_TEXTS = 320
BUILTIN_IMAGES = 64


def _read_text(p: Path) -> str:
    if not p.is_file():
        raise BadRequest(f"--eval {p}: no such file")
    if p.stat().st_size > MAX_FILE_BYTES:
        raise BadRequest(f"--eval {p.name} is larger than {MAX_FILE_BYTES} bytes")
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BadRequest(f"--eval {p.name}: not readable UTF-8 text ({type(e).__name__})") from None


def _rows(p: Path) -> list[dict[str, Any]]:
    raw = _read_text(p)
    if p.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(raw))
        if "text" not in (reader.fieldnames or []):
            raise BadRequest(f"--eval {p.name}: a CSV needs a 'text' column (has {reader.fieldnames})")
        return list(reader)
    rows = []
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise BadRequest(f"--eval {p.name} line {n}: not JSON") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise BadRequest(f'--eval {p.name} line {n}: expected {{"text": "...", "label": "..."}}')
        rows.append(row)
    return rows


def texts(path: str | Path | None) -> tuple[list[str], list[str] | None, str]:
    """(texts, labels or None, where they came from)."""
    if path is None:
        from modelbay.convert.examples.sentences import sentences

        return sentences(BUILTIN_TEXTS), None, f"built-in sample ({BUILTIN_TEXTS} sentences)"
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".csv", ".jsonl"):
        rows = _rows(p)
        out = [str(r["text"]) for r in rows]
        has = [r.get("label") not in (None, "") for r in rows]
        if any(has) and not all(has):
            raise BadRequest(f"--eval {p.name}: some rows have a label and some do not")
        labels = [str(r["label"]) for r in rows] if rows and all(has) else None
    elif suffix == ".txt":
        out, labels = [line.strip() for line in _read_text(p).splitlines() if line.strip()], None
    else:
        raise BadRequest(f"--eval {p.name}: text models take .txt (a sentence a line), .csv or .jsonl")
    if not out:
        raise BadRequest(f"--eval {p.name} holds no text")
    if len(out) > MAX_ROWS:
        raise BadRequest(f"--eval {p.name} has {len(out)} rows; the limit is {MAX_ROWS}")
    return out, labels, f"{p.name} ({len(out)} rows{', labelled' if labels else ''})"


def images(path: str | Path | None) -> tuple[list[Any], list[str] | None, str]:
    """(PIL images, class names or None, where they came from)."""
    from PIL import Image, UnidentifiedImageError

    if path is None:
        import numpy as np
        from sklearn.datasets import load_digits

        digits = load_digits()
        picked = digits.images[:BUILTIN_IMAGES]
        out = [Image.fromarray((im * (255.0 / 16.0)).astype(np.uint8)).convert("RGB") for im in picked]
        return out, None, f"built-in sample ({len(out)} scikit-learn digits as RGB)"
    root = Path(path)
    if not root.is_dir():
        raise BadRequest(f"--eval {root}: image classifiers take a folder with one subfolder of images per class")
    out, labels = [], []
    for cls in sorted(d for d in root.iterdir() if d.is_dir() and not d.is_symlink()):
        for f in sorted(cls.iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES or f.is_symlink() or not f.is_file():
                continue
            if len(out) >= MAX_ROWS:
                raise BadRequest(f"--eval {root.name} has more than {MAX_ROWS} images")
            try:
                with Image.open(f) as im:
                    if im.width * im.height > 40_000_000:
                        raise BadRequest(f"--eval {f.name}: {im.width}x{im.height} is too large")
                    out.append(im.convert("RGB"))
            except (UnidentifiedImageError, OSError) as e:
                raise BadRequest(f"--eval {cls.name}/{f.name}: not a readable image ({type(e).__name__})") from None
            labels.append(cls.name)
    if not out:
        raise BadRequest(f"--eval {root.name}: no images in class subfolders")
    return out, labels, f"{root.name} ({len(out)} images in {len(set(labels))} classes)"
