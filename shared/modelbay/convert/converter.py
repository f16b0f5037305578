"""Export a loaded Source to ONNX and check it against the original framework.

Exporter choice on torch 2.13: the ``torch.export``-based exporter
(``torch.onnx.export(..., dynamo=True)``) for nn.Modules and .pt2 programs. It
is the default and maintained path since torch 2.9, takes an ExportedProgram as
is, maps dynamic axes to symbolic dims, and runs the onnxscript optimizer. It
cannot capture a ScriptModule (torch.export rejects it: measured on 2.13), so
TorchScript goes through the TorchScript exporter (``dynamo=False``), which is
what that format was built for and still works for it.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from modelbay.convert.quiet import quiet_export
from modelbay.convert.sources import Source, load_source
from modelbay.convert.spec import DYNAMIC_SAMPLE_SIZE, dynamic_axes, parse_input_spec, sample_inputs
from modelbay.cpu_features import exact_int8
from modelbay.errors import BadRequest, InvalidModel
from modelbay.manifest import TensorSpec

Feed = dict[str, np.ndarray]


@dataclass
class ConversionCheck:
    max_abs_error: float | None
    max_rel_error: float | None
    atol: float
    rtol: float
    samples: int
    # classifier labels agree exactly (sklearn), when the model has a label output
    label_agreement: float | None = None
    # every element satisfies |ref - onnx| <= atol + rtol * |ref|
    within: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Conversion:
    onnx_path: Path
    kind: str
    exporter: str
    inputs: list[TensorSpec]
    outputs: list[str]
    check: ConversionCheck | None
    notes: list[str] = field(default_factory=list)
    source: Source | None = None  # what was converted (scikit-learn's classes_ name a classifier's labels)


def session(path: str | Path, threads: int | None = None) -> ort.InferenceSession:
    """An onnxruntime session whose int8 products are exact on any CPU (see modelbay.cpu_features)."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    exact_int8(so)
    if threads:
        so.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own untyped errors
        raise InvalidModel(f"onnxruntime cannot load {Path(path).name}: {str(e)[:500]}") from None


def _specs(args: list[Any]) -> list[TensorSpec]:
    out = []
    for i in args:
        dtype = i.type[len("tensor(") : -1] if i.type.startswith("tensor(") else i.type
        dtype = {"float": "float32", "double": "float64"}.get(dtype, dtype)
        out.append(TensorSpec(name=i.name, dtype=dtype, shape=list(i.shape)))
    return out


def onnx_inputs(path: str | Path) -> list[TensorSpec]:
    return _specs(session(path).get_inputs())


