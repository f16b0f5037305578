"""Scheduled housekeeping: expired upload sessions and abandoned version claims, in every tenant."""

import logging

from modelbay.registry import sweep_all
from modelbay.settings import Settings
from modelbay.storage import open_store

log = logging.getLogger("modelbay.sweep")
settings = Settings.from_env()
store = open_store(settings.store_url, settings)


def handler(event, context):
    swept = sweep_all(store, settings.limits)
    log.info("sweep: %s", swept)
    return swept
