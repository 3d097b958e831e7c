"""Liveness and readiness probes for the load balancer and orchestrator."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.api.deps import SessionDep
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
)
async def ready(request: Request, session: SessionDep) -> JSONResponse:
    state = request.app.state
    body = Ready(status="ready", database="ok", model=ModelStatus(ready=True))
    try:
        await session.execute(text("SELECT 1"))
    except Exception:
        log.warning("readiness: database check failed", exc_info=True)
        body.database = "error"

    storage = getattr(state, "storage", None)
    if storage is not None:
        try:
            await storage.check()
            body.storage = "ok"
        except Exception:
            log.warning("readiness: image store check failed", exc_info=True)
            body.storage = "error"

    classifier = getattr(state, "classifier", None)
    if classifier is not None:
        body.model = ModelStatus(
            version=classifier.version,
            demo=classifier.demo,
            backend=classifier.backend_name,
            ready=classifier.ready,
        )

    if body.database != "ok" or body.storage == "error" or not body.model.ready:
        body.status = "not_ready"
    status_code = 200 if body.status == "ready" else 503
    return JSONResponse(body.model_dump(mode="json"), status_code=status_code)
