"""Running client calls off the UI thread: every server call in the TUI goes through ``ApiMixin.api``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from textual.dom import DOMNode

from modelbay.client import ApiError
from modelbay.errors import ModelbayError

if TYPE_CHECKING:
    from .app import ModelbayApp


class ApiMixin:
    """For screens and widgets: run ``fn(*args)`` in a thread worker, then ``then(result)`` on the UI thread.

    Failures become notifications (and mark the server offline if it is unreachable);
    results arriving after the screen has gone are dropped.
    """

    def api(
        self: Any,
        fn: Callable[..., Any],
        *args: Any,
        then: Callable[[Any], None] | None = None,
        group: str = "api",
        exclusive: bool = False,
        quiet: bool = False,
        failed: Callable[[Exception], None] | None = None,
    ) -> None:
        node: DOMNode = self
        app = cast("ModelbayApp", node.app)

        def deliver(cb: Callable[[Any], None], value: Any) -> None:
            if node.is_attached:
                try:
                    cb(value)
                except Exception as e:  # a rendering bug must not take the app down
                    app.log.error(f"callback failed: {e!r}")
                    app.notify(f"{type(e).__name__}: {e}", severity="error", title="UI error", markup=False)

        def job() -> None:
            try:
                result = fn(*args)
            except ApiError as e:
                app.call_from_thread(app.api_failed, e, quiet)
                if failed:
                    app.call_from_thread(deliver, failed, e)
                return
            except Exception as e:
                message = e.message if isinstance(e, ModelbayError) else f"{type(e).__name__}: {e}"
                app.call_from_thread(app.notify, message, severity="error", title="error", markup=False)
                if failed:
                    app.call_from_thread(deliver, failed, e)
                return
            app.call_from_thread(app.api_succeeded)
            if then is not None:
                app.call_from_thread(deliver, then, result)

        node.run_worker(job, thread=True, group=group, exclusive=exclusive, exit_on_error=False)
