"""Short-lived image URLs for a stored prediction image.

S3: a presigned GET URL straight to the object (the browser fetches it from S3).
Local store: the app serves the bytes itself at
``{base_url}{API_PREFIX}/history/{id}/image?expires=..&signature=..``; the signature
(HMAC under the JWT secret, see app.storage.signing) lets an ``<img>`` tag fetch it without
an Authorization header, for ``IMAGE_URL_TTL_SECONDS``.

No URL ever names a file path: only the prediction id, which the route resolves.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from app.config import Settings
from app.db.base import utcnow
from app.db.models import Prediction as PredictionRow
from app.inference.manifest import ModelManifest
from app.schemas.prediction import Prediction, detail_from_row, label_lookup
from app.services.thumbnails import thumbnail_url_for
from app.storage import ImageStore, image_access_params


def local_image_path(settings: Settings, prediction_id: int) -> str:
    """The app path that serves a prediction's image (relative to the base URL)."""
    return f"{settings.api_prefix.rstrip('/')}/history/{int(prediction_id)}/image"


async def image_url_for(
    row: PredictionRow,
    storage: ImageStore,
    settings: Settings,
    base_url: str,
    *,
    now: datetime | None = None,
) -> tuple[str, datetime]:
    """A fresh URL for the row's image and the moment it stops working.

    `base_url` is the externally visible origin (``str(request.base_url)``); it is used
    only for the local store. Raises StorageUnavailable when S3 cannot sign.
    """
    ttl = settings.image_url_ttl_seconds
    current = (now or utcnow()).astimezone(UTC)
    presigned = await storage.presigned_url(row.image_key, ttl)
    if presigned is not None:
        # Whole seconds, like the X-Amz-Expires the URL carries.
        return presigned, current.replace(microsecond=0) + timedelta(seconds=ttl)
    params = image_access_params(settings.jwt_secret_key.get_secret_value(), row.id, current, ttl)
    expires_at = datetime.fromtimestamp(int(params["expires"]), UTC)
    url = f"{base_url.rstrip('/')}{local_image_path(settings, row.id)}?{urlencode(params)}"
    return url, expires_at


async def prediction_detail(
    row: PredictionRow,
    storage: ImageStore,
    settings: Settings,
    manifest: ModelManifest,
    locale: str,
    base_url: str,
    *,
    now: datetime | None = None,
) -> Prediction:
    """The Prediction resource for a row: labels in `locale` and a fresh image URL."""
    current = now or utcnow()
    url, expires_at = await image_url_for(row, storage, settings, base_url, now=current)
    thumbnail = thumbnail_url_for(row.id, settings, base_url, current)
    return detail_from_row(row, label_lookup(manifest, locale), url, expires_at, thumbnail)
