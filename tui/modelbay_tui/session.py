"""One browser session of ``modelbay console``: the TUI, run by textual-serve as its own process.

The console starts it with a scrubbed environment: the server's URL and the key the person logged in
with (``MODELBAY_URL``, ``MODELBAY_API_KEY``; empty for none), and HOME/XDG folders inside the session's
own folder, so no operator credential or profile is within reach. Uploads are confined to that folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from modelbay.settings import Settings

from .app import ModelbayApp


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m modelbay_tui.session", description=__doc__)
    ap.add_argument("--folder", required=True, type=Path, help="the session's folder (uploads land here)")
    ap.add_argument("--theme", default=None)
    args = ap.parse_args(argv)
    settings = Settings.from_env()
    ModelbayApp(
        url=settings.url,
        api_key=settings.api_key or "",  # "" = no key: never the credentials saved on this machine
        profile="console",
        theme_name=args.theme,
        profiles_path=settings.profiles_file,
        upload_root=args.folder,
        confine_uploads=True,
    ).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
