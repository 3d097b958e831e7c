"""GET /history/{id}/heatmap: the Grad-CAM heatmap of one of my predictions.

Computed on demand with the classifier's Explainer (its own copy of the network, in a
worker thread), only when the running model is the one that made the prediction (else 409
MODEL_VERSION_GONE: other weights would explain a result they did not produce), and cached
in the image store beside the image, keyed by model version and class: the same heatmap
is never computed twice, concurrent requests for it included (one computes, the others
wait for it and read the cache).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from starlette.concurrency import run_in_threadpool

from app.config import Settings
from app.db.models import Prediction as PredictionRow
from app.errors import (
    ImageRejected,
    InvalidClassCode,
    ModelUnavailableError,
    ModelVersionGone,
    NotFound,
)
from app.inference import Classifier
from app.inference.explain import MAX_SIDE, Explainer
from app.inference.preprocess import decode_rgb
from app.storage import ImageNotFound, ImageStore, heatmap_key

log = logging.getLogger(__name__)


# One lock per heatmap being computed in this process (dropped when nobody holds it).
_computing: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)


def heatmap_tag(row: PredictionRow, class_code: str) -> str:
    return f"{row.model_version}|{class_code}"


def heatmap_keys(row: PredictionRow) -> list[str]:
    """Every heatmap key the row can have: one per class of its model version (heatmaps
    are only ever made with that version), so deleting the row can remove them all."""
    return [heatmap_key(row.image_key, heatmap_tag(row, str(c))) for c in row.class_codes]


async def heatmap_png(
    row: PredictionRow,
    class_code: str | None,
    *,
    storage: ImageStore,
    classifier: Classifier,
    settings: Settings,
) -> bytes:
    """The PNG for the (owned) row and class (default: the predicted class)."""
    codes = [str(c) for c in row.class_codes]
    code = class_code or row.predicted_class
    if code not in codes:
        raise InvalidClassCode(
            f"class_code {code!r} is not a class of this prediction ({', '.join(codes)})"
        )
    explainer = classifier.explainer
    if classifier.version != row.model_version or list(classifier.manifest.codes) != codes:
        raise ModelVersionGone(
            f"The model that made this prediction ({row.model_version}) is no longer the "
            "one running; its heatmap cannot be computed"
        )
    if explainer is None:
        raise ModelUnavailableError("Heatmaps are unavailable")
    key = heatmap_key(row.image_key, heatmap_tag(row, code))
    lock = _computing[key]
    try:
        async with lock:
            try:
                return (await storage.get(key)).data
            except ImageNotFound:
                pass
            png = await _compute(row, codes.index(code), storage, explainer, settings)
            await storage.put(key, png, "image/png")
            return png
    finally:
        if not lock.locked() and _computing.get(key) is lock:
            del _computing[key]


async def _compute(
    row: PredictionRow, index: int, storage: ImageStore, explainer: Explainer, settings: Settings
) -> bytes:
    try:
        stored = await storage.get(row.image_key)
    except ImageNotFound as exc:
        raise NotFound("Image not found") from exc

    def work() -> bytes:
        image = decode_rgb(stored.data, max_pixels=settings.max_image_pixels, min_side=MAX_SIDE)
        return explainer.render(image, index)

    try:
        return await run_in_threadpool(work)
    except ImageRejected as exc:  # the stored bytes were validated on upload
        log.error("stored image of prediction %s does not decode: %s", row.id, exc.detail)
        raise NotFound("Image not found") from exc
