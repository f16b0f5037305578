"""``modelbay convert`` and ``modelbay examples build``, as Typer sub-apps.

The main CLI mounts them with ``register(app)``; ``push`` (in the main CLI)
calls ``pipeline.prepare`` then ``pipeline.publish`` with the same options.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from modelbay.errors import ModelbayError
from modelbay.manifest import VersionMetadata

convert_app = typer.Typer(help="Convert a model to ONNX and quantize it behind an accuracy gate.")
examples_app = typer.Typer(help="Build the example models (cached).")
console = Console(stderr=True)


def fail(e: ModelbayError) -> None:
    """Print a modelbay error (and the gate's numbers) instead of a traceback."""
    console.print(f"[red]error[/red] ({e.code}): {e.message}")
    gate = e.details.get("gate")
    if gate:
        console.print(gate_table(gate))
    raise typer.Exit(2 if e.status < 500 else 1)


def gate_table(gate: dict) -> Table:
    t = Table(title=f"accuracy gate ({gate['task']}, {gate['samples']} samples): "
                    f"{'PASS' if gate['passed'] else 'FAIL'}")
    for c in ("metric", "fp32", "int8"):
        t.add_column(c)
    for k, v in gate["int8"].items():
        f = gate["fp32"].get(k)
        t.add_row(k, "" if f is None else f"{f:.4f}", f"{v:.4f}")
    for k, v in gate["thresholds"].items():
        t.add_row(f"threshold {k}", "", f"{v:.4g}")
    return t


def _metadata(path: Optional[Path], task: Optional[str], labels: Optional[str]) -> VersionMetadata:
    from modelbay.errors import BadRequest

    meta = VersionMetadata()
    if path is not None:
        try:
            meta = VersionMetadata.model_validate_json(path.read_text())
        except (OSError, ValueError) as e:
            raise BadRequest(f"--metadata {path}: {e}") from None
    if task:
        meta.task = task  # type: ignore[assignment]
    if labels:
        p = Path(labels)
        meta.labels = p.read_text().split() if p.is_file() else [x.strip() for x in labels.split(",")]
    return meta


def progress_printer():
    def say(msg: str, frac: float | None) -> None:
        console.print(f"[dim]..[/dim] {msg}" + (f" [dim]{frac:.0%}[/dim]" if frac is not None and frac < 1 else ""),
                      highlight=False)
    return say


@convert_app.command("convert")
def convert_command(
    model: str = typer.Argument(..., help="model file (.onnx, .pt2, TorchScript .pt, .pkl/.joblib) or module:factory"),
    out: Path = typer.Option(Path("converted"), "--out", "-o", help="output folder"),
    input_spec: Optional[str] = typer.Option(None, "--input-spec", "-i",
                                             help="e.g. 'x:float32:[batch,100]' (';' between inputs) or a .json"),
    state_dict: Optional[Path] = typer.Option(None, "--state-dict", help="weights for module:factory"),
    output_name: list[str] = typer.Option([], "--output-name", help="ONNX output names (repeatable)"),
    quantize: str = typer.Option("none", "--quantize", "-q", help="none | dynamic | static | auto"),
    eval_data: Optional[Path] = typer.Option(None, "--eval", help=".npz/.npy/folder; 'labels' array for accuracy"),
    calibration: Optional[Path] = typer.Option(None, "--calibration", help="samples for static calibration"),
    target: str = typer.Option("arm64", "--target", help="arm64 | x86_64: picks per-CPU quantization options"),
    metadata: Optional[Path] = typer.Option(None, "--metadata", help="VersionMetadata JSON (task, pre/post...)"),
    task: Optional[str] = typer.Option(None, "--task", help="classifier | embedder | raw"),
    labels: Optional[str] = typer.Option(None, "--labels", help="comma-separated, or a file with one per line"),
    max_accuracy_drop: float = typer.Option(0.5, help="classifier gate, percentage points"),
    min_agreement: float = typer.Option(0.99, help="classifier gate without labels"),
    min_cosine: float = typer.Option(0.99, help="embedder gate, minimum cosine"),
    max_abs_error: Optional[float] = typer.Option(None, help="raw gate (default 1%% of the output range)"),
    mixed_precision: bool = typer.Option(True, help="on gate failure, keep sensitive nodes in fp32"),
    compact_kept: bool = typer.Option(False, help="store kept fp32 weights as 8-bit blocks (smaller, slower)"),
    atol: float = typer.Option(1e-4, help="conversion check tolerance (absolute)"),
    rtol: float = typer.Option(1e-3, help="conversion check tolerance (relative)"),
) -> None:
    """Convert MODEL to ONNX (checked against the original) and optionally quantize it behind the gate."""
    from modelbay.convert.gate import GateThresholds
    from modelbay.convert.pipeline import prepare

    try:
        meta = _metadata(metadata, task, labels)
        res = prepare(
            model, name=out.name, workdir=out, quantize_mode=quantize, eval_data=eval_data,  # type: ignore[arg-type]
            calibration=calibration, metadata=meta, input_spec=input_spec, output_names=output_name or None,
            state_dict=state_dict, target=target, mixed_precision=mixed_precision, compact_kept=compact_kept,
            thresholds=GateThresholds(max_accuracy_drop=max_accuracy_drop, min_agreement=min_agreement,
                                      min_cosine=min_cosine, max_abs_error=max_abs_error),
            check_atol=atol, check_rtol=rtol, progress=progress_printer(),
        )
    except ModelbayError as e:
        fail(e)
        return
    (out / "metadata.json").write_text(res.metadata.model_dump_json(indent=1))
    if res.int8_path:
        (out / "metadata.fp32.json").write_text(res.fp32_metadata.model_dump_json(indent=1))
    chk = res.metadata.metrics.get("conversion", {})
    console.print(f"converted with {chk.get('exporter')}: max abs error {chk.get('max_abs_error', 'n/a')}")
    if res.gate:
        console.print(gate_table(res.gate.as_dict()))
    q = res.metadata.quantization
    if q and q.kept_fp32_nodes:
        console.print(f"kept in fp32: {', '.join(q.kept_fp32_nodes)}")
    typer.echo(json.dumps({"fp32": str(res.fp32_path), "int8": str(res.int8_path) if res.int8_path else None,
                           "metadata": str(out / "metadata.json")}))


@examples_app.command("build")
def build_command(
    name: Optional[str] = typer.Argument(None, help="mlp | digits | pii | minilm (default: all)"),
    cache_dir: Optional[Path] = typer.Option(None, help="default ~/.cache/modelbay/examples"),
    target: str = typer.Option("arm64", "--target"),
    force: bool = typer.Option(False, help="rebuild even if cached"),
) -> None:
    """Build example models and print their size, latency and gate numbers."""
    from modelbay.convert import examples

    try:
        if name:
            results = [examples.build(name, cache_dir, target=target, force=force, progress=progress_printer())]
        else:
            results = [examples.build(n, cache_dir, target=target, force=force, progress=progress_printer())
                       for n in examples.NAMES]
    except ModelbayError as e:
        fail(e)
        return
    t = Table(title="examples")
    for c in ("name", "method", "size fp32 / int8", "b1 ms fp32 / int8", "b32 ms fp32 / int8", "gate fp32 / int8", "path"):
        t.add_column(c)
    for r in results:
        m = r.metadata.metrics
        f, q = m.get("fp32", {}), m.get("int8", {})
        g = m.get("gate") or {}
        gate = " / ".join(", ".join(f"{k} {v:.4f}" for k, v in g.get(side, {}).items()) for side in ("fp32", "int8")) \
            if g else ", ".join(f"{k} {v:.4f}" for k, v in m.get("evaluation", {}).items() if k != "samples")
        t.add_row(r.name, r.metadata.quantization.method if r.metadata.quantization else "none",
                  _pair(f.get("size_bytes"), q.get("size_bytes"), 1e6, "MB"),
                  _pair(f.get("latency_ms", {}).get("b1"), q.get("latency_ms", {}).get("b1")),
                  _pair(f.get("latency_ms", {}).get("b32"), q.get("latency_ms", {}).get("b32")),
                  gate, str(r.onnx_path) + (" (cached)" if r.cached else ""))
    Console().print(t)


def _pair(a, b, div: float = 1.0, unit: str = "") -> str:
    fmt = lambda v: "-" if v is None else f"{v / div:.3g}{unit}"  # noqa: E731
    return f"{fmt(a)} / {fmt(b)}"


def register(app: typer.Typer) -> None:
    """Mount on the main CLI: ``modelbay convert ...`` and ``modelbay examples build``."""
    app.command("convert")(convert_command)
    app.add_typer(examples_app, name="examples")
