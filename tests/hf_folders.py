"""Real ``save_pretrained`` folders from tiny configs (random weights), as users have them after fine-tuning.

Text models share a small WordPiece vocabulary built from the words of the built-in evaluation sentences, so
tokens are mostly whole words and pieces (``##``) appear for the rest: the tagger's word grouping is exercised.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from modelbay.convert.examples.sentences import HANDWRITTEN

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def vocab() -> list[str]:
    words = sorted({w.strip(".,!?;:'\"()").lower() for s in HANDWRITTEN for w in s.split()} - {""})
    common = [w for w in words if w.isalpha()][:150]  # the rest is spelt with pieces
    punct = list(".,!?;:'\"()-%$#@/=+*<>_[]{}&")
    return SPECIAL + common + list(CHARS) + punct + ["##" + c for c in CHARS]


def save_tokenizer(root: Path) -> None:
    from transformers import BertTokenizerFast

    root.mkdir(parents=True, exist_ok=True)
    (root / "vocab.txt").write_text("\n".join(vocab()) + "\n")
    BertTokenizerFast(vocab_file=str(root / "vocab.txt"), do_lower_case=True).save_pretrained(root)


def _small(arch: str, **kw):
    import transformers

    n = len(vocab())
    if arch == "distilbert":
        return transformers.DistilBertConfig(
            vocab_size=n, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128, **kw
        )
    return transformers.BertConfig(
        vocab_size=n,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        **kw,
    )


def text_folder(
    root: Path,
    head: str = "sequence",
    arch: str = "bert",
    labels: list[str] | None = None,
    multi_label: bool = False,
    seed: int = 0,
) -> Path:
    """A text classifier (``head`` sequence), tagger (token) or bare encoder (none) with its tokenizer."""
    import transformers

    torch.manual_seed(seed)
    kw = {}
    if head != "none":
        labels = labels or (NER_LABELS if head == "token" else ["negative", "neutral", "positive"])
        kw = {"id2label": dict(enumerate(labels)), "label2id": {v: i for i, v in enumerate(labels)}}
        if multi_label:
            kw["problem_type"] = "multi_label_classification"
    cfg = _small(arch, **kw)
    prefix = "DistilBert" if arch == "distilbert" else "Bert"
    cls = {"sequence": "ForSequenceClassification", "token": "ForTokenClassification", "none": "Model"}[head]
    model = getattr(transformers, prefix + cls)(cfg).eval()
    with torch.no_grad():  # random heads give near-equal logits; widen them so labels and spans vary
        for name, p in model.named_parameters():
            if "classifier" in name and p.ndim == 2:
                p.mul_(20.0)
    model.save_pretrained(root)
    save_tokenizer(root)
    return root


def sentence_transformers_folder(root: Path, pooling: str = "mean", normalize: bool = True, seed: int = 0) -> Path:
    """Laid out as sentence-transformers saves it: the encoder at the root, modules.json, 1_Pooling, 2_Normalize."""
    text_folder(root, head="none", seed=seed)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (root / "2_Normalize").mkdir()
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "1_Pooling").mkdir()
    modes = {f"pooling_mode_{m}": False for m in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")}
    modes[f"pooling_mode_{ {'mean': 'mean_tokens', 'cls': 'cls_token', 'max': 'max_tokens'}[pooling] }"] = True
    (root / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **modes}))
    (root / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    return root


def image_folder(root: Path, arch: str = "vit", labels: list[str] | None = None, seed: int = 0) -> Path:
    """A ViT (exact resize) or ResNet (shortest edge + crop_pct) image classifier with its image processor."""
    import transformers

    torch.manual_seed(seed)
    labels = labels or ["zero", "one", "two", "three"]
    kw = {"id2label": dict(enumerate(labels)), "label2id": {v: i for i, v in enumerate(labels)}}
    if arch == "vit":
        cfg = transformers.ViTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            **kw,
        )
        model = transformers.ViTForImageClassification(cfg)
        proc = transformers.ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5, 0.4, 0.3])
    else:
        cfg = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", **kw)
        model = transformers.ResNetForImageClassification(cfg)
        proc = transformers.ConvNextImageProcessor(size={"shortest_edge": 40}, crop_pct=0.875)
    model.eval().save_pretrained(root)
    proc.save_pretrained(root)
    return root
