"""The inference engine: resolve, fetch (sha256-verified, disk-cached), session (LRU by bytes), run."""

from .engine import Engine, EngineConfig
from .model import LoadedModel
from .timing import Timings

__all__ = ["Engine", "EngineConfig", "LoadedModel", "Timings"]
