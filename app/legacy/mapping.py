"""Legacy values to this service's: class names, probabilities, feedback, accounts.

Pure functions, no I/O. A value that cannot be mapped raises RowRejected with a stable
reason code, which the import report shows beside the legacy row's id.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeVar

from app.inference.manifest import DEFAULT_MANIFEST

# The earlier model's id2label, in its output order (the same order as DEFAULT_MANIFEST).
LEGACY_LABELS = ("Glaucoma", "Retinopatia diabetica", "Normal", "Catarata")
CLASS_CODES: tuple[str, ...] = DEFAULT_MANIFEST.codes
PROBABILITY_SUM_TOLERANCE = 1e-3  # a float32 softmax written as Python floats
_TIE_TOLERANCE = 1e-6

Reason = Literal[
    "MALFORMED_PROBABILITIES",
    "UNKNOWN_CLASS",
    "MISSING_IMAGE",
    "UNDECODABLE_IMAGE",
    "IMAGE_TOO_LARGE",
    "OWNER_NOT_IMPORTED",
    "EMAIL_TAKEN",
    "CASE_DUPLICATE",
]


class RowRejected(Exception):
    """A legacy row that is not imported; `reason` is a stable code, `detail` says why."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason
        self.detail = detail


def _fold(text: str) -> str:
    """Case, accents and surrounding/inner spacing ignored: 'Retinopatía  Diabética'."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(bare.casefold().split())


_CODE_BY_LABEL = {
    _fold(label): code for label, code in zip(LEGACY_LABELS, CLASS_CODES, strict=True)
}


def class_code(name: str | None) -> str:
    code = _CODE_BY_LABEL.get(_fold(name or ""))
    if code is None:
        raise RowRejected("UNKNOWN_CLASS", f"unknown class name {_excerpt(name)}")
    return code


# str(list_of_floats): '[0.91, 0.03, 1.2e-05, 0.05]'. Parsed with a regular expression and
# float(), never eval/literal_eval: the text came from a database, not from us.
_NUMBER = r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_LIST_RE = re.compile(rf"\[\s*({_NUMBER}(?:\s*,\s*{_NUMBER})*)\s*\]")


def parse_probabilities(text: str | None, predicted: str) -> list[float]:
    """The four probabilities in model order; `predicted` (a class code) must be the top."""
    match = _LIST_RE.fullmatch((text or "").strip())
    if match is None:
        raise RowRejected("MALFORMED_PROBABILITIES", f"not a list of numbers: {_excerpt(text)}")
    values = [float(item) for item in match.group(1).split(",")]
    if len(values) != len(CLASS_CODES):
        raise RowRejected(
            "MALFORMED_PROBABILITIES", f"{len(values)} values, expected {len(CLASS_CODES)}"
        )
    if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
        raise RowRejected("MALFORMED_PROBABILITIES", "a value outside [0, 1]")
    if abs(math.fsum(values) - 1.0) > PROBABILITY_SUM_TOLERANCE:
        raise RowRejected("MALFORMED_PROBABILITIES", f"values sum to {math.fsum(values):.6g}")
    top = values[CLASS_CODES.index(predicted)]
    if top < max(values) - _TIE_TOLERANCE:
        raise RowRejected("MALFORMED_PROBABILITIES", f"{predicted} is not the most probable class")
    return values


@dataclass(frozen=True, slots=True)
class MappedFeedback:
    verdict: Literal["correct", "incorrect"] | None
    comment: str | None


_VERDICTS: dict[str, Literal["correct", "incorrect"]] = {
    "correcto": "correct",
    "incorrecto": "incorrect",
}
_NO_FEEDBACK = {"", "sin feedback"}  # the legacy UI's label for NULL


def map_feedback(text: str | None) -> MappedFeedback:
    """'correcto' / 'incorrecto' (any case) -> a verdict; any other text is kept as the note."""
    folded = _fold(text or "")
    if folded in _VERDICTS:
        return MappedFeedback(_VERDICTS[folded], None)
    if folded in _NO_FEEDBACK:
        return MappedFeedback(None, None)
    assert text is not None
    return MappedFeedback(None, text.strip())


def as_utc(value: datetime | None, default: datetime) -> datetime:
    """Legacy timestamps are naive UTC (datetime.utcnow); NULL becomes `default`."""
    if value is None:
        return default
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def display_name(name: str | None, email: str) -> str:
    """1-100 characters, as the API requires; a missing name becomes the email's local part."""
    cleaned = " ".join((name or "").split())
    return (cleaned or email.split("@", 1)[0] or email)[:100]


@dataclass(frozen=True, slots=True)
class LegacyAccount:
    id: int
    email: str  # as normalised for this service (see app.services.auth.normalize_email)
    created_at: datetime | None


def split_case_duplicates(
    accounts: Iterable[LegacyAccount],
) -> tuple[list[LegacyAccount], dict[int, LegacyAccount]]:
    """(the accounts to import, {legacy id of a case duplicate: the account kept for it}).

    Of the accounts whose emails differ only in case, the oldest (created_at, then id;
    an unknown created_at counts as newest) is kept.
    """
    by_email: dict[str, list[LegacyAccount]] = {}
    for account in accounts:
        by_email.setdefault(account.email, []).append(account)
    kept: list[LegacyAccount] = []
    duplicates: dict[int, LegacyAccount] = {}
    for group in by_email.values():
        oldest, *others = sorted(group, key=_age_key)
        kept.append(oldest)
        duplicates.update((other.id, oldest) for other in others)
    kept.sort(key=lambda a: a.id)
    return kept, duplicates


def _age_key(account: LegacyAccount) -> tuple[bool, datetime, int]:
    when = account.created_at or datetime.max
    return (account.created_at is None, when.replace(tzinfo=None), account.id)


def _excerpt(text: str | None, limit: int = 60) -> str:
    if text is None:
        return "NULL"
    return repr(text if len(text) <= limit else text[:limit] + "...")


T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
