"""A recognised model folder -> what ``prepare`` converts: a torch module with one named output, its input spec,
the metadata serving needs, the tokenizer side file and the evaluation data (with transformers' own outputs).

The head of each task is part of the exported graph: logits for classifiers and taggers, pooled (and, when the
folder says so, normalised) sentence embeddings for embedders. Serving's own pre-processors tokenize and
resize the evaluation data, so the gate sees exactly what predictions will.
"""

from __future__ import annotations

import inspect as pyinspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelbay.convert.data import Dataset
from modelbay.convert.hf import evaldata
from modelbay.convert.hf.folder import Folder, read_json
from modelbay.convert.hf.pooling import modes_of, pooled_module, positional
from modelbay.errors import BadRequest, InvalidModel
from modelbay.manifest import (
    ClassifierPostprocessing,
    EmbedderPostprocessing,
    ImagePreprocessing,
    TaggerPostprocessing,
    TensorSpec,
    TextPreprocessing,
    VersionMetadata,
)

BATCH = 32
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# the largest sequence a text model is exported and served for, when its files say more (or nothing)
MAX_SEQUENCE = 8192
# position ids of RoBERTa-style models start after the padding index
_PADDED_POSITIONS = ("roberta", "xlm-roberta", "camembert", "longformer", "bart", "mbart")


@dataclass
class Plan:
    module: Any  # torch.nn.Module taking the inputs positionally, returning ``output``
    inputs: list[TensorSpec]
    output: str
    metadata: VersionMetadata
    side_files: dict[str, Path]
    evals: Dataset
    notes: list[str] = field(default_factory=list)


def _load(folder: Folder, kind: str) -> Any:
    import torch
    import transformers
    from transformers.utils import logging as hf_logging

    from modelbay.convert.quiet import quiet

    auto = getattr(transformers, kind)
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with quiet(("transformers",)):
            model = auto.from_pretrained(
                str(folder.path),
                local_files_only=True,
                use_safetensors=folder.weights.name.startswith("model.safetensors"),
                dtype=torch.float32,
            )
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as e:
        raise InvalidModel(
            f"transformers cannot load {folder.path.name} as {kind}: {str(e).splitlines()[0][:300]}"
        ) from None
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    return model.eval()


def _max_length(folder: Folder) -> int:
    config = folder.config
    found: list[int] = []
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and positions > 0:
        offset = int(config.get("pad_token_id") or 0) + 1 if config.get("model_type") in _PADDED_POSITIONS else 0
        found.append(positions - offset)
    if "tokenizer_config.json" in folder.files:
        m = read_json(folder.path, "tokenizer_config.json").get("model_max_length")
        if isinstance(m, (int, float)) and 0 < m < 1e6:
            found.append(int(m))
    st = (folder.sentence_transformers or {}).get("max_seq_length")
    if isinstance(st, int) and st > 0:
        found.append(st)  # the folder's own choice, within what the model takes
    return min([*found, MAX_SEQUENCE]) if found else 512


def tokenizer_file(folder: Folder, dest: Path, max_length: int) -> Path:
    """The folder's fast tokenizer, saved to ``dest`` truncating at ``max_length`` and padding to each batch's
    longest sequence (folders often ship fixed-length padding); built by transformers from vocab files when the
    folder has no tokenizer.json."""
    from tokenizers import Tokenizer

    from modelbay.preprocess.text import pad_token

    try:
        if "tokenizer.json" in folder.files:
            tok = Tokenizer.from_file(str(folder.path / "tokenizer.json"))
        else:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(folder.path), local_files_only=True).backend_tokenizer
    except Exception as e:  # tokenizers and transformers raise their own types
        raise InvalidModel(f"cannot read the tokenizer of {folder.path.name}: {str(e).splitlines()[0][:300]}") from None
    pad_id, pad = pad_token(tok)
    tok.no_padding()
    tok.no_truncation()
    tok.enable_truncation(max_length=max_length)
    tok.enable_padding(pad_id=pad_id, pad_token=pad)
    tok.save(str(dest))
    return dest


def _text_inputs(model: Any) -> list[str]:
    """input_ids, attention_mask, and token_type_ids when the model takes them (DistilBERT does not)."""
    params = pyinspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in params:
        names.append("token_type_ids")
    return names


def _head(model: Any, inputs: list[str]) -> Any:
    import torch

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **kw).logits

    return positional(Logits(), inputs)


def _image_head(model: Any) -> Any:
    import torch

    class ImageLogits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return self.model(pixel_values=pixel_values).logits

    return ImageLogits().eval()


