"""Thumbnails for the history list: a small JPEG of each stored image.

Made on first request (GET /history/{id}/image?format=thumb), at most THUMB_SIDE px on its
longer side, and cached in the image store beside the image ({image key}.thumb.jpg), so
the next request, from any process, reads it back. The list and the detail carry
`thumbnail_url`, an app URL signed like the local store's image_url (the API serves the
thumbnail itself on either store: S3 holds it, but the browser never needs S3 for it).
"""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime
from urllib.parse import urlencode

from PIL import Image
from starlette.concurrency import run_in_threadpool

from app.config import Settings
from app.db.models import Prediction as PredictionRow
from app.db.models import User
from app.inference.preprocess import decode_rgb
from app.storage import (
    ImageNotFound,
    ImageStore,
    credential_stamp,
    image_access_params,
    thumbnail_key,
)

log = logging.getLogger(__name__)

THUMB_SIDE = 256
THUMB_QUALITY = 80


def make_thumbnail(data: bytes, *, max_pixels: int) -> bytes:
    """A stored image (a DICOM's first frame) as an RGB JPEG at most THUMB_SIDE px on its
    longer side (never enlarged). Raises ImageRejected for bytes that are no image."""
    image = decode_rgb(data, max_pixels=max_pixels, min_side=THUMB_SIDE)
    image.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=THUMB_QUALITY, optimize=True)
    return out.getvalue()


async def thumbnail_jpeg(row: PredictionRow, storage: ImageStore, settings: Settings) -> bytes:
    """The cached thumbnail, made and stored first when there is none. Raises ImageNotFound
    when the image itself is gone."""
    key = thumbnail_key(row.image_key)
    try:
        return (await storage.get(key)).data
    except ImageNotFound:
        pass
    original = await storage.get(row.image_key)
    jpeg = await run_in_threadpool(
        make_thumbnail, original.data, max_pixels=settings.max_image_pixels
    )
    # Two processes making the same thumbnail write the same bytes: last one wins.
    await storage.put(key, jpeg, "image/jpeg")
    return jpeg


def thumbnail_url_for(
    prediction_id: int, owner: User, settings: Settings, base_url: str, now: datetime
) -> tuple[str, datetime]:
    """A signed app URL of the thumbnail (signed for its owner, like image_url) and the
    moment it stops working."""
    ttl = settings.image_url_ttl_seconds
    stamp = credential_stamp(owner.password_hash)
    params = image_access_params(
        settings.jwt_secret_key.get_secret_value(), prediction_id, now, ttl, stamp
    )
    expires_at = datetime.fromtimestamp(int(params["expires"]), UTC)
    path = f"{settings.api_prefix.rstrip('/')}/history/{int(prediction_id)}/image"
    query = urlencode({"format": "thumb", **params})
    return f"{base_url.rstrip('/')}{path}?{query}", expires_at
