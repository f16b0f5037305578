"""FastAPI adapters over the transport-free services. Build apps with ``modelbay.api.app``."""
