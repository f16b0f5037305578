"""Inference protocols (Open Inference Protocol /v2, friendly /v1). Filled in by the inference work."""

from __future__ import annotations

from fastapi import FastAPI


def include_inference(app: FastAPI) -> None:
    @app.get("/v2/health/live", tags=["inference"])
    def live():
        return {"live": True}
