"""``prepare``: model -> fp32 ONNX (checked) -> int8 ONNX (gated) -> metadata.

The last step, ``publish``, hands the result to a registry or client; the
``modelbay push`` command runs both with a progress display.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from modelbay.convert.converter import Conversion, convert
from modelbay.convert.data import Dataset, Feed, load_dataset
from modelbay.convert.gate import Gate, GateFailed, GateReport, GateThresholds
from modelbay.convert.measure import profile
from modelbay.convert.mixed import search
from modelbay.convert.quantize import compact_kept as compact_kept_weights
from modelbay.convert.quantize import choose_method, options_for, preprocess, quantizable_nodes, quantize, scratch_dir
from modelbay.errors import BadRequest
from modelbay.manifest import QuantizationInfo, VersionMetadata

QuantizeMode = Literal["dynamic", "static", "auto", "none"]
Progress = Callable[[str, float | None], None]


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


def _dataset(data: Any, names: list[str]) -> Dataset | None:
    if data is None or isinstance(data, Dataset):
        return data
    if isinstance(data, list):
        return Dataset(list(data))
    return load_dataset(data, names)


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
    progress: Progress | None = None,
) -> Prepared:
    """Run the whole pipeline up to (not including) publishing.

    Raises GateFailed (HTTP 422, details hold the gate's numbers) when neither
    plain int8 nor mixed precision keeps the model within ``thresholds``.
    """
    say = progress or (lambda *_: None)
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    meta = (metadata or VersionMetadata()).model_copy(deep=True)
    if quantize_mode not in ("dynamic", "static", "auto", "none"):
        raise BadRequest(f"--quantize must be dynamic, static, auto or none, not {quantize_mode!r}")

    fp32 = work / "model.fp32.onnx"
    say("converting", None)
    names_hint = [s["name"] if isinstance(s, dict) else s.name for s in input_spec] if isinstance(input_spec, list) else None
    pre_eval = eval_data if isinstance(eval_data, Dataset) else None
    samples = pre_eval.batches[:2] if pre_eval is not None else None
    conv = convert(model, fp32, input_spec=input_spec, example=example, output_names=output_names,
                   state_dict=state_dict, samples=samples, atol=check_atol, rtol=check_rtol)
    input_names = names_hint or [s.name for s in conv.inputs]
    evals = _dataset(eval_data, input_names)
    calib = _dataset(calibration, input_names)
    meta.metrics["conversion"] = {"source": conv.kind, "exporter": conv.exporter,
                                  **(conv.check.as_dict() if conv.check else {"note": "; ".join(conv.notes)})}
    fp32_meta = meta.model_copy(deep=True)
    fp32_meta.quantization = QuantizationInfo(method="none")
    side = dict(side_files or {})

    method = choose_method(fp32) if quantize_mode == "auto" else quantize_mode
    if quantize_mode == "auto" and not quantizable_nodes(fp32, method):
        # e.g. skl2onnx TF-IDF + LinearClassifier: ai.onnx.ml ops onnxruntime does not quantize
        quantize_mode = "none"
        fp32_meta.quantization = QuantizationInfo(method="none", extra={"reason": "no quantizable nodes"})
    if quantize_mode == "none":
        meta.quantization = fp32_meta.quantization
        if evals is not None:
            # nothing to gate; still record what the model scores on the evaluation data
            ev = Gate(fp32, evals, meta, thresholds).check(fp32)
            meta.metrics["evaluation"] = {"samples": ev.samples, **ev.fp32}
            if measure:
                meta.metrics["fp32"] = profile(fp32, evals.batches[0])
        return Prepared(name, fp32, None, meta, meta, side, None, conv)
    if evals is None:
        raise BadRequest("quantizing needs evaluation data (--eval) for the accuracy gate")

    opts = options_for(target)
    int8 = work / "model.int8.onnx"
    calib_batches = calib.batches if calib is not None else None
    if method == "static" and not calib_batches:
        raise BadRequest("static quantization needs calibration samples (--calibration)")

    say("evaluating fp32", None)
    gate = Gate(fp32, evals, meta, thresholds)
    with scratch_dir() as tmp:
        # pre-process once: every quantization of the search sees the same node names
        base, pre_note = preprocess(fp32, tmp / "pre.onnx", method)
        say(f"quantizing ({method}, {opts.target})", None)
        quantize(base, int8, method, opts, calib_batches, preprocessed=True)
        report = gate.check(int8)
        kept: list[str] = []
        mixed_info: dict[str, Any] = {}
        if not report.passed and mixed_precision:
            say("plain int8 failed the gate; searching mixed precision", None)
            first = report
            res = search(base, method, opts, gate, int8, int8, tmp, calib_batches, say,
                         first_margin=first.margin if gate.task == "embedder" else 0.0)
            if res is None:
                _refuse(first, "mixed precision (up to half the nodes in fp32) did not pass either")
            report, kept = res.report, res.kept_fp32
            mixed_info = {"plain_int8": first.int8, "kept_fp32": kept, "tries": res.tries,
                          "ranking": [(n, round(d, 6)) for n, d in res.ranking[: max(len(kept), 5)]]}
        elif not report.passed:
            _refuse(report, "mixed precision disabled")
        if kept and compact_kept:
            say("storing kept fp32 weights as 8-bit blocks", None)
            done = compact_kept_weights(int8, kept, tmp / "compact.onnx")
            compact_report = gate.check(tmp / "compact.onnx") if done else None
            mixed_info["compact_kept"] = {"nodes": done, "gate": compact_report.int8 if compact_report else None,
                                          "used": bool(compact_report and compact_report.passed)}
            if compact_report and compact_report.passed:
                shutil.copyfile(tmp / "compact.onnx", int8)
                report = compact_report

    if not report.passed:
        _refuse(report, "")
    meta.quantization = QuantizationInfo(
        method="mixed" if kept else method, kept_fp32_nodes=kept,
        extra={"base_method": method, "preprocessing": pre_note, **({"calibration_samples": len(calib)} if calib else {})},
        **opts.info(method),
    )
    meta.metrics["gate"] = report.as_dict()
    if mixed_info:
        meta.metrics["mixed_precision"] = mixed_info
    if measure:
        say("measuring size and latency", None)
        meta.metrics["fp32"] = profile(fp32, evals.batches[0])
        meta.metrics["int8"] = profile(int8, evals.batches[0])
        fp32_meta.metrics["fp32"] = meta.metrics["fp32"]
    say("done", 1.0)
    return Prepared(name, fp32, int8, meta, fp32_meta, side, report, conv)


def _refuse(report: GateReport, why: str) -> None:
    msg = "quantized model refused by the accuracy gate: " + "; ".join(report.failures)
    if why:
        msg += f" ({why})"
    raise GateFailed(msg, gate=report.as_dict())


def publish(
    prepared: Prepared,
    *,
    registry: Any = None,
    client: Any = None,
    aliases: list[str] | tuple[str, ...] = (),
    with_fp32_twin: bool = False,
    progress: Any = None,
) -> list[Any]:
    """Register the prepared version (and optionally its fp32 twin first).

    Takes either a ``Registry`` (``register_version``) or a ``Client`` (``push``);
    returns the manifests, twin first.
    """
    if (registry is None) == (client is None):
        raise BadRequest("publish needs exactly one of registry or client")

    def send(path: Path, meta: VersionMetadata, als: list[str]):
        if registry is not None:
            return registry.register_version(prepared.name, path, meta, prepared.side_files, als)
        return client.push(path, prepared.name, meta, prepared.side_files, als, progress)

    out = []
    meta = prepared.metadata.model_copy(deep=True)
    if with_fp32_twin and prepared.int8_path is not None:
        twin = send(prepared.fp32_path, prepared.fp32_metadata, [])
        out.append(twin)
        if meta.quantization is not None:
            meta.quantization.fp32_version = getattr(twin, "version", None)
    out.append(send(prepared.model_path, meta, list(aliases)))
    return out


def copy_side_files(side: dict[str, Path], dest: Path) -> dict[str, Path]:
    dest.mkdir(parents=True, exist_ok=True)
    return {k: Path(shutil.copyfile(v, dest / k)) for k, v in side.items()}
