"""idempotency keys of POST /predict

Revision ID: 0011_idempotency_keys
Revises: 0010_dicom
Create Date: 2026-12-06

A client that retries an upload with the same Idempotency-Key gets the first request's
prediction back: one row, one stored object. The unique (user_id, key_hash) index decides
between racing requests, also on different database nodes (a Galera certification
conflict for the loser); `prediction_id` is NULL while the first one is at work.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0011_idempotency_keys"
down_revision: str | None = "0010_dicom"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "user_id", BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column(
            "prediction_id",
            BigId,
            sa.ForeignKey("predictions.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )
    op.create_index(
        "ux_idempotency_keys_user_key", "idempotency_keys", ["user_id", "key_hash"], unique=True
    )
    op.create_index("ix_idempotency_keys_expires", "idempotency_keys", ["expires_at"])


def downgrade() -> None:
    op.drop_table("idempotency_keys")
