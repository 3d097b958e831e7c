"""Text clean-up for what users type: emails, display names, file names.

Control characters (Cc) and invisible format characters (Cf: bidi overrides such as
U+202E, zero-width spaces and joiners, the BOM) are removed: a file name that reads
"gpj.exe" backwards or a name that breaks an email's lines must not reach a screen,
a mail body or a log line.
"""

from __future__ import annotations

import unicodedata

_INVISIBLE = frozenset(("Cc", "Cf"))


def normalize_email(email: str) -> str:
    return email.strip().lower()


def strip_invisible(text: str) -> str:
    """NFC-normalised `text` without control and format characters."""
    text = unicodedata.normalize("NFC", text)
    return "".join(ch for ch in text if unicodedata.category(ch) not in _INVISIBLE)


def clean_display_name(name: str) -> str:
    """A person's name as shown and mailed: one line, visible characters, single spaces."""
    return " ".join(strip_invisible(name.replace("\n", " ").replace("\r", " ")).split())


def clean_filename(filename: str | None) -> str:
    """The client's file name as display metadata only: no path, no invisible characters."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = strip_invisible(name).strip()
    return name[:255] or "upload"
