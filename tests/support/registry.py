"""The model registry's admin routes: register an upload, the version the app serves."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.support.factories import Doctor

MODELS = "/api/v1/admin/models"
SOME_VERSION = "0123456789ab"  # well-formed, never registered


async def upload_model(
    client: httpx.AsyncClient, admin: Doctor, weights: bytes, manifest: Any = None
) -> httpx.Response:
    """POST weights (and a manifest: a dict, or raw bytes as sent) to register a version."""
    files: dict[str, Any] = {"weights": ("model.pth", weights, "application/octet-stream")}
    if manifest is not None:
        raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
        files["manifest"] = ("model.json", raw, "application/json")
    return await client.post(MODELS, headers=admin.headers, files=files)


async def ready_version(client: httpx.AsyncClient) -> str:
    """The model version the app serves now, from its readiness probe."""
    response = await client.get("/api/v1/health/ready")
    assert response.status_code == 200, response.text
    version: str = response.json()["model"]["version"]
    return version
