"""learning loop: datasets, dataset items, training jobs, evaluations, model lineage

Revision ID: 0013_learning_loop
Revises: 0012_write_guards
Create Date: 2026-12-06

- `datasets`: an immutable snapshot of labelled images (kind train or test; a test set is
  locked at creation), with its counts and the sha256 of its canonical manifest.
- `dataset_items`: one labelled image each, copied at snapshot time: the image's sha256
  and the key of the dataset's own copy, the prediction id (no foreign key: the
  prediction may be deleted later), patient_ref, the split derived from a hash of
  patient_ref (of the image when absent, flagged), the label, its source, who labelled
  it and when, the model version whose answer the doctor saw, and the quality verdict.
- `training_jobs`: queued -> running -> succeeded | failed | cancelled; claimed by a
  conditional UPDATE, with heartbeat, progress and the last checkpoint's epoch.
- `model_evaluations`: a candidate and its parent on a locked test set, with the gates.
- `model_versions.lineage`: what made a trained version (null for the others).

Plain ALTER TABLE for the new column (batch mode would rebuild the SQLite table).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from alembic import op

revision: str = "0013_learning_loop"
down_revision: str | None = "0012_write_guards"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Precise = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")  # the cut-off instants


def upgrade() -> None:
    op.add_column("model_versions", sa.Column("lineage", sa.JSON(), nullable=True))
    op.create_table(
        "datasets",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("locked", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("date_from", Precise, nullable=True),
        sa.Column("date_to", Precise, nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column(
            "created_by",
            BigId,
            sa.ForeignKey("users.id", ondelete="SET NULL", name="fk_datasets_created_by_users"),
            nullable=True,
        ),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("by_class", sa.JSON(), nullable=False),
        sa.Column("by_split", sa.JSON(), nullable=False),
        sa.Column("unlinked_items", sa.Integer(), nullable=False),
        sa.Column("excluded", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
    )
    op.create_index("ix_datasets_kind", "datasets", ["kind", "id"])
    op.create_table(
        "dataset_items",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "dataset_id",
            BigId,
            sa.ForeignKey(
                "datasets.id", ondelete="CASCADE", name="fk_dataset_items_dataset_id_datasets"
            ),
            nullable=False,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("image_key", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(50), nullable=False),
        sa.Column("prediction_id", sa.BigInteger(), nullable=True),
        sa.Column("patient_ref", sa.String(64), nullable=True),
        sa.Column("split", sa.String(12), nullable=False),
        sa.Column("split_from_image", sa.Boolean(), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("label_source", sa.String(10), nullable=False),
        sa.Column("labelled_by", sa.BigInteger(), nullable=True),
        sa.Column("labelled_at", sa.DateTime(), nullable=True),
        sa.Column("model_version", sa.String(32), nullable=True),
        sa.Column("source_name", sa.String(255), nullable=True),
        sa.Column("quality_gradable", sa.Boolean(), nullable=True),
        sa.Column("quality_score", sa.Float(), nullable=True),
        sa.Column("quality_reasons", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dataset_items"),
    )
    op.create_index(
        "ux_dataset_items_position", "dataset_items", ["dataset_id", "position"], unique=True
    )
    op.create_index("ix_dataset_items_image", "dataset_items", ["dataset_id", "image_sha256"])
    op.create_index("ix_dataset_items_patient", "dataset_items", ["dataset_id", "patient_ref"])
    op.create_table(
        "training_jobs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("base_version", sa.String(32), nullable=False),
        sa.Column(
            "train_dataset_id",
            BigId,
            sa.ForeignKey("datasets.id", name="fk_training_jobs_train_dataset_id_datasets"),
            nullable=False,
        ),
        sa.Column(
            "test_dataset_id",
            BigId,
            sa.ForeignKey("datasets.id", name="fk_training_jobs_test_dataset_id_datasets"),
            nullable=False,
        ),
        sa.Column("recipe", sa.String(64), nullable=False),
        sa.Column("recipe_version", sa.Integer(), nullable=False),
        sa.Column("recipe_sha256", sa.String(64), nullable=False),
        sa.Column("recipe_body", sa.JSON(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column(
            "created_by",
            BigId,
            sa.ForeignKey(
                "users.id", ondelete="SET NULL", name="fk_training_jobs_created_by_users"
            ),
            nullable=True,
        ),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("worker", sa.String(100), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("progress", sa.JSON(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("checkpoint_epoch", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("candidate_version", sa.String(32), nullable=True),
        sa.Column("evaluation_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_training_jobs"),
    )
    op.create_index("ix_training_jobs_status", "training_jobs", ["status", "id"])
    op.create_table(
        "model_evaluations",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("parent_version", sa.String(32), nullable=False),
        sa.Column(
            "test_dataset_id",
            BigId,
            sa.ForeignKey("datasets.id", name="fk_model_evaluations_test_dataset_id_datasets"),
            nullable=False,
        ),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("min_shadow_cases", sa.Integer(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_evaluations"),
    )
    op.create_index("ix_model_evaluations_version", "model_evaluations", ["version", "id"])


def downgrade() -> None:
    # Dropping a table drops its indexes (MySQL refuses to drop one a foreign key uses).
    for table in ("model_evaluations", "training_jobs", "dataset_items", "datasets"):
        op.drop_table(table)
    op.drop_column("model_versions", "lineage")
