"""``modelbay serve`` (the local server), ``modelbay tui`` (the terminal UI), ``modelbay console`` (it in browsers)."""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

import typer

from ..settings import Settings
from ..storage import ObjectStore
from .base import App, ctx_obj
from .output import err, escape

if TYPE_CHECKING:
    from fastapi import FastAPI

app = App()


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8080, help="Port."),
    store: str | None = typer.Option(
        None, help="Store: a directory or s3://bucket/prefix (default: MODELBAY_STORE, else the local store)"
    ),
    no_auth: bool = typer.Option(False, "--no-auth", help="Accept every request without a key (unsafe)."),
) -> None:
    """Run the local server (management + inference) on a store."""
    from ..engine import Engine
    from ..storage import open_store

    settings = Settings.from_env(store_url=store)
    if no_auth:
        settings.auth = False
    opened = open_store(settings.store_url)
    engine = Engine(opened, settings)
    # MODELBAY_PREWARM's versions load (onnxruntime's import, the session build) while FastAPI and
    # uvicorn are imported, not after: the server's first prediction comes that much sooner
    engine.prewarm_in_background()
    import uvicorn

    from ..api.app import create_app

    api = create_app(settings, opened, engine=engine)
    _announce_auth(api.state.store, settings, host, port)
    _start_sweeper(api.state.store, settings)
    err().print(
        f"[bold]modelbay[/] serving store [cyan]{escape(settings.store_url)}[/] on http://{host}:{port}  "
        f"(API docs: http://{host}:{port}/docs)"
    )
    grace = settings.shutdown_grace_seconds
    api.router.on_startup.append(_terminate_runs_after(api, grace))
    # uvicorn waits for open requests a little longer than the runs get: they answer 503 before it cancels them
    uvicorn.run(api, host=host, port=port, log_level="warning", timeout_graceful_shutdown=math.ceil(grace) + 5)


def _terminate_runs_after(api: FastAPI, grace: float) -> Callable[[], None]:
    """A startup hook: once told to exit (SIGTERM, ctrl-c), inference runs still going ``grace`` seconds later
    are terminated and answered 503. Without it the server waits for them, each up to its time limit.

    It wraps the handlers uvicorn has installed by startup (and restores when it ends); only in the main
    thread, where signals are delivered.
    """

    def install() -> None:
        engine = getattr(api.state, "engine", None)
        if engine is None or threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)

            def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
                timer = threading.Timer(grace, engine.stop)
                timer.daemon = True
                timer.start()
                if callable(previous):
                    previous(signum, frame)

            signal.signal(sig, handler)

    return install


def _announce_auth(store: ObjectStore, settings: Settings, host: str, port: int) -> None:
    console = err()
    if not settings.auth:
        console.print(
            "[bold red]WARNING: --no-auth: anyone who reaches this port can read, change and delete every model.[/]"
        )
        return
    from ..auth.credentials import local_urls
    from ..auth.local import ensure_local_admin

    if settings.bootstrap_key or settings.bootstrap_key_secret:
        # the operator holds a root key already: minting another would leave a second, unasked-for one
        via = "MODELBAY_BOOTSTRAP_KEY" if settings.bootstrap_key else "MODELBAY_BOOTSTRAP_KEY_SECRET"
        console.print(
            f"{via} is set: no admin key minted. Call with that key (--api-key or MODELBAY_API_KEY), "
            "and create others with `modelbay keys create`.",
            markup=False,
        )
        return
    b = ensure_local_admin(store, settings.default_tenant, local_urls(host, port))
    if b.created:
        console.print(
            f"[green]created the admin key {b.key_id}[/] and saved it in {escape(str(b.saved_to))}: "
            "the modelbay CLI and TUI of this user use it. Other users: `modelbay keys create`."
        )
    elif not b.have_credentials:
        console.print(
            "[yellow]API keys are required and none is saved for this server: pass --api-key, or mint "
            "one with `modelbay keys bootstrap --store <store>`.[/]"
        )


def _start_sweeper(store: ObjectStore, settings: Settings) -> None:
    from ..registry import sweep_all

    def loop() -> None:
        while True:
            try:
                sweep_all(store, settings.limits)
            except Exception as e:
                err().print(f"[yellow]sweep failed: {escape(str(e))}[/]")
            stop.wait(600)

    stop = threading.Event()
    threading.Thread(target=loop, daemon=True, name="modelbay-sweep").start()


@app.command()
def tui(
    ctx: typer.Context,
    profile: str | None = typer.Option(None, "--profile", "-p", help="A saved connection profile."),
    theme: str | None = typer.Option(None, help="A Textual theme, e.g. textual-light."),
) -> None:
    """Open the terminal UI (on --url, a saved profile, or the last used one)."""
    try:
        from modelbay_tui.app import ModelbayApp
    except ImportError as e:  # the tui extra is not installed
        raise typer.BadParameter(f"the terminal UI needs the 'tui' extra: pip install 'modelbay[tui]' ({e})") from None
    obj = ctx_obj(ctx)
    ModelbayApp(url=obj.url, api_key=obj.api_key, profile=profile, theme_name=theme).run()


@app.command()
def console(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Interface to bind (anything but loopback needs the token)."),
    port: int = typer.Option(8090, help="Port."),
    no_token: bool = typer.Option(False, "--no-token", help="No login token (loopback addresses only)."),
    theme: str | None = typer.Option(None, help="A Textual theme, e.g. textual-light."),
) -> None:
    """Serve the terminal UI to browsers (on --url): a token login, each browser under its own API key."""
    try:
        from modelbay_tui.console import serve as serve_console
    except ImportError as e:  # the tui extra is not installed
        raise typer.BadParameter(f"the console needs the 'tui' extra: pip install 'modelbay[tui]' ({e})") from None
    url = ctx_obj(ctx).url or Settings.from_env().url  # --api-key is not used: never the operator's key
    try:
        serve_console(url, host=host, port=port, no_token=no_token, theme=theme)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
