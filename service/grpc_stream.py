"""`EnhanceStream`: brackets assembled from chunked frames, merged concurrently, answered in order.

Wire protocol per bracket: one `BracketHeader`, then `FrameChunk`s (frame_index non-decreasing,
chunks of one frame in order, any chunk size up to the message limit), then `BracketEnd`. A reader
task assembles brackets and starts each one's merge at once; the response side awaits them in
arrival order, so results come back in order while several brackets are in flight. At most
`MAX_PENDING` brackets are pending per stream: past that the reader stops reading, and HTTP/2 flow
control slows the camera down.

A bad bracket (bad frames, too large, too late) gets an `EnhanceResponse` with `error` set and the
stream goes on. A broken protocol (a chunk outside a bracket, a frame index out of range) ends the
stream with INVALID_ARGUMENT. When the client cancels, every pending bracket is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from service import metrics
from service._generated import enhance_pb2
from service.callers import resolve_request_id
from service.errors import InvalidRequestError, PayloadTooLargeError, describe
from service.grpc_common import abort, error_detail, metadata, output_format, response_from
from service.settings import Settings
from service.validation import EnhanceParams
from worker.jobs import JobFailure, JobOutput

MAX_PENDING = 8


class Merging(Protocol):
    """What the stream needs of the servicer (`grpc_server.EnhancerServicer` implements it)."""

    settings: Settings

    def wait_budget(self, context: grpc.aio.ServicerContext[Any, Any]) -> float: ...
    async def merge(self, params: EnhanceParams, budget: float) -> tuple[JobOutput | JobFailure, str]: ...


@dataclass
class _Bracket:
    header: Any
    frames: list[bytearray] = field(default_factory=list)
    size: int = 0
    too_large: bool = False


class StreamProtocolError(Exception):
    """The client broke the header / chunks / end sequence; the stream cannot continue."""


def _start(header: Any) -> _Bracket:
    return _Bracket(header, [bytearray() for _ in range(min(header.frame_count, 64))])


def _add_chunk(bracket: _Bracket, chunk: Any, limit: int, last_index: int) -> int:
    """Append a chunk; returns the frame index, the new lower bound for the next chunk."""
    index = chunk.frame_index
    if index >= len(bracket.frames):
        raise StreamProtocolError(
            f"chunk for frame {index} but bracket {bracket.header.sequence} has {len(bracket.frames)} frames"
        )
    if index < last_index:
        raise StreamProtocolError(f"chunk for frame {index} after frame {last_index}: send frames in order")
    bracket.size += len(chunk.data)
    if bracket.size > limit:
        bracket.too_large = True
        bracket.frames = [bytearray() for _ in bracket.frames]  # drop what arrived; keep reading
    elif not bracket.too_large:
        bracket.frames[index] += chunk.data
    return int(index)


async def _answer(servicer: Merging, bracket: _Bracket, budget: float, call_id: str | None) -> Any:
    """The response for one assembled bracket: its image, or its error (never raises but cancel).
    Its request id is the header's, else the call's `x-request-id` (`call_id`), as the unary call's."""
    header = bracket.header
    request_id = resolve_request_id(header.request_id, call_id)
    base = {"sequence": header.sequence, "request_id": request_id}
    try:
        if bracket.too_large:
            limit = servicer.settings.max_request_bytes
            raise PayloadTooLargeError(f"bracket {header.sequence} exceeds the {limit}-byte limit")
        if header.frame_count != len(bracket.frames):
            raise InvalidRequestError(f"frame_count {header.frame_count} is over the maximum of 64")
        metrics.UPLOAD_BYTES.labels("grpc").inc(bracket.size)
        params = EnhanceParams(
            frames=[bytes(f) for f in bracket.frames],
            exposures=list(header.exposures) or None,
            reference=header.reference if header.HasField("reference") else None,
            model=header.model or None,
            output_format=output_format(header.output_format),
            request_id=request_id,
        )
        outcome, job_id = await servicer.merge(params, budget)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return enhance_pb2.EnhanceResponse(**base, error=error_detail(describe(exc)))
    if isinstance(outcome, JobFailure):
        return enhance_pb2.EnhanceResponse(**base, job_id=job_id, error=error_detail(describe(outcome)))
    return response_from(outcome, request_id, job_id, header.sequence)


async def _read(
    servicer: Merging,
    requests: AsyncIterator[Any],
    context: grpc.aio.ServicerContext[Any, Any],
    pending: asyncio.Queue[asyncio.Task[Any] | BaseException | None],
    call_id: str | None,
) -> None:
    """Assemble brackets from the request stream and queue each one's merge task."""
    limit = servicer.settings.max_request_bytes
    current: _Bracket | None = None
    last_index = 0
    try:
        async for message in requests:
            part = message.WhichOneof("part")
            if part == "header":
                if current is not None:
                    raise StreamProtocolError(
                        f"header of bracket {message.header.sequence} before the end of "
                        f"bracket {current.header.sequence}"
                    )
                current, last_index = _start(message.header), 0
            elif part == "chunk":
                if current is None:
                    raise StreamProtocolError("a frame chunk arrived outside a bracket: send a header first")
                last_index = _add_chunk(current, message.chunk, limit, last_index)
            elif part == "end":
                if current is None:
                    raise StreamProtocolError("an end marker arrived without a bracket header")
                budget = servicer.wait_budget(context)
                await pending.put(asyncio.create_task(_answer(servicer, current, budget, call_id)))
                current = None
            else:
                raise StreamProtocolError("an empty StreamRequest: set header, chunk or end")
        if current is not None:
            raise StreamProtocolError(f"the stream closed inside bracket {current.header.sequence}")
        await pending.put(None)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        await pending.put(exc)


async def stream_brackets(
    servicer: Merging, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[Any]:
    """Responses in bracket order; ends the call with a status on a protocol error."""
    pending: asyncio.Queue[asyncio.Task[Any] | BaseException | None] = asyncio.Queue(MAX_PENDING)
    call_id = metadata(context).get("x-request-id")
    reader = asyncio.create_task(_read(servicer, requests, context, pending, call_id))
    tasks: list[asyncio.Task[Any]] = []
    try:
        while (item := await pending.get()) is not None:
            if isinstance(item, BaseException):
                info = describe(
                    InvalidRequestError(str(item)) if isinstance(item, StreamProtocolError) else item
                )
                await abort(context, info, resolve_request_id(call_id), servicer.settings.retry_after_s)
            tasks.append(item)
            yield await item
            tasks.remove(item)
    finally:
        reader.cancel()
        while not pending.empty():
            leftover = pending.get_nowait()
            if isinstance(leftover, asyncio.Task):
                tasks.append(leftover)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(reader, *tasks, return_exceptions=True)
