"""DICOM intake: where the eye came from, laterality conflicts, frame count

Revision ID: 0010_dicom
Revises: 0009_model_registry
Create Date: 2026-12-02

A DICOM upload's Image Laterality fills `eye` when the request gives none
(`eye_source` "dicom"); a request eye that contradicts the file is kept and flagged
(`laterality_conflict`). `frames` is a DICOM's frame count (only the first is
classified); NULL for JPEG and PNG. Existing rows: eye_source "request", no conflict.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0010_dicom"
down_revision: str | None = "0009_model_registry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE, not batch mode: batch mode rebuilds the SQLite table, which drops the
# triggers 0009_model_registry keeps on predictions (both databases add and drop columns).
def upgrade() -> None:
    op.add_column(
        "predictions",
        sa.Column("eye_source", sa.String(10), nullable=False, server_default="request"),
    )
    op.add_column(
        "predictions",
        sa.Column("laterality_conflict", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("predictions", sa.Column("frames", sa.Integer(), nullable=True))


def downgrade() -> None:
    for column in ("frames", "laterality_conflict", "eye_source"):
        op.drop_column("predictions", column)
