"""Password hashes imported from the earlier Flask back-end (werkzeug.security).

An imported account keeps its werkzeug hash as it was (`pbkdf2:sha256:260000$salt$hex`,
`scrypt:32768:8:1$salt$hex`) in `users.password_hash`. The one place that accepts it is
the login (`Passwords.verify_for_login`), which checks it with werkzeug's own
`check_password_hash` and, on a match, stores an Argon2 hash in its place: the legacy hash
is then gone. Everything else that checks a password (change password, and whatever
calls `Passwords.verify`) goes through pwdlib, which knows only Argon2 and refuses a
werkzeug hash as an unknown one.

Only hashes of the shape werkzeug makes, with bounded cost parameters, count as legacy:
the parameters come from the database, and a hash asking for a billion PBKDF2 rounds or
gigabytes of scrypt memory would otherwise be a denial of service at login. An account
whose hash is anything else is imported with UNUSABLE_PASSWORD (it needs a reset).
"""

from __future__ import annotations

import re

from werkzeug.security import check_password_hash

# Not a hash any hasher knows ('!' never starts one): no password matches it.
UNUSABLE_PASSWORD = "!legacy-unusable"  # noqa: S105 - a marker, not a secret

_MAX_PBKDF2_ITERATIONS = 5_000_000  # werkzeug 2.2 wrote 260,000; 3.1 writes 1,000,000
_MAX_SCRYPT_MEMORY = 256 * 1024 * 1024  # bytes: 128 * n * r * p

_LEGACY_RE = re.compile(
    r"(?P<method>pbkdf2:(?P<digest>sha1|sha224|sha256|sha384|sha512):(?P<iterations>[0-9]{1,8})"
    r"|scrypt(?::(?P<n>[0-9]{1,8}):(?P<r>[0-9]{1,3}):(?P<p>[0-9]{1,3}))?)"
    r"\$[A-Za-z0-9]{1,64}\$[0-9a-f]{32,256}"
)


def is_legacy_hash(hashed: str) -> bool:
    """A werkzeug pbkdf2/scrypt hash whose cost parameters are within bounds."""
    match = _LEGACY_RE.fullmatch(hashed)
    if match is None:
        return False
    if match["iterations"] is not None:
        return 1 <= int(match["iterations"]) <= _MAX_PBKDF2_ITERATIONS
    if match["n"] is None:
        return True  # werkzeug's default scrypt parameters (2**15, 8, 1)
    n, r, p = int(match["n"]), int(match["r"]), int(match["p"])
    power_of_two = n > 1 and n & (n - 1) == 0
    return power_of_two and r >= 1 and p >= 1 and 128 * n * r * p <= _MAX_SCRYPT_MEMORY


def check_legacy_password(hashed: str, password: str) -> bool:
    """werkzeug's check, for a hash `is_legacy_hash` accepts only (blocking: run in a thread)."""
    if not is_legacy_hash(hashed):
        return False
    try:
        return check_password_hash(hashed, password)
    except (ValueError, MemoryError):  # parameters hashlib refuses
        return False
