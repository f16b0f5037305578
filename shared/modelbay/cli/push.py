"""``modelbay push`` and ``modelbay convert``: one pipeline (``modelbay.convert.pipeline``), shown as stages.

``push`` hands everything to ``pipeline.push``, which decides between a plain
upload and a conversion; the TUI's upload screen calls the same function.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Self, cast

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

from ..errors import BadRequest
from ..manifest import VersionMetadata
from .base import App, ctx_obj
from .output import err, escape, gate_table, note, out, read_json, search_table, size

if TYPE_CHECKING:
    from ..convert.pipeline import QuantizeMode

app = App()

MARKS = {"done": "[green]✓[/]", "skipped": "[dim]-[/]", "failed": "[red]✗[/]"}


def load_metadata(
    path: Path | None, *, description: str = "", task: str | None = None, labels: str | None = None
) -> VersionMetadata:
    """``--metadata`` (a VersionMetadata JSON file) with the flags that override it."""
    from ..convert.task import user_metadata

    base = read_json(path, "--metadata") if path is not None else {}
    if not isinstance(base, dict):
        raise BadRequest(f"--metadata {path} must hold a JSON object (task, preprocessing, labels, ...)")
    return user_metadata(base, description=description, task=task, labels=labels, source=f"--metadata {path}")


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


# Options push and convert share: one definition each.
InputSpec = Annotated[
    str | None,
    typer.Option(
        "--input-spec",
        "-i",
        help="Inputs as name:dtype:[dims], ';' between inputs, e.g. 'x:float32:[batch,100]', or a .json file. "
        "Needed for torch models; scikit-learn models say it themselves.",
    ),
]
StateDict = Annotated[
    Path | None, typer.Option("--state-dict", exists=True, dir_okay=False, help="Weights for module:factory.")
]
OutputName = Annotated[
    list[str], typer.Option("--output-name", help="Names for the exported ONNX outputs, in order (repeatable).")
]
UseOutput = Annotated[
    str | None,
    typer.Option(
        "--output",
        help="The output predictions and the gate read (a classifier's scores, an embedder's vectors). "
        "Default: inferred (skl2onnx's 'probabilities', else the first float output).",
    ),
]
Quantize = Annotated[
    str | None,
    typer.Option(
        "--quantize",
        "-q",
        help="none | dynamic | static | auto | int4 (language models: auto tries int4, then int8; default: auto "
        "with --eval, else none).",
    ),
]
EvalData = Annotated[
    Path | None,
    typer.Option(
        "--eval",
        exists=True,
        help="Evaluation data for the gate (.npz/.npy/folder); a 'labels' array makes it a classifier and "
        "measures accuracy. Hugging Face folders: a .txt (a sentence a line), a .csv/.jsonl with text and "
        "label columns, or a folder of images in class subfolders (default: a built-in sample).",
    ),
]
Calibration = Annotated[
    Path | None, typer.Option("--calibration", exists=True, help="Calibration samples for static int8 (.npz/.npy).")
]
Target = Annotated[str, typer.Option("--target", help="arm64 | x86_64: per-CPU quantization options.")]
Task = Annotated[
    str | None,
    typer.Option(
        "--task",
        help="classifier, embedder or raw (default: classifier with --labels or eval labels). Hugging Face "
        "folders: classifier, tagger, embedder, image-classifier or text-generation (default: from the config).",
    ),
]
TrustPickle = Annotated[
    bool,
    typer.Option("--trust-pickle", help="Allow a folder's pickled pytorch_model.bin (loading it runs its code)."),
]
Labels = Annotated[
    str | None, typer.Option("--labels", help="Class labels, in score order: comma-separated, or a file.")
]
Metadata = Annotated[
    Path | None,
    typer.Option(
        "--metadata",
        exists=True,
        dir_okay=False,
        help="VersionMetadata as a JSON file (its JSON Schema: GET /registry/schemas/metadata).",
    ),
]
MaxDrop = Annotated[float, typer.Option("--max-accuracy-drop", help="Classifier gate, percentage points.")]
MinAgreement = Annotated[
    float, typer.Option("--min-agreement", help="Classifier gate without labels: top-1 agreement with fp32.")
]
MinCosine = Annotated[float, typer.Option("--min-cosine", help="Embedder gate: minimum cosine similarity.")]
MaxAbsError = Annotated[
    float | None, typer.Option("--max-abs-error", help="Raw-output gate (default: 1% of the output range).")
]
Mixed = Annotated[
    bool, typer.Option("--mixed-precision/--no-mixed-precision", help="On gate failure, keep sensitive nodes fp32.")
]


Optimize = Annotated[
    str,
    typer.Option(
        "--optimize",
        help="int8: quantize (int8, mixed precision on gate failure). auto: search int8, mixed, int4 and pruned "
        "variants (torch modules) and register the best one the gate passes, with the whole table.",
    ),
]
Objective = Annotated[str, typer.Option("--objective", help="--optimize auto: latency (batch 32) or size.")]
SearchBudget = Annotated[str, typer.Option("--search-budget", help="--optimize auto: time bound, e.g. 10m, 90s.")]
PruneRatios = Annotated[
    str,
    typer.Option(
        "--prune-ratios",
        help="--optimize auto: fractions of units to prune, tried in order until the gate fails ('' for none).",
    ),
]
PruneScore = Annotated[
    str, typer.Option("--prune-score", help="Unit importance for pruning: activation, magnitude or taylor.")
]
Int4Block = Annotated[int, typer.Option("--int4-block-size", help="int4 weights: block size (16..256, power of 2).")]
Int4Level = Annotated[
    int, typer.Option("--int4-accuracy-level", help="int4 compute: 0 default (fp32), 4 int8 (CPUs with int8 dot).")
]


def search_options(optimize: str, objective: str, budget: str, ratios: str, score: str, block: int, level: int) -> Any:
    """``--optimize`` and its knobs as ``prepare``'s ``optimize`` (None: int8 as before)."""
    if optimize == "int8":
        return None
    if optimize != "auto":
        raise BadRequest(f"--optimize must be int8 or auto, not {optimize!r}")
    from ..convert.quantize import Int4Options
    from ..convert.search import SearchOptions, parse_duration, parse_ratios

    if block < 16 or block & (block - 1):
        raise BadRequest(f"--int4-block-size must be a power of 2 >= 16, not {block}")
    if level not in (0, 1, 2, 3, 4):
        raise BadRequest(f"--int4-accuracy-level is 0..4, not {level}")
    return SearchOptions(
        objective=objective,  # type: ignore[arg-type]  # checked by SearchOptions
        budget_s=parse_duration(budget),
        prune_ratios=parse_ratios(ratios),
        prune_score=score,
        int4=Int4Options(block_size=block, accuracy_level=level),
    )


