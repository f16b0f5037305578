"""The command classes every ``modelbay`` command is built from.

* ``--url``, ``--api-key`` and ``--json`` work before the sub-command and after it:
  ``Command`` adds them to every command, the root callback takes them too.
* Errors are turned into a message and an exit code in one place: ``Group.invoke``.
* Help text is plain text: it is escaped, so ``[batch,100]`` is not read as Rich markup.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.models
from rich.markup import escape
from typer.core import TyperGroup

from . import output

if TYPE_CHECKING:
    from ..client import Client

COMMON = ("url", "api_key", "as_json")
_CTX = "_modelbay_ctx"

Url = Annotated[
    str | None,
    typer.Option("--url", metavar="URL", help="Server URL (default: MODELBAY_URL, else http://127.0.0.1:8080)."),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key", metavar="KEY", help="API key (default: MODELBAY_API_KEY, else the one saved for the URL)."
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


@dataclass
class Ctx:
    """The connection and output options of one invocation (``ctx.obj``)."""

    url: str | None = None
    api_key: str | None = None
    as_json: bool = False

    def client(self) -> Client:
        from ..client import Client

        return Client(self.url, self.api_key)


def ctx_obj(ctx: typer.Context) -> Ctx:
    if not isinstance(ctx.obj, Ctx):
        ctx.obj = Ctx()
    return ctx.obj


def with_common_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with --url, --api-key and --json added; their values land in ``ctx.obj`` (they win over the
    same options given before the sub-command)."""
    sig = inspect.signature(fn, eval_str=True)
    params = list(sig.parameters.values())
    ctx_name = next((p.name for p in params if p.annotation is typer.Context), None)
    extra = [
        inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
        for n, d, a in (("url", None, Url), ("api_key", None, ApiKey), ("as_json", False, Json))
    ]
    if ctx_name is None:
        extra.append(inspect.Parameter(_CTX, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context))

    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        ctx = kw[ctx_name] if ctx_name else kw.pop(_CTX)
        obj = ctx_obj(ctx)
        url, api_key, as_json = (kw.pop(k) for k in COMMON)
        obj.url = url or obj.url
        obj.api_key = api_key or obj.api_key
        obj.as_json = bool(as_json) or obj.as_json
        return fn(*args, **kw)

    wrapper.__signature__ = sig.replace(parameters=[*params, *extra])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**{p.name: p.annotation for p in params}, **{p.name: p.annotation for p in extra}}
    return wrapper


class Group(TyperGroup):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        if self.help:
            self.help = escape(self.help)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # usage errors: click prints them, exits 2
            raise
        except BrokenPipeError:  # `modelbay ... | head`: the reader has what it wanted
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(output.FAILURE) from None
        except Exception as e:
            output.fail(e, ctx_obj(ctx).as_json)


class App(typer.Typer):
    """A Typer whose commands take the common options and whose errors follow the exit-code policy."""

    def __init__(self, **kw: Any) -> None:
        kw.setdefault("cls", Group)
        kw.setdefault("no_args_is_help", True)
        kw.setdefault("pretty_exceptions_enable", False)
        super().__init__(**kw)

    def command(  # type: ignore[override]
        self, name: str | None = None, **kw: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        register = super().command(name, **kw)

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            register(with_common_options(escape_help(fn)))
            return fn

        return decorate


def escape_help(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Help is plain text: '[batch,100]' must not be read as Rich markup.

    Options declared once (``Annotated``) and shared by several commands are escaped once.
    """
    if fn.__doc__:
        fn.__doc__ = escape(fn.__doc__)
    for p in inspect.signature(fn, eval_str=True).parameters.values():
        for info in [p.default, *getattr(p.annotation, "__metadata__", ())]:
            if isinstance(info, typer.models.ParameterInfo) and info.help and not getattr(info, _ESCAPED, False):
                info.help = escape(info.help)
                setattr(info, _ESCAPED, True)
    return fn


_ESCAPED = "_modelbay_escaped"
