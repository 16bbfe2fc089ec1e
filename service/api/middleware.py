"""One pure-ASGI middleware for what every REST request needs before and after its handler.

- a request id (the client's `X-Request-ID` when it is sane, else a new one: `service.callers`) in
  a context variable for the logs, in `request.state`, and in the response headers;
- the upload limit: a `Content-Length` past `max_request_bytes` is refused before any body is read,
  and a body that streams past it (chunked uploads) is cut off with the same 413; a client that
  pauses longer than `body_timeout_s` mid-upload is answered 408 instead of holding on forever;
- request count and latency metrics by route template, and one structured access-log line.
Pure ASGI rather than BaseHTTPMiddleware: it does not buffer bodies or add a task per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import metrics
from service.callers import resolve_request_id
from service.errors import GatewayError, PayloadTooLargeError, RequestTimeoutError, describe
from worker.logs import REQUEST_ID

log = logging.getLogger("service.access")

UNMETERED = frozenset({"/metrics", "/healthz", "/readyz"})


class _RefusedError(Exception):
    """The upload was cut off; `error` says why (too large, too slow)."""

    def __init__(self, error: GatewayError) -> None:
        super().__init__(error.message)
        self.error = error


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, max_request_bytes: int, body_timeout_s: float = 30.0) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = resolve_request_id(headers.get("x-request-id"))
        scope.setdefault("state", {})["request_id"] = request_id
        token = REQUEST_ID.set(request_id)
        start = time.perf_counter()
        status = {"code": 500, "started": False, "exceeded": False}
        received = 0
        body_done = False
        refusal: list[GatewayError] = []
        limit = self.max_request_bytes

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # later receives only watch for a disconnect: no timeout
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout_s)
            except TimeoutError:
                status["exceeded"] = True
                refusal.append(
                    RequestTimeoutError(
                        f"the upload stalled for {self.body_timeout_s:g} s after {received} bytes; "
                        "send the whole body without pausing"
                    )
                )
                raise _RefusedError(refusal[0]) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > limit:
                    status["exceeded"] = True
                    refusal.append(self._too_large_error(received))
                    raise _RefusedError(refusal[0])
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        async def guarded_send(message: Message) -> None:
            # The framework may turn the cut-off body into its own 400; the client must see the 413
            # (or 408) instead.
            if status["exceeded"]:
                if message["type"] == "http.response.start" and not status["started"]:
                    await self._refuse(send_with_id, request_id, refusal[0])
                return
            await send_with_id(message)

        metrics.INFLIGHT_REQUESTS.labels("rest").inc()
        try:
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:
                await self._refuse(send_with_id, request_id, self._too_large_error(int(length)))
            else:
                try:
                    await self.app(scope, limited_receive, guarded_send)
                except _RefusedError as refused:
                    if not status["started"]:
                        await self._refuse(send_with_id, request_id, refused.error)
        finally:
            metrics.INFLIGHT_REQUESTS.labels("rest").dec()
            self._record(scope, int(status["code"]), time.perf_counter() - start, request_id)
            REQUEST_ID.reset(token)

    def _too_large_error(self, size: int) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"the upload ({size} bytes or more) exceeds the {self.max_request_bytes}-byte limit"
        )

    async def _refuse(self, send: Send, request_id: str, error: GatewayError) -> None:
        info = describe(error)
        body = json.dumps(info.body(request_id)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": info.http_status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _record(scope: Scope, code: int, seconds: float, request_id: str) -> None:
        route: Any = scope.get("route")
        path = scope.get("path", "")
        endpoint = getattr(route, "path", None) or "unmatched"
        if path not in UNMETERED:
            metrics.REQUESTS.labels("rest", endpoint, str(code)).inc()
            metrics.REQUEST_LATENCY.labels("rest", endpoint).observe(seconds)
        log.info(
            "%s %s %d %.1f ms",
            scope.get("method"),
            path,
            code,
            seconds * 1000,
            extra={
                "method": scope.get("method"),
                "path": path,
                "status": code,
                "duration_s": round(seconds, 6),
                "transport": "rest",
                "request_id": request_id,
            },
        )