def thresholds(max_drop: float, min_agreement: float, min_cosine: float, max_abs_error: float | None) -> Any:
    from ..convert.gate import GateThresholds

    return GateThresholds(
        max_accuracy_drop=max_drop, min_agreement=min_agreement, min_cosine=min_cosine, max_abs_error=max_abs_error
    )


@app.command()
def push(
    ctx: typer.Context,
    model: str = typer.Argument(
        ...,
        help="model: a Hugging Face save_pretrained folder, .onnx, .pt2, TorchScript .pt, sklearn .pkl/.joblib, "
        "or module:factory with --state-dict",
    ),
    name: str = typer.Option(..., "--name", "-n", help="Model name."),
    alias: list[str] = typer.Option([], "--alias", "-a", help="Point these aliases at the new version."),
    quantize: Quantize = None,
    eval_data: EvalData = None,
    calibration: Calibration = None,
    input_spec: InputSpec = None,
    state_dict: StateDict = None,
    output_name: OutputName = [],  # noqa: B006 - typer reads the default, never mutates it
    use_output: UseOutput = None,
    target: Target = "arm64",
    with_fp32: bool = typer.Option(False, "--with-fp32", help="Also register the fp32 twin (first)."),
    max_accuracy_drop: MaxDrop = 0.5,
    min_agreement: MinAgreement = 0.99,
    min_cosine: MinCosine = 0.99,
    max_abs_error: MaxAbsError = None,
    mixed_precision: Mixed = True,
    optimize: Optimize = "int8",
    objective: Objective = "latency",
    search_budget: SearchBudget = "10m",
    prune_ratios: PruneRatios = "0.25,0.5",
    prune_score: PruneScore = "activation",
    int4_block_size: Int4Block = 32,
    int4_accuracy_level: Int4Level = 0,
    description: str = typer.Option("", "--description", "-d"),
    task: Task = None,
    labels: Labels = None,
    metadata: Metadata = None,
    side_file: list[Path] = typer.Option(
        [], "--file", exists=True, dir_okay=False, help="Side file (e.g. tokenizer.json)."
    ),
    trust_pickle: TrustPickle = False,
) -> None:
    """Upload a model (converting and quantizing it when asked), register it and print the new version."""
    from ..convert.pipeline import push as run_push

    obj = ctx_obj(ctx)
    folder = Path(model).is_dir()
    meta = load_metadata(metadata, description=description, task=None if folder else task, labels=labels)
    search = search_options(
        optimize, objective, search_budget, prune_ratios, prune_score, int4_block_size, int4_accuracy_level
    )
    folder_options: dict[str, Any] = {"folder_task": task, "trust_pickle": trust_pickle} if folder else {}
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
            output_names=output_name or None,
            use_output=use_output,
            target=target,
            mixed_precision=mixed_precision,
            thresholds=thresholds(max_accuracy_drop, min_agreement, min_cosine, max_abs_error),
            **({"optimize": search} if search is not None else {}),
            **folder_options,
        )
    manifests = result.manifests
    if obj.as_json:
        typer.echo(json.dumps([m.model_dump(mode="json") for m in manifests], indent=2))
        return
    if result.gate is not None:
        err().print(gate_table(result.gate.as_dict()))
    if searched := manifests[-1].metrics.get("search"):
        err().print(search_table(searched))
    for m in manifests:
        q = m.quantization.method if m.quantization else "none"
        extra = f"  aliases: {', '.join(alias)}" if alias and m is manifests[-1] else ""
        out().print(
            f"[green]registered[/] [bold]{escape(m.name)}[/] version [bold]{m.version}[/]  {q}  "
            f"sha256 {m.sha256[:12]}  {size(m.size)}{escape(extra)}"
        )
    if line := serves(manifests[-1]):
        note(escape(line))


