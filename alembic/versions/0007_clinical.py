"""the quality gate and the recommendation on each prediction

Revision ID: 0007_clinical
Revises: 0006_audit
Create Date: 2026-12-02

Four nullable columns: rows made before the gate existed keep nulls (the API shows them
as null). Two indexes serve the history filters `recommendation=` and `gradable=` in the
default created_at order, and the dashboard's per-recommendation and ungradable counts
over a date range (both covering: user, value, created_at, id).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007_clinical"
down_revision: str | None = "0006_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("quality_gradable", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("quality_score", sa.Float(), nullable=True))
        batch.add_column(sa.Column("quality_reasons", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("recommendation", sa.String(16), nullable=True))
    op.create_index(
        "ix_predictions_user_recommendation",
        "predictions",
        ["user_id", "recommendation", "created_at", "id"],
    )
    op.create_index(
        "ix_predictions_user_gradable",
        "predictions",
        ["user_id", "quality_gradable", "created_at", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_predictions_user_gradable", table_name="predictions")
    op.drop_index("ix_predictions_user_recommendation", table_name="predictions")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("recommendation")
        batch.drop_column("quality_reasons")
        batch.drop_column("quality_score")
        batch.drop_column("quality_gradable")
