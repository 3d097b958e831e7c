"""A prediction's images: short-lived URLs, the stored bytes (or a PNG preview), heatmaps.

S3: a presigned GET URL straight to the object (the browser fetches it from S3).
Local store: the app serves the bytes itself at
``{base_url}{API_PREFIX}/history/{id}/image?expires=..&signature=..``; the signature
(HMAC under the JWT secret, see app.storage.signing) lets an ``<img>`` tag fetch it without
an Authorization header, for ``IMAGE_URL_TTL_SECONDS``.

No URL ever names a file path: only the prediction id, which the route resolves.
Serving the bytes is `PredictionImages.image`: by a valid signed URL or the owner's token;
the route answers conditional requests from the validator it returns (app.kit.etag).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.concurrency import run_in_threadpool

from app.config import Settings
from app.db.base import utcnow
from app.db.models import Prediction as PredictionRow
from app.db.models import User
from app.errors import NotFound
from app.inference import Classifier
from app.inference.manifest import ModelManifest
from app.inference.preprocess import render_png
from app.kit.etag import strong_etag
from app.repositories.predictions import PredictionRepository
from app.schemas.prediction import Prediction, detail_from_row, label_lookup
from app.services.audit_views import ViewLog
from app.services.explain import heatmap_png
from app.services.thumbnails import thumbnail_jpeg, thumbnail_url_for
from app.storage import (
    ImageNotFound,
    ImageStore,
    InvalidImageKey,
    credential_stamp,
    image_access_params,
    verify_image_access,
)


def local_image_path(settings: Settings, prediction_id: int) -> str:
    """The app path that serves a prediction's image (relative to the base URL)."""
    return f"{settings.api_prefix.rstrip('/')}/history/{int(prediction_id)}/image"


