"""``modelbay generate`` and ``modelbay chat``: text from a language model, streamed as it comes."""

from __future__ import annotations

import sys
from typing import Any

import typer

from ..client import Client
from ..errors import BadRequest
from .base import App, ctx_obj
from .output import err

app = App()


def _sampling(
    max_tokens: int | None, temperature: float | None, seed: int | None, top_p: float | None
) -> dict[str, Any]:
    return {"max_tokens": max_tokens, "temperature": temperature, "seed": seed, "top_p": top_p}


def stream(client: Client, model: str, write: Any = None, **kw: Any) -> tuple[str, str | None, float]:
    """Print pieces as they come; the whole text, the finish reason and tokens/s."""

    def show(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    return client.stream_text(model, write or show, **kw)


MaxTokens = typer.Option(None, "--max-tokens", "-m", help="Most tokens to generate [default: the server's cap].")
Temperature = typer.Option(None, "--temperature", "-T", help="0 is greedy [default: the model's generation config].")
Seed = typer.Option(None, "--seed", help="The same seed gives the same text.")
TopP = typer.Option(None, "--top-p", help="Nucleus sampling mass.")


@app.command()
def generate(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME, NAME@VERSION or NAME:ALIAS of a language model"),
    prompt: str = typer.Argument(..., help="The text to continue (- reads stdin)."),
    max_tokens: int | None = MaxTokens,
    temperature: float | None = Temperature,
    seed: int | None = Seed,
    top_p: float | None = TopP,
    chat_template: bool = typer.Option(False, "--chat", help="Send the prompt as a user message (chat template)."),
) -> None:
    """Continue PROMPT with a language model, printing tokens as they arrive."""
    obj = ctx_obj(ctx)
    if prompt == "-":
        prompt = sys.stdin.read()
    if not prompt:
        raise BadRequest("the prompt is empty")
    kw = _sampling(max_tokens, temperature, seed, top_p)
    with obj.client() as c:
        if obj.as_json:
            import json

            text, finish, rate = stream(c, ref, write=lambda _t: None, **_ask(prompt, chat_template), **kw)
            typer.echo(json.dumps({"model": ref, "text": text, "finish_reason": finish, "tokens_per_second": rate}))
            return
        _, finish, rate = stream(c, ref, **_ask(prompt, chat_template), **kw)
    sys.stdout.write("\n")
    err().print(f"[dim]{finish or 'ended'} · {rate:.1f} tokens/s[/]")


def _ask(prompt: str, chat: bool) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}]} if chat else {"prompt": prompt}


@app.command()
def chat(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME, NAME@VERSION or NAME:ALIAS of a chat model"),
    system: str | None = typer.Option(None, "--system", "-s", help="A system message first."),
    max_tokens: int | None = MaxTokens,
    temperature: float | None = Temperature,
    seed: int | None = Seed,
    top_p: float | None = TopP,
) -> None:
    """An interactive chat through the model's chat template; an empty line or Ctrl-D ends it."""
    obj = ctx_obj(ctx)
    messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    kw = _sampling(max_tokens, temperature, seed, top_p)
    with obj.client() as c:
        while True:
            try:
                line = input("you> ")
            except EOFError:
                break
            if not line.strip():
                break
            messages.append({"role": "user", "content": line})
            sys.stdout.write(f"{ref}> ")
            text, _, rate = stream(c, ref, messages=messages, **kw)
            sys.stdout.write("\n")
            err().print(f"[dim]{rate:.1f} tokens/s[/]")
            messages.append({"role": "assistant", "content": text})
