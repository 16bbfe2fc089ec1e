"""gRPC front end: `emvnet.v1.Enhancer` (unary and streaming), `grpc.health.v1`, reflection.

`create_server(settings, backend) -> (server, port)` builds an asyncio server sharing the REST
gateway's backend; `serve` in `service/cli.py` starts and stops both. The servicer is thin: it turns
messages into `EnhanceParams`, uses the same validation and backend as REST, and maps errors through
the one table (`service/errors.py`). A call's deadline caps how long it waits; a cancelled call
cancels its job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from typing_extensions import override

from service import metrics
from service._generated import enhance_pb2, enhance_pb2_grpc
from service.backends import Backend
from service.callers import check_api_key, resolve_request_id
from service.errors import ErrorInfo, UnauthenticatedError, describe
from service.grpc_common import abort, metadata, output_format, response_from
from service.grpc_stream import stream_brackets
from service.settings import MIB, Settings
from service.validation import EnhanceParams, validate
from worker.jobs import DeadlineExceededError, JobFailure, JobOutput
from worker.logs import REQUEST_ID

log = logging.getLogger(__name__)

SERVICE_NAME = enhance_pb2.DESCRIPTOR.services_by_name["Enhancer"].full_name


class EnhancerServicer(enhance_pb2_grpc.EnhancerServicer):
    """Both RPCs of `emvnet.v1.Enhancer` over one backend."""

    def __init__(self, settings: Settings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend

    def authorize(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Metadata `x-api-key: KEY` or `authorization: Bearer KEY` when keys are configured."""
        meta = metadata(context)
        check_api_key(self.settings.api_keys, meta.get("x-api-key"), meta.get("authorization"))

    def wait_budget(self, context: grpc.aio.ServicerContext[Any, Any]) -> float:
        """Seconds a call may wait: the server's sync timeout, capped by the client's deadline."""
        left = context.time_remaining()
        budget = self.settings.sync_timeout_s if left is None else min(left, self.settings.sync_timeout_s)
        if budget <= 0.01:
            raise DeadlineExceededError("the call's deadline passed before its job could be queued")
        return budget

    async def merge(self, params: EnhanceParams, budget: float) -> tuple[JobOutput | JobFailure, str]:
        """Validate, queue and wait for one bracket; (outcome, job id). Raises on refusal."""
        job = validate(params, self.settings, deadline_s=budget)
        await self.backend.submit(job)
        metrics.QUEUE_DEPTH.set(await self.backend.depth())
        return await self.backend.wait(job.spec.job_id, budget), job.spec.job_id

    @override
    async def Enhance(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        request_id = resolve_request_id(request.request_id, metadata(context).get("x-request-id"))
        token = REQUEST_ID.set(request_id)
        start, code = time.perf_counter(), grpc.StatusCode.OK
        metrics.INFLIGHT_REQUESTS.labels("grpc").inc()
        try:
            self.authorize(context)
            metrics.UPLOAD_BYTES.labels("grpc").inc(sum(len(f) for f in request.frames))
            params = EnhanceParams(
                frames=list(request.frames),
                exposures=list(request.exposures) or None,
                reference=request.reference if request.HasField("reference") else None,
                model=request.model or None,
                output_format=output_format(request.output_format),
                request_id=request_id,
            )
            outcome, job_id = await self.merge(params, self.wait_budget(context))
            if isinstance(outcome, JobFailure):
                raise _Failed(describe(outcome))
            return response_from(outcome, request_id, job_id)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            info = exc.info if isinstance(exc, _Failed) else describe(exc)
            code = info.grpc_code
            await abort(context, info, request_id, self.settings.retry_after_s)
        finally:
            metrics.INFLIGHT_REQUESTS.labels("grpc").dec()
            record("Enhance", code, time.perf_counter() - start)
            REQUEST_ID.reset(token)

    @override
    async def EnhanceStream(
        self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        start, code = time.perf_counter(), grpc.StatusCode.OK
        metrics.INFLIGHT_REQUESTS.labels("grpc").inc()
        try:
            try:
                self.authorize(context)
            except UnauthenticatedError as exc:
                code = describe(exc).grpc_code
                call_id = resolve_request_id(metadata(context).get("x-request-id"))
                await abort(context, describe(exc), call_id, self.settings.retry_after_s)
            async for response in stream_brackets(self, request_iterator, context):
                yield response
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        finally:
            metrics.INFLIGHT_REQUESTS.labels("grpc").dec()
            record("EnhanceStream", code, time.perf_counter() - start)


class _Failed(Exception):  # noqa: N818 - a carrier, not an error type of its own
    """A job's recorded failure, carried to the abort path."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.info = info


def record(method: str, code: grpc.StatusCode, seconds: float) -> None:
    metrics.REQUESTS.labels("grpc", method, code.name).inc()
    metrics.REQUEST_LATENCY.labels("grpc", method).observe(seconds)


class ReadinessHealth(health_aio.HealthServicer):
    """Standard health service whose answer is the backend's readiness (model warm, queue up)."""

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend
        self._poller: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        checks = await self.backend.readiness()
        status = health_pb2.HealthCheckResponse.SERVING if all(checks.values()) else 2  # NOT_SERVING
        for service in ("", SERVICE_NAME):
            await self.set(service, status)

    @override
    async def Check(self, request: Any, context: Any) -> Any:
        with contextlib.suppress(Exception):
            await self.refresh()
        return await super().Check(request, context)

    @override
    async def Watch(self, request: Any, context: Any) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll())
        await super().Watch(request, context)

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.refresh()
            await asyncio.sleep(1.0)

    def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()


def create_server(settings: Settings, backend: Backend) -> tuple[grpc.aio.Server, int]:
    """An unstarted server on `settings.host:grpc_port` (0 picks a free port) and its bound port."""
    # One unary message carries a whole bracket; streams chunk frames and stay far below this.
    max_message = settings.max_request_bytes + MIB
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message),
            ("grpc.max_send_message_length", max_message),
            ("grpc.max_concurrent_streams", settings.grpc_max_concurrent_streams),
            ("grpc.so_reuseport", 0),
        ]
    )
    enhance_pb2_grpc.add_EnhancerServicer_to_server(EnhancerServicer(settings, backend), server)
    health = ReadinessHealth(backend)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    names = (
        SERVICE_NAME,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(f"{settings.host}:{settings.grpc_port or 0}")
    return server, port
