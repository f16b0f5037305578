"""Text through the version's own `tokenizers` tokenizer: truncation, dynamic padding, masks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..engine.errors import library_message
from ..errors import BadRequest
from ..manifest import TensorSpec, TextPreprocessing
from ..protocols.dtypes import numpy_dtype
from . import instance_error

PAD_TOKENS = ("[PAD]", "<pad>", "<|pad|>", "[pad]")


class Encoded(dict[str, np.ndarray]):
    """The input tensors, carrying the tokenizer's encodings and texts for postprocessing that maps tokens back
    to characters (a tagger's spans); onnxruntime and the signature check see a plain dict."""

    encodings: list[Any]
    texts: list[Any]


def pad_token(tok: Any) -> tuple[int, str]:
    """The tokenizer's own padding token, else the first known pad token it has, else id 0."""
    if tok.padding:  # the tokenizer's own choice wins
        return tok.padding["pad_id"], tok.padding["pad_token"]
    for t in PAD_TOKENS:
        i = tok.token_to_id(t)
        if i is not None:
            return i, t
    return 0, tok.id_to_token(0) or "[PAD]"


class TextPreprocessor:
    def __init__(self, pre: TextPreprocessing, tokenizer_path: Path, specs: dict[str, TensorSpec]) -> None:
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(tokenizer_path))
        except Exception as e:
            raise BadRequest(f"cannot read the tokenizer {pre.tokenizer!r}: {library_message(e, 200)}") from None
        tok.enable_truncation(max_length=pre.max_length)
        pad_id, pad = pad_token(tok)
        # no length: pad to the longest sequence of each batch, once per request
        tok.enable_padding(pad_id=pad_id, pad_token=pad)
        self.tokenizer = tok
        self.pre = pre
        self.names = {
            "ids": pre.input_ids,
            "mask": pre.attention_mask if pre.attention_mask in specs else None,
            "types": pre.token_type_ids if pre.token_type_ids in specs else None,
        }
        self.dtypes = {k: numpy_dtype(specs[n].dtype) for k, n in self.names.items() if n}

    def _texts(self, instances: list[Any]) -> list[str | tuple[str, str]]:
        out: list[str | tuple[str, str]] = []
        for i, inst in enumerate(instances):
            if isinstance(inst, dict):
                text, pair = inst.get("text"), inst.get("text_pair")
                if not isinstance(text, str) or not (pair is None or isinstance(pair, str)):
                    raise instance_error(i, 'expected {"text": "...", "text_pair": "..." (optional)}')
                out.append((text, pair) if pair is not None else text)
            elif isinstance(inst, str):
                out.append(inst)
            else:
                raise instance_error(i, "expected a string")
        return out

    def __call__(self, instances: list[Any]) -> dict[str, np.ndarray]:
        texts = self._texts(instances)
        encodings = self.tokenizer.encode_batch(texts)
        mask, types = self.names["mask"], self.names["types"]
        feeds = Encoded({self.pre.input_ids: np.array([e.ids for e in encodings], dtype=self.dtypes["ids"])})
        feeds.encodings, feeds.texts = encodings, texts
        if mask:
            feeds[mask] = np.array([e.attention_mask for e in encodings], dtype=self.dtypes["mask"])
        if types:
            feeds[types] = np.array([e.type_ids for e in encodings], dtype=self.dtypes["types"])
        return feeds
