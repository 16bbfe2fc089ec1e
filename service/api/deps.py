"""FastAPI dependencies: the app's settings and backend, the request id, and the API-key check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from service.backends import Backend
from service.callers import check_api_key
from service.settings import Settings


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_backend(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


def get_request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


def require_api_key(
    settings: Annotated[Settings, Depends(get_app_settings)],
    x_api_key: Annotated[str | None, Header(description="an API key, when the server requires one")] = None,
    authorization: Annotated[str | None, Header(description="or `Bearer <key>`")] = None,
) -> None:
    """Pass when no keys are configured or one of them is presented; else 401 (`service.callers`)."""
    check_api_key(settings.api_keys, x_api_key, authorization)


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
BackendDep = Annotated[Backend, Depends(get_backend)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
