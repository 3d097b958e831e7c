"""What an import run did: counts per legacy table and a reason for every row it left out."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from app.legacy.mapping import Reason

LegacyTable = Literal["users", "prediction_history"]


@dataclass
class Counts:
    read: int = 0  # legacy rows seen by this run
    imported: int = 0  # written by this run (a dry run: would be written)
    already: int = 0  # imported by an earlier run, left alone
    skipped: int = 0  # left out on purpose (case-duplicate accounts)
    failed: int = 0  # could not be imported (the reason is in the report)

    @property
    def in_service(self) -> int:
        """Rows of this table that are now in the service (imported now or before)."""
        return self.imported + self.already


@dataclass(frozen=True, slots=True)
class RowIssue:
    table: LegacyTable
    legacy_id: int
    reason: Reason
    detail: str


@dataclass
class ImportReport:
    source: str  # the legacy database URL, password hidden
    bucket: str
    dry_run: bool
    users: Counts = field(default_factory=Counts)
    history: Counts = field(default_factory=Counts)
    failures: list[RowIssue] = field(default_factory=list)
    skips: list[RowIssue] = field(default_factory=list)
    unusable_passwords: int = 0  # accounts imported without a werkzeug hash we accept
    history_seconds: float = 0.0
    aborted: str | None = None  # why the run stopped early (it can be run again)

    def counts(self, table: LegacyTable) -> Counts:
        return self.users if table == "users" else self.history

    def fail(self, table: LegacyTable, legacy_id: int, reason: Reason, detail: str) -> None:
        self.counts(table).failed += 1
        self.failures.append(RowIssue(table, legacy_id, reason, detail))

    def skip(self, table: LegacyTable, legacy_id: int, reason: Reason, detail: str) -> None:
        self.counts(table).skipped += 1
        self.skips.append(RowIssue(table, legacy_id, reason, detail))

    @property
    def history_rows_per_second(self) -> float:
        return self.history.read / self.history_seconds if self.history_seconds > 0 else 0.0

    def format(self) -> str:
        verb = "would import" if self.dry_run else "imported"
        lines = [
            f"legacy import from {self.source} (images from bucket {self.bucket!r})"
            + (": DRY RUN, nothing written" if self.dry_run else ""),
            f"{'':20}{'read':>8}{verb:>14}{'already here':>14}{'skipped':>9}{'failed':>8}",
        ]
        for table in ("users", "prediction_history"):
            c = self.counts(table)
            lines.append(
                f"{table:20}{c.read:>8}{c.imported:>14}{c.already:>14}{c.skipped:>9}{c.failed:>8}"
            )
        if self.unusable_passwords:
            were = "would be" if self.dry_run else "were"
            lines.append(
                f"{self.unusable_passwords} account(s) {were} imported without a password hash "
                "werkzeug can check: they must reset their password (forgot password)"
            )
        for title, issues in (("skipped", self.skips), ("failed", self.failures)):
            if issues:
                by_reason = Counter(issue.reason for issue in issues)
                summary = ", ".join(f"{reason} {n}" for reason, n in sorted(by_reason.items()))
                lines.append(f"{title} rows ({summary}):")
                lines.extend(
                    f"  {i.table} id {i.legacy_id}: {i.reason}: {i.detail}"
                    for i in sorted(issues, key=lambda i: (i.table != "users", i.legacy_id))
                )
        lines.append(
            f"prediction_history: {self.history.read} rows in {self.history_seconds:.1f} s, "
            f"{self.history_rows_per_second:.0f} rows/s"
        )
        if self.aborted:
            lines.append(f"STOPPED EARLY: {self.aborted}; run the same command again to resume")
        return "\n".join(lines)
