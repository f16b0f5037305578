"""The inference engine: resolve, fetch (sha256-verified, disk-cached), session (LRU by bytes), run;
and the service over it that the transports call."""

from .engine import Engine, EngineConfig
from .model import LoadedModel
from .service import Inference, InferenceService
from .timing import Timings

__all__ = ["Engine", "EngineConfig", "Inference", "InferenceService", "LoadedModel", "Timings"]
