"""``modelbay predict``: raw instances to any modelbay server's V1 predict, shown as a table or JSON."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from .errors import BadRequest

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp"}


def _parse_data(data: str) -> tuple[list[Any], dict[str, Any]]:
    if data == "-":
        data = sys.stdin.read()
    elif data.startswith("@"):
        data = Path(data[1:]).read_text()
    try:
        obj = json.loads(data)
    except ValueError as e:
        raise BadRequest(f"--data is not JSON: {e}") from None
    if isinstance(obj, dict) and "instances" in obj:
        return obj["instances"], obj.get("parameters") or {}
    return (obj if isinstance(obj, list) else [obj]), {}


def _file_instances(path: Path) -> list[Any]:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return [base64.b64encode(path.read_bytes()).decode()]
    if path.suffix.lower() == ".json":
        return _parse_data(path.read_text())[0]
    lines = path.read_text().splitlines()
    if path.suffix.lower() == ".jsonl":
        return [json.loads(line) for line in lines if line.strip()]
    return [line for line in lines if line.strip()]  # plain text: one instance per line


def _short(v: Any, width: int = 48) -> str:
    s = v if isinstance(v, str) else json.dumps(v)
    return s if len(s) <= width else s[: width - 1] + "…"


def _table(instances: list[Any], preds: list[Any], title: str) -> Table | None:
    first = preds[0] if preds else None
    if isinstance(first, dict) and "label" in first and "score" in first:
        t = Table("#", "input", "label", "score", "top", title=title)
        for i, (x, p) in enumerate(zip(instances, preds)):
            top = ", ".join(f"{c['label']} {c['score']:.3f}" for c in p.get("top_k", [])[1:])
            t.add_row(str(i), _short(x, 40), str(p["label"]), f"{p['score']:.4f}", top or "-")
        return t
    if isinstance(first, list) and first and all(isinstance(v, (int, float)) for v in first):
        t = Table("#", "input", "dim", "values", title=title)
        for i, (x, p) in enumerate(zip(instances, preds)):
            t.add_row(str(i), _short(x, 40), str(len(p)), " ".join(f"{v:+.4f}" for v in p[:6]) + " …" * (len(p) > 6))
        return t
    return None


def predict(ctx: typer.Context,
            ref: str = typer.Argument(..., help="NAME, NAME@VERSION or NAME:ALIAS"),
            data: Optional[str] = typer.Option(None, "--data", "-d",
                                               help="JSON: a list of instances, {\"instances\": [...]}, one "
                                                    "instance, @file.json, or - for stdin."),
            text: list[str] = typer.Option([], "--text", "-t", help="A text instance (repeatable)."),
            file: list[Path] = typer.Option([], "--file", "-f", exists=True, dir_okay=False,
                                            help="An image (sent base64), .json/.jsonl instances, or a text "
                                                 "file with one instance per line (repeatable)."),
            top_k: Optional[int] = typer.Option(None, "--top-k", help="Classifiers: how many labels.")):
    """Predict on raw instances with a model's preprocessing and postprocessing."""
    from .cli import _emit
    from .refs import parse_ref

    name, r = parse_ref(ref)
    instances: list[Any] = []
    params: dict[str, Any] = {}
    if data is not None:
        instances, params = _parse_data(data)
    instances += list(text)
    for f in file:
        instances += _file_instances(f)
    if not instances:
        raise BadRequest("nothing to predict: pass --data, --text or --file")
    if top_k is not None:
        params["top_k"] = top_k
    with ctx.obj.client() as c:
        res = c.predict(name, r, instances, params or None)
    timing = res.server_timing
    payload = {"model": res.model, "version": res.version, "predictions": res.predictions, "server_timing": timing}
    title = (f"{res.model} v{res.version}  ·  inference {timing.get('inference', 0):.2f} ms, "
             f"total {timing.get('total', 0):.2f} ms")
    table = _table(instances, res.predictions, title)
    _emit(ctx, payload, table)
