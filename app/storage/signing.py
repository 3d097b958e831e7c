"""Signed, expiring URLs for images served by the app itself (local store).

GET {API_PREFIX}/history/{id}/image?expires=<unix s>&signature=<sig>. The signature binds
the prediction id, the expiry and the owner's credential stamp (a digest of their current
password hash): a password change or reset ends every URL issued before it, and the
route refuses any URL of a disabled owner.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime

# Domain separation: the key is the JWT secret, so tag the message with its purpose and a
# version. JWT signing inputs are base64url text and can never contain ':'.
_PURPOSE = b"ocupredict:image-access:v2:"


def credential_stamp(password_hash: str) -> str:
    """A short digest of the owner's password hash: it changes when the password does."""
    return hashlib.sha256(password_hash.encode("utf-8")).hexdigest()[:16]


def _mac(secret: str, prediction_id: int, expires_at: int, stamp: str) -> str:
    message = _PURPOSE + f"{int(prediction_id)}:{int(expires_at)}:{stamp}".encode("ascii")
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign_image_access(secret: str, prediction_id: int, expires_at: int, stamp: str) -> str:
    """URL-safe HMAC-SHA256 of (prediction_id, expires_at, stamp); expires_at: unix s."""
    return _mac(secret, prediction_id, expires_at, stamp)


def image_access_params(
    secret: str, prediction_id: int, now: float | datetime, ttl_seconds: int, stamp: str
) -> dict[str, str]:
    """Query parameters {"expires", "signature"} valid for ttl_seconds from now."""
    now_s = now.timestamp() if isinstance(now, datetime) else now
    expires_at = int(now_s) + ttl_seconds
    return {
        "expires": str(expires_at),
        "signature": sign_image_access(secret, prediction_id, expires_at, stamp),
    }


def verify_image_access(
    secret: str,
    prediction_id: int,
    expires_at: int,
    signature: str,
    now: float | datetime,
    stamp: str,
) -> bool:
    """True only for an unexpired signature made for this id, expiry and stamp."""
    now_s = now.timestamp() if isinstance(now, datetime) else now
    if now_s >= expires_at:
        return False
    try:
        given = signature.encode("ascii")
    except UnicodeEncodeError:
        return False
    expected = _mac(secret, prediction_id, expires_at, stamp).encode("ascii")
    return hmac.compare_digest(given, expected)
