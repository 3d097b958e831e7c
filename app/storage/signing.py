"""Signed, expiring URLs for images served by the app itself (local store).

GET {API_PREFIX}/history/{id}/image?expires=<unix s>&signature=<sig>. The signature binds
the prediction id and the expiry; the owner check still happens in the route.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime

# Domain separation: the key is the JWT secret, so tag the message with its purpose and a
# version. JWT signing inputs are base64url text and can never contain ':'.
_PURPOSE = b"ocupredict:image-access:v1:"


def _mac(secret: str, prediction_id: int, expires_at: int) -> str:
    message = _PURPOSE + f"{int(prediction_id)}:{int(expires_at)}".encode("ascii")
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign_image_access(secret: str, prediction_id: int, expires_at: int) -> str:
    """URL-safe HMAC-SHA256 of (prediction_id, expires_at); expires_at is unix seconds."""
    return _mac(secret, prediction_id, expires_at)


def image_access_params(
    secret: str, prediction_id: int, now: float | datetime, ttl_seconds: int
) -> dict[str, str]:
    """Query parameters {"expires", "signature"} valid for ttl_seconds from now."""
    now_s = now.timestamp() if isinstance(now, datetime) else now
    expires_at = int(now_s) + ttl_seconds
    return {
        "expires": str(expires_at),
        "signature": sign_image_access(secret, prediction_id, expires_at),
    }


def verify_image_access(
    secret: str,
    prediction_id: int,
    expires_at: int,
    signature: str,
    now: float | datetime,
) -> bool:
    """True only for an unexpired signature made for this id and expiry."""
    now_s = now.timestamp() if isinstance(now, datetime) else now
    if now_s >= expires_at:
        return False
    try:
        given = signature.encode("ascii")
    except UnicodeEncodeError:
        return False
    expected = _mac(secret, prediction_id, expires_at).encode("ascii")
    return hmac.compare_digest(given, expected)
