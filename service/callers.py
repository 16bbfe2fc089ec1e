"""Who calls and which call it is: the request-id rule and the API-key check of both transports.

REST (`service/api/middleware.py`, `service/api/deps.py`) and gRPC (`service/grpc_server.py`,
`service/grpc_stream.py`) read these from their own headers or metadata and hand the values here,
so the same id and the same key get the same answer over either.
"""

from __future__ import annotations

import hmac
import re
import uuid
from collections.abc import Sequence

from service.errors import UnauthenticatedError

# What a client's request id may be: it goes into logs, headers and trailing metadata verbatim.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
UNAUTHENTICATED_MESSAGE = "a valid API key is required (x-api-key: KEY, or authorization: Bearer KEY)"


def resolve_request_id(*given: str | None) -> str:
    """The first id the client set (of `given`, in order of precedence) when it is sane; else a
    fresh one (32 hex digits), also when the client set none."""
    first = next((g for g in given if g), "")
    return first if SANE_REQUEST_ID.fullmatch(first) else uuid.uuid4().hex


def bearer(authorization: str | None) -> str | None:
    """The token of an `authorization: Bearer TOKEN` value; None for any other scheme."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


def key_matches(given: str | None, keys: Sequence[str]) -> bool:
    """Whether `given` is one of `keys`, each compared in constant time."""
    if not given:
        return False
    return any(hmac.compare_digest(given.encode(), key.encode()) for key in keys)


def check_api_key(keys: Sequence[str], x_api_key: str | None, authorization: str | None) -> None:
    """Pass when no keys are configured or either credential is one of them; else
    UnauthenticatedError (401 / UNAUTHENTICATED), whose message never repeats what was sent."""
    if not keys:
        return
    if key_matches(x_api_key, keys) or key_matches(bearer(authorization), keys):
        return
    raise UnauthenticatedError(UNAUTHENTICATED_MESSAGE)
