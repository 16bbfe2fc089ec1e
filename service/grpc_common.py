"""What both gRPC handlers share: output formats, responses, error details, metadata, aborts.

`grpc_server` (the unary `Enhance` and the servicer) and `grpc_stream` (`EnhanceStream`) both
build on this module, so neither imports the other's internals.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import grpc

from service._generated import enhance_pb2
from service.errors import ErrorInfo
from worker.jobs import JobOutput, OutputFormat

log = logging.getLogger(__name__)

FORMATS: dict[int, OutputFormat] = {
    enhance_pb2.OUTPUT_FORMAT_UNSPECIFIED: "png",
    enhance_pb2.OUTPUT_FORMAT_PNG: "png",
    enhance_pb2.OUTPUT_FORMAT_JPEG: "jpeg",
    enhance_pb2.OUTPUT_FORMAT_TIFF: "tiff",
    enhance_pb2.OUTPUT_FORMAT_RADIANCE: "hdr",
    enhance_pb2.OUTPUT_FORMAT_EXR: "exr",
    enhance_pb2.OUTPUT_FORMAT_ULTRAHDR: "uhdr",
    enhance_pb2.OUTPUT_FORMAT_AVIF: "avif",
}


def output_format(value: int) -> OutputFormat:
    return FORMATS.get(value, "png")


def response_from(outcome: JobOutput, request_id: str, job_id: str, sequence: int = 0) -> Any:
    return enhance_pb2.EnhanceResponse(
        request_id=request_id,
        image=outcome.image,
        content_type=outcome.content_type,
        width=outcome.width,
        height=outcome.height,
        reference=outcome.reference,
        blind=outcome.blind,
        blind_confidence=outcome.blind_confidence,
        inference_seconds=outcome.inference_seconds,
        model=outcome.model,
        sequence=sequence,
        job_id=job_id,
    )


def error_detail(info: ErrorInfo) -> Any:
    return enhance_pb2.ErrorDetail(code=info.code, message=info.message, grpc_code=info.grpc_code.value[0])


def metadata(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    """The call's text metadata, keys lower-cased."""
    return {k.lower(): v for k, v in context.invocation_metadata() or () if isinstance(v, str)}


async def abort(
    context: grpc.aio.ServicerContext[Any, Any], info: ErrorInfo, request_id: str, retry_after_s: int
) -> NoReturn:
    """End the call with the table's code; the error code and request id go in trailing metadata."""
    trailer: list[tuple[str, str]] = [("emvnet-error-code", info.code), ("x-request-id", request_id)]
    if info.retry:
        trailer.append(("retry-after", str(retry_after_s)))
    if info.code == "internal":
        log.error("internal error in a gRPC call: %s", info.message)
    await context.abort(info.grpc_code, info.message, trailing_metadata=tuple(trailer))
    raise AssertionError("context.abort returns only by raising")
