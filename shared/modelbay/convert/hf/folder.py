"""Recognising a Hugging Face ``save_pretrained`` folder (or a sentence-transformers one), without torch.

Every file is looked at before anything is loaded: a symlink that leaves the
folder, a file or a folder over the size limits, a missing ``config.json`` or
weights, and pickled ``.bin`` weights (they execute code when loaded) without
``trust_pickle`` are refused here with what to change, before any export work.
The task comes from ``architectures`` and the files; ``task`` overrides it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from modelbay.errors import BadRequest, TooLarge

FolderTask = Literal["classifier", "tagger", "embedder", "image-classifier", "text-generation"]
TASKS: tuple[str, ...] = ("classifier", "tagger", "embedder", "image-classifier", "text-generation")
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
# a config.json, a tokenizer or a pooling config is small; more is not a config
MAX_JSON_BYTES = 16 * 1024**2


@dataclass
class Folder:
    """What a model folder is, as read from its files."""

    path: Path
    config: dict[str, Any]
    task: FolderTask
    architecture: str
    weights: Path
    files: dict[str, int]  # relative path -> bytes
    sentence_transformers: dict[str, Any] | None = None  # modules, pooling, normalize, max_seq_length
    preprocessor: dict[str, Any] | None = None  # preprocessor_config.json
    notes: list[str] = field(default_factory=list)

    @property
    def id2label(self) -> list[str] | None:
        raw = self.config.get("id2label")
        if not isinstance(raw, dict) or not raw:
            return None
        try:
            index = {int(k): str(v) for k, v in raw.items()}
        except (TypeError, ValueError):
            raise BadRequest(f"{self.path.name}/config.json: id2label keys must be class indices") from None
        if sorted(index) != list(range(len(index))):
            raise BadRequest(f"{self.path.name}/config.json: id2label must cover 0..{len(index) - 1}")
        return [index[i] for i in range(len(index))]

    @property
    def multi_label(self) -> bool:
        return self.config.get("problem_type") == "multi_label_classification"

    @property
    def has_tokenizer(self) -> bool:
        return any(f in self.files for f in TOKENIZER_FILES)

    def describe(self) -> str:
        what = {
            "classifier": "text classifier",
            "tagger": "token classifier (NER)",
            "embedder": "sentence-transformers embedder" if self.sentence_transformers else "encoder (mean pooling)",
            "image-classifier": "image classifier",
            "text-generation": "causal language model",
        }[self.task]
        return f"{what} ({self.architecture})"


def is_model_folder(model: Any) -> bool:
    return isinstance(model, (str, Path)) and Path(model).is_dir()


def _walk(root: Path, max_total: int) -> dict[str, int]:
    """Every file under ``root`` with its size; symlinks must stay inside, sizes within the limits."""
    real_root = root.resolve()
    files: dict[str, int] = {}
    total = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for d in dirnames:
            if (here / d).is_symlink():
                raise BadRequest(f"{(here / d).relative_to(root)}: a symlinked folder inside a model folder is refused")
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in filenames:
            p = here / f
            rel = p.relative_to(root).as_posix()
            if rel.startswith(".") or "/." in rel:  # .git, .cache: not the model
                continue
            if p.is_symlink():
                target = p.resolve()
                if not target.is_relative_to(real_root):
                    raise BadRequest(f"{rel} is a symlink out of the model folder; copy the file in instead")
            if not p.is_file():
                continue
            size = p.stat().st_size
            if size > max_total:
                raise TooLarge(
                    f"{rel} is {size} bytes; a model folder is limited to {max_total} bytes "
                    "(MODELBAY_MAX_FOLDER_BYTES)",
                    limit=max_total,
                )
            total += size
            if total > max_total:
                raise TooLarge(
                    f"the model folder holds more than {max_total} bytes, the limit (MODELBAY_MAX_FOLDER_BYTES)",
                    limit=max_total,
                )
            files[rel] = size
    return files


def _check_size(root: Path, files: dict[str, int], config: dict[str, Any], max_model_bytes: int) -> None:
    """The fp32 ONNX is about the weights in fp32: over the model limit, say so before any export work."""
    stored = sum(n for f, n in files.items() if f.endswith((".safetensors", ".bin")) and "/" not in f)
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "float32")
    estimate = stored * (2 if dtype in ("float16", "bfloat16") else 1)
    if estimate > max_model_bytes:
        raise TooLarge(
            f"{root.name}: about {estimate / 1024**3:.1f} GiB of fp32 weights; a model.onnx is limited to "
            f"{max_model_bytes / 1024**3:.1f} GiB (MODELBAY_MAX_MODEL_BYTES: one protobuf without external data, "
            "loaded whole into the function's memory and /tmp). Push a smaller model, or raise Lambda memory, "
            "ephemeral storage and MODELBAY_MAX_MODEL_BYTES together (a container image holds at most 10 GB)",
            limit=max_model_bytes,
            estimate=estimate,
        )


def read_json(root: Path, rel: str) -> dict[str, Any]:
    p = root / rel
    try:
        if p.stat().st_size > MAX_JSON_BYTES:
            raise BadRequest(f"{rel} is larger than {MAX_JSON_BYTES} bytes: not a config file")
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadRequest(f"{root.name}: {rel} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise BadRequest(f"{rel} is not valid JSON: {str(e)[:200]}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"{rel} must hold a JSON object")
    return data


def _task_of(arch: str, files: dict[str, int], st: bool) -> FolderTask | None:
    if st:
        return "embedder"
    if arch.endswith("ForSequenceClassification"):
        return "classifier"
    if arch.endswith("ForTokenClassification"):
        return "tagger"
    if arch.endswith("ForImageClassification"):
        return "image-classifier"
    if arch.endswith(("ForCausalLM", "LMHeadModel")):
        return "text-generation"
    if arch.endswith("Model") and any(f in files for f in TOKENIZER_FILES):
        return "embedder"  # a bare text encoder (AutoModel): mean pooling
    return None


def _sentence_transformers(root: Path, files: dict[str, int]) -> dict[str, Any] | None:
    if "modules.json" not in files:
        return None
    try:
        raw = (
            json.loads((root / "modules.json").read_text(encoding="utf-8"))
            if files["modules.json"] < MAX_JSON_BYTES
            else []
        )
    except (OSError, UnicodeDecodeError, ValueError):
        raise BadRequest("modules.json is not valid JSON") from None
    if not isinstance(raw, list) or not all(isinstance(m, dict) for m in raw):
        raise BadRequest("modules.json must be a list of modules")
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in raw]
    known = {"Transformer", "Pooling", "Normalize"}
    unknown = [k for k in kinds if k not in known]
    if unknown or not kinds or kinds[0] != "Transformer" or "Pooling" not in kinds:
        raise BadRequest(
            f"sentence-transformers modules {kinds}: supported are Transformer, then Pooling, then an optional "
            f"Normalize{f' (not {unknown})' if unknown else ''}"
        )
    if str(raw[0].get("path", "")) not in ("", "."):
        raise BadRequest("sentence-transformers folders with the Transformer module in a subfolder are not supported")
    pooling_path = str(raw[kinds.index("Pooling")].get("path", "1_Pooling"))
    pooling = read_json(root, f"{pooling_path}/config.json")
    st_config = read_json(root, "sentence_bert_config.json") if "sentence_bert_config.json" in files else {}
    return {
        "modules": kinds,
        "pooling": pooling,
        "normalize": "Normalize" in kinds,
        "max_seq_length": st_config.get("max_seq_length"),
        "do_lower_case": st_config.get("do_lower_case", False),
    }


def inspect(
    path: str | Path,
    *,
    task: str | None = None,
    trust_pickle: bool = False,
    max_folder_bytes: int = 8 * 1024**3,
    max_model_bytes: int = 2 * 1024**3 - 1,
) -> Folder:
    """Read a model folder and say what it is; every refusal is a BadRequest saying what to change."""
    root = Path(path)
    if not root.is_dir():
        raise BadRequest(f"{path}: not a folder")
    if task is not None and task not in TASKS:
        raise BadRequest(f"--task {task!r} for a model folder: one of {', '.join(TASKS)}")
    files = _walk(root, max_folder_bytes)
    if "config.json" not in files:
        raise BadRequest(
            f"{root.name} has no config.json: not a transformers save_pretrained folder "
            "(save the model with model.save_pretrained(folder) and the tokenizer with tokenizer.save_pretrained)"
        )
    config = read_json(root, "config.json")
    archs = config.get("architectures")
    arch = str(archs[0]) if isinstance(archs, list) and archs else ""
    st = _sentence_transformers(root, files)
    found = _task_of(arch, files, st is not None)
    chosen: FolderTask | None = task or found  # type: ignore[assignment]
    if chosen is None:
        raise BadRequest(
            f"architecture {arch or '(none in config.json)'!r} is not supported: modelbay pushes "
            "*ForSequenceClassification (text classifier), *ForTokenClassification (tagger), "
            "sentence-transformers folders and bare encoders (embedder), *ForImageClassification "
            "(image classifier) and *ForCausalLM (text generation); or pass --task",
            architecture=arch,
            tasks=list(TASKS),
        )
    weights = next((root / w for w in SAFE_WEIGHTS if w in files), None)
    if weights is None:
        pickled = next((root / w for w in PICKLE_WEIGHTS if w in files), None)
        if pickled is None:
            raise BadRequest(
                f"{root.name} has no weights: expected model.safetensors (or pytorch_model.bin with --trust-pickle)"
            )
        if not trust_pickle:
            raise BadRequest(
                f"{pickled.name} is a pickle: loading it runs code from the file. Convert the weights to "
                "safetensors (model.save_pretrained(folder, safe_serialization=True)), or pass --trust-pickle "
                "if you made this file yourself"
            )
        weights = pickled
    if chosen in ("classifier", "tagger", "embedder") and not any(f in files for f in TOKENIZER_FILES):
        raise BadRequest(
            f"{root.name} has no tokenizer (tokenizer.json or vocab files): save it beside the model with "
            "tokenizer.save_pretrained(folder)"
        )
    _check_size(root, files, config, max_model_bytes)
    pre = None
    if chosen == "image-classifier":
        if "preprocessor_config.json" not in files:
            raise BadRequest(
                f"{root.name} has no preprocessor_config.json: an image classifier needs its resize, crop, mean "
                "and std (image_processor.save_pretrained(folder))"
            )
        pre = read_json(root, "preprocessor_config.json")
    return Folder(root, config, chosen, arch or chosen, weights, files, st, pre)
