"""The scheme and host a client used, as a trusted proxy reports them.

X-Forwarded-Proto / X-Forwarded-Host (de facto), else the standard Forwarded header
(RFC 7239: `Forwarded: for=192.0.2.60;proto=https;host=clinic.example`). Only the
nearest proxy's word counts (the last value), and only from a trusted peer: the caller
decides that (app.kit.client_ip). Values that are not a plain scheme or host are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$"
)
_SCHEMES = frozenset({"http", "https"})


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str | None
    host: str | None


def _last(values: list[str]) -> str:
    """The nearest proxy's value of a header that may have been appended to."""
    items = [item.strip() for value in values for item in value.split(",") if item.strip()]
    return items[-1] if items else ""


def _forwarded_pairs(values: list[str]) -> dict[str, str]:
    """The last element of the Forwarded header as {name: value}, quotes removed."""
    element = _last(values)
    pairs: dict[str, str] = {}
    for part in element.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            pairs[name.strip().lower()] = value.strip().strip('"')
    return pairs


def forwarded_origin(proto: list[str], host: list[str], forwarded: list[str]) -> Origin:
    """The scheme and host from the X-Forwarded-Proto, X-Forwarded-Host and Forwarded
    header values (each a list of the header's lines); None where absent or malformed."""
    pairs = _forwarded_pairs(forwarded) if forwarded else {}
    scheme = (_last(proto) or pairs.get("proto", "")).lower()
    name = _last(host) or pairs.get("host", "")
    return Origin(
        scheme=scheme if scheme in _SCHEMES else None,
        host=name if name and _HOST.fullmatch(name) else None,
    )
