"""GET /metrics: Prometheus text format, outside API_PREFIX, only for METRICS_ALLOWED."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from app.api.deps import ClientIp, SettingsDep
from app.errors import Forbidden
from app.metrics import metrics_allowed, render

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics(client_ip: ClientIp, settings: SettingsDep) -> Response:
    if not metrics_allowed(client_ip, settings.metrics_allowed):
        raise Forbidden("Metrics are not served to this address")
    body, content_type = render()
    return Response(body, media_type=content_type)
