from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Live(BaseModel):
    """The process is up."""

    status: Literal["ok"] = "ok"


class ModelStatus(BaseModel):
    """The classifier of this process."""

    version: str | None = Field(None, description="sha256[:12] of the weights file")
    demo: bool | None = Field(None, description="True when demo (untrained) weights are loaded")
    backend: str | None = Field(None, description="Inference backend: onnx or torch")
    ready: bool = Field(False, description="Weights loaded and warmed up")


class Ready(BaseModel):
    """Readiness of each dependency; 503 with the same body names the part not ready."""

    status: Literal["ready", "not_ready"]
    database: Literal["ok", "error"]
    storage: Literal["ok", "error", "not_configured"] = "not_configured"
    model: ModelStatus = ModelStatus()
    process: int = Field(0, description="Index 0..N-1 of the process that answered")
    code: Literal["SHUTTING_DOWN"] | None = Field(
        None, description="SHUTTING_DOWN while the process drains (503)"
    )
