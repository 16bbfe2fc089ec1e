"""`POST /v1/hdr`: a bracket in, an HDR image out (or 202 and a job to poll with `?mode=async`)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Header, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse

from service import metrics
from service.api.deps import BackendDep, RequestIdDep, SettingsDep, require_api_key
from service.errors import JobFailedError
from service.negotiation import FORMAT_HELP, choose_format
from service.schemas import ErrorBody, JobStatus
from service.validation import EnhanceParams, parse_exposures, parse_reference, validate
from worker.jobs import CONTENT_TYPES, JobFailure, JobOutput, Outcome

CLIENT_CLOSED = 499  # nginx's "client closed request": recorded in metrics and logs, sent to nobody
DISCONNECT_POLL_S = 0.1

router = APIRouter(prefix="/v1", tags=["hdr"], dependencies=[Depends(require_api_key)])

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 406, 413, 415, 422, 429, 503, 504)
}
IMAGE_TYPES: dict[str, dict[str, Any]] = {t: {} for t in dict.fromkeys(CONTENT_TYPES.values())}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": IMAGE_TYPES,
        "description": "the merged image (image/jpeg is an Ultra HDR gain-map JPEG when asked for)",
    },
    202: {"model": JobStatus, "description": "queued (mode=async); poll Location"},
    **ERRORS,
}


def image_response(outcome: Outcome, job_id: str) -> Response:
    """The image of a finished job with what the merge decided in headers, or its error."""
    if isinstance(outcome, JobFailure):
        raise JobFailedError(outcome)
    assert isinstance(outcome, JobOutput)
    headers = {
        "X-Job-ID": job_id,
        "X-Model": outcome.model,
        "X-Reference-Frame": str(outcome.reference),
        "X-Blind": "true" if outcome.blind else "false",
        **({"X-Blind-Confidence": outcome.blind_confidence} if outcome.blind_confidence else {}),
        "X-Inference-Seconds": f"{outcome.inference_seconds:.4f}",
        "X-Image-Width": str(outcome.width),
        "X-Image-Height": str(outcome.height),
    }
    return Response(content=outcome.image, media_type=outcome.content_type, headers=headers)


@router.post(
    "/hdr",
    summary="Merge a multi-exposure bracket into one HDR image",
    response_class=Response,
    responses=RESPONSES,
)
async def enhance(
    request: Request,
    settings: SettingsDep,
    backend: BackendDep,
    request_id: RequestIdDep,
    frames: Annotated[list[UploadFile], File(description="2..8 frames of one scene, in order")],
    exposures: Annotated[
        str | None, Form(description="seconds per frame, comma separated (e.g. 1/250,1/60,1/15)")
    ] = None,
    reference: Annotated[str | None, Form(description="0-based frame index or auto")] = None,
    model: Annotated[str | None, Form(description="model name; default from the server")] = None,
    ignore_exif: Annotated[
        bool, Form(description="do not read the frames' EXIF times: merge blind unless exposures are given")
    ] = False,
    mode: Annotated[Literal["sync", "async"], Query(description="async: 202 and a job to poll")] = "sync",
    output: Annotated[str | None, Query(alias="format", description=FORMAT_HELP)] = None,
    timeout: Annotated[float | None, Query(gt=0, description="seconds a synchronous call may wait")] = None,
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    output_format = choose_format(accept if mode == "sync" else _image_accept(accept), output)
    data = [await f.read() for f in frames]
    metrics.UPLOAD_BYTES.labels("rest").inc(sum(len(d) for d in data))
    params = EnhanceParams(
        frames=data,
        exposures=parse_exposures(exposures),
        reference=parse_reference(reference),
        model=model,
        output_format=output_format,
        request_id=request_id,
        ignore_exif=ignore_exif,
        keep_linear=mode == "async",
    )
    wait_s = min(timeout or settings.sync_timeout_s, settings.sync_timeout_s)
    job = validate(params, settings, deadline_s=settings.job_timeout_s if mode == "async" else wait_s)
    await backend.submit(job)
    metrics.QUEUE_DEPTH.set(await backend.depth())
    job_id = job.spec.job_id
    if mode == "async":
        view = await backend.view(job_id)
        body = JobStatus.from_view(view).model_dump(mode="json")
        return JSONResponse(body, status_code=202, headers={"Location": f"/v1/jobs/{job_id}"})
    waiting = asyncio.create_task(backend.wait(job_id, wait_s))
    watching = asyncio.create_task(_client_gone(request))
    await asyncio.wait([waiting, watching], return_when=asyncio.FIRST_COMPLETED)
    watching.cancel()
    if not waiting.done():  # the client left: stop waiting, which cancels the job if it still waits
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        return Response(status_code=CLIENT_CLOSED)
    return image_response(waiting.result(), job_id)


async def _client_gone(request: Request) -> None:
    """Return once the client has disconnected (polled: Starlette offers no disconnect event)."""
    while not await request.is_disconnected():
        await asyncio.sleep(DISCONNECT_POLL_S)


def _image_accept(accept: str | None) -> str | None:
    """An async POST answers JSON, so its Accept may name JSON: the image format comes from the rest."""
    if accept is None:
        return None
    parts = [p for p in accept.split(",") if "json" not in p.lower()]
    return ",".join(parts) if parts else None
