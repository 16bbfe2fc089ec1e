"""The one table from error codes to HTTP statuses and gRPC codes, so both transports answer alike.

Errors arrive as exceptions (`emvnet.errors.EmvnetError`, `worker.jobs.JobError`, and the gateway's
own below) or, from a worker through Redis, as a `JobFailure` code; all go through `describe()`.
REST bodies are `{"error": {"code", "message", "request_id"}}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import grpc

from emvnet.errors import EmvnetError
from worker.jobs import JobError, JobFailure


class Mapping(NamedTuple):
    http: int
    grpc: grpc.StatusCode
    retry: bool = False  # transient: tell the client when to retry (Retry-After)


ERROR_TABLE: dict[str, Mapping] = {
    # bad input (emvnet.errors)
    "invalid_input": Mapping(400, grpc.StatusCode.INVALID_ARGUMENT),
    "invalid_request": Mapping(400, grpc.StatusCode.INVALID_ARGUMENT),
    "unsupported_format": Mapping(415, grpc.StatusCode.INVALID_ARGUMENT),
    "corrupt_image": Mapping(422, grpc.StatusCode.INVALID_ARGUMENT),
    "image_too_large": Mapping(413, grpc.StatusCode.INVALID_ARGUMENT),
    "payload_too_large": Mapping(413, grpc.StatusCode.RESOURCE_EXHAUSTED),
    "request_timeout": Mapping(408, grpc.StatusCode.DEADLINE_EXCEEDED),
    "invalid_bracket": Mapping(422, grpc.StatusCode.INVALID_ARGUMENT),
    "invalid_exposures": Mapping(422, grpc.StatusCode.INVALID_ARGUMENT),
    "unknown_model": Mapping(422, grpc.StatusCode.INVALID_ARGUMENT),
    "not_acceptable": Mapping(406, grpc.StatusCode.INVALID_ARGUMENT),
    # who may call
    "unauthenticated": Mapping(401, grpc.StatusCode.UNAUTHENTICATED),
    # jobs
    "job_not_found": Mapping(404, grpc.StatusCode.NOT_FOUND),
    "job_not_finished": Mapping(409, grpc.StatusCode.FAILED_PRECONDITION),
    "cancelled": Mapping(409, grpc.StatusCode.CANCELLED),
    # capacity and time
    "queue_full": Mapping(429, grpc.StatusCode.RESOURCE_EXHAUSTED, retry=True),
    "unavailable": Mapping(503, grpc.StatusCode.UNAVAILABLE, retry=True),
    "device_unavailable": Mapping(503, grpc.StatusCode.UNAVAILABLE, retry=True),
    "deadline_exceeded": Mapping(504, grpc.StatusCode.DEADLINE_EXCEEDED),
    # the job's workers died too often: maybe the job itself kills them (OOM), so no Retry-After
    "worker_lost": Mapping(500, grpc.StatusCode.ABORTED),
    "not_found": Mapping(404, grpc.StatusCode.NOT_FOUND),
    "method_not_allowed": Mapping(405, grpc.StatusCode.UNIMPLEMENTED),
    "internal": Mapping(500, grpc.StatusCode.INTERNAL),
}


class GatewayError(Exception):
    """An error of the gateway itself (not of the frames, not of the queue)."""

    code = "invalid_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self.args[0])


class InvalidRequestError(GatewayError):
    """A malformed field or a missing part of the request."""

    code = "invalid_request"


class PayloadTooLargeError(GatewayError):
    """The upload is larger than `max_request_bytes`."""

    code = "payload_too_large"


class RequestTimeoutError(GatewayError):
    """The client paused longer than `body_timeout_s` while sending its upload."""

    code = "request_timeout"


class NotAcceptableError(GatewayError):
    """No output format satisfies the Accept header."""

    code = "not_acceptable"


class UnauthenticatedError(GatewayError):
    """API keys are configured and the request carries none of them."""

    code = "unauthenticated"


class JobNotFoundError(GatewayError):
    """No such job, or its results expired."""

    code = "job_not_found"


class JobNotFinishedError(GatewayError):
    """The result of a job that is still queued or running was requested."""

    code = "job_not_finished"


class JobFailedError(GatewayError):
    """A job's recorded failure, raised again where a client asks for its result."""

    def __init__(self, failure: JobFailure) -> None:
        super().__init__(failure.message)
        self.code = failure.code


@dataclass(frozen=True)
class ErrorInfo:
    """An error as both transports report it."""

    code: str
    message: str
    http_status: int
    grpc_code: grpc.StatusCode
    retry: bool

    def body(self, request_id: str) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message, "request_id": request_id}}


def from_code(code: str, message: str) -> ErrorInfo:
    mapping = ERROR_TABLE.get(code, ERROR_TABLE["internal"])
    return ErrorInfo(code, message, mapping.http, mapping.grpc, mapping.retry)


def describe(error: BaseException | JobFailure) -> ErrorInfo:
    """The code, message and statuses of any error; unknown exceptions are internal (no details)."""
    if isinstance(error, JobFailure):
        return from_code(error.code, error.message)
    if isinstance(error, EmvnetError | JobError | GatewayError):
        return from_code(error.code, error.message)
    return from_code("internal", "internal error; the request was not processed")
