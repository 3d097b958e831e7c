"""Liveness and readiness probes for the load balancer and orchestrator."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import ClassifierDep, DrainGateDep, SessionDep, SettingsDep, StorageDep
from app.db.session import ping
from app.schemas.health import Live, ModelStatus, Ready

router = APIRouter(prefix="/health", tags=["health"])
log = logging.getLogger(__name__)


@router.get("/live", response_model=Live, summary="The process is up")
async def live() -> Live:
    return Live()


@router.get(
    "/ready",
    response_model=Ready,
    responses={503: {"model": Ready, "description": "Some part is not ready"}},
    summary="Database, image store and model are ready",
    description="503 with `code: SHUTTING_DOWN` while the process drains on SIGTERM.",
)
async def ready(
    session: SessionDep,
    storage: StorageDep,
    classifier: ClassifierDep,
    settings: SettingsDep,
    gate: DrainGateDep,
) -> JSONResponse:
    body = Ready(
        process=settings.process_index,
        status="ready",
        database="ok",
        storage="ok",
        model=ModelStatus(
            version=classifier.version,
            demo=classifier.demo,
            backend=classifier.backend_name,
            ready=classifier.ready,
        ),
    )
    try:
        await ping(session)
    except Exception:
        log.warning("readiness: database check failed", exc_info=True)
        body.database = "error"

    try:
        await storage.check()
    except Exception:
        log.warning("readiness: image store check failed", exc_info=True)
        body.storage = "error"

    if gate.draining:  # stop sending work here at once, whatever the dependencies say
        body.code = "SHUTTING_DOWN"
    if body.code or body.database != "ok" or body.storage != "ok" or not body.model.ready:
        body.status = "not_ready"
    status_code = 200 if body.status == "ready" else 503
    return JSONResponse(body.model_dump(mode="json"), status_code=status_code)