def serves(m: Any) -> str | None:
    """What predictions of the version look like, said once at push: the inferred parts are no surprise."""
    post = m.postprocessing
    if post is None:
        return None
    if post.kind == "classifier":
        labels = f"{len(m.labels)} labels" if m.labels else "class indices as labels (give --labels)"
        softmax = (
            " with a softmax" if post.apply_softmax else (" with a sigmoid (multi-label)" if post.apply_sigmoid else "")
        )
        return f"predictions: label, score and top {post.top_k} from output {post.scores!r}{softmax}; {labels}"
    if post.kind == "tagger":
        return f"predictions: entity spans with character offsets ({post.aggregation} aggregation) from {post.scores!r}"
    return f"predictions: vectors from output {post.output!r} (pooling {post.pooling})"


@app.command()
def convert(
    ctx: typer.Context,
    model: str = typer.Argument(
        ..., help="model: a Hugging Face folder, a file (.onnx, .pt2, TorchScript .pt, .pkl/.joblib) or module:factory"
    ),
    out_dir: Path = typer.Option(Path("converted"), "--out", "-o", help="Output folder."),
    input_spec: InputSpec = None,
    state_dict: StateDict = None,
    output_name: OutputName = [],  # noqa: B006 - typer reads the default, never mutates it
    use_output: UseOutput = None,
    quantize: Quantize = None,
    eval_data: EvalData = None,
    calibration: Calibration = None,
    target: Target = "arm64",
    metadata: Metadata = None,
    task: Task = None,
    labels: Labels = None,
    max_accuracy_drop: MaxDrop = 0.5,
    min_agreement: MinAgreement = 0.99,
    min_cosine: MinCosine = 0.99,
    max_abs_error: MaxAbsError = None,
    mixed_precision: Mixed = True,
    compact_kept: bool = typer.Option(False, help="Store kept fp32 weights as 8-bit blocks (smaller, slower)."),
    optimize: Optimize = "int8",
    objective: Objective = "latency",
    search_budget: SearchBudget = "10m",
    prune_ratios: PruneRatios = "0.25,0.5",
    prune_score: PruneScore = "activation",
    int4_block_size: Int4Block = 32,
    int4_accuracy_level: Int4Level = 0,
    atol: float = typer.Option(1e-4, help="Conversion check tolerance (absolute)."),
    rtol: float = typer.Option(1e-3, help="Conversion check tolerance (relative)."),
    trust_pickle: TrustPickle = False,
) -> None:
    """Convert MODEL to ONNX (checked against the original) and optionally quantize it behind the gate."""
    from ..convert.pipeline import prepare

    obj = ctx_obj(ctx)
    folder = Path(model).is_dir()
    meta = load_metadata(metadata, task=None if folder else task, labels=labels)
    search = search_options(
        optimize, objective, search_budget, prune_ratios, prune_score, int4_block_size, int4_accuracy_level
    )
    folder_options: dict[str, Any] = {"folder_task": task, "trust_pickle": trust_pickle} if folder else {}
    with StageDisplay(enabled=not obj.as_json) as display:
        res = prepare(
            model,
            name=out_dir.name,
            workdir=out_dir,
            quantize_mode=cast("QuantizeMode", quantize or ("auto" if eval_data is not None else "none")),
            eval_data=eval_data,
            calibration=calibration,
            metadata=meta,
            input_spec=input_spec,
            output_names=output_name or None,
            use_output=use_output,
            state_dict=state_dict,
            target=target,
            mixed_precision=mixed_precision,
            compact_kept=compact_kept,
            check_atol=atol,
            check_rtol=rtol,
            events=display,
            thresholds=thresholds(max_accuracy_drop, min_agreement, min_cosine, max_abs_error),
            optimize=search,
            **folder_options,
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
        if searched := res.metadata.metrics.get("search"):
            console.print(search_table(searched))
        q = res.metadata.quantization
        if q and q.kept_fp32_nodes:
            console.print(f"kept in fp32: {escape(', '.join(q.kept_fp32_nodes))}")
    typer.echo(json.dumps(paths))


@app.command("metadata-schema")
def metadata_schema(ctx: typer.Context) -> None:
    """Print the JSON Schema of --metadata files, as the server validates them (GET /registry/schemas/metadata)."""
    with ctx_obj(ctx).client() as c:
        schema = c.metadata_schema()
    typer.echo(json.dumps(schema, indent=2))
