"""Promotion stays human, and only on evidence: a version a training job made (it has a
lineage) may be activated only when its latest evaluation passed the recipe's gates
(else 409 GATES_NOT_MET) and it has classified at least the recipe's min_shadow_cases
live uploads in shadow (else 409 SHADOW_INSUFFICIENT). Versions registered by hand and
the start-up version are not concerned; rolling back to a parent is activating it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import ModelVersion
from app.errors import GatesNotMet, ShadowInsufficient
from app.repositories.training_jobs import TrainingJobRepository


async def check_promotion(session: AsyncSession, row: ModelVersion) -> None:
    if row.lineage is None:
        return
    repo = TrainingJobRepository(session)
    evaluation = await repo.latest_evaluation(row.version)
    if evaluation is None or not evaluation.passed:
        failed = (
            [g["name"] for g in evaluation.result.get("gates", []) if not g["passed"]]
            if evaluation
            else []
        )
        raise GatesNotMet(
            f"Version {row.version} did not pass the gates of its recipe"
            + (f" (failed: {', '.join(failed)})" if failed else "")
        )
    compared = await repo.shadow_compared(row.version)
    if compared < evaluation.min_shadow_cases:
        raise ShadowInsufficient(
            f"Version {row.version} has been compared in shadow on {compared} live cases; "
            f"its recipe asks for {evaluation.min_shadow_cases} (PUT .../shadow)"
        )
