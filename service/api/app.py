"""`create_app(settings)`: the FastAPI application, its error handlers and its lifespan.

The backend (embedded batcher or Redis/Celery) is started in the lifespan and shared through
`app.state`, so a gRPC server in the same process can use the very same one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from emvnet.errors import EmvnetError
from service.api import hdr, health, jobs
from service.api.middleware import RequestContextMiddleware
from service.backends import Backend, build_backend
from service.errors import ErrorInfo, GatewayError, InvalidRequestError, describe, from_code
from service.settings import Settings
from worker.jobs import JobError

log = logging.getLogger(__name__)


def error_response(info: ErrorInfo, request: Request, settings: Settings) -> JSONResponse:
    headers = {"Retry-After": str(settings.retry_after_s)} if info.retry else None
    request_id = str(getattr(request.state, "request_id", ""))
    return JSONResponse(info.body(request_id), status_code=info.http_status, headers=headers)


def create_app(settings: Settings, backend: Backend | None = None, *, manage_backend: bool = True) -> FastAPI:
    """The REST gateway. `manage_backend=False` when the caller starts and closes the backend."""
    backend = backend or build_backend(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_backend:
            await backend.start()
        try:
            yield
        finally:
            if manage_backend:
                await backend.close()

    app = FastAPI(
        title="EMVNet HDR service",
        version="1",
        summary="Merge multi-exposure brackets into HDR images.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.backend = backend
    app.include_router(hdr.router)
    app.include_router(jobs.router)
    app.include_router(health.router)
    app.add_middleware(
        RequestContextMiddleware,
        max_request_bytes=settings.max_request_bytes,
        body_timeout_s=settings.body_timeout_s,
    )

    @app.exception_handler(EmvnetError)
    @app.exception_handler(JobError)
    @app.exception_handler(GatewayError)
    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        info = describe(exc)
        log.info("request failed: %s: %s", info.code, info.message, extra={"code": info.code})
        return error_response(info, request, settings)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return error_response(
            describe(InvalidRequestError(problems or "malformed request")), request, settings
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request")
        info = from_code(code, str(exc.detail))
        info = ErrorInfo(info.code, info.message, exc.status_code, info.grpc_code, info.retry)
        return error_response(info, request, settings)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return error_response(describe(exc), request, settings)

    return app
