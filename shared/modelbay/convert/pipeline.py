"""``prepare``: model -> fp32 ONNX (checked) -> int8 ONNX (gated) -> metadata.

``publish`` hands the result to a registry or client. ``push`` is the whole thing
as a user asks for it: it decides between a plain upload and a conversion, and
reports typed ``StageEvent``s (convert, quantize, gate, upload, register) that
``modelbay push`` and the TUI's upload screen both display.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, NoReturn, Protocol

from modelbay.convert import task
from modelbay.convert.converter import Conversion, convert, onnx_signature, session, sklearn_input_spec
from modelbay.convert.data import Dataset, Feed, load_dataset
from modelbay.convert.gate import Gate, GateFailed, GateReport, GateThresholds
from modelbay.convert.hf.folder import Folder, is_model_folder
from modelbay.convert.measure import profile
from modelbay.convert.mixed import search
from modelbay.convert.quantize import (
    Method,
    choose_method,
    options_for,
    preprocess,
    quantizable_nodes,
    quantize,
    scratch_dir,
)
from modelbay.convert.quantize import compact_kept as compact_kept_weights
from modelbay.convert.search import SearchInput, SearchOptions, quantization_info
from modelbay.convert.search import keep as keep_variant
from modelbay.convert.search import run as run_search
from modelbay.convert.sources import load_source
from modelbay.convert.spec import parse_input_spec, sample_inputs
from modelbay.errors import BadRequest, InvalidModel
from modelbay.manifest import QuantizationInfo, TensorSpec, VersionMetadata

QuantizeMode = Literal["dynamic", "static", "auto", "none", "int4"]
Progress = Callable[[str, float | None], None]


class Stage(StrEnum):
    CONVERT = "convert"
    QUANTIZE = "quantize"
    GATE = "gate"
    UPLOAD = "upload"
    REGISTER = "register"


class Status(StrEnum):
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class StageEvent:
    stage: Stage
    status: Status
    message: str = ""
    sent: int | None = None  # upload: bytes so far, of ``total``
    total: int | None = None


Events = Callable[[StageEvent], None]


class Uploader(Protocol):
    """What ``push`` needs of a client: ``modelbay.client.Client.push``."""

    def push(
        self,
        path: str | Path,
        name: str,
        metadata: VersionMetadata | None = None,
        side_files: Mapping[str, str | Path] | None = None,
        aliases: Sequence[str] = (),
        progress: Callable[[int, int], None] | None = None,
    ) -> Any: ...


class Reporter:
    """Turns the pipeline's steps into ``StageEvent``s; remembers each stage's state."""

    def __init__(self, events: Events | None = None, progress: Progress | None = None) -> None:
        self.events = events
        self.progress = progress
        self.state: dict[Stage, Status] = {}
        self.current: Stage | None = None

    def emit(self, event: StageEvent) -> None:
        self.state[event.stage] = event.status
        if self.events is not None:
            self.events(event)

    def start(self, stage: Stage, message: str = "") -> None:
        self.current = stage
        self.emit(StageEvent(stage, Status.RUNNING, message))

    def done(self, stage: Stage, message: str = "") -> None:
        if self.state.get(stage) != Status.DONE:
            self.emit(StageEvent(stage, Status.DONE, message))

    def skip(self, stage: Stage, message: str = "") -> None:
        self.emit(StageEvent(stage, Status.SKIPPED, message))

    def say(self, message: str, fraction: float | None = None) -> None:
        """A step inside the current stage (the ``progress`` callback of ``prepare``)."""
        if self.progress is not None:
            self.progress(message, fraction)
        if self.current is not None and self.events is not None:
            self.events(StageEvent(self.current, Status.RUNNING, message))

    def fail(self) -> None:
        """Mark whatever was running as failed (an exception is on its way up)."""
        for stage, status in list(self.state.items()):
            if status == Status.RUNNING:
                self.emit(StageEvent(stage, Status.FAILED))


@dataclass
class Prepared:
    name: str
    fp32_path: Path
    int8_path: Path | None
    metadata: VersionMetadata  # for the int8 version (or the fp32 one when not quantized)
    fp32_metadata: VersionMetadata
    side_files: dict[str, Path] = field(default_factory=dict)
    gate: GateReport | None = None
    conversion: Conversion | None = None

    @property
    def model_path(self) -> Path:
        return self.int8_path or self.fp32_path


def _dataset(data: Any, names: list[str] | None) -> Dataset | None:
    if data is None or isinstance(data, Dataset):
        return data
    if isinstance(data, list):
        return Dataset(list(data))
    return load_dataset(data, names or [])


def prepare(
    model: Any,
    *,
    name: str,
    workdir: str | Path,
    quantize_mode: QuantizeMode = "auto",
    eval_data: str | Path | Dataset | None = None,
    calibration: str | Path | Dataset | list[Feed] | None = None,
    metadata: VersionMetadata | None = None,
    input_spec: str | list | None = None,
    example: Feed | None = None,
    output_names: list[str] | None = None,
    state_dict: str | Path | None = None,
    side_files: dict[str, Path] | None = None,
    target: str = "arm64",
    thresholds: GateThresholds | None = None,
    mixed_precision: bool = True,
    compact_kept: bool = False,
    measure: bool = True,
    check_atol: float = 1e-4,
    check_rtol: float = 1e-3,
    use_output: str | None = None,
    folder_task: str | None = None,
    trust_pickle: bool = False,
    progress: Progress | None = None,
    events: Events | None = None,
    optimize: SearchOptions | None = None,
) -> Prepared:
    """Run the whole pipeline up to (not including) publishing.

    Raises GateFailed (HTTP 422, details hold the gate's numbers) when neither
    plain int8 nor mixed precision keeps the model within ``thresholds``.
    The metadata is completed (``convert.task``) and checked against the model's
    signature as soon as it is known, before the slow steps. ``use_output``: the
    output predictions and the gate read (default: inferred).
    ``progress`` gets free-text steps; ``events`` gets typed stage events.
    ``optimize``: run the variant search (``convert.search``: int8, int4,
    pruning) instead of int8 alone, and keep the best variant that passes.

    ``model`` may be a Hugging Face model folder (``convert.hf``): its task (``folder_task`` overrides),
    inputs, output, metadata, tokenizer and evaluation data come from its files; ``eval_data`` is then a text,
    CSV or JSONL file or an image folder. ``trust_pickle`` allows pickled ``.bin`` weights.
    """
    rep = Reporter(events, progress)
    try:
        if isinstance(model, Folder) or is_model_folder(model):
            folder = model if isinstance(model, Folder) else recognise(model, folder_task, trust_pickle)
            if folder.task == "text-generation":  # a decoder LM: exported with its KV cache, gated on generation
                from .generation import prepare_causal_lm

                return prepare_causal_lm(
                    folder.path,
                    name=name,
                    workdir=workdir,
                    quantize_mode=quantize_mode,
                    metadata=metadata,
                    target=target,
                    progress=progress,
                    events=events,
                )
            p = _plan_folder(folder, Path(workdir), eval_data, metadata, side_files, rep)
            model, eval_data, metadata, side_files = p.module, p.evals, p.metadata, p.side_files
            # static int8 (convolutional models) calibrates on the folder's real inputs unless told otherwise
            calibration = p.evals if calibration is None else calibration
            input_spec, example, output_names = p.inputs, p.evals.batches[0], [p.output]
        return _prepare(
            model,
            name,
            workdir,
            quantize_mode,
            eval_data,
            calibration,
            metadata,
            input_spec,
            example,
            output_names,
            state_dict,
            side_files,
            target,
            thresholds,
            mixed_precision,
            compact_kept,
            measure,
            check_atol,
            check_rtol,
            use_output,
            rep,
            optimize,
        )
    except BaseException:
        rep.fail()
        raise


def _prepare(
    model: Any,
    name: str,
    workdir: str | Path,
    quantize_mode: QuantizeMode,
    eval_data: str | Path | Dataset | None,
    calibration: str | Path | Dataset | list[Feed] | None,
    metadata: VersionMetadata | None,
    input_spec: str | list | None,
    example: Feed | None,
    output_names: list[str] | None,
    state_dict: str | Path | None,
    side_files: dict[str, Path] | None,
    target: str,
    thresholds: GateThresholds | None,
    mixed_precision: bool,
    compact_kept: bool,
    measure: bool,
    check_atol: float,
    check_rtol: float,
    use_output: str | None,
    rep: Reporter,
    optimize: SearchOptions | None = None,
) -> Prepared:
    say = rep.say
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    meta = (metadata or VersionMetadata()).model_copy(deep=True)
    if quantize_mode not in ("dynamic", "static", "auto", "none"):
        raise BadRequest(f"--quantize must be dynamic, static, auto or none, not {quantize_mode!r}")

    fp32 = work / "model.fp32.onnx"
    side = dict(side_files or {})
    rep.start(Stage.CONVERT, "converting")
    src = load_source(model, state_dict=state_dict)
    specs = parse_input_spec(input_spec)
    inferred = ""
    if specs is None and example is None and src.kind == "sklearn":
        specs = sklearn_input_spec(src.obj)
        if specs is not None:
            inferred = f" (input {'; '.join(task.spec_text(s) for s in specs)} read from the model)"
    if specs is not None:
        # the metadata against what is known already: a mistake costs a second, not a conversion
        meta = task.fit_to_inputs(meta, specs)
        early_outputs = [TensorSpec(name=n, dtype="float32", shape=[]) for n in output_names or []]
        task.check(meta, specs, early_outputs, side, "before conversion")
    names_hint = [s.name for s in specs] if specs else None
    # with a spec we know the input names, so the eval data can feed the conversion check too
    pre_eval = _dataset(eval_data, names_hint) if names_hint or isinstance(eval_data, Dataset) else None
    samples = pre_eval.batches[:2] if pre_eval is not None else None
    conv = convert(
        src,
        fp32,
        input_spec=specs,
        example=example,
        output_names=output_names,
        state_dict=state_dict,
        samples=samples,
        atol=check_atol,
        rtol=check_rtol,
    )
    rep.done(Stage.CONVERT, f"converted with {conv.exporter}{inferred}")
    input_names = names_hint or [s.name for s in conv.inputs]
    evals = pre_eval if pre_eval is not None else _dataset(eval_data, input_names)
    calib = _dataset(calibration, input_names)
    sig = onnx_signature(fp32)
    classes = getattr(src.obj, "classes_", None) if src.kind == "sklearn" else None
    meta = _complete(fp32, sig, meta, evals, use_output, classes)
    try:
        task.check(meta, *sig, side, "after conversion")
    except BadRequest as e:
        if src.kind == "onnx" or not str(e.details.get("field", "")).startswith("postprocessing"):
            raise
        raise BadRequest(f"{e.message}, or name the exported outputs with --output-name", **e.details) from None
    meta.metrics["conversion"] = {
        "source": conv.kind,
        "exporter": conv.exporter,
        **(conv.check.as_dict() if conv.check else {"note": "; ".join(conv.notes)}),
    }
    fp32_meta = meta.model_copy(deep=True)
    fp32_meta.quantization = QuantizationInfo(method="none")

    # (with "none" the method is never used: that branch returns below)
    method: Method = (
        choose_method(fp32) if quantize_mode == "auto" else ("static" if quantize_mode == "static" else "dynamic")
    )
    if quantize_mode == "auto" and not quantizable_nodes(fp32, method):
        # e.g. skl2onnx TF-IDF + LinearClassifier: ai.onnx.ml ops onnxruntime does not quantize
        quantize_mode = "none"
        fp32_meta.quantization = QuantizationInfo(method="none", extra={"reason": "no quantizable nodes"})
    if quantize_mode == "none":
        meta.quantization = fp32_meta.quantization
        rep.skip(Stage.QUANTIZE, (fp32_meta.quantization.extra or {}).get("reason", "not asked"))
        if evals is not None:
            # nothing to gate; still record what the model scores on the evaluation data
            rep.start(Stage.GATE, "evaluating fp32")
            ev = Gate(fp32, evals, meta, thresholds).check(fp32)
            meta.metrics["evaluation"] = {"samples": ev.samples, **ev.fp32}
            if measure:
                meta.metrics["fp32"] = profile(fp32, evals.batches[0])
            rep.done(Stage.GATE, "evaluated (nothing to gate)")
        else:
            rep.skip(Stage.GATE, "no evaluation data")
        return Prepared(name, fp32, None, meta, meta, side, None, conv)
    if evals is None:
        raise BadRequest("quantizing needs evaluation data (--eval) for the accuracy gate")

    opts = options_for(target)
    int8 = work / "model.int8.onnx"
    calib_batches = calib.batches if calib is not None else None
    if method == "static" and not calib_batches:
        raise BadRequest("static quantization needs calibration samples (--calibration)")

    rep.start(Stage.QUANTIZE, "evaluating fp32")
    gate = Gate(fp32, evals, meta, thresholds)
    if optimize is not None:
        inp = SearchInput(
            fp32,
            src,
            specs or conv.inputs,
            example,
            output_names,
            method,
            opts,
            calib_batches,
            gate,
            work,
            mixed_precision,
            check_atol,
            check_rtol,
        )
        return _searched(name, inp, optimize, meta, fp32_meta, side, conv, rep, measure)
    with scratch_dir() as tmp:
        # pre-process once: every quantization of the search sees the same node names
        base, pre_note = preprocess(fp32, tmp / "pre.onnx", method)
        say(f"quantizing ({method}, {opts.target})", None)
        quantize(base, int8, method, opts, calib_batches, preprocessed=True)
        rep.done(Stage.QUANTIZE, f"{method} int8 for {opts.target}")
        rep.start(Stage.GATE, "checking accuracy")
        report = gate.check(int8)
        kept: list[str] = []
        mixed_info: dict[str, Any] = {}
        if not report.passed and mixed_precision:
            say("plain int8 failed the gate; searching mixed precision", None)
            first = report
            res = search(
                base,
                method,
                opts,
                gate,
                int8,
                int8,
                tmp,
                calib_batches,
                say,
                first_margin=first.margin if gate.task == "embedder" else 0.0,
            )
            if res is None:
                _refuse(first, "mixed precision (up to half the nodes in fp32) did not pass either")
            report, kept = res.report, res.kept_fp32
            mixed_info = {
                "plain_int8": first.int8,
                "kept_fp32": kept,
                "tries": res.tries,
                "ranking": [(n, round(d, 6)) for n, d in res.ranking[: max(len(kept), 5)]],
            }
        elif not report.passed:
            _refuse(report, "mixed precision disabled")
        if kept and compact_kept:
            say("storing kept fp32 weights as 8-bit blocks", None)
            done = compact_kept_weights(int8, kept, tmp / "compact.onnx")
            compact_report = gate.check(tmp / "compact.onnx") if done else None
            mixed_info["compact_kept"] = {
                "nodes": done,
                "gate": compact_report.int8 if compact_report else None,
                "used": bool(compact_report and compact_report.passed),
            }
            if compact_report and compact_report.passed:
                shutil.copyfile(tmp / "compact.onnx", int8)
                report = compact_report

    if not report.passed:
        _refuse(report, "")
    meta.quantization = QuantizationInfo(
        method="mixed" if kept else method,
        kept_fp32_nodes=kept,
        extra={
            "base_method": method,
            "preprocessing": pre_note,
            **({"calibration_samples": len(calib)} if calib else {}),
        },
        **opts.info(method),
    )
    meta.metrics["gate"] = report.as_dict()
    fp32_meta.metrics["evaluation"] = {"samples": report.samples, **report.fp32}
    if mixed_info:
        meta.metrics["mixed_precision"] = mixed_info
    if measure:
        say("measuring size and latency", None)
        meta.metrics["fp32"] = profile(fp32, evals.batches[0])
        meta.metrics["int8"] = profile(int8, evals.batches[0])
        fp32_meta.metrics["fp32"] = meta.metrics["fp32"]
    rep.done(Stage.GATE, "passed")
    say("done", 1.0)
    return Prepared(name, fp32, int8, meta, fp32_meta, side, report, conv)


def _searched(
    name: str,
    inp: SearchInput,
    options: SearchOptions,
    meta: VersionMetadata,
    fp32_meta: VersionMetadata,
    side: dict[str, Path],
    conv: Conversion,
    rep: Reporter,
    measure: bool,
) -> Prepared:
    """``prepare`` with ``optimize``: the variant search picks the version (its whole table goes in the metrics)."""
    rep.say("searching variants (int8, int4, pruning)", None)
    chosen = inp.work / "model.opt.onnx"
    # the candidates live in a folder of their own, gone afterwards unless asked for (the bench times them)
    if options.keep_candidates:
        (inp.work / "search").mkdir(exist_ok=True)
        res = run_search(replace(inp, work=inp.work / "search"), options, rep.say)
        keep_variant(res, chosen)
    else:
        with tempfile.TemporaryDirectory(dir=inp.work, prefix=".search-") as d:
            res = run_search(replace(inp, work=Path(d)), options, rep.say)
            keep_variant(res, chosen)
    rep.done(Stage.QUANTIZE, f"{len(res.candidates)} candidates, chose {res.chosen.name}")
    rep.start(Stage.GATE, "checking accuracy")
    report = res.chosen.report
    assert report is not None
    meta.quantization = quantization_info(res, inp, options)
    meta.metrics["gate"] = report.as_dict()
    meta.metrics["search"] = res.table
    fp32_meta.metrics["evaluation"] = {"samples": report.samples, **report.fp32}
    if measure:
        fp32_row, row = res.candidates[0].row(), res.chosen.row()
        meta.metrics["fp32"] = fp32_meta.metrics["fp32"] = {k: fp32_row[k] for k in ("size_bytes", "latency_ms")}
        meta.metrics["int8"] = {k: row[k] for k in ("size_bytes", "latency_ms")}  # the chosen variant's numbers
    rep.done(Stage.GATE, f"passed ({res.chosen.name})")
    return Prepared(name, inp.fp32, chosen, meta, fp32_meta, side, report, conv)


def recognise(path: str | Path, task: str | None = None, trust_pickle: bool = False) -> Folder:
    """``convert.hf.folder.inspect`` within this deployment's limits."""
    from modelbay.convert.hf.folder import inspect
    from modelbay.settings import Settings

    limits = Settings.from_env().limits
    return inspect(
        path,
        task=task,
        trust_pickle=trust_pickle,
        max_folder_bytes=limits.max_folder_bytes,
        max_model_bytes=limits.max_model_bytes,
    )


def _plan_folder(
    folder: Folder,
    work: Path,
    eval_data: Any,
    metadata: VersionMetadata | None,
    side_files: dict[str, Path] | None,
    rep: Reporter,
) -> Any:
    """What ``_prepare`` converts for a model folder (``convert.hf.export.Plan``), the user's metadata on top."""
    from modelbay.convert.hf.export import merged, plan

    if isinstance(eval_data, Dataset):
        raise BadRequest("a model folder takes --eval as a text, CSV or JSONL file or an image folder")
    work.mkdir(parents=True, exist_ok=True)
    rep.start(Stage.CONVERT, f"detected {folder.describe()}")
    p = plan(folder, work, eval_data, lambda m: rep.say(m))
    p.metadata = merged(p.metadata, metadata)
    p.metadata.tags.setdefault("source", "huggingface")
    p.metadata.tags.setdefault("architecture", folder.architecture)
    p.side_files = {**(side_files or {}), **p.side_files}
    return p


def _complete(
    path: Path,
    sig: tuple[list[TensorSpec], list[TensorSpec]],
    meta: VersionMetadata,
    evals: Dataset | None,
    use_output: str | None,
    classes: Any = None,
) -> VersionMetadata:
    """``task.complete`` for an ONNX file of signature ``sig``, whose outputs on the first evaluation batch (or
    on sample inputs) tell probabilities from logits."""
    inputs, outputs = sig
    feed = evals.batches[0] if evals is not None else sample_inputs(inputs)

    def run(output: str) -> Any:
        return session(path).run([output], {i.name: feed[i.name] for i in inputs})[0]

    return task.complete(
        meta,
        inputs,
        outputs,
        run,
        eval_has_labels=evals is not None and evals.labels is not None,
        classes=None if classes is None else [str(c) for c in classes],
        use_output=use_output,
    )


def _refuse(report: GateReport, why: str) -> NoReturn:
    msg = "quantized model refused by the accuracy gate: " + "; ".join(report.failures)
    if why:
        msg += f" ({why})"
    raise GateFailed(msg, gate=report.as_dict())


def publish(
    prepared: Prepared,
    *,
    registry: Any = None,
    client: Uploader | None = None,
    aliases: Sequence[str] = (),
    with_fp32_twin: bool = False,
    events: Events | None = None,
) -> list[Any]:
    """Register the prepared version (and optionally its fp32 twin first).

    Takes either a ``Registry`` (``register_version``) or a client (``push``);
    returns the manifests, twin first.
    """
    if (registry is None) == (client is None):
        raise BadRequest("publish needs exactly one of registry or client")
    rep = Reporter(events)

    def send(path: Path, meta: VersionMetadata, als: list[str], what: str) -> Any:
        if client is not None:
            return _upload(client, rep, path, prepared.name, meta, prepared.side_files, als, what)
        return registry.register_version(prepared.name, path, meta, prepared.side_files, als)

    out = []
    meta = prepared.metadata.model_copy(deep=True)
    try:
        if with_fp32_twin and prepared.int8_path is not None:
            twin = send(prepared.fp32_path, prepared.fp32_metadata, [], "the fp32 twin")
            out.append(twin)
            if meta.quantization is not None:
                meta.quantization.fp32_version = getattr(twin, "version", None)
        out.append(send(prepared.model_path, meta, list(aliases), "the int8 model" if prepared.int8_path else ""))
    except BaseException:
        rep.fail()
        raise
    return out


def _upload(
    client: Uploader,
    rep: Reporter,
    path: Path,
    name: str,
    meta: VersionMetadata | None,
    side_files: Mapping[str, Path],
    aliases: Sequence[str],
    what: str = "",
) -> Any:
    rep.start(Stage.UPLOAD, f"uploading {what}".strip())

    def sent(done: int, total: int) -> None:
        rep.emit(StageEvent(Stage.UPLOAD, Status.RUNNING, sent=done, total=total))
        if done >= total:
            rep.done(Stage.UPLOAD)
            rep.start(Stage.REGISTER, "validating and registering")

    manifest = client.push(path, name, meta, side_files, aliases, progress=sent)
    rep.done(Stage.UPLOAD)
    version = getattr(manifest, "version", None)
    rep.done(Stage.REGISTER, f"{name} version {version}" if version is not None else name)
    return manifest


@dataclass
class PushResult:
    manifests: list[Any]  # the registered versions, the fp32 twin first
    gate: GateReport | None = None

    @property
    def manifest(self) -> Any:
        return self.manifests[-1]


def is_plain_upload(model: Any, quantize_mode: QuantizeMode, eval_data: Any) -> bool:
    """An ONNX file with nothing to quantize or evaluate goes straight to the registry (no torch needed)."""
    return (
        isinstance(model, (str, Path))
        and str(model).lower().endswith(".onnx")
        and quantize_mode == "none"
        and eval_data is None
        and Path(model).is_file()
    )


def push(
    client: Uploader,
    model: Any,
    *,
    name: str,
    aliases: Sequence[str] = (),
    metadata: VersionMetadata | None = None,
    side_files: Mapping[str, Path] | None = None,
    quantize_mode: QuantizeMode | None = None,
    eval_data: str | Path | Dataset | None = None,
    with_fp32_twin: bool = False,
    events: Events | None = None,
    progress: Progress | None = None,
    **prepare_options: Any,
) -> PushResult:
    """Push a model as ``modelbay push`` and the TUI's upload screen do.

    A plain ONNX file (no quantization, no evaluation data) is uploaded as is;
    anything else is converted, quantized behind the gate (``prepare``), then
    uploaded (``publish``). ``quantize_mode`` None means "auto" with evaluation
    data, else "none". ``prepare_options`` go to ``prepare`` (input_spec,
    state_dict, calibration, target, thresholds, ...).
    """
    if is_model_folder(model):
        # recognised first: a refusal (no weights, a pickle, an unknown architecture) costs no import of torch
        model = recognise(model, prepare_options.pop("folder_task", None), prepare_options.pop("trust_pickle", False))
    # a folder always has evaluation data (its own --eval or the built-in sample): quantized behind the gate
    mode: QuantizeMode = quantize_mode or ("auto" if eval_data is not None or isinstance(model, Folder) else "none")
    side = {k: Path(v) for k, v in (side_files or {}).items()}
    if is_plain_upload(model, mode, eval_data):
        rep = Reporter(events, progress)
        try:
            # checked here, before the upload: the server would refuse it only after the bytes went up
            meta = metadata or VersionMetadata()
            try:
                sig = onnx_signature(model)
            except InvalidModel:
                sig = None  # the server's checks say best what is wrong with the file
            if sig is not None:
                meta = _complete(Path(model), sig, meta, None, prepare_options.get("use_output"))
                task.check(meta, *sig, side)
            rep.skip(Stage.CONVERT, "already ONNX")
            rep.skip(Stage.QUANTIZE, "not asked")
            rep.skip(Stage.GATE, "no evaluation data")
            return PushResult([_upload(client, rep, Path(model), name, meta, side, aliases)])
        except BaseException:
            rep.fail()
            raise
    with tempfile.TemporaryDirectory(prefix="modelbay-push-") as work:
        try:
            prepared = prepare(
                model,
                name=name,
                workdir=work,
                quantize_mode=mode,
                eval_data=eval_data,
                metadata=metadata,
                side_files=side,
                progress=progress,
                events=events,
                **prepare_options,
            )
        except ImportError as e:  # torch, transformers or scikit-learn missing: a slim install
            raise BadRequest(
                f"converting {model} needs the convert extra (pip install 'modelbay[convert]'): {e}. "
                "Plain ONNX files push without it."
            ) from None
        manifests = publish(prepared, client=client, aliases=aliases, with_fp32_twin=with_fp32_twin, events=events)
    return PushResult(manifests, prepared.gate)
