"""``modelbay push``: convert, quantize behind the accuracy gate, upload and register, in one command.

A plain ONNX file without ``--quantize``/``--eval`` goes straight to the registry
(no torch needed). Anything else runs ``modelbay.convert.pipeline.prepare`` and
``publish``: the same library the ``convert`` command and the TUI's upload screen use.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from .manifest import VersionMetadata


def _metadata(metadata: Optional[Path], description: str, task: Optional[str], labels: Optional[str]
              ) -> VersionMetadata:
    base = json.loads(metadata.read_text()) if metadata else {}
    updates: dict = {k: v for k, v in {"description": description, "task": task}.items() if v}
    if labels:
        p = Path(labels)
        updates["labels"] = p.read_text().split() if p.is_file() else [x.strip() for x in labels.split(",")]
    return VersionMetadata.model_validate({**base, **updates})


def push(ctx: typer.Context,
         model: str = typer.Argument(..., help="model: .onnx, .pt2, TorchScript .pt, sklearn .pkl/.joblib, "
                                               "or module:factory with --state-dict"),
         name: str = typer.Option(..., "--name", "-n", help="Model name."),
         alias: list[str] = typer.Option([], "--alias", "-a", help="Point these aliases at the new version."),
         quantize: Optional[str] = typer.Option(
             None, "--quantize", "-q",
             help="none | dynamic | static | auto (default: auto with --eval, else none)"),
         eval_data: Optional[Path] = typer.Option(None, "--eval", exists=True,
                                                  help="Evaluation data for the gate (.npz/.npy/folder; "
                                                       "a 'labels' array gives accuracy)."),
         calibration: Optional[Path] = typer.Option(None, "--calibration", exists=True,
                                                    help="Calibration samples for static int8."),
         input_spec: Optional[str] = typer.Option(None, "--input-spec", "-i",
                                                  help="e.g. 'x:float32:\\[batch,100]' (';' between inputs)"),
         state_dict: Optional[Path] = typer.Option(None, "--state-dict", exists=True,
                                                   help="Weights for module:factory."),
         target: str = typer.Option("arm64", "--target", help="arm64 | x86_64: per-CPU quantization options."),
         with_fp32: bool = typer.Option(False, "--with-fp32", help="Also register the fp32 twin (first)."),
         max_accuracy_drop: float = typer.Option(0.5, help="Classifier gate, percentage points."),
         min_cosine: float = typer.Option(0.99, help="Embedder gate: minimum cosine similarity."),
         max_abs_error: Optional[float] = typer.Option(None, help="Raw-output gate (default: 1% of the output range)."),
         description: str = typer.Option("", "--description", "-d"),
         task: Optional[str] = typer.Option(None, help="classifier, embedder or raw."),
         labels: Optional[str] = typer.Option(None, help="Class labels: comma-separated, or a file."),
         metadata: Optional[Path] = typer.Option(None, exists=True, help="VersionMetadata as a JSON file."),
         side_file: list[Path] = typer.Option([], "--file", exists=True, help="Side file (e.g. tokenizer.json).")):
    """Upload a model (converting and quantizing it when asked), register it and print the new version."""
    from .cli import _emit, _size, err, out

    meta = _metadata(metadata, description, task, labels)
    mode = quantize or ("auto" if eval_data else "none")
    plain = model.endswith(".onnx") and mode == "none" and eval_data is None and Path(model).is_file()
    sides = {p.name: p for p in side_file}
    with ctx.obj.client() as c, Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                                         DownloadColumn(), TransferSpeedColumn(), console=err,
                                         disable=ctx.obj.as_json) as bar:
        upload = bar.add_task("upload", total=None, visible=plain)

        def sent(done: int, total: int) -> None:
            bar.update(upload, completed=done, total=total, visible=True)

        if plain:
            manifests = [c.push(model, name, meta, sides, alias, progress=sent)]
            gate = None
        else:
            from .convert.gate import GateThresholds
            from .convert.pipeline import prepare, publish

            stage = bar.add_task("convert", total=None)
            with tempfile.TemporaryDirectory(prefix="modelbay-push-") as work:
                prepared = prepare(
                    model, name=name, workdir=work, quantize_mode=mode, eval_data=eval_data,  # type: ignore[arg-type]
                    calibration=calibration, metadata=meta, input_spec=input_spec, state_dict=state_dict,
                    side_files=sides, target=target,
                    thresholds=GateThresholds(max_accuracy_drop=max_accuracy_drop, min_cosine=min_cosine,
                                              max_abs_error=max_abs_error),
                    progress=lambda msg, frac: bar.update(stage, description=msg),
                )
                bar.update(stage, visible=False)
                manifests = publish(prepared, client=c, aliases=alias, with_fp32_twin=with_fp32, progress=sent)
                gate = prepared.gate
    if ctx.obj.as_json:
        _emit(ctx, [m.model_dump(mode="json") for m in manifests])
        return
    if gate is not None:
        from .convert.cli import gate_table

        err.print(gate_table(gate.as_dict()))
    for m in manifests:
        q = m.quantization.method if m.quantization else "none"
        extra = f"  aliases: {', '.join(alias)}" if alias and m is manifests[-1] else ""
        out.print(f"[green]registered[/] [bold]{m.name}[/] version [bold]{m.version}[/]  {q}  "
                  f"sha256 {m.sha256[:12]}  {_size(m.size)}{extra}")
