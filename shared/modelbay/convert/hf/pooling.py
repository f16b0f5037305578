"""Sentence-transformers pooling and normalisation as torch code that exports into the ONNX graph.

The one copy of the rule: the MiniLM example and every pushed sentence-transformers
or bare-encoder folder go through ``Pooling``. Modes and their order of
concatenation follow ``sentence_transformers.models.Pooling``.
"""

from __future__ import annotations

from typing import Any

from modelbay.errors import BadRequest

# in the order sentence-transformers concatenates them
MODES = ("cls_token", "max_tokens", "mean_tokens", "mean_sqrt_len_tokens")
UNSUPPORTED = ("weightedmean_tokens", "lasttoken")


def modes_of(config: dict[str, Any]) -> list[str]:
    """The pooling modes a ``1_Pooling/config.json`` turns on; refuses those modelbay cannot put in the graph."""
    bad = [m for m in UNSUPPORTED if config.get(f"pooling_mode_{m}")]
    if bad:
        raise BadRequest(f"sentence-transformers pooling {bad} is not supported (supported: cls, max, mean, mean_sqrt)")
    modes = [m for m in MODES if config.get(f"pooling_mode_{m}")]
    if not modes:
        raise BadRequest("1_Pooling/config.json turns on no pooling mode")
    return modes


def pooled_module(encoder: Any, modes: list[str], normalize: bool, inputs: list[str]) -> Any:
    """``encoder`` (a transformers AutoModel) followed by pooling over the attention mask and, when asked, L2
    normalisation; its forward takes ``inputs`` (input_ids, attention_mask[, token_type_ids]) positionally."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def pool(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            m = mask.unsqueeze(-1).to(h.dtype)
            parts = []
            for mode in modes:
                if mode == "cls_token":
                    parts.append(h[:, 0])
                elif mode == "max_tokens":
                    parts.append(torch.where(m > 0, h, torch.full_like(h, -1e9)).max(dim=1).values)
                else:
                    summed, count = (h * m).sum(1), m.sum(1).clamp(min=1e-9)
                    parts.append(summed / (count if mode == "mean_tokens" else torch.sqrt(count)))
            out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
            return torch.nn.functional.normalize(out, p=2, dim=1) if normalize else out

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state
            return self.pool(h, attention_mask)

    return positional(Pooled(), inputs)


def positional(module: Any, inputs: list[str]) -> Any:
    """``module`` with a forward taking exactly ``inputs`` in order (the exporter feeds them positionally)."""
    import torch

    if inputs == ["input_ids", "attention_mask", "token_type_ids"]:
        return module.eval()

    class TwoInputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids, attention_mask)

    if inputs != ["input_ids", "attention_mask"]:
        raise BadRequest(f"text models take input_ids and attention_mask, not {inputs}")
    return TwoInputs().eval()
