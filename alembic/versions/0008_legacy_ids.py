"""legacy ids on users and predictions

Revision ID: 0008_legacy_ids
Revises: 0007_clinical
Create Date: 2026-12-02

`ocupredict import-legacy` copies the earlier Flask back-end's `users` and
`prediction_history` rows. Each copy keeps the legacy row's id, so a second run skips what
is already here and a run stopped half way continues where it stopped. NULL for rows made
by this service; unique otherwise (both databases allow many NULLs in a unique index), so
a row can never be imported twice, even by two runs at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0008_legacy_ids"
down_revision: str | None = "0007_clinical"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = (("users", "ux_users_legacy_id"), ("predictions", "ux_predictions_legacy_id"))


def upgrade() -> None:
    for table, index in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("legacy_id", sa.BigInteger(), nullable=True))
        op.create_index(index, table, ["legacy_id"], unique=True)


def downgrade() -> None:
    for table, index in _TABLES:
        op.drop_index(index, table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("legacy_id")
