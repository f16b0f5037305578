"""The manifest: what modelbay knows about one model version.

``VersionMetadata`` is what a publisher supplies (task, preprocessing, labels,
quantization, evaluation); ``Manifest`` adds what the registry reads or computes
from the bytes (sha256, size, opset, signature). The manifest is the last object
written for a version, so its existence is what makes a version visible.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MANIFEST_SCHEMA = 1

# tagger: one label per token, answered as entity spans (token classification, NER)
Task = Literal["classifier", "embedder", "tagger", "raw", "generator"]
Dim = int | str | None  # int: fixed, str: symbolic (e.g. "batch"), None: unknown


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TensorSpec(_Model):
    name: str
    # numpy dtype name ("float32", "int64", "bool", "string", ...); protocols map it.
    dtype: str
    shape: list[Dim]


class FileInfo(_Model):
    sha256: str
    size: int


class TextPreprocessing(_Model):
    """Raw strings through a `tokenizers` tokenizer stored beside the model."""

    kind: Literal["text"] = "text"
    tokenizer: str = "tokenizer.json"
    max_length: int = Field(256, ge=1, le=8192)
    input_ids: str = "input_ids"
    attention_mask: str | None = "attention_mask"
    token_type_ids: str | None = "token_type_ids"


class ImagePreprocessing(_Model):
    """Nested lists or base64 PNG/JPEG, resized and normalised to one input."""

    kind: Literal["image"] = "image"
    input: str
    height: int = Field(ge=1, le=4096)
    width: int = Field(ge=1, le=4096)
    channels: Literal[1, 3] = 1
    layout: Literal["NCHW", "NHWC", "flat"] = "NCHW"
    # pixel -> (pixel * scale - mean) / std, per channel
    scale: float = 1.0 / 255.0
    mean: list[float] = [0.0]
    std: list[float] = [1.0]
    # Decoded images are 0..255; some models (sklearn digits) want another range.
    max_value: float = 255.0
    # Decoded images: resized so the shorter side is this (aspect kept), then centre-cropped to height x width
    # (Hugging Face's shortest_edge + crop); None: resized to height x width directly.
    resize_shortest_edge: int | None = Field(None, ge=1, le=8192)
    resample: Literal["nearest", "bilinear", "bicubic"] = "bilinear"


class TabularPreprocessing(_Model):
    """Rows as lists, or as objects keyed by ``columns``."""

    kind: Literal["tabular"] = "tabular"
    input: str
    columns: list[str] | None = None
    dtype: str = "float32"


class StringPreprocessing(_Model):
    """Models that take raw strings themselves (e.g. skl2onnx TF-IDF pipelines)."""

    kind: Literal["string"] = "string"
    input: str
    # shape of one instance: [] -> input is [N], [1] -> input is [N, 1]
    instance_shape: list[int] = [1]


Preprocessing = Annotated[
    TextPreprocessing | ImagePreprocessing | TabularPreprocessing | StringPreprocessing,
    Field(discriminator="kind"),
]


class ClassifierPostprocessing(_Model):
    kind: Literal["classifier"] = "classifier"
    # output holding scores per class; label output optional (skl2onnx gives both)
    scores: str
    apply_softmax: bool = False
    # multi-label (Hugging Face problem_type multi_label_classification): each class scored on its own by a
    # sigmoid; predictions list every label scoring at least ``threshold``
    apply_sigmoid: bool = False
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    top_k: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _one_activation(self) -> ClassifierPostprocessing:
        if self.apply_softmax and self.apply_sigmoid:
            raise ValueError("apply_softmax and apply_sigmoid exclude each other")
        return self


class EmbedderPostprocessing(_Model):
    kind: Literal["embedder"] = "embedder"
    output: str
    pooling: Literal["mean", "cls", "none"] = "mean"
    normalize: bool = True


class TaggerPostprocessing(_Model):
    """Per-token scores [batch, sequence, labels] -> entity spans with character offsets (needs text
    preprocessing). ``first``: a word takes the label of its first word piece; ``simple``: every word piece is
    labelled on its own; adjacent pieces of one entity (B-/I- prefixes) are then grouped into one span, scored by
    the mean. ``none``: one entry per token, no grouping."""

    kind: Literal["tagger"] = "tagger"
    scores: str
    apply_softmax: bool = True
    aggregation: Literal["first", "simple", "none"] = "first"
    # labels that are not entities
    ignore_labels: list[str] = ["O"]


Postprocessing = Annotated[
    ClassifierPostprocessing | EmbedderPostprocessing | TaggerPostprocessing,
    Field(discriminator="kind"),
]


class GenerationSpec(_Model):
    """A decoder-only language model served by modelbay's decode loop (``task: generator``).

    The graph follows one convention whatever the exporter: inputs ``input_ids``, ``attention_mask``,
    ``position_ids`` and ``past_key_values.{i}.key|value`` [batch, kv_heads, past, head_dim]; outputs
    ``logits`` and ``present.{i}.key|value``. The tokenizer and the chat template are side files.
    """

    kind: Literal["causal_lm"] = "causal_lm"
    architecture: str = Field("", max_length=200)
    num_layers: int = Field(ge=1, le=512)
    num_kv_heads: int = Field(ge=1, le=1024)
    head_dim: int = Field(ge=1, le=4096)
    vocab_size: int = Field(ge=1)
    max_positions: int | None = Field(None, ge=1)
    tokenizer: str = "tokenizer.json"
    chat_template: str | None = None  # side file holding the Jinja template
    bos_token: str | None = None
    eos_token: str | None = None
    bos_token_id: int | None = None
    eos_token_ids: list[int] = []
    pad_token_id: int | None = None
    # the publisher's generation_config.json (sampling defaults: temperature, top_k, top_p, ...)
    defaults: dict[str, Any] = {}


class QuantizationInfo(_Model):
    method: Literal["none", "dynamic", "static", "mixed", "int4"] = "none"
    weight_type: str | None = None
    activation_type: str | None = None
    per_channel: bool | None = None
    reduce_range: bool | None = None
    target_arch: str | None = None
    # node names left in fp32 by the mixed-precision search
    kept_fp32_nodes: list[str] = []
    # the registry version holding the fp32 twin, when it was pushed too
    fp32_version: int | None = None
    extra: dict[str, Any] = {}


class VersionMetadata(_Model):
    """What the publisher says about a version. Everything here is optional."""

    task: Task = "raw"
    preprocessing: Preprocessing | None = None
    postprocessing: Postprocessing | None = None
    labels: list[str] | None = None
    generation: GenerationSpec | None = None
    quantization: QuantizationInfo | None = None
    # evaluation: the accuracy gate's numbers, sizes, latencies (free form, JSON)
    metrics: dict[str, Any] = {}
    description: str = Field("", max_length=4096)
    tags: dict[str, str] = {}


class Manifest(VersionMetadata):
    schema_version: int = MANIFEST_SCHEMA
    name: str
    version: int
    sha256: str
    size: int
    created_at: str
    created_by: str | None = None
    ir_version: int
    opset: dict[str, int]
    producer: dict[str, str]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    # side files stored with the version (e.g. tokenizer.json)
    files: dict[str, FileInfo] = {}

    def metadata(self) -> VersionMetadata:
        return VersionMetadata(**self.model_dump(include=set(VersionMetadata.model_fields)))
