"""model registry: model_versions, the registry state row, shadow predictions

Revision ID: 0009_model_registry
Revises: 0008_legacy_ids
Create Date: 2026-12-02

- `model_versions`: one row per set of weights (version = sha256[:12] of the file), with
  its source, manifest, demo flag, status (staged | active | retired) and shadow rate.
- `model_registry`: a single row (id 1) naming the active version and the shadow version;
  every process polls it, and activation changes it with a compare-and-set on
  `generation`, so two concurrent activations cannot both win.
- `shadow_predictions`: what a shadow version said about a live upload, kept apart from
  the served prediction.
- `model_metrics_daily`: per version and UTC day, the count and the summed confidence of
  each (predicted class, verdict, confirmed class, confidence bin) group, kept exact by
  triggers on predictions (insert, update, delete), so every writer (the API, bulk
  loads, an import) is counted in the same transaction. The metrics endpoint reads whole
  days from it: scanning a million prediction rows takes 0.6-0.8 s on MariaDB here, the
  rollup of two years ~70k rows. Existing predictions are rolled up here. (MariaDB does
  not fire triggers for rows removed by a foreign-key cascade; the service never deletes
  users, and a prediction is deleted by its own DELETE, which fires them.)
- `ix_predictions_version_metrics` on predictions (model_version, created_at,
  feedback_verdict, predicted_class, feedback_correct_class, probability): the partial
  days at the edges of a date range are aggregated from this index alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0009_model_registry"
down_revision: str | None = "0008_legacy_ids"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

ROLLUP = "model_metrics_daily"
# The confidence bin of a probability: [0, 0.1) -> 0 ... [0.9, 1] -> 9
# (app.repositories.model_versions.confidence_bin).
BIN_SQL = (
    "CASE "
    + " ".join(f"WHEN {{p}} < {k / 10:.1f} THEN {k - 1}" for k in range(1, 10))
    + " ELSE 9 END"
)


def _group(row: str) -> dict[str, str]:
    """The rollup key of a predictions row (OLD or NEW) as SQL expressions."""
    day = f"DATE({row}.created_at)"
    return {
        "model_version": f"{row}.model_version",
        "day": day,
        "predicted_class": f"{row}.predicted_class",
        "verdict": f"COALESCE({row}.feedback_verdict, '')",
        "correct_class": f"COALESCE({row}.feedback_correct_class, '')",
        "bin": BIN_SQL.format(p=f"{row}.probability"),
    }


def _add(row: str, dialect: str) -> str:
    key = _group(row)
    columns = ", ".join([*key, "n", "sum_p"])
    values = ", ".join([*key.values(), "1", f"{row}.probability"])
    if dialect == "sqlite":
        conflict = "ON CONFLICT (" + ", ".join(key) + ") DO UPDATE SET "
        conflict += "n = n + 1, sum_p = sum_p + excluded.sum_p"
    else:
        conflict = "ON DUPLICATE KEY UPDATE n = n + 1, sum_p = sum_p + VALUES(sum_p)"
    return f"INSERT INTO {ROLLUP} ({columns}) VALUES ({values}) {conflict}"


def _remove(row: str) -> str:
    where = " AND ".join(f"{column} = {value}" for column, value in _group(row).items())
    return f"UPDATE {ROLLUP} SET n = n - 1, sum_p = sum_p - {row}.probability WHERE {where}"


def _triggers(dialect: str) -> list[str]:
    body = {
        "insert": [_add("NEW", dialect)],
        "update": [_remove("OLD"), _add("NEW", dialect)],
        "delete": [_remove("OLD")],
    }
    statements = []
    for event, steps in body.items():
        name = f"trg_predictions_rollup_{event}"
        statements.append(
            f"CREATE TRIGGER {name} AFTER {event.upper()} ON predictions "
            f"FOR EACH ROW BEGIN {'; '.join(steps)}; END"
        )
    return statements


def _backfill() -> str:
    key = _group("predictions")
    select = ", ".join(key.values())
    return (
        f"INSERT INTO {ROLLUP} ({', '.join(key)}, n, sum_p) "
        f"SELECT {select}, COUNT(*), SUM(predictions.probability) FROM predictions "
        f"GROUP BY {select}"
    )


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=1024), nullable=False),
        sa.Column("storage_key", sa.String(length=255), nullable=True),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("demo", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("shadow_rate", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", BigId, nullable=True),
        sa.Column("activated_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name="fk_model_versions_created_by_users",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("version", name="pk_model_versions"),
    )
    op.create_table(
        "model_registry",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("active_version", sa.String(length=32), nullable=False),
        sa.Column("shadow_version", sa.String(length=32), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["active_version"],
            ["model_versions.version"],
            name="fk_model_registry_active_version_model_versions",
        ),
        sa.ForeignKeyConstraint(
            ["shadow_version"],
            ["model_versions.version"],
            name="fk_model_registry_shadow_version_model_versions",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_model_registry"),
    )
    op.create_table(
        "shadow_predictions",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("prediction_id", BigId, nullable=False),
        sa.Column("model_version", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("predicted_class", sa.String(length=64), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("probabilities", sa.JSON(), nullable=False),
        sa.Column("inference_ms", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["prediction_id"],
            ["predictions.id"],
            name="fk_shadow_predictions_prediction_id_predictions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_shadow_predictions"),
    )
    op.create_index(
        "ux_shadow_predictions_version_prediction",
        "shadow_predictions",
        ["model_version", "prediction_id"],
        unique=True,
    )
    op.create_index("ix_shadow_predictions_prediction", "shadow_predictions", ["prediction_id"])
    op.create_table(
        ROLLUP,
        sa.Column("model_version", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("predicted_class", sa.String(length=64), nullable=False),
        sa.Column("verdict", sa.String(length=10), nullable=False),
        sa.Column("correct_class", sa.String(length=64), nullable=False),
        sa.Column("bin", sa.SmallInteger(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("sum_p", sa.Double(), nullable=False),  # FLOAT is single precision on MySQL
        sa.PrimaryKeyConstraint(
            "model_version",
            "day",
            "predicted_class",
            "verdict",
            "correct_class",
            "bin",
            name=f"pk_{ROLLUP}",
        ),
    )
    dialect = op.get_bind().dialect.name
    op.execute(_backfill())
    for statement in _triggers(dialect):
        op.execute(statement)
    op.create_index(
        "ix_predictions_version_metrics",
        "predictions",
        [
            "model_version",
            "created_at",
            "feedback_verdict",
            "predicted_class",
            "feedback_correct_class",
            "probability",
        ],
    )


def downgrade() -> None:
    op.drop_index("ix_predictions_version_metrics", table_name="predictions")
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS trg_predictions_rollup_{event}")
    op.drop_table(ROLLUP)
    op.drop_table("shadow_predictions")  # its indexes go with it
    op.drop_table("model_registry")
    op.drop_table("model_versions")
