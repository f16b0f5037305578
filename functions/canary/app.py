"""Scheduled canary guard: judge every canary's guard rails from CloudWatch and act (abort, ramp, promote).

EventBridge calls it every minute; the work is ``modelbay.guard.check_all``, which the local server also runs.
"""

import logging

from modelbay.guard import check_all
from modelbay.metrics import sink_from_settings
from modelbay.settings import Settings
from modelbay.storage import open_store

log = logging.getLogger("modelbay.guard")
settings = Settings.from_env()
store = open_store(settings.store_url, settings)
metrics = sink_from_settings(settings)


def handler(event, context):
    verdicts = check_all(store, metrics, settings.limits)
    summary = {
        "checked": len(verdicts),
        "verdicts": [v.model_dump(include={"model", "alias", "state", "reasons"}) for v in verdicts],
    }
    log.info("canary guard: %s", summary)
    return summary
