"""``modelbay examples build`` and ``modelbay seed-demo``: the example models, built once and cached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from .base import App, ctx_obj
from .output import Col, emit, escape, note, size, table

app = App()
examples_app = App(help="Build the example models (cached).")
app.add_typer(examples_app, name="examples")


def _say(message: str, fraction: float | None = None) -> None:
    share = f" [dim]{fraction:.0%}[/]" if fraction is not None and fraction < 1 else ""
    note(f"[dim]..[/] {escape(message)}{share}")


def _pair(a: float | None, b: float | None, fmt: Any = lambda v: f"{v:.3g}") -> str:
    return f"{'-' if a is None else fmt(a)} / {'-' if b is None else fmt(b)}"


@examples_app.command("build")
def build(
    ctx: typer.Context,
    name: str | None = typer.Argument(None, help="mlp | digits | pii | minilm (default: all)"),
    cache_dir: Path | None = typer.Option(None, help="default ~/.cache/modelbay/examples"),
    target: str = typer.Option("arm64", "--target"),
    force: bool = typer.Option(False, help="rebuild even if cached"),
) -> None:
    """Build example models and print their size, latency and gate numbers."""
    from ..convert import examples

    obj = ctx_obj(ctx)
    names = [name] if name else list(examples.NAMES)
    results = [
        examples.build(n, cache_dir, target=target, force=force, progress=None if obj.as_json else _say) for n in names
    ]
    rows = []
    for r in results:
        m = r.metadata.metrics
        f, q = m.get("fp32", {}), m.get("int8", {})
        gate = m.get("gate") or {}
        metric = gate.get("metric")
        score = (
            _pair(gate.get("fp32", {}).get(metric), gate.get("int8", {}).get(metric), lambda v: f"{v:.4f}")
            if gate
            else ", ".join(f"{k} {v:.4f}" for k, v in m.get("evaluation", {}).items() if k != "samples")
        )
        rows.append(
            [
                r.name,
                r.metadata.quantization.method if r.metadata.quantization else "none",
                _pair(f.get("size_bytes"), q.get("size_bytes"), size),
                _pair(f.get("latency_ms", {}).get("b1"), q.get("latency_ms", {}).get("b1")),
                score,
                "cached" if r.cached else "built",
                str(r.onnx_path),
            ]
        )
    t = table(
        "examples (fp32 / int8)",
        ["name", "method", "size", "b1 ms", Col("gate", flex=True), "build", Col("path", flex=True)],
        rows,
    )
    emit(
        obj.as_json,
        [
            {
                "name": r.name,
                "path": str(r.onnx_path),
                "cached": r.cached,
                "metadata": r.metadata.model_dump(mode="json"),
            }
            for r in results
        ],
        t,
    )


@app.command("seed-demo")
def seed_demo(
    ctx: typer.Context,
    cache_dir: Path | None = typer.Option(None, help="Example build cache [~/.cache/modelbay/examples]."),
    only: list[str] = typer.Option([], "--only", help="Seed just these demo models."),
) -> None:
    """Build the example models (cached) and push them with the 'production' alias."""
    from ..demo import seed

    obj = ctx_obj(ctx)
    with obj.client() as c:
        result = seed(c, cache_dir, names=only or None, say=lambda m: note(f"[dim]..[/] {escape(m)}"))
    emit(obj.as_json, result, table("demo models", ["model", Col("result", flex=True)], sorted(result.items())))
