"""``modelbay push`` and ``modelbay convert``: one pipeline (``modelbay.convert.pipeline``), shown as stages.

``push`` hands everything to ``pipeline.push``, which decides between a plain
upload and a conversion; the TUI's upload screen calls the same function.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, cast

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

from ..errors import BadRequest
from ..manifest import VersionMetadata
from .base import App, ctx_obj
from .output import err, escape, gate_table, out, read_json, read_text, size

if TYPE_CHECKING:
    from ..convert.pipeline import QuantizeMode

app = App()

MARKS = {"done": "[green]✓[/]", "skipped": "[dim]-[/]", "failed": "[red]✗[/]"}


def load_metadata(
    path: Path | None, *, description: str = "", task: str | None = None, labels: str | None = None
) -> VersionMetadata:
    """``--metadata`` (a VersionMetadata JSON file) with the flags that override it."""
    base = read_json(path, "--metadata") if path is not None else {}
    if not isinstance(base, dict):
        raise BadRequest(f"--metadata {path} must hold a JSON object (task, preprocessing, labels, ...)")
    updates: dict[str, Any] = {k: v for k, v in {"description": description, "task": task}.items() if v}
    if labels:
        p = Path(labels)
        updates["labels"] = (
            read_text(p, "--labels").split() if p.is_file() else [x.strip() for x in labels.split(",") if x.strip()]
        )
    try:
        return VersionMetadata.model_validate({**base, **updates})
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "metadata"
        source = f"--metadata {path}" if path is not None else "metadata"
        raise BadRequest(f"{source}: {where}: {first.get('msg', 'invalid')}") from None


class StageDisplay:
    """Typed pipeline events on stderr: a line per finished stage, a live line (and a byte bar) while running."""

    def __init__(self, enabled: bool) -> None:
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            console=err(),
            transient=True,
            disable=not enabled,
        )
        self.task = self.bar.add_task("starting", total=None)
        self.enabled = enabled

    def __enter__(self) -> Self:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def __call__(self, event: Any) -> None:
        if not self.enabled:
            return
        stage, status = event.stage.value, event.status.value
        if status == "running":
            label = f"{stage}: {event.message}" if event.message else stage
            if event.sent is not None:
                self.bar.update(self.task, description=escape(label), completed=event.sent, total=event.total)
            else:
                self.bar.update(self.task, description=escape(label), completed=0, total=None)
            return
        self.bar.console.print(f"{MARKS[status]} {stage:<9}{escape(event.message)}", highlight=False)


@app.command()
def push(
    ctx: typer.Context,
    model: str = typer.Argument(
        ..., help="model: .onnx, .pt2, TorchScript .pt, sklearn .pkl/.joblib, or module:factory with --state-dict"
    ),
    name: str = typer.Option(..., "--name", "-n", help="Model name."),
    alias: list[str] = typer.Option([], "--alias", "-a", help="Point these aliases at the new version."),
    quantize: str | None = typer.Option(
        None, "--quantize", "-q", help="none | dynamic | static | auto (default: auto with --eval, else none)"
    ),
    eval_data: Path | None = typer.Option(
        None,
        "--eval",
        exists=True,
        help="Evaluation data for the gate (.npz/.npy/folder; a 'labels' array gives accuracy).",
    ),
    calibration: Path | None = typer.Option(
        None, "--calibration", exists=True, help="Calibration samples for static int8."
    ),
    input_spec: str | None = typer.Option(
        None, "--input-spec", "-i", help="e.g. 'x:float32:[batch,100]' (';' between inputs)"
    ),
    state_dict: Path | None = typer.Option(None, "--state-dict", exists=True, help="Weights for module:factory."),
    target: str = typer.Option("arm64", "--target", help="arm64 | x86_64: per-CPU quantization options."),
    with_fp32: bool = typer.Option(False, "--with-fp32", help="Also register the fp32 twin (first)."),
    max_accuracy_drop: float = typer.Option(0.5, help="Classifier gate, percentage points."),
    min_cosine: float = typer.Option(0.99, help="Embedder gate: minimum cosine similarity."),
    max_abs_error: float | None = typer.Option(None, help="Raw-output gate (default: 1% of the output range)."),
    description: str = typer.Option("", "--description", "-d"),
    task: str | None = typer.Option(None, help="classifier, embedder or raw."),
    labels: str | None = typer.Option(None, help="Class labels: comma-separated, or a file."),
    metadata: Path | None = typer.Option(None, exists=True, dir_okay=False, help="VersionMetadata as a JSON file."),
    side_file: list[Path] = typer.Option(
        [], "--file", exists=True, dir_okay=False, help="Side file (e.g. tokenizer.json)."
    ),
) -> None:
    """Upload a model (converting and quantizing it when asked), register it and print the new version."""
    from ..convert.gate import GateThresholds
    from ..convert.pipeline import push as run_push

    obj = ctx_obj(ctx)
    meta = load_metadata(metadata, description=description, task=task, labels=labels)
    thresholds = GateThresholds(max_accuracy_drop=max_accuracy_drop, min_cosine=min_cosine, max_abs_error=max_abs_error)
    with obj.client() as c, StageDisplay(enabled=not obj.as_json) as display:
        result = run_push(
            c,
            model,
            name=name,
            aliases=alias,
            metadata=meta,
            side_files={p.name: p for p in side_file},
            quantize_mode=cast("QuantizeMode | None", quantize),
            eval_data=eval_data,
            with_fp32_twin=with_fp32,
            events=display,
            calibration=calibration,
            input_spec=input_spec,
            state_dict=state_dict,
            target=target,
            thresholds=thresholds,
        )
    manifests = result.manifests
    if obj.as_json:
        typer.echo(json.dumps([m.model_dump(mode="json") for m in manifests], indent=2))
        return
    if result.gate is not None:
        err().print(gate_table(result.gate.as_dict()))
    for m in manifests:
        q = m.quantization.method if m.quantization else "none"
        extra = f"  aliases: {', '.join(alias)}" if alias and m is manifests[-1] else ""
        out().print(
            f"[green]registered[/] [bold]{escape(m.name)}[/] version [bold]{m.version}[/]  {q}  "
            f"sha256 {m.sha256[:12]}  {size(m.size)}{escape(extra)}"
        )


@app.command()
def convert(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="model file (.onnx, .pt2, TorchScript .pt, .pkl/.joblib) or module:factory"),
    out_dir: Path = typer.Option(Path("converted"), "--out", "-o", help="output folder"),
    input_spec: str | None = typer.Option(
        None, "--input-spec", "-i", help="e.g. 'x:float32:[batch,100]' (';' between inputs) or a .json"
    ),
    state_dict: Path | None = typer.Option(None, "--state-dict", help="weights for module:factory"),
    output_name: list[str] = typer.Option([], "--output-name", help="ONNX output names (repeatable)"),
    quantize: str = typer.Option("none", "--quantize", "-q", help="none | dynamic | static | auto"),
    eval_data: Path | None = typer.Option(None, "--eval", help=".npz/.npy/folder; 'labels' array for accuracy"),
    calibration: Path | None = typer.Option(None, "--calibration", help="samples for static calibration"),
    target: str = typer.Option("arm64", "--target", help="arm64 | x86_64: picks per-CPU quantization options"),
    metadata: Path | None = typer.Option(None, "--metadata", help="VersionMetadata JSON (task, pre/post...)"),
    task: str | None = typer.Option(None, "--task", help="classifier | embedder | raw"),
    labels: str | None = typer.Option(None, "--labels", help="comma-separated, or a file with one per line"),
    max_accuracy_drop: float = typer.Option(0.5, help="classifier gate, percentage points"),
    min_agreement: float = typer.Option(0.99, help="classifier gate without labels"),
    min_cosine: float = typer.Option(0.99, help="embedder gate, minimum cosine"),
    max_abs_error: float | None = typer.Option(None, help="raw gate (default 1% of the output range)"),
    mixed_precision: bool = typer.Option(True, help="on gate failure, keep sensitive nodes in fp32"),
    compact_kept: bool = typer.Option(False, help="store kept fp32 weights as 8-bit blocks (smaller, slower)"),
    atol: float = typer.Option(1e-4, help="conversion check tolerance (absolute)"),
    rtol: float = typer.Option(1e-3, help="conversion check tolerance (relative)"),
) -> None:
    """Convert MODEL to ONNX (checked against the original) and optionally quantize it behind the gate."""
    from ..convert.gate import GateThresholds
    from ..convert.pipeline import prepare

    obj = ctx_obj(ctx)
    meta = load_metadata(metadata, task=task, labels=labels)
    with StageDisplay(enabled=not obj.as_json) as display:
        res = prepare(
            model,
            name=out_dir.name,
            workdir=out_dir,
            quantize_mode=cast("QuantizeMode", quantize),
            eval_data=eval_data,
            calibration=calibration,
            metadata=meta,
            input_spec=input_spec,
            output_names=output_name or None,
            state_dict=state_dict,
            target=target,
            mixed_precision=mixed_precision,
            compact_kept=compact_kept,
            check_atol=atol,
            check_rtol=rtol,
            events=display,
            thresholds=GateThresholds(
                max_accuracy_drop=max_accuracy_drop,
                min_agreement=min_agreement,
                min_cosine=min_cosine,
                max_abs_error=max_abs_error,
            ),
        )
    (out_dir / "metadata.json").write_text(res.metadata.model_dump_json(indent=1))
    if res.int8_path:
        (out_dir / "metadata.fp32.json").write_text(res.fp32_metadata.model_dump_json(indent=1))
    paths = {
        "fp32": str(res.fp32_path),
        "int8": str(res.int8_path) if res.int8_path else None,
        "metadata": str(out_dir / "metadata.json"),
    }
    if not obj.as_json:
        console = err()
        chk = res.metadata.metrics.get("conversion", {})
        error = chk.get("max_abs_error")
        console.print(
            f"converted with {escape(str(chk.get('exporter', '-')))}: max abs error "
            f"{'n/a' if error is None else f'{error:.3g}'}"
        )
        if res.gate:
            console.print(gate_table(res.gate.as_dict()))
        q = res.metadata.quantization
        if q and q.kept_fp32_nodes:
            console.print(f"kept in fp32: {escape(', '.join(q.kept_fp32_nodes))}")
    typer.echo(json.dumps(paths))
