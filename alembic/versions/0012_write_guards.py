"""Write guards: version-counter rows that competing transactions update

Revision ID: 0012_write_guards
Revises: 0011_idempotency_keys
Create Date: 2026-12-06

On a Galera cluster with writers on several nodes, a locking read (SELECT ... FOR
UPDATE) locks only on its own node. Transactions that decide on the same fact (the last
active admin, a rate-limit window, a user's live one-time code) also UPDATE one row here,
so two of them on different nodes conflict at certification and one is retried
(app.db.retry). The "admins" guard exists from the start; the others are made on first
use.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0012_write_guards"
down_revision: str | None = "0011_idempotency_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    guards = op.create_table(
        "write_guards",
        sa.Column("name", sa.String(80), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.bulk_insert(guards, [{"name": "admins", "version": 0}])


def downgrade() -> None:
    op.drop_table("write_guards")
