"""``make run``: a local server on the store, the demo models, and the TUI on it; quitting stops the server.

The server runs as a child process with its output in ``<store>/server.log``, so
nothing it prints lands on the TUI's screen.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

from modelbay.client import ApiError, Client


def wait_until_up(client: Client, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}; see its log")
        try:
            client.request("GET", "/v2/health/live")
            return
        except ApiError as e:
            if e.code != "unreachable":
                return
        time.sleep(0.1)
    raise SystemExit(f"the server did not answer within {timeout:.0f}s")


def seed_demo(client: Client) -> str:
    """``modelbay.demo.seed(client)`` when the demo package exists; it decides what is already there."""
    try:
        demo = importlib.import_module("modelbay.demo")
    except ImportError:
        return "no demo models in this build (modelbay.demo is missing)"
    result = demo.seed(client, say=lambda msg: print(f".. {msg}", file=sys.stderr, flush=True))
    return "demo models: " + (", ".join(f"{k} {v}" for k, v in result.items()) or "none built")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m modelbay_tui.launch", description=__doc__)
    ap.add_argument("--store", default=os.environ.get("MODELBAY_STORE", ".modelbay"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--no-demo", action="store_true", help="do not seed the demo models")
    ap.add_argument("--theme", default=None)
    args = ap.parse_args(argv)

    store = Path(args.store)
    store.mkdir(parents=True, exist_ok=True)
    url = f"http://{args.host}:{args.port}"
    with Client(url, timeout=5.0) as probe:
        try:
            probe.request("GET", "/v2/health/live")
            print(f"something already answers on {url}; stop it or choose another PORT=", file=sys.stderr)
            return 1
        except ApiError as e:
            if e.code != "unreachable":
                print(f"something already answers on {url}; stop it or choose another PORT=", file=sys.stderr)
                return 1
    import modelbay

    # the child imports the same modelbay as this process (a checkout, not some other install)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(modelbay.__file__).resolve().parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    # the child holds its own descriptor of the log: ours closes once it has started
    with open(store / "server.log", "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelbay",
                "serve",
                "--store",
                str(store),
                "--host",
                args.host,
                "--port",
                str(args.port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    try:
        with Client(url, timeout=600.0) as client:
            wait_until_up(client, proc)
            note = "demo seeding skipped" if args.no_demo else seed_demo(client)
        print(f"modelbay on {url} (store {store}, log {store / 'server.log'}): {note}", file=sys.stderr)
        from .app import ModelbayApp

        ModelbayApp(url=url, profile="local", theme_name=args.theme).run()
    finally:
        stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
