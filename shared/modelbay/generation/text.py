"""Tokens to streamed text, and chat messages to a prompt.

``TextStream`` decodes a row's whole completion at each step and hands out only the new part, holding
back a trailing partial UTF-8 character and any tail that could still become a stop sequence: what was
streamed is never taken back. Chat templates are the publisher's Jinja, rendered in Jinja's sandbox as
transformers renders them (``raise_exception``, ``strftime_now``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import BadRequest


class TextStream:
    def __init__(self, tokenizer: Any, stop: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.ids: list[int] = []
        self.sent = 0  # characters of the decoded text already handed out
        self.text = ""
        self.stopped = False

    def push(self, token: int) -> str:
        """Add a token; the text that can be shown now ("" while held back)."""
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # a character split across tokens: wait for the rest
            return ""
        self.text = text
        for s in self.stop:
            at = text.find(s, max(0, self.sent - len(s) + 1))
            if at >= 0:
                self.text = text[:at]
                self.stopped = True
                return self._take(len(self.text))
        hold = max((k for s in self.stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        return self._take(len(text) - hold)

    def flush(self) -> str:
        """The held-back tail once generation ended without a stop sequence."""
        return "" if self.stopped else self._take(len(self.text))

    def _take(self, upto: int) -> str:
        if upto <= self.sent:
            return ""
        out = self.text[self.sent : upto]
        self.sent = upto
        return out


def _raise(message: str) -> None:
    raise BadRequest(f"the chat template refused the messages: {message}")


@lru_cache(maxsize=16)
def _compiled(source: str) -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


def render_chat(template_file: Path | None, messages: list[dict[str, Any]], bos: str | None, eos: str | None) -> str:
    """The prompt for ``messages`` by the model's chat template (with the assistant's turn opened)."""
    if template_file is None:
        raise BadRequest("this model has no chat template: use the completions endpoint")
    from jinja2 import TemplateError

    try:
        return str(
            _compiled(template_file.read_text(encoding="utf-8")).render(
                messages=messages, add_generation_prompt=True, bos_token=bos or "", eos_token=eos or ""
            )
        )
    except BadRequest:
        raise
    except (TemplateError, TypeError, ValueError, KeyError) as e:
        raise BadRequest(f"the chat template cannot render these messages: {e}") from None