def onnx_signature(path: str | Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs as onnxruntime sees them."""
    s = session(path)
    return _specs(s.get_inputs()), _specs(s.get_outputs())


def sklearn_input_spec(est: Any) -> list[TensorSpec] | None:
    """What a fitted scikit-learn model takes, when it says: ``n_features_in_`` float columns, or raw strings
    for a pipeline that starts with a text vectorizer. None when it does not say."""
    first = est.steps[0][1] if hasattr(est, "steps") and est.steps else est
    if hasattr(first, "build_analyzer"):  # TfidfVectorizer, CountVectorizer, HashingVectorizer
        return [TensorSpec(name="text", dtype="string", shape=["batch", 1])]
    n = getattr(est, "n_features_in_", None)
    if isinstance(n, (int, np.integer)) and n > 0:
        return [TensorSpec(name="x", dtype="float32", shape=["batch", int(n)])]
    return None


def _rename_dims(path: Path, specs: list[TensorSpec]) -> None:
    """Give the exporter's symbolic dims (s0, s31...) the axis names of the spec."""
    model = onnx.load(str(path))
    mapping: dict[str, str] = {}
    by_name = {s.name: s for s in specs}
    for vi in model.graph.input:
        spec = by_name.get(vi.name)
        if spec is None:
            continue
        for d, want in zip(vi.type.tensor_type.shape.dim, spec.shape):
            if isinstance(want, str) and d.dim_param and d.dim_param != want:
                mapping[d.dim_param] = want
    if not mapping:
        return
    for vi in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param in mapping:
                d.dim_param = mapping[d.dim_param]
    onnx.save(model, str(path))


def _to_torch(feed: Feed, names: list[str]):
    import torch

    return tuple(torch.from_numpy(np.ascontiguousarray(feed[n])) for n in names)


def _torch_outputs(model, feed: Feed, names: list[str]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        out = model(*_to_torch(feed, names))
    if isinstance(out, torch.Tensor):
        out = (out,)
    elif isinstance(out, dict):
        out = tuple(out.values())
    elif hasattr(out, "to_tuple"):
        out = out.to_tuple()
    return [o.detach().numpy() for o in out if isinstance(o, torch.Tensor)]


def _export_torch(src: Source, specs: list[TensorSpec], example: Feed, out: Path, output_names, opset) -> str:
    import torch

    names = [s.name for s in specs]
    args = _to_torch(example, names)
    if src.kind == "torchscript":
        torch.onnx.export(
            src.obj,
            args,
            str(out),
            input_names=names,
            output_names=output_names,
            dynamic_axes={**dynamic_axes(specs), **{o: {0: _batch_axis(specs)} for o in output_names or []}},
            dynamo=False,
            opset_version=opset or 17,
        )
        return "torchscript"
    if src.kind == "exported_program":
        prog = torch.onnx.export(
            src.obj, args, input_names=names, output_names=output_names, dynamo=True, opset_version=opset, verbose=False
        )
    else:
        dims: dict[str, Any] = {}
        shapes = []
        for s in specs:
            shapes.append(
                {i: dims.setdefault(d, torch.export.Dim(d)) for i, d in enumerate(s.shape) if isinstance(d, str)}
                or None
            )
        prog = torch.onnx.export(
            src.obj,
            args,
            input_names=names,
            output_names=output_names,
            dynamic_shapes=tuple(shapes),
            dynamo=True,
            opset_version=opset,
            verbose=False,
        )
    if prog is None:  # only the TorchScript exporter returns nothing
        raise InvalidModel("torch.onnx.export returned no ONNX program")
    prog.save(str(out), external_data=False)
    return "torch.export (dynamo)"


def _batch_axis(specs: list[TensorSpec]) -> str:
    first = specs[0].shape[0] if specs and specs[0].shape else None
    return first if isinstance(first, str) else "batch"


def _sklearn_types(specs: list[TensorSpec]):
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, Int64TensorType, StringTensorType

    kinds = {
        "float32": FloatTensorType,
        "float64": DoubleTensorType,
        "int64": Int64TensorType,
        "string": StringTensorType,
    }
    out = []
    for s in specs:
        if s.dtype not in kinds:
            raise BadRequest(f"skl2onnx inputs must be float32/float64/int64/string, not {s.dtype}")
        out.append((s.name, kinds[s.dtype]([d if isinstance(d, int) else None for d in s.shape])))
    return out


def _export_sklearn(est, specs: list[TensorSpec], out: Path, opset) -> None:
    from skl2onnx import convert_sklearn

    # zipmap=False: probabilities as a plain [N, classes] tensor the gate and the
    # serving postprocessing can read, instead of a list of dicts.
    options = {id(est): {"zipmap": False}} if hasattr(est, "predict_proba") or hasattr(est, "classes_") else None
    try:
        with warnings.catch_warnings():
            # "only tokenizer='word' is fully supported": the output check below
            # is what tells whether this conversion worked
            warnings.simplefilter("ignore")
            onx = convert_sklearn(
                est,
                initial_types=_sklearn_types(specs),
                options=options,
                target_opset={"": opset or 18, "ai.onnx.ml": 3},
            )
    except Exception as e:  # skl2onnx raises RuntimeError/NameError/... for unsupported parts
        raise InvalidModel(f"skl2onnx cannot convert this {type(est).__name__}: {str(e).splitlines()[0]}") from None
    onnx.save(onx, str(out))


def _compare(ref: list[np.ndarray], got: list[np.ndarray], atol: float, rtol: float, n: int) -> ConversionCheck:
    abs_err = rel_err = 0.0
    agree = None
    within = True
    for r, g in zip(ref, got):
        r, g = np.asarray(r), np.asarray(g)
        if r.dtype.kind in "iuUOb" or g.dtype.kind in "iuUOb":
            agree = float(np.mean(r.reshape(-1) == g.reshape(-1)))
            continue
        if r.shape != g.shape:
            raise InvalidModel(f"ONNX output shape {g.shape} differs from the original {r.shape}")
        d = np.abs(r.astype(np.float64) - g.astype(np.float64))
        abs_err = max(abs_err, float(d.max(initial=0.0)))
        rel_err = max(rel_err, float((d / (np.abs(r) + atol)).max(initial=0.0)))
        within = within and bool(np.all(d <= atol + rtol * np.abs(r)))
    return ConversionCheck(abs_err, rel_err, atol, rtol, n, agree, within)


def _sklearn_outputs(est, feed: Feed, names: list[str]) -> list[np.ndarray]:
    x = feed[names[0]]
    if x.dtype == object and x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    out = [est.predict(x)]
    if hasattr(est, "predict_proba"):
        out.append(est.predict_proba(x))
    return out


def convert(
    model: Any,
    out_path: str | Path,
    *,
    input_spec: str | list | None = None,
    example: Feed | None = None,
    output_names: list[str] | None = None,
    state_dict: str | Path | None = None,
    samples: list[Feed] | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    opset: int | None = None,
) -> Conversion:
    """Export ``model`` to ``out_path`` and check its outputs on sample inputs.

    ``samples`` (batches of inputs) are used for the check when given, otherwise
    ``example``, otherwise random inputs built from ``input_spec``. Raises
    InvalidModel when the ONNX outputs drift beyond ``atol + rtol*|ref|``.
    """
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    src = load_source(model, state_dict=state_dict)
    specs = parse_input_spec(input_spec)
    notes: list[str] = []

    if src.kind == "onnx":
        if src.obj.resolve() != out.resolve():
            shutil.copyfile(src.obj, out)
        try:
            onnx.checker.check_model(str(out))
        except onnx.checker.ValidationError as e:
            raise InvalidModel(f"{src.origin} is not a valid ONNX model: {str(e).splitlines()[0]}") from None
        session(out)
        return Conversion(
            out,
            "onnx",
            "none (ONNX as is)",
            onnx_inputs(out),
            [o.name for o in session(out).get_outputs()],
            None,
            ["used as is; nothing to compare against"],
            src,
        )

    if specs is None and example is None and samples:
        example = samples[0]
    if specs is None and example is None and src.kind == "sklearn":
        specs = sklearn_input_spec(src.obj)
    if specs is None:
        if example is None and src.kind == "exported_program":
            example = _ep_example(src.obj)
        if example is None:
            raise BadRequest("give an input spec (--input-spec, e.g. 'x:float32:[batch,100]') or an example input")
        specs = _specs_from_example(example)
    if example is None:
        example = sample_inputs(specs)
    missing = [s.name for s in specs if s.name not in example]
    if missing:
        raise BadRequest(f"example input lacks {missing}")
    check_batches = samples or [example]

    if src.kind == "sklearn":
        _export_sklearn(src.obj, specs, out, opset)
        exporter = "skl2onnx"
        ref_fn = lambda f: _sklearn_outputs(src.obj, f, [s.name for s in specs])  # noqa: E731
    else:
        try:
            # the exporter logs every translation step and warns about its own
            # deprecations; errors still surface as exceptions
            with quiet_export():
                exporter = _export_torch(src, specs, example, out, output_names, opset)
        except (BadRequest, InvalidModel):
            raise
        except Exception as e:  # torch.export / onnx translation failures
            raise InvalidModel(f"ONNX export of {src.origin} failed: {str(e).strip().splitlines()[0][:400]}") from None
        _rename_dims(out, specs)
        model_obj = src.obj.module() if src.kind == "exported_program" else src.obj
        ref_fn = lambda f: _torch_outputs(model_obj, f, [s.name for s in specs])  # noqa: E731

    sess = session(out)
    onnx_names = [i.name for i in sess.get_inputs()]
    n_samples = sum(len(next(iter(f.values()))) for f in check_batches)
    checks = []
    for feed in check_batches:
        got = sess.run(None, {n: feed[n] for n in onnx_names})
        checks.append(_compare(ref_fn(feed), got, atol, rtol, n_samples))
    agreements = [c.label_agreement for c in checks if c.label_agreement is not None]
    worst = ConversionCheck(
        max((c.max_abs_error or 0.0) for c in checks),
        max((c.max_rel_error or 0.0) for c in checks),
        atol,
        rtol,
        n_samples,
        min(agreements) if agreements else None,
        all(c.within for c in checks),
    )
    assert worst is not None
    if not worst.within or (worst.label_agreement is not None and worst.label_agreement < 0.99):
        raise InvalidModel(
            f"ONNX outputs differ from {src.kind}: max abs error {worst.max_abs_error:.3g} "
            f"(atol {atol}, rtol {rtol}), label agreement {worst.label_agreement}",
            check=worst.as_dict(),
        )
    outputs = [o.name for o in sess.get_outputs()]
    return Conversion(out, src.kind, exporter, onnx_inputs(out), outputs, worst, notes, src)


def _ep_example(ep) -> Feed | None:
    ex = getattr(ep, "example_inputs", None)
    if not ex:
        return None
    args = ex[0] if isinstance(ex, tuple) else ex
    names = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    return {n: a.detach().numpy() for n, a in zip(names, args)}


def _specs_from_example(example: Feed) -> list[TensorSpec]:
    # Without a spec, the leading axis of every input is the dynamic batch and
    # everything else is fixed at the example's size.
    out = []
    for name, a in example.items():
        dtype = "string" if a.dtype == object or a.dtype.kind == "U" else str(a.dtype)
        shape: list[int | str] = ["batch"] + [int(d) for d in a.shape[1:]] if a.ndim else []
        out.append(TensorSpec(name=name, dtype=dtype, shape=shape))
    if any(a.ndim and a.shape[0] in (0, 1) for a in example.values()):
        raise BadRequest(f"the example's batch axis must be >= 2 (e.g. {DYNAMIC_SAMPLE_SIZE}) so it stays dynamic")
    return out
