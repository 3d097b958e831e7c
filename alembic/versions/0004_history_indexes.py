"""history and dashboard indexes

Revision ID: 0004_history_indexes
Revises: 0003_predictions
Create Date: 2026-11-26

Sized for 100,000 predictions per doctor and 1,000,000 in all (bench/history.py). Every
history query starts with `user_id = ?`; a page is `ORDER BY <key>, id LIMIT n OFFSET m`
over ids only (InnoDB secondary indexes carry the primary key, so the page query is
index-only and a deep OFFSET skips index entries, not rows), then the 20 rows by id; the
total is a COUNT(*) with the same filters. So each index below is (user_id, <equality
filter>, <order>): the page walks it in order and stops, and the count reads one
contiguous index range without touching rows. Kept from 0003:

- ix_predictions_user_created (user_id, created_at, id): the default newest-first order,
  date filters, the per-user COUNT(*) of an unfiltered page, the dashboard's per-day
  counts, and its per-user groups for ranges up to a month (a few thousand row reads).

Added:

- ix_predictions_user_class_feedback (user_id, predicted_class, feedback_verdict,
  feedback_correct_class, created_at): COUNT(*) for the class filter and class + feedback
  filters, and the dashboard's (class, verdict, correct class) groups over long ranges,
  read in group order from the index alone (no row reads, no temporary table).
- ix_predictions_user_feedback (user_id, feedback_verdict, created_at, id): the feedback
  filter (none = NULL is an ordinary key value) with the default order, and its count.
- ix_predictions_user_class_id (user_id, predicted_class, id) and
  ix_predictions_user_feedback_id (user_id, feedback_verdict, id): sort=predicted_class and
  sort=feedback (ties by id) without sorting all of a doctor's rows.
- ix_predictions_user_search (user_id, original_filename, id, patient_ref, created_at):
  sort=filename (its prefix is filename, id), and the `q` search. A substring LIKE cannot
  seek in a B-tree, and left alone MariaDB walks the created_at index reading whole rows
  until a page is full: a second for a rare term among a doctor's 100,000 rows. The
  repository forces this index for `q` instead (FORCE INDEX, MySQL/MariaDB only): a scan
  of the doctor's entries that holds every column the filter and the default order need,
  so no row is read; about 50 ms at 100,000 rows, whatever the term.
- ix_predictions_user_patient (user_id, patient_ref, created_at, id): the patient_ref
  filter, newest first.
- ix_predictions_created_feedback (created_at, feedback_verdict): the dashboard's
  everyone-in-range totals as an index-only range scan. Replaces ix_predictions_created.
  For range=all that is still the whole table (~0.2 s at a million rows), so the service
  keeps that one result for a minute (app/services/stats.py).

Deliberately absent: a (user_id, id) index. sort=id walks the primary key, and with it
MariaDB merged (user_id, id) with (user_id, predicted_class, id) by ROR intersection for a
plain class filter, six times slower than one range.

Indexes cost writes, but predictions arrive at the pace of doctors' uploads (each already
paying for inference and an object upload) and are read far more often than written.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004_history_indexes"
down_revision: str | None = "0003_predictions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_INDEXES: dict[str, list[str]] = {
    "ix_predictions_user_class_feedback": [
        "user_id",
        "predicted_class",
        "feedback_verdict",
        "feedback_correct_class",
        "created_at",
    ],
    "ix_predictions_user_class_id": ["user_id", "predicted_class", "id"],
    "ix_predictions_user_feedback": ["user_id", "feedback_verdict", "created_at", "id"],
    "ix_predictions_user_feedback_id": ["user_id", "feedback_verdict", "id"],
    "ix_predictions_user_search": [
        "user_id",
        "original_filename",
        "id",
        "patient_ref",
        "created_at",
    ],
    "ix_predictions_user_patient": ["user_id", "patient_ref", "created_at", "id"],
    "ix_predictions_created_feedback": ["created_at", "feedback_verdict"],
}

OLD_INDEXES: dict[str, list[str]] = {
    "ix_predictions_created": ["created_at"],
}


def upgrade() -> None:
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        for name, columns in NEW_INDEXES.items():
            batch_op.create_index(name, columns, unique=False)
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        for name in OLD_INDEXES:
            batch_op.drop_index(name)


def downgrade() -> None:
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        for name, columns in OLD_INDEXES.items():
            batch_op.create_index(name, columns, unique=False)
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        for name in NEW_INDEXES:
            batch_op.drop_index(name)
