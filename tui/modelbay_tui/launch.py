"""``make run``: a local server on the store, the TUI on it, and the demo models landing while it is open.

The server runs as a child process with its output in ``<store>/server.log``;
the demo models are built and pushed by another child (log in
``<store>/demo.log``) whose progress the TUI shows; ``modelbay console`` serves
the same TUI to browsers (log in ``<store>/console.log``; its token URL is
printed and shown in the TUI). Quitting the TUI stops them all.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from modelbay.auth import credentials
from modelbay.client import ApiError, Client
from modelbay.settings import Settings


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until the server answers its (keyless) health probe; by then it has saved any key it minted."""
    deadline = time.monotonic() + timeout
    with Client(url, api_key="", timeout=5.0) as probe:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited with code {proc.returncode}; see its log")
            try:
                probe.request("GET", "/v2/health/live")
                return
            except ApiError as e:
                if e.code != "unreachable":
                    return
            time.sleep(0.1)
    raise SystemExit(f"the server did not answer within {timeout:.0f}s; see its log")


def local_key(url: str, store: Path, host: str, port: int) -> str | None:
    """The key this launcher and its TUI use.

    MODELBAY_API_KEY, else the key saved for this URL (the server saves the one it mints on a new
    store), else MODELBAY_BOOTSTRAP_KEY. A store that has keys but none saved for this URL (another
    port, another user's credentials) gets a new root key: the launcher owns the store, as
    ``modelbay keys bootstrap`` does.
    """
    settings = Settings.from_env()
    key = settings.api_key or credentials.load_key(url, settings.credentials_file) or settings.bootstrap_key
    if key:
        return key
    from modelbay.auth.local import mint_admin
    from modelbay.storage import open_store

    b = mint_admin(open_store(str(store)), settings.default_tenant, credentials.local_urls(host, port), name="make run")
    print(f"created the admin key {b.key_id} for {url}; saved in {b.saved_to}", file=sys.stderr)
    return credentials.load_key(url, settings.credentials_file)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def child_env() -> dict[str, str]:
    """The children import the same modelbay as this process (this checkout, not some other install)."""
    import modelbay

    shared = str(Path(modelbay.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([shared, *filter(None, [os.environ.get("PYTHONPATH")])])}


def answers(url: str) -> bool:
    with Client(url, api_key="", timeout=5.0) as probe:
        try:
            probe.request("GET", "/v2/health/live")
        except ApiError as e:
            return e.code != "unreachable"
    return True


def start_console(url: str, host: str, port: int, store: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """``modelbay console`` on ``url`` as a child (log in ``<store>/console.log``), and the URL to open it."""
    from .console import new_token

    token = new_token()  # handed over in the environment: not in a command line other users can read
    log = open(store / "console.log", "ab")  # noqa: SIM115 - the child holds it; closed with the child
    with log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelbay", "--url", url, "console", "--host", host, "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**env, "MODELBAY_CONSOLE_TOKEN": token},
        )
    return proc, f"http://{host}:{port}/?token={token}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m modelbay_tui.launch", description=__doc__)
    ap.add_argument("--store", default=os.environ.get("MODELBAY_STORE", ".modelbay"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--no-demo", action="store_true", help="do not seed the demo models")
    ap.add_argument("--theme", default=None)
    ap.add_argument(
        "--console-port", type=int, default=0, help="serve the TUI to browsers on this port (make run: 8090)"
    )
    args = ap.parse_args(argv)

    store = Path(args.store)
    store.mkdir(parents=True, exist_ok=True)
    url = f"http://{args.host}:{args.port}"
    if answers(url):
        print(f"something already answers on {url}; stop it or choose another PORT=", file=sys.stderr)
        return 1
    env = child_env()
    log = open(store / "server.log", "ab")  # noqa: SIM115 - closed in the finally below
    serve = ["serve", "--store", str(store), "--host", args.host, "--port", str(args.port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelbay", *serve],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    seeding = None
    console: subprocess.Popen | None = None
    console_url = None
    try:
        wait_until_up(url, proc)
        if args.console_port:
            console, console_url = start_console(url, args.host, args.console_port, store, env)
        key = local_key(url, store, args.host, args.port)
        if not args.no_demo:
            from .seeding import DemoSeeding

            seeding = DemoSeeding(url, key, store / "demo.log", env)
        print(
            f"modelbay on {url} (store {store}, log {store / 'server.log'})"
            + ("" if seeding is None else f"; demo models build in the background (log {store / 'demo.log'})"),
            file=sys.stderr,
        )
        if console_url:
            print(f"in a browser: {console_url} (log {store / 'console.log'})", file=sys.stderr)
        from .app import ModelbayApp

        ModelbayApp(
            url=url, api_key=key, profile="local", theme_name=args.theme, seeding=seeding, console_url=console_url
        ).run()
    finally:
        if seeding is not None:
            seeding.stop()
        if console is not None:
            stop(console)
        stop(proc)
        log.close()
    if seeding is not None and not seeding.finished:
        print("demo seeding was stopped; the next `make run` finishes it (built models are cached)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
