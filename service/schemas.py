"""Response bodies of the REST API, named for their purpose (they document the OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from service.backends.contract import JobView
from worker.jobs import JobFailure, JobOutput, JobState, OutputFormat


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. invalid_bracket, queue_full")
    message: str = Field(description="one line saying what is wrong and what to do")
    request_id: str = ""


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer."""

    error: ErrorDetail


class JobError(BaseModel):
    code: str
    message: str


class ResultInfo(BaseModel):
    """What the merge decided (also sent as X-* headers of a synchronous answer)."""

    content_type: str
    width: int
    height: int
    reference: int = Field(description="0-based index of the reference frame used")
    blind: bool = Field(description="merged without exposure times")
    blind_confidence: Literal["high", "low"] | None = Field(
        default=None,
        description="blind merges: high when the estimated exposure ratios are well supported, "
        "low when they may be a stop or more off (give the times)",
    )
    model: str
    inference_seconds: float


class JobStatus(BaseModel):
    """`GET /v1/jobs/{id}` and the 202 answer of an asynchronous `POST /v1/hdr`."""

    job_id: str
    state: JobState
    model: str
    frame_count: int
    width: int
    height: int
    output_format: OutputFormat
    submitted_at: float = Field(description="epoch seconds")
    deadline: float = Field(description="epoch seconds; the job fails if not merged by then")
    status_url: str
    result_url: str | None = Field(default=None, description="set once the job is done")
    result: ResultInfo | None = None
    error: JobError | None = None

    @classmethod
    def from_view(cls, view: JobView) -> JobStatus:
        spec = view.spec
        base = f"/v1/jobs/{spec.job_id}"
        status = cls(
            job_id=spec.job_id,
            state=view.state,
            model=spec.model,
            frame_count=spec.frame_count,
            width=spec.width,
            height=spec.height,
            output_format=spec.output_format,
            submitted_at=spec.submitted_at,
            deadline=spec.deadline,
            status_url=base,
        )
        if isinstance(view.outcome, JobOutput):
            out = view.outcome
            status.result_url = f"{base}/result"
            status.result = ResultInfo(
                content_type=out.content_type,
                width=out.width,
                height=out.height,
                reference=out.reference,
                blind=out.blind,
                blind_confidence=out.blind_confidence or None,  # type: ignore[arg-type]
                model=out.model,
                inference_seconds=out.inference_seconds,
            )
        elif isinstance(view.outcome, JobFailure):
            status.error = JobError(code=view.outcome.code, message=view.outcome.message)
        return status


class Health(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    """`/readyz`: 200 when every check passes, 503 otherwise."""

    ready: bool
    mode: str = Field(description="embedded or redis")
    checks: dict[str, bool]
    queue_depth: int
