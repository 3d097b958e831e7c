"""What a server process wrote to its stdout and stderr, read as a log pipeline reads it:
one JSON object a line in production, readable text in development, and never a secret."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

# LOG_FORMAT of app/observability.py: "<date> <time> LEVEL [request id] logger: message"
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \[[^\]]*\] [\w.]+: ")


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` parsed as a JSON object; AssertionError names the first that
    is not one."""
    lines: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError:
            parsed = None
        assert isinstance(parsed, dict), f"line {number} is not a JSON object: {line!r}"
        lines.append(parsed)
    return lines


def text_lines(text: str) -> list[str]:
    """Every line of `text`, each in the development format (not JSON): AssertionError
    names the first that is not."""
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        assert TEXT_LINE.match(line), f"line {number} is not a development log line: {line!r}"
    return lines


def secrets_of(*token_pairs: dict[str, Any], others: Iterable[str] = ()) -> list[str]:
    """The access and refresh tokens of login answers, with their long JWT parts, plus
    `others` (codes, signatures, passwords)."""
    secrets = [s for s in others if s]
    for pair in token_pairs:
        for name in ("access_token", "refresh_token"):
            token = str(pair[name])
            secrets.append(token)
            secrets += [part for part in token.split(".") if len(part) >= 16]
    return secrets


def assert_no_secret(text: str, secrets: Iterable[str]) -> None:
    """No query string of a signed URL and none of `secrets` anywhere in `text`."""
    for marker in ("signature=", "expires=", "token="):
        assert marker not in text, f"{marker!r} is in the log"
    for secret in secrets:
        assert secret not in text, f"a secret ({secret[:4]}...) is in the log"
