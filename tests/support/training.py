"""Shared helpers of the learning-loop tests: small synthetic photographs whose class is
visible (a coloured disc per class on a dark, noisy background), a tiny-input parent
model that cannot tell the classes apart, and labelled predictions in the store."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
from fastapi import FastAPI
from PIL import Image

from app.db.models import Prediction
from app.inference.manifest import DEFAULT_MANIFEST
from app.inference.network import seeded_state_dict
from tests.support.factories import CODES, Doctor, add_stored_prediction

ROOT = Path(__file__).resolve().parents[2]
TEST_RECIPES = ROOT / "tests" / "recipes"
INPUT_SIZE = 32  # the parent's manifest: a ResNet18 at 32 px trains in seconds on a CPU
PARENT_SEED = 2407  # seeded untrained weights (a seed no other test registers)
COLOURS = {
    "glaucoma": (220, 40, 40),
    "diabetic_retinopathy": (40, 200, 60),
    "normal": (60, 80, 230),
    "cataract": (230, 210, 40),
}
PARENT_MANIFEST: dict[str, Any] = {
    "classes": [c.model_dump() for c in DEFAULT_MANIFEST.classes],
    "input_size": INPUT_SIZE,
    # The synthetic pictures are no fundus photographs: the gate would call them all
    # ungradable. It stays on for the import test, which uses fundus-like pictures.
    "quality_gate": False,
}


def photo(code: str, seed: int, side: int = 72) -> bytes:
    """A PNG: a disc of the class's colour (position, size and shade vary) on noise."""
    rng = np.random.default_rng(seed)
    pixels = rng.normal(40, 12, (side, side, 3))
    yy, xx = np.mgrid[0:side, 0:side]
    cx, cy = rng.uniform(0.35, 0.65, 2) * side
    radius = rng.uniform(0.28, 0.38) * side
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 < radius**2
    pixels[disc] = np.asarray(COLOURS[code]) + rng.normal(0, 15, (int(disc.sum()), 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def parent_weights() -> bytes:
    buffer = io.BytesIO()
    torch.save(seeded_state_dict(len(CODES), PARENT_SEED), buffer)
    return buffer.getvalue()


async def register_parent(client: httpx.AsyncClient, admin: Doctor) -> str:
    """Register and activate the parent; its version."""
    files = {
        "weights": ("parent.pth", parent_weights(), "application/octet-stream"),
        "manifest": ("parent.json", json.dumps(PARENT_MANIFEST).encode(), "application/json"),
    }
    response = await client.post("/api/v1/admin/models", headers=admin.headers, files=files)
    assert response.status_code in (201, 409), response.text
    if response.status_code == 409:  # registered by an earlier test of the run
        version = await _version_of(client, admin)
    else:
        version = response.json()["version"]
    activated = await client.post(f"/api/v1/admin/models/{version}/activate", headers=admin.headers)
    assert activated.status_code == 200, activated.text
    return str(version)


async def _version_of(client: httpx.AsyncClient, admin: Doctor) -> str:
    from app.inference.manifest import ModelManifest
    from app.inference.weights import load_bytes

    _, sha = load_bytes(parent_weights(), ModelManifest.model_validate(PARENT_MANIFEST), "x")
    return sha[:12]


async def labelled(
    app: FastAPI,
    doctor_id: int,
    code: str,
    seed: int,
    *,
    created_at: datetime,
    patient_ref: str | None,
    label: str | None = None,
    predicted: str = "normal",
    **extra: Any,
) -> Prediction:
    """A stored prediction the doctor labelled `label` (default: the true class `code`):
    confirmed when the model said so, else corrected."""
    label = label or code
    verdict = "correct" if label == predicted else "incorrect"
    return await add_stored_prediction(
        app,
        doctor_id,
        photo(code, seed),
        created_at=created_at,
        predicted_class=predicted,
        patient_ref=patient_ref,
        verdict=verdict,
        correct_class=None if verdict == "correct" else label,
        filename=f"{code}-{seed}.png",
        **extra,
    )


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float = 120.0) -> None:
    """Poll until true; a functional deadline, not a speed assertion."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)
