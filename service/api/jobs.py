"""`GET /v1/jobs/{id}` (state) and `GET /v1/jobs/{id}/result` (the image) of asynchronous jobs.

The result comes in the format asked for at submission; an asynchronous job also kept its linear
result (half-float OpenEXR), so an `Accept` (or `?format=`) that prefers another format gets that
one, encoded on demand from the linear result.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Response

from emvnet.io import encode_image, read_image
from service.api.deps import BackendDep, SettingsDep, require_api_key
from service.api.hdr import ERRORS, IMAGE_TYPES, image_response
from service.errors import JobFailedError, JobNotFinishedError, NotAcceptableError
from service.negotiation import FORMAT_HELP, accept_quality, choose_format, parse_accept
from service.schemas import JobStatus
from service.settings import Settings
from worker.jobs import JobFailure, JobOutput, OutputFormat

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Depends(require_api_key)])

JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="the id of a POST /v1/hdr?mode=async")]


@router.get("/{job_id}", summary="State of a job", responses={404: ERRORS[400]})
async def job_status(job_id: JobId, backend: BackendDep) -> JobStatus:
    return JobStatus.from_view(await backend.view(job_id))


@router.get(
    "/{job_id}/result",
    summary="The merged image of a finished job",
    response_class=Response,
    responses={**ERRORS, 200: {"content": IMAGE_TYPES}, 404: ERRORS[400], 409: ERRORS[400]},
)
async def job_result(
    job_id: JobId,
    backend: BackendDep,
    settings: SettingsDep,
    accept: Annotated[str | None, Header()] = None,
    output: Annotated[str | None, Query(alias="format", description=FORMAT_HELP)] = None,
) -> Response:
    view = await backend.view(job_id, with_result=True)
    outcome = view.outcome
    if outcome is None:
        raise JobNotFinishedError(f"job {job_id} is {view.state}; poll /v1/jobs/{job_id} until it is done")
    if isinstance(outcome, JobFailure):
        raise JobFailedError(outcome)
    assert isinstance(outcome, JobOutput)
    stored = outcome.output_format
    if not output and not (accept and accept.strip()):
        return image_response(outcome, job_id)
    wanted = choose_format(accept, output)  # 406 when no format at all fits
    ranges = parse_accept(accept or "")
    if wanted == stored or (not output and accept_quality(stored, ranges) >= accept_quality(wanted, ranges)):
        return image_response(outcome, job_id)  # what was produced is (one of) the best fits
    if outcome.linear:
        image = await asyncio.to_thread(transcode, outcome.linear, wanted, settings)
        return image_response(dataclasses.replace(outcome, image=image, output_format=wanted), job_id)
    if not output and accept_quality(stored, ranges) > 0:
        return image_response(outcome, job_id)  # not the preferred format, but an acceptable one
    asked = f"format {output!r}" if output else f"the Accept header {accept!r}"
    raise NotAcceptableError(
        f"job {job_id} produced {stored} and kept no linear result to encode {wanted} from ({asked})"
    )


def transcode(linear: bytes, fmt: OutputFormat, settings: Settings) -> bytes:
    """A kept linear result (half-float OpenEXR) encoded as `fmt` (off the event loop: CPU work)."""
    hdr = read_image(linear, max_pixels=settings.max_pixels).data
    return encode_image(hdr, fmt, exr_precision=settings.exr_precision, jpeg_quality=settings.jpeg_quality)
