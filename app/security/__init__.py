"""Password hashing, access tokens (JWT), refresh tokens and one-time codes.

Nothing secret is stored in clear: passwords as Argon2id, refresh tokens as sha256 (they
are 256-bit random, so a plain digest is enough), one-time codes and rate-limit keys as
HMAC-SHA256 under keys derived from JWT_SECRET_KEY with a per-use label (a 6-digit code
or an email address is guessable, so an unkeyed digest would not hide it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
import anyio.to_thread
import jwt
from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError
from pwdlib.hashers.argon2 import Argon2Hasher

from app.config import Settings
from app.security.legacy_hashes import check_legacy_password, is_legacy_hash

JWT_ALGORITHM = "HS256"
CODE_DIGITS = 6
_REQUIRED_CLAIMS = ["sub", "exp", "iat", "iss", "aud", "jti", "sid"]


# --------------------------------------------------------------------------- passwords


class Passwords:
    """Argon2id via pwdlib, always off the event loop.

    A dedicated limiter bounds concurrent hashes (each takes PASSWORD_HASH_MEMORY_KIB),
    so a burst of logins cannot exhaust memory or starve the default thread pool.
    """

    def __init__(
        self, time_cost: int, memory_kib: int, parallelism: int, max_concurrent: int = 4
    ) -> None:
        hasher = Argon2Hasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
        self._hash = PasswordHash((hasher,))
        self._max_concurrent = max_concurrent
        self._limiter: anyio.CapacityLimiter | None = None
        self._dummy_hash: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Passwords:
        return cls(
            settings.password_hash_time_cost,
            settings.password_hash_memory_kib,
            settings.password_hash_parallelism,
        )

    def _get_limiter(self) -> anyio.CapacityLimiter:
        if self._limiter is None:  # created lazily: it needs a running event loop
            self._limiter = anyio.CapacityLimiter(self._max_concurrent)
        return self._limiter

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(
            self._hash.hash, password, limiter=self._get_limiter()
        )

    async def verify_and_update(self, password: str, hashed: str) -> tuple[bool, str | None]:
        """(matches, new hash when the stored one used other parameters)."""
        return await anyio.to_thread.run_sync(
            self._verify_and_update, password, hashed, limiter=self._get_limiter()
        )

    async def verify_for_login(self, password: str, hashed: str) -> tuple[bool, str | None]:
        """The login's check: `verify_and_update`, and the one place an imported legacy
        (werkzeug) hash is accepted; a match returns the Argon2 hash to store instead.
        `verify` and pwdlib refuse legacy hashes (see app.security.legacy_hashes)."""
        if is_legacy_hash(hashed):
            return await anyio.to_thread.run_sync(
                self._upgrade_legacy, password, hashed, limiter=self._get_limiter()
            )
        return await self.verify_and_update(password, hashed)

    async def verify(self, password: str, hashed: str) -> bool:
        return await anyio.to_thread.run_sync(
            self._verify, password, hashed, limiter=self._get_limiter()
        )

    def _verify(self, password: str, hashed: str) -> bool:
        try:
            return self._hash.verify(password, hashed)
        except UnknownHashError:
            return False

    def _upgrade_legacy(self, password: str, hashed: str) -> tuple[bool, str | None]:
        if not check_legacy_password(hashed, password):
            return False, None
        return True, self._hash.hash(password)

    def _verify_and_update(self, password: str, hashed: str) -> tuple[bool, str | None]:
        try:
            return self._hash.verify_and_update(password, hashed)
        except UnknownHashError:  # not a hash we know (e.g. a disabled account): no match
            return False, None

    async def prepare(self) -> None:
        """Make the dummy hash at start-up, so even the first unknown-email login is not faster."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(16))

    async def dummy_verify(self, password: str) -> None:
        """Spend the time of a real verification (unknown email: no timing oracle)."""
        await self.prepare()
        assert self._dummy_hash is not None
        await self.verify(password, self._dummy_hash)


# --------------------------------------------------------------------------- keyed digests


def _derived_key(secret: str, label: str) -> bytes:
    return hmac.new(secret.encode(), f"ocupredict/{label}/v1".encode(), hashlib.sha256).digest()


def keyed_digest(secret: str, label: str, message: str) -> str:
    """Hex HMAC-SHA256 of `message` under a key derived for `label` (domain separation)."""
    return hmac.new(_derived_key(secret, label), message.encode(), hashlib.sha256).hexdigest()


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# --------------------------------------------------------------------------- one-time codes


def new_code() -> str:
    """Six uniformly random digits from the OS CSPRNG."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def code_digest(secret: str, user_id: int, purpose: str, code: str) -> str:
    """Bound to the user and purpose: a reset code never verifies an email, and so on."""
    return keyed_digest(secret, "one-time-code", f"{user_id}:{purpose}:{code}")


def normalize_code(raw: str) -> str:
    """Users paste '123 456' or '123-456'; keep the digits only."""
    return "".join(ch for ch in raw if ch.isdigit())


def codes_match(expected_digest: str, secret: str, user_id: int, purpose: str, code: str) -> bool:
    return hmac.compare_digest(expected_digest, code_digest(secret, user_id, purpose, code))


# --------------------------------------------------------------------------- tokens


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def new_family_id() -> str:
    return str(uuid.uuid4())


class InvalidAccessToken(Exception):
    """Expired, tampered, wrong algorithm/issuer/audience, or missing claims."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    session_id: str  # the refresh-token family this access token was issued with


def create_access_token(
    settings: Settings, user_id: int, session_id: str, role: str, now: datetime
) -> str:
    payload: dict[str, Any] = {
        "sub": str(user_id),
        "sid": session_id,
        "role": role,
        "iat": now,
        "exp": now + timedelta(minutes=settings.access_token_minutes),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "jti": uuid.uuid4().hex,
    }
    secret = settings.jwt_secret_key.get_secret_value()
    return jwt.encode(payload, secret, algorithm=JWT_ALGORITHM)


def decode_access_token(settings: Settings, token: str) -> AccessClaims:
    try:
        payload = jwt.decode(
            token,
            settings.jwt_secret_key.get_secret_value(),
            algorithms=[JWT_ALGORITHM],  # never taken from the token header (alg=none)
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": _REQUIRED_CLAIMS},
        )
        return AccessClaims(user_id=int(payload["sub"]), session_id=str(payload["sid"]))
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise InvalidAccessToken(type(exc).__name__) from None
