"""What travels between gateway, queue and worker: job parameters, outcomes and queue-level errors.

Everything here crosses Redis as JSON (never pickle): a `JobSpec` is the task message's payload,
frames travel separately as one blob, and an outcome is either a `JobOutput` (the encoded image and
what the merge decided) or a `JobFailure` carrying a stable error code that the gateway's one table
(`service/errors.py`) maps to an HTTP status and a gRPC code.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from emvnet.errors import EmvnetError
from emvnet.io import OutputFormat

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"done", "failed", "cancelled"})

# An Ultra HDR file is a JPEG to every client: its gain map rides inside (service/negotiation.py).
CONTENT_TYPES: dict[str, str] = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "uhdr": "image/jpeg",
    "avif": "image/avif",
    "tiff": "image/tiff",
    "hdr": "image/vnd.radiance",
    "exr": "image/x-exr",
}


class JobError(Exception):
    """A job that failed for a reason of the queue, not of its frames. `code` is stable."""

    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self.args[0])


class QueueFullError(JobError):
    """Too many jobs are waiting; the caller should retry later."""

    code = "queue_full"


class DeadlineExceededError(JobError):
    """The job's deadline passed before it finished."""

    code = "deadline_exceeded"


class CancelledError(JobError):
    """The client went away or cancelled; nobody waits for the result."""

    code = "cancelled"


class WorkerLostError(JobError):
    """The workers that took the job kept dying (SIGKILL, OOM, node loss) past `max_requeues`."""

    code = "worker_lost"


class UnavailableError(JobError):
    """The queue or the model is not reachable or not ready."""

    code = "unavailable"


@dataclass(frozen=True)
class JobSpec:
    """Parameters of one merge job: what a task message carries besides the job id."""

    job_id: str
    model: str
    frame_count: int
    width: int
    height: int
    output_format: OutputFormat = "png"
    exposures: tuple[float, ...] | None = None  # seconds, one per frame; None = EXIF or blind
    ignore_exif: bool = False  # the frames' EXIF times are not read: blind unless `exposures`
    reference: int | None = None  # None = automatic
    request_id: str = ""
    submitted_at: float = field(default_factory=time.time)  # epoch seconds (crosses processes)
    deadline: float = 0.0  # epoch seconds; 0 = none
    # Also keep the linear result (half-float OpenEXR), so that a later GET of an asynchronous job's
    # result can be encoded to any format; synchronous calls skip it (nobody fetches them again).
    keep_linear: bool = False

    @property
    def batch_key(self) -> tuple[str, int, int, int]:
        """Jobs batch together only when the model, frame count and size agree."""
        return (self.model, self.frame_count, self.width, self.height)

    def expired(self, now: float | None = None) -> bool:
        return self.deadline > 0 and (time.time() if now is None else now) >= self.deadline

    def remaining(self, now: float | None = None) -> float | None:
        """Seconds left before the deadline (never negative), or None without one."""
        if self.deadline <= 0:
            return None
        return max(0.0, self.deadline - (time.time() if now is None else now))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["exposures"] = list(self.exposures) if self.exposures is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        exposures = data.get("exposures")
        return cls(**{**data, "exposures": tuple(float(t) for t in exposures) if exposures else None})


@dataclass(frozen=True)
class Job:
    """A spec plus its encoded frames, in order."""

    spec: JobSpec
    frames: tuple[bytes, ...]


@dataclass(frozen=True)
class JobOutput:
    """A finished merge: the encoded image and what the merge decided."""

    image: bytes
    output_format: OutputFormat
    width: int
    height: int
    reference: int
    blind: bool
    model: str
    inference_seconds: float
    # Blind merges: how far the estimated exposure ratios can be trusted ("high" or "low",
    # `emvnet.merge.bracket.blind_confidence`); "" with known times.
    blind_confidence: str = ""
    linear: bytes = b""  # the linear result as half-float OpenEXR when the job kept it (keep_linear)

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.output_format]

    def meta(self) -> dict[str, Any]:
        """Everything but the image bytes, for JSON."""
        data = asdict(self)
        del data["image"], data["linear"]
        return data

    @classmethod
    def from_meta(cls, meta: dict[str, Any], image: bytes, linear: bytes = b"") -> JobOutput:
        return cls(image=image, linear=linear, **meta)


@dataclass(frozen=True)
class JobFailure:
    """A job that produced no image: a stable error code and a one-line message."""

    code: str
    message: str

    @classmethod
    def from_exception(cls, exc: BaseException) -> JobFailure:
        if isinstance(exc, EmvnetError | JobError):
            return cls(exc.code, exc.message)
        return cls("internal", f"internal error ({type(exc).__name__}); the job was not merged")


Outcome = JobOutput | JobFailure