async def image_url_for(
    row: PredictionRow,
    owner: User,
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
    secret = settings.jwt_secret_key.get_secret_value()
    stamp = credential_stamp(owner.password_hash)
    params = image_access_params(secret, row.id, current, ttl, stamp)
    expires_at = datetime.fromtimestamp(int(params["expires"]), UTC)
    url = f"{base_url.rstrip('/')}{local_image_path(settings, row.id)}?{urlencode(params)}"
    return url, expires_at


async def prediction_detail(
    row: PredictionRow,
    owner: User,
    storage: ImageStore,
    settings: Settings,
    manifest: ModelManifest,
    base_url: str,
    *,
    now: datetime | None = None,
) -> Prediction:
    """The Prediction resource for the owner's row: labels in the owner's language and a
    fresh image URL and thumbnail URL signed for them."""
    current = now or utcnow()
    url, expires_at = await image_url_for(row, owner, storage, settings, base_url, now=current)
    thumbnail = thumbnail_url_for(row.id, owner, settings, base_url, current)
    labels = label_lookup(manifest, owner.locale)
    return detail_from_row(row, labels, url, expires_at, thumbnail)


# --------------------------------------------------------------------------- serving


@dataclass(frozen=True, slots=True)
class ImageRedirect:
    """S3: send the client to a short-lived presigned URL."""

    url: str


@dataclass(frozen=True, slots=True)
class ImageSource:
    """Local store (or a rendered preview): the validators now, the bytes on demand, so a
    conditional request that matches `etag` reads nothing."""

    etag: str
    content_type: str
    max_age: int
    load: Callable[[], Awaitable[tuple[bytes, str]]]  # (bytes, content type)


class PredictionImages:
    def __init__(
        self, session: AsyncSession, storage: ImageStore, settings: Settings, views: ViewLog
    ) -> None:
        self.repo = PredictionRepository(session)
        self.session = session
        self.storage = storage
        self.settings = settings
        self.views = views

    async def image(
        self,
        prediction_id: int,
        user: User | None,
        *,
        expires: int | None,
        signature: str | None,
        now: datetime,
        preview: bool = False,
        thumb: bool = False,
    ) -> ImageRedirect | ImageSource:
        """Access by a valid signed URL (any client; it was issued to the owner) or by the
        owner's bearer token. Anything else, including an expired or forged signature, is
        404. The caller turns `user is None and no signature` into 401 beforehand."""
        ttl = self.settings.image_url_ttl_seconds
        row: PredictionRow | None = None
        max_age = ttl
        via = "signed_url"
        if expires is not None and signature is not None:
            row = await self._signed(prediction_id, expires, signature, now)
            if row is not None:
                max_age = max(0, min(ttl, int(expires - now.timestamp())))
        if row is None and user is not None:
            row = await self.repo.get_owned(prediction_id, user.id)
            max_age, via = ttl, "token"
        if row is None:
            raise NotFound("Prediction not found")
        result: ImageRedirect | ImageSource
        if thumb:
            result = self._thumbnail_of(row, max_age)
        else:
            result = await self._image_of(row, ttl, max_age, preview)
        # Served: a view. A signed URL was issued to the owner: the event names them.
        self.views.add(
            "prediction.image_view",
            actor=user if via == "token" else row.user_id,
            target=("prediction", row.id),
            new={"via": via},
        )
        return result

    async def _signed(
        self, prediction_id: int, expires: int, signature: str, now: datetime
    ) -> PredictionRow | None:
        """The row a signed URL names, when the signature holds for its owner as they are
        now: a password change or reset since, or a disabled owner, ends the URL."""
        found = await self.repo.get_with_owner(prediction_id)
        if found is None:
            return None
        row, owner = found
        secret = self.settings.jwt_secret_key.get_secret_value()
        stamp = credential_stamp(owner.password_hash)
        if not owner.is_active or not verify_image_access(
            secret, prediction_id, expires, signature, now, stamp
        ):
            return None
        return row

    def _thumbnail_of(self, row: PredictionRow, max_age: int) -> ImageSource:
        """The small JPEG of the list (app.services.thumbnails), served by the API."""

        async def load() -> tuple[bytes, str]:
            try:
                return await thumbnail_jpeg(row, self.storage, self.settings), "image/jpeg"
            except (ImageNotFound, InvalidImageKey) as exc:
                raise NotFound("Image not found") from exc

        return ImageSource(strong_etag(row.sha256, "thumb"), "image/jpeg", max_age, load)

    async def _image_of(
        self, row: PredictionRow, ttl: int, max_age: int, preview: bool
    ) -> ImageRedirect | ImageSource:
        """The original bytes, or with `preview` a PNG rendered from them (a DICOM's first
        frame; a browser cannot show application/dicom)."""
        if not preview:
            presigned = await self.storage.presigned_url(row.image_key, ttl)
            if presigned is not None:
                return ImageRedirect(presigned)
        image_key, stored_type = row.image_key, row.content_type
        max_pixels = self.settings.max_image_pixels

        async def load() -> tuple[bytes, str]:
            try:
                stored = await self.storage.get(image_key)
            except (ImageNotFound, InvalidImageKey) as exc:
                raise NotFound("Image not found") from exc
            if preview:
                return await run_in_threadpool(render_png, stored.data, max_pixels=max_pixels), (
                    "image/png"
                )
            return stored.data, stored.content_type or stored_type

        if preview:
            return ImageSource(strong_etag(row.sha256, "png"), "image/png", max_age, load)
        return ImageSource(strong_etag(row.sha256), row.content_type, max_age, load)

    async def heatmap(
        self, row: PredictionRow, user: User, class_code: str | None, classifier: Classifier
    ) -> bytes:
        """The Grad-CAM PNG of the user's prediction (app.services.explain)."""
        # No pooled connection stays checked out while the heatmap is computed.
        await self.session.commit()
        png = await heatmap_png(
            row, class_code, storage=self.storage, classifier=classifier, settings=self.settings
        )
        # Served: a view, recorded like the detail and the image views.
        self.views.add(
            "prediction.heatmap_view",
            actor=user,
            target=("prediction", row.id),
            new={"class_code": class_code or row.predicted_class},
        )
        return png
