"""Uploads to POST /predict, and what a prediction leaves behind (rows, stored objects)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.models import Prediction
from tests.support.images import jpeg

PREDICT = "/api/v1/predict"


async def post_image(
    client: httpx.AsyncClient,
    headers: Mapping[str, str],
    data: bytes,
    filename: str = "eye.jpg",
    content_type: str = "image/jpeg",
    **fields: str,
) -> httpx.Response:
    """Upload `data` as the form's `file` (with the form `fields`); the raw response."""
    return await client.post(
        PREDICT,
        headers=dict(headers),
        files={"file": (filename, data, content_type)},
        data=fields,
    )


async def predict(
    client: httpx.AsyncClient, headers: Mapping[str, str], data: bytes | None = None, **kw: Any
) -> dict[str, Any]:
    """Upload `data` (a synthetic JPEG by default) and return the 201 response's body."""
    response = await post_image(client, headers, jpeg() if data is None else data, **kw)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def count_rows(engine: AsyncEngine) -> int:
    """The number of prediction rows in the database."""
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(Prediction))).scalar_one())


def count_objects(client: httpx.AsyncClient) -> int:
    """The number of files in the local image store of the test client's app."""
    root = Path(client.app.state.settings.local_storage_dir)  # type: ignore[attr-defined]
    return sum(1 for p in root.rglob("*") if p.is_file())