def _reference(module: Any, batches: list[dict[str, np.ndarray]], names: list[str]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        return [module(*(torch.from_numpy(b[n]) for n in names)).numpy() for b in batches]


def text_module(folder: Folder) -> tuple[Any, list[str], str]:
    """The folder's model with its task's head, as exported: (module, input names, output name)."""
    kind = {
        "classifier": "AutoModelForSequenceClassification",
        "tagger": "AutoModelForTokenClassification",
    }.get(folder.task, "AutoModel")
    model = _load(folder, kind)
    names = _text_inputs(model)
    if folder.task in ("classifier", "tagger"):
        return _head(model, names), names, "logits"
    st = folder.sentence_transformers
    modes = modes_of(st["pooling"]) if st else ["mean_tokens"]
    return pooled_module(model, modes, bool(st and st["normalize"]), names), names, "sentence_embedding"


def text_tokenizer(folder: Folder, dest: Path) -> tuple[Path, int]:
    """The tokenizer side file as served, and the sequence length it truncates at."""
    max_length = _max_length(folder)
    return tokenizer_file(folder, dest, max_length), max_length


def _text_plan(folder: Folder, work: Path, eval_path: str | Path | None, say: Callable[[str], None]) -> Plan:
    from modelbay.preprocess.text import TextPreprocessor

    task = folder.task
    say(f"loading {folder.describe()} with transformers")
    module, names, output = text_module(folder)
    tok_path, max_length = text_tokenizer(folder, work / "tokenizer.json")
    side = {"tokenizer.json": tok_path}
    dims: list[int | str] = ["batch", "sequence"]
    inputs = [TensorSpec(name=n, dtype="int64", shape=list(dims)) for n in names]
    pre = TextPreprocessing(
        tokenizer="tokenizer.json",
        max_length=max_length,
        token_type_ids="token_type_ids" if "token_type_ids" in names else None,
    )
    labels = folder.id2label
    meta = VersionMetadata(task="raw", preprocessing=pre)
    if task == "classifier":
        multi = folder.multi_label
        meta.task = "classifier"
        meta.postprocessing = ClassifierPostprocessing(scores=output, apply_softmax=not multi, apply_sigmoid=multi)
        meta.labels = labels
    elif task == "tagger":
        meta.task = "tagger"
        meta.postprocessing = TaggerPostprocessing(scores=output, aggregation="first")
        meta.labels = labels
    else:
        st = folder.sentence_transformers
        modes = modes_of(st["pooling"]) if st else ["mean_tokens"]
        meta.task = "embedder"
        # pooling and normalisation run inside the graph: the output is the final vector
        meta.postprocessing = EmbedderPostprocessing(output=output, pooling="none", normalize=False)
        meta.tags = {"pooling": "+".join(m.removesuffix("_tokens").removesuffix("_token") for m in modes)}
        if st and st["normalize"]:
            meta.tags["normalized"] = "true"
    texts, wanted, source = evaldata.texts(eval_path)
    if wanted is not None and task not in ("classifier",):
        raise BadRequest(f"--eval labels score classifiers; a {task} is evaluated on text alone (one sentence a line)")
    if wanted is not None and labels is not None:
        unknown = sorted({w for w in wanted if w not in labels})
        if unknown:
            raise BadRequest(f"--eval labels {unknown[:5]} are not among the model's labels {labels[:10]}")
    specs = {s.name: s for s in inputs}
    tokenize = TextPreprocessor(pre, side["tokenizer.json"], specs)
    batches = [dict(tokenize(texts[i : i + BATCH])) for i in range(0, len(texts), BATCH)]
    say(f"running transformers on {len(texts)} evaluation texts ({source})")
    reference = _reference(module, batches, names) if task == "embedder" else None
    evals = Dataset(batches, np.array(wanted, dtype=object) if wanted is not None else None, reference)
    meta.metrics["evaluation_data"] = {"source": source, "samples": len(texts)}
    return Plan(module, inputs, output, meta, side, evals)


def image_preprocessing(pre: dict[str, Any], config: dict[str, Any]) -> ImagePreprocessing:
    """``preprocessor_config.json`` (ViT, ConvNeXt, ResNet, BEiT... image processors) as serving's image
    preprocessing: resize (exact, or shortest edge then centre crop), rescale, mean and std."""
    size = pre.get("size") or {}
    if isinstance(size, int):
        size = (
            {"shortest_edge": size}
            if pre.get("crop_pct") or pre.get("do_center_crop")
            else {"height": size, "width": size}
        )
    channels = int(config.get("num_channels", 3))
    if channels not in (1, 3):
        raise BadRequest(f"image models with {channels} channels are not supported (1 or 3)")
    resample = {0: "nearest", 2: "bilinear", 3: "bicubic"}.get(int(pre.get("resample", 2)))
    if resample is None:
        raise BadRequest(f"preprocessor_config.json: resample {pre.get('resample')} is not supported (0, 2 or 3)")
    shortest: int | None = None
    crop = pre.get("crop_size") or {}
    if "height" in size and "width" in size:
        height, width = int(size["height"]), int(size["width"])
        if pre.get("do_center_crop") and "height" in crop:
            raise BadRequest("preprocessor_config.json: a crop after an exact resize is not supported")
    elif "shortest_edge" in size:
        edge = int(size["shortest_edge"])
        if pre.get("crop_pct") is not None:  # ConvNeXt/ResNet: resize to edge/crop_pct, crop edge x edge
            if edge < 384:
                shortest, height, width = int(edge / float(pre["crop_pct"])), edge, edge
            else:
                height = width = edge
        elif pre.get("do_center_crop") and "height" in crop:
            shortest, height, width = edge, int(crop["height"]), int(crop["width"])
        else:
            raise BadRequest("preprocessor_config.json: a shortest-edge resize without a crop gives no fixed size")
    else:
        raise BadRequest(f"preprocessor_config.json: size {size} is not supported (height/width or shortest_edge)")
    normalize = pre.get("do_normalize", True)
    mean = [float(x) for x in pre.get("image_mean", [0.5] * channels)] if normalize else [0.0]
    std = [float(x) for x in pre.get("image_std", [0.5] * channels)] if normalize else [1.0]
    return ImagePreprocessing(
        input="pixel_values",
        height=height,
        width=width,
        channels=channels,  # type: ignore[arg-type]
        layout="NCHW",
        scale=float(pre.get("rescale_factor", 1 / 255)) if pre.get("do_rescale", True) else 1.0,
        mean=mean,
        std=std,
        resize_shortest_edge=shortest,
        resample=resample,  # type: ignore[arg-type]
    )


def _image_plan(folder: Folder, eval_path: str | Path | None, say: Callable[[str], None]) -> Plan:
    from modelbay.preprocess.image import ImagePreprocessor

    pre = image_preprocessing(folder.preprocessor or {}, folder.config)
    say(f"loading {folder.describe()} with transformers")
    module = _image_head(_load(folder, "AutoModelForImageClassification"))
    spec = TensorSpec(name="pixel_values", dtype="float32", shape=["batch", pre.channels, pre.height, pre.width])
    labels = folder.id2label
    images, wanted, source = evaldata.images(eval_path)
    if wanted is not None and labels is not None:
        unknown = sorted({w for w in wanted if w not in labels})
        if unknown:
            raise BadRequest(f"--eval class folders {unknown[:5]} are not among the model's labels {labels[:10]}")
    prep = ImagePreprocessor(pre, spec)
    batches = [prep.tensors([prep.image(im) for im in images[i : i + BATCH]]) for i in range(0, len(images), BATCH)]
    meta = VersionMetadata(
        task="classifier",
        preprocessing=pre,
        postprocessing=ClassifierPostprocessing(scores="logits", apply_softmax=True),
        labels=labels,
    )
    meta.metrics["evaluation_data"] = {"source": source, "samples": len(images)}
    evals = Dataset(batches, np.array(wanted, dtype=object) if wanted is not None else None)
    return Plan(module, [spec], "logits", meta, {}, evals)


def plan(folder: Folder, work: Path, eval_path: str | Path | None, say: Callable[[str], None]) -> Plan:
    if folder.task == "image-classifier":
        return _image_plan(folder, eval_path, say)
    if folder.task in ("classifier", "tagger", "embedder"):
        return _text_plan(folder, work, eval_path, say)
    raise BadRequest(f"a {folder.task} folder is not exported here")


def merged(derived: VersionMetadata, user: VersionMetadata | None) -> VersionMetadata:
    """The folder's metadata with what the user said on top (description, tags, labels, a task...)."""
    if user is None:
        return derived
    out = derived.model_copy(deep=True)
    for k in user.model_fields_set:
        value = getattr(user, k)
        if k == "tags":
            out.tags = {**out.tags, **value}
        elif k == "metrics":
            out.metrics = {**out.metrics, **value}
        else:
            setattr(out, k, value)
    return out
