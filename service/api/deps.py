"""FastAPI dependencies: the app's settings and backend, the request id, and the API-key check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from service.backends import Backend
from service.errors import UnauthenticatedError
from service.settings import Settings


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_backend(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


def get_request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


def key_matches(given: str | None, keys: list[str]) -> bool:
    """Constant-time comparison against every configured key."""
    if not given:
        return False
    return any(hmac.compare_digest(given.encode(), key.encode()) for key in keys)


def bearer(authorization: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


def require_api_key(
    settings: Annotated[Settings, Depends(get_app_settings)],
    x_api_key: Annotated[str | None, Header(description="an API key, when the server requires one")] = None,
    authorization: Annotated[str | None, Header(description="or `Bearer <key>`")] = None,
) -> None:
    """Pass when no keys are configured or one of them is presented; else 401."""
    if not settings.api_keys:
        return
    if key_matches(x_api_key, settings.api_keys) or key_matches(bearer(authorization), settings.api_keys):
        return
    raise UnauthenticatedError("a valid API key is required (X-API-Key header or Authorization: Bearer)")


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
BackendDep = Annotated[Backend, Depends(get_backend)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
