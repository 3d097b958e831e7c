"""What a training job works on, loaded before its first batch.

The parent version's manifest and weights (from the image store, the demo weights or its
source); the items of the job's training dataset by split and of its locked test set;
and their images, decoded and resized exactly as the inference path does. The training
split is thinned by the recipe's per-doctor cap (`cap_per_doctor`, the feedback-loop
guard) before anything trains on it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from app.config import Settings
from app.db.learning import DatasetItem, TrainingJob
from app.db.models import ModelVersion
from app.db.session import SessionFactory
from app.inference.backends import torch_device
from app.inference.manifest import ModelManifest
from app.inference.preprocess import decode_rgb
from app.inference.weights import demo_weights, load_source, weights_from_bytes
from app.repositories.datasets import DatasetRepository
from app.repositories.model_versions import ModelRepository
from app.schemas.recipes import Recipe
from app.storage import ImageStore
from app.training.examples import Examples, UInt8Images

LOAD_CONCURRENCY = 8


@dataclass
class JobInputs:
    recipe: Recipe
    manifest: ModelManifest
    parent_state: dict[str, torch.Tensor]
    train: Examples
    validation: Examples
    calibration: Examples
    test: Examples
    train_sha256: str
    test_sha256: str
    data: dict[str, Any]  # the counts the job row shows


def cap_per_doctor(
    keys: Sequence[str], doctors: Sequence[int | None], share: float
) -> tuple[list[int], dict[str, int]]:
    """Indices kept so that no doctor's labels are more than `share` of them (the
    feedback-loop guard), and how many of each doctor's were left out. Items without a
    labelling doctor (imports) are never dropped. Which of a doctor's items stay is
    decided by a hash of the image, so the same data always gives the same subset."""
    by_doctor: dict[int, list[int]] = {}
    unattributed = 0
    for index, doctor in enumerate(doctors):
        if doctor is None:
            unattributed += 1
        else:
            by_doctor.setdefault(doctor, []).append(index)
    counts = {d: len(ix) for d, ix in by_doctor.items()}
    if not counts:
        return list(range(len(keys))), {}
    # The largest per-doctor count m with m <= share * (kept total) when every doctor
    # keeps at most m.
    cap = max(counts.values())
    while cap > 0 and cap > share * (sum(min(n, cap) for n in counts.values()) + unattributed):
        cap -= 1
    kept: list[int] = [i for i, d in enumerate(doctors) if d is None]
    dropped: dict[str, int] = {}
    for doctor, indices in by_doctor.items():
        ranked = sorted(indices, key=lambda i: hashlib.sha256(f"cap:{keys[i]}".encode()).digest())
        kept += ranked[:cap]
        if len(indices) > cap:
            dropped[str(doctor)] = len(indices) - cap
    return sorted(kept), dropped


async def load_job_inputs(
    settings: Settings, sessions: SessionFactory, storage: ImageStore, job: TrainingJob
) -> JobInputs:
    recipe = Recipe.model_validate(job.recipe_body)
    async with sessions() as session:
        parent = await ModelRepository(session).get(job.base_version)
        datasets = DatasetRepository(session)
        train_set = await datasets.get(job.train_dataset_id)
        test_set = await datasets.get(job.test_dataset_id)
        train_items = list(await datasets.items(job.train_dataset_id))
        test_items = list(await datasets.items(job.test_dataset_id))
    if parent is None or train_set is None or test_set is None:
        raise RuntimeError("the base version or a dataset is gone")
    manifest, state = await parent_weights(settings, storage, parent)
    codes = list(manifest.codes)
    size = manifest.input_size
    pixels = await _pixels(settings, storage, [*train_items, *test_items], size)

    def examples(items: Sequence[DatasetItem]) -> Examples:
        images = np.stack([pixels[i.image_key] for i in items]) if items else None
        return Examples(
            images=images if images is not None else np.zeros((0, size, size, 3), np.uint8),
            labels=np.asarray([codes.index(i.label) for i in items], np.int64),
        )

    by_split: dict[str, list[DatasetItem]] = {"train": [], "validation": [], "calibration": []}
    for item in train_items:
        by_split[item.split].append(item)
    kept, dropped = cap_per_doctor(
        [i.image_sha256 for i in by_split["train"]],
        [i.labelled_by for i in by_split["train"]],
        recipe.max_share_per_doctor,
    )
    trained = [by_split["train"][k] for k in kept]
    if not trained:
        raise ValueError(
            "nothing is left to train on after the per-doctor cap "
            f"(max_share_per_doctor {recipe.max_share_per_doctor})"
        )
    return JobInputs(
        recipe=recipe,
        manifest=manifest,
        parent_state=state,
        train=examples(trained),
        validation=examples(by_split["validation"]),
        calibration=examples(by_split["calibration"]),
        test=examples(test_items),
        train_sha256=train_set.sha256,
        test_sha256=test_set.sha256,
        data={
            "train": len(trained),
            "validation": len(by_split["validation"]),
            "calibration": len(by_split["calibration"]),
            "test": len(test_items),
            "max_share_per_doctor": recipe.max_share_per_doctor,
            "left_out_by_doctor_cap": dropped,
            "device": str(torch_device(settings.inference_device)),
        },
    )


async def parent_weights(
    settings: Settings, storage: ImageStore, row: ModelVersion
) -> tuple[ModelManifest, dict[str, torch.Tensor]]:
    manifest = ModelManifest.model_validate(row.manifest)
    if row.storage_key:
        stored = await storage.get(row.storage_key)
        loaded = await asyncio.to_thread(weights_from_bytes, stored.data, manifest, row.source)
    elif row.demo:
        loaded = await asyncio.to_thread(demo_weights)
    else:
        loaded = await load_source(settings, row.source)
    return manifest, {k: v.clone() for k, v in loaded.network.state_dict().items()}


async def _pixels(
    settings: Settings, storage: ImageStore, items: Sequence[DatasetItem], size: int
) -> dict[str, UInt8Images]:
    """The distinct images, decoded and resized exactly as the inference path does."""
    gate = asyncio.Semaphore(LOAD_CONCURRENCY)
    keys = sorted({i.image_key for i in items})
    out: dict[str, UInt8Images] = {}

    async def one(key: str) -> None:
        async with gate:
            stored = await storage.get(key)
            out[key] = await asyncio.to_thread(
                _reduce, stored.data, size, settings.max_image_pixels, settings.fast_jpeg_decode
            )

    await asyncio.gather(*(one(k) for k in keys))
    return out


def _reduce(data: bytes, size: int, max_pixels: int, fast_jpeg: bool) -> UInt8Images:
    """A stored image as the model sees it before normalization: RGB, EXIF applied, a
    large JPEG drafted, resized to size x size (PIL bilinear), uint8."""
    image = decode_rgb(data, max_pixels=max_pixels, min_side=2 * size if fast_jpeg else None)
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
