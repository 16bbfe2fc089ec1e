"""`/healthz` (the process answers), `/readyz` (model warmed and queue reachable), `/metrics`."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from service import metrics
from service.api.deps import BackendDep, SettingsDep
from service.schemas import Health, Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process serves requests")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz", summary="Readiness: model loaded and warmed up, queue reachable", response_model=Readiness
)
async def readyz(backend: BackendDep, settings: SettingsDep) -> Response:
    checks = await backend.readiness()
    depth = await backend.depth()
    metrics.QUEUE_DEPTH.set(depth)
    body = Readiness(
        ready=all(checks.values()),
        mode="embedded" if settings.embedded else "redis",
        checks=checks,
        queue_depth=depth,
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.get("/metrics", summary="Prometheus text exposition", response_class=Response)
async def prometheus_metrics(backend: BackendDep) -> Response:
    metrics.QUEUE_DEPTH.set(await backend.depth())
    data, content_type = metrics.exposition()
    return Response(content=data, media_type=content_type)
