"""Real ONNX models and tokenizers for the inference tests, built in milliseconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from modelbay.manifest import ClassifierPostprocessing, ImagePreprocessing, StringPreprocessing, VersionMetadata

CORPUS = [
    "the cat sat on the mat",
    "a dog ate my homework",
    "models serve predictions fast",
    "hello world",
    "the quick brown fox jumps over the lazy dog",
    "serverless inference on lambda",
]


def _save(graph, path: Path, opset: int = 17, ml: bool = False) -> Path:
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("ai.onnx.ml", 3)] if ml else [])
    model = helper.make_model(graph, opset_imports=imports, producer_name="modelbay-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_tokenizer(path: Path, vocab_size: int = 64) -> Path:
    """A real WordPiece tokenizer trained on a small corpus, saved as tokenizer.json."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    tok.save(str(path))
    return path


def text_embedder(path: Path, vocab_size: int, hidden: int = 8, seed: int = 1) -> tuple[Path, np.ndarray, np.ndarray]:
    """input_ids, attention_mask, token_type_ids [batch, seq] -> last_hidden_state [batch, seq, hidden].

    An embedding lookup plus a token-type embedding: enough to show tokenization,
    padding and masking reach the graph. Returns the token and type embedding tables too.
    """
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((vocab_size, hidden)).astype(np.float32)
    types = rng.standard_normal((2, hidden)).astype(np.float32) * 0.01
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["tok"]),
        helper.make_node("Gather", ["types", "token_type_ids"], ["typ"]),
        helper.make_node("Add", ["tok", "typ"], ["last_hidden_state"]),
    ]
    ints = lambda n: helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])  # noqa: E731
    graph = helper.make_graph(
        nodes,
        "embedder",
        [ints("input_ids"), ints("attention_mask"), ints("token_type_ids")],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", hidden])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(types, "types")],
    )
    return _save(graph, path), table, types


def string_classifier(path: Path, words: list[str], n_classes: int = 2, seed: int = 2) -> tuple[Path, np.ndarray]:
    """text [N, 1] string -> TfIdfVectorizer (word counts) -> MatMul -> Softmax -> probabilities [N, classes].

    The shape of an skl2onnx text pipeline without ZipMap: string tensor in,
    probability tensor out. Returns the weights.
    """
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((len(words), n_classes)).astype(np.float32)
    nodes = [
        helper.make_node(
            "TfIdfVectorizer",
            ["text"],
            ["counts"],
            mode="TF",
            min_gram_length=1,
            max_gram_length=1,
            max_skip_count=0,
            ngram_counts=[0],
            ngram_indexes=list(range(len(words))),
            pool_strings=words,
        ),
        helper.make_node("MatMul", ["counts", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "strings",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["N", 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n_classes])],
        [numpy_helper.from_array(w, "w")],
    )
    return _save(graph, path), w


def image_classifier(path: Path, h: int = 8, w: int = 8, n_classes: int = 10, seed: int = 3) -> tuple[Path, np.ndarray]:
    """pixels [N, h*w] float32 (sklearn digits layout) -> Gemm -> probabilities [N, classes]."""
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((h * w, n_classes)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["pixels", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        ],
        "image",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", h * w])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n_classes])],
        [numpy_helper.from_array(weights, "w")],
    )
    return _save(graph, path), weights


def all_types(path: Path) -> Path:
    """One Identity per OIP datatype onnxruntime's CPU provider serves: x_<type> -> y_<type>, [N, 2]."""
    types = {
        "bool": TensorProto.BOOL,
        "uint8": TensorProto.UINT8,
        "uint16": TensorProto.UINT16,
        "uint32": TensorProto.UINT32,
        "uint64": TensorProto.UINT64,
        "int8": TensorProto.INT8,
        "int16": TensorProto.INT16,
        "int32": TensorProto.INT32,
        "int64": TensorProto.INT64,
        "float16": TensorProto.FLOAT16,
        "float32": TensorProto.FLOAT,
        "float64": TensorProto.DOUBLE,
        "string": TensorProto.STRING,
    }
    nodes = [helper.make_node("Identity", [f"x_{n}"], [f"y_{n}"]) for n in types]
    graph = helper.make_graph(
        nodes,
        "identity",
        [helper.make_tensor_value_info(f"x_{n}", t, ["N", 2]) for n, t in types.items()],
        [helper.make_tensor_value_info(f"y_{n}", t, ["N", 2]) for n, t in types.items()],
    )
    return _save(graph, path)


def fixed_batch_mlp(path: Path) -> Path:
    """An MLP whose input is fixed at batch 1: [1, 4] -> [1, 3]."""
    from tests.onnx_models import mlp_model

    model = mlp_model()
    for vi in (model.graph.input[0], model.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].ClearField("dim_param")
        vi.type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(model, str(path))
    return path


def digits_metadata() -> VersionMetadata:
    """How ``image_classifier``'s 8x8 digits model is published: flat 0..16 pixels in, the top 3 digits out."""
    return VersionMetadata(
        task="classifier",
        labels=[str(i) for i in range(10)],
        preprocessing=ImagePreprocessing(
            input="pixels", height=8, width=8, channels=1, layout="flat", scale=1.0, max_value=16.0
        ),
        postprocessing=ClassifierPostprocessing(scores="probabilities", top_k=3),
    )


def spam_metadata() -> VersionMetadata:
    """How ``string_classifier``'s two classes are published: raw strings in, ham or spam out."""
    return VersionMetadata(
        task="classifier",
        labels=["ham", "spam"],
        preprocessing=StringPreprocessing(input="text"),
        postprocessing=ClassifierPostprocessing(scores="probabilities"),
    )
