"""The contract of the gateway's job backends, the in-process batcher and Redis + Celery workers.

Both front ends talk to a `Backend` only, so REST and gRPC behave alike in either mode:
`submit` queues a validated job (or raises QueueFullError / UnavailableError: backpressure),
`wait` resolves to its outcome within a timeout (a synchronous caller: the result is then dropped,
as nobody will fetch it again), `view` reports its state for `GET /v1/jobs/{id}`, and `cancel`
tells the merging side that nobody waits any more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from worker.jobs import Job, JobSpec, JobState, Outcome


@dataclass(frozen=True)
class JobView:
    """A job as the status endpoint shows it; `outcome` once finished."""

    spec: JobSpec
    state: JobState
    outcome: Outcome | None = None


class Backend(Protocol):
    """The contract both modes implement."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def submit(self, job: Job) -> None: ...
    async def wait(self, job_id: str, timeout: float) -> Outcome: ...
    async def view(self, job_id: str, *, with_result: bool = False) -> JobView: ...
    async def cancel(self, job_id: str) -> None: ...
    async def readiness(self) -> dict[str, bool]: ...
    async def depth(self) -> int: ...
