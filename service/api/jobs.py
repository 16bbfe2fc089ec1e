"""`GET /v1/jobs/{id}` (state) and `GET /v1/jobs/{id}/result` (the image) of asynchronous jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Response

from service.api.deps import BackendDep, require_api_key
from service.api.hdr import ERRORS, IMAGE_TYPES, image_response
from service.errors import JobNotFinishedError, NotAcceptableError
from service.negotiation import accept_quality, parse_accept
from service.schemas import JobStatus

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
    job_id: JobId, backend: BackendDep, accept: Annotated[str | None, Header()] = None
) -> Response:
    view = await backend.view(job_id, with_result=True)
    if view.outcome is None:
        raise JobNotFinishedError(f"job {job_id} is {view.state}; poll /v1/jobs/{job_id} until it is done")
    fmt = view.spec.output_format
    if accept and accept.strip() and accept_quality(fmt, parse_accept(accept)) <= 0:
        raise NotAcceptableError(f"job {job_id} produced {fmt}, which the Accept header {accept!r} excludes")
    return image_response(view.outcome, job_id)
