"""Entity tags and conditional requests (RFC 9110)."""

from __future__ import annotations


def strong_etag(*parts: str) -> str:
    """A quoted strong validator from the parts that identify a representation."""
    return '"' + "-".join(parts) + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison, as If-None-Match requires."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False
