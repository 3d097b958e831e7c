"""a unique index on predictions.image_key

Revision ID: 0005_image_key_unique
Revises: 0004_history_indexes
Create Date: 2026-11-27

`ocupredict sweep-images` asks, a page of up to 1,000 stored keys at a time, which of them
a prediction still references; without an index each page would scan the table. Keys are
generated per upload (a uuid4), so one row per key is also an invariant worth enforcing.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005_image_key_unique"
down_revision: str | None = "0004_history_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ux_predictions_image_key", "predictions", ["image_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_predictions_image_key", table_name="predictions")
