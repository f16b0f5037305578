"""``modelbay predict``: raw instances to any modelbay server's V1 predict, shown as a table or JSON."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ..errors import BadRequest
from ..refs import parse_ref
from .base import App, ctx_obj
from .output import Col, emit, read_text, stdin_text, table, truncate

app = App()

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp"}


def _parse_data(data: str) -> tuple[list[Any], dict[str, Any]]:
    if data == "-":
        data = stdin_text()
    elif data.startswith("@"):
        data = read_text(data[1:], "--data")
    try:
        obj = json.loads(data)
    except ValueError as e:
        raise BadRequest(f"--data is not JSON: {e}") from None
    if isinstance(obj, dict) and "instances" in obj:
        return list(obj["instances"]), dict(obj.get("parameters") or {})
    return (obj if isinstance(obj, list) else [obj]), {}


def _file_instances(path: Path) -> list[Any]:
    """Instances from a file, and how to show each in the table (an image by its name, not its base64)."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        try:
            return [base64.b64encode(path.read_bytes()).decode()]
        except OSError as e:
            raise BadRequest(f"--file {path}: {e.strerror or e}") from None
    text = read_text(path, "--file")
    if path.suffix.lower() == ".json":
        return _parse_data(text)[0]
    lines = text.splitlines()
    if path.suffix.lower() == ".jsonl":
        try:
            return [json.loads(line) for line in lines if line.strip()]
        except ValueError as e:
            raise BadRequest(f"--file {path} is not JSON lines: {e}") from None
    return [line for line in lines if line.strip()]  # plain text: one instance per line


def _short(v: Any, width: int = 40) -> str:
    return truncate(v if isinstance(v, str) else json.dumps(v), width)


def _table(shown: list[str], preds: list[Any], title: str) -> Table | None:
    first = preds[0] if preds else None
    if isinstance(first, dict) and "label" in first and "score" in first:
        return table(
            title,
            [
                Col("#", right=True),
                Col("input", flex=True),
                "label",
                Col("score", right=True),
                Col("next best", flex=True),
            ],
            (
                [
                    i,
                    x,
                    p["label"],
                    f"{p['score']:.4f}",
                    ", ".join(f"{c['label']} {c['score']:.3f}" for c in p.get("top_k", [])[1:]),
                ]
                for i, (x, p) in enumerate(zip(shown, preds, strict=False))
            ),
        )
    if isinstance(first, list) and first and all(isinstance(v, (int, float)) for v in first):
        return table(
            title,
            [Col("#", right=True), Col("input", flex=True), Col("dim", right=True), Col("values", flex=True)],
            (
                [i, x, len(p), " ".join(f"{v:+.4f}" for v in p[:6]) + (" …" if len(p) > 6 else "")]
                for i, (x, p) in enumerate(zip(shown, preds, strict=False))
            ),
        )
    return None


@app.command()
def predict(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME, NAME@VERSION or NAME:ALIAS"),
    data: str | None = typer.Option(
        None,
        "--data",
        "-d",
        help='JSON: a list of instances, {"instances": [...]}, one instance, @file.json, or - for stdin.',
    ),
    text: list[str] = typer.Option([], "--text", "-t", help="A text instance (repeatable)."),
    file: list[Path] = typer.Option(
        [],
        "--file",
        "-f",
        exists=True,
        dir_okay=False,
        help="An image (sent base64), .json/.jsonl instances, or a text file with one instance per line (repeatable).",
    ),
    top_k: int | None = typer.Option(None, "--top-k", help="Classifiers: how many labels."),
) -> None:
    """Predict on raw instances with a model's preprocessing and postprocessing."""
    obj = ctx_obj(ctx)
    name, r = parse_ref(ref)
    instances: list[Any] = []
    shown: list[str] = []
    params: dict[str, Any] = {}
    if data is not None:
        instances, params = _parse_data(data)
        shown = [_short(x) for x in instances]
    instances += list(text)
    shown += [_short(t) for t in text]
    for f in file:
        got = _file_instances(f)
        instances += got
        shown += [f.name] * len(got) if f.suffix.lower() in IMAGE_SUFFIXES else [_short(x) for x in got]
    if not instances:
        raise BadRequest("nothing to predict: pass --data, --text or --file")
    if top_k is not None:
        params["top_k"] = top_k
    with obj.client() as c:
        res = c.predict(name, r, instances, params or None)
    timing = res.server_timing
    payload = {"model": res.model, "version": res.version, "predictions": res.predictions, "server_timing": timing}
    title = (
        f"{res.model} v{res.version} · inference {timing.get('inference', 0):.2f} ms, "
        f"total {timing.get('total', 0):.2f} ms"
    )
    emit(obj.as_json, payload, _table(shown, res.predictions, title))
