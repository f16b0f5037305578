"""What a pushed model is for, completed from what the user said, the evaluation data and the signature.

A user says ``--task classifier``, or ``--labels``, or hands an evaluation file
with a ``labels`` array; each means a classifier. Serving and the gate then need
to know which output holds the scores and whether they are probabilities
already: the same ``ClassifierPostprocessing`` the demo models carry (logits
with a softmax for torch, skl2onnx's ``probabilities`` as they are), so a pushed
model answers labels, scores and top-k as the demo models do.

Also: the metadata is checked against the signature as soon as the signature is
known (before any conversion when the input spec or the ONNX file tells it), so
a mistake costs a second, not a conversion and an upload.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from modelbay.errors import BadRequest
from modelbay.manifest import (
    ClassifierPostprocessing,
    EmbedderPostprocessing,
    StringPreprocessing,
    TensorSpec,
    TextPreprocessing,
    VersionMetadata,
)
from modelbay.validation import Signature, check_metadata

# Output names that hold per-class scores, by exporter: skl2onnx, common torch/HF names.
SCORE_NAMES = ("probabilities", "probs", "scores", "logits")


def user_metadata(
    base: Mapping[str, Any] | None = None,
    *,
    description: str = "",
    task: str | None = None,
    labels: str | None = None,
    source: str = "metadata",
) -> VersionMetadata:
    """What the user said: a metadata object (``--metadata``) and the flags that override it. ``labels`` is
    comma-separated, or a file with one label per line."""
    updates: dict[str, Any] = {k: v for k, v in {"description": description, "task": task}.items() if v}
    if labels:
        p = Path(labels).expanduser()
        if p.is_file():
            try:
                updates["labels"] = [line.strip() for line in p.read_text().splitlines() if line.strip()]
            except (OSError, UnicodeDecodeError) as e:
                raise BadRequest(f"--labels {p}: {getattr(e, 'strerror', None) or e}") from None
        else:
            updates["labels"] = [x.strip() for x in labels.split(",") if x.strip()]
    try:
        return VersionMetadata.model_validate({**(base or {}), **updates})
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "metadata"
        raise BadRequest(f"{source if base else 'metadata'}: {where}: {first.get('msg', 'invalid')}") from None


def spec_text(t: TensorSpec) -> str:
    """'x:float32:[batch,4]': the input-spec form a user can paste back."""
    return f"{t.name}:{t.dtype}:[{','.join('?' if d is None else str(d) for d in t.shape)}]"


def main_output(outputs: list[TensorSpec], task: str, want: str | None = None) -> TensorSpec:
    """The output predictions and the gate read: ``want`` when given, else the scores of a classifier (a float
    output with a class axis, skl2onnx's ``probabilities`` before its integer ``label``), else the first float one."""
    if want is not None:
        found = next((o for o in outputs if o.name == want), None)
        if found is None:
            raise BadRequest(f"--output {want!r}: the model's outputs are {', '.join(spec_text(o) for o in outputs)}")
        return found
    floats = [o for o in outputs if o.dtype.startswith("float")]
    if task == "classifier":
        floats = [o for o in floats if len(o.shape) >= 2]
        if not floats:
            raise BadRequest(
                "a classifier needs an output with a score per class; this model's outputs are "
                f"{', '.join(spec_text(o) for o in outputs)}. For scikit-learn, use an estimator with predict_proba "
                "(e.g. wrap it in CalibratedClassifierCV)."
            )
    named = [o for o in floats if o.name.lower() in SCORE_NAMES]
    if named or floats:
        return (named or floats)[0]
    raise BadRequest(f"no float output to read; the model's outputs are {', '.join(spec_text(o) for o in outputs)}")


def looks_like_probabilities(scores: np.ndarray) -> bool:
    """Rows of non-negative values summing to 1: a softmax (or calibration) already ran inside the model."""
    s = np.asarray(scores, dtype=np.float64).reshape(len(scores), -1)
    return bool(s.size) and bool(np.all(s >= -1e-6)) and bool(np.allclose(s.sum(axis=1), 1.0, atol=1e-3))


def infer_task(meta: VersionMetadata, eval_has_labels: bool) -> str:
    """The task the user meant: said outright, else implied by labels (flags, metadata or the evaluation data),
    else by the postprocessing; otherwise raw."""
    if "task" in meta.model_fields_set:
        return meta.task
    if meta.labels or eval_has_labels:
        return "classifier"
    if meta.postprocessing is not None:
        return meta.postprocessing.kind
    return meta.task


def fit_to_inputs(meta: VersionMetadata, inputs: list[TensorSpec]) -> VersionMetadata:
    """Text preprocessing's ``attention_mask`` and ``token_type_ids`` are defaults: where the user did not set
    them and the model takes no such input, they are dropped rather than refused."""
    pre = meta.preprocessing
    if not isinstance(pre, TextPreprocessing):
        return meta
    names = {i.name for i in inputs}
    unset = [f for f in ("attention_mask", "token_type_ids") if f not in pre.model_fields_set]
    drop = {f: None for f in unset if getattr(pre, f) not in names}
    if not drop:
        return meta
    out = meta.model_copy(deep=True)
    out.preprocessing = pre.model_copy(update=drop)
    return out


def complete(
    meta: VersionMetadata,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    run: Callable[[str], np.ndarray],
    *,
    eval_has_labels: bool = False,
    classes: list[str] | None = None,
    use_output: str | None = None,
) -> VersionMetadata:
    """The metadata with its task, postprocessing, labels and string preprocessing filled in where the user left
    them out. ``run(output)`` computes an output on sample inputs (to tell probabilities from logits);
    ``classes`` are the class names the source model knows (scikit-learn's ``classes_``)."""
    out = fit_to_inputs(meta, inputs).model_copy(deep=True)
    task = infer_task(out, eval_has_labels)
    out.task = task  # type: ignore[assignment]
    if out.labels is None and classes is not None and task == "classifier":
        out.labels = [str(c) for c in classes]
    if out.postprocessing is None and task == "classifier":
        o = main_output(outputs, task, use_output)
        out.postprocessing = ClassifierPostprocessing(
            scores=o.name, apply_softmax=not looks_like_probabilities(run(o.name))
        )
    elif out.postprocessing is None and task == "embedder":
        o = main_output(outputs, task, use_output)
        out.postprocessing = EmbedderPostprocessing(output=o.name, pooling="mean" if len(o.shape) == 3 else "none")
    elif out.postprocessing is not None and use_output is not None:
        main_output(outputs, task, use_output)  # exists?
        field = "output" if out.postprocessing.kind == "embedder" else "scores"
        out.postprocessing = out.postprocessing.model_copy(update={field: use_output})
    if out.preprocessing is None and len(inputs) == 1 and inputs[0].dtype == "string":
        # raw strings in, as skl2onnx text pipelines take them: `modelbay predict --text` just works
        shape = inputs[0].shape
        out.preprocessing = StringPreprocessing(input=inputs[0].name, instance_shape=[1] if len(shape) == 2 else [])
    return out


def check(
    meta: VersionMetadata,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec] | None,
    side_files: Mapping[str, Any] | None,
    when: str = "",
) -> None:
    """``validation.check_metadata`` on what is known so far (``outputs`` empty: not yet), saying ``when``."""
    sig = Signature(ir_version=0, opset={}, producer={}, inputs=inputs, outputs=list(outputs or []))
    try:
        check_metadata(meta, sig, None if side_files is None else set(side_files))
    except BadRequest as e:
        raise BadRequest(f"metadata{f' ({when})' if when else ''}: {e.message}", **e.details) from None
