"""The embedded backend: the worker's batcher and runner in the gateway's process."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from concurrent.futures import Future

from service.backends.contract import JobView
from service.errors import JobNotFoundError
from service.settings import Settings
from worker.batcher import DynamicBatcher
from worker.jobs import (
    DeadlineExceededError,
    Job,
    JobFailure,
    JobSpec,
    Outcome,
    UnavailableError,
)
from worker.runner import ModelRunner

log = logging.getLogger(__name__)

# Finished asynchronous jobs kept in memory for GET /v1/jobs (embedded mode), oldest dropped first.
MAX_KEPT = 1024


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the model failed to load; /readyz stays red", exc_info=task.exception())


class EmbeddedBackend:
    """The same batcher and runner as a worker, in the gateway's process."""

    def __init__(self, settings: Settings, runner: ModelRunner | None = None) -> None:
        self.settings = settings
        self.runner = runner or ModelRunner.from_settings(settings)
        self.batcher = DynamicBatcher(
            self.runner.run,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_wait_s,
            max_queue=settings.max_queue,
        )
        # Finished jobs are kept for `job_ttl_s` (async clients fetch them later), oldest first.
        self._jobs: OrderedDict[str, tuple[JobSpec, Future[Outcome]]] = OrderedDict()
        self._loading: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start loading (and warming) the model in the background; `/readyz` turns green after."""
        self.batcher.start()
        self._loading = asyncio.create_task(asyncio.to_thread(self.runner.load, warmup=self.settings.warmup))
        self._loading.add_done_callback(_log_failure)

    async def close(self) -> None:
        if self._loading is not None:
            await asyncio.gather(self._loading, return_exceptions=True)
        await asyncio.to_thread(self.batcher.stop)

    def _evict(self) -> None:
        """Forget jobs older than the TTL, and the oldest beyond MAX_KEPT (memory stays bounded)."""
        horizon = time.time() - self.settings.job_ttl_s
        while self._jobs:
            job_id, (spec, _) = next(iter(self._jobs.items()))
            if spec.submitted_at >= horizon and len(self._jobs) <= MAX_KEPT:
                break
            self._jobs.pop(job_id)

    async def submit(self, job: Job) -> None:
        if not self.runner.ready:
            raise UnavailableError("the model is still loading; retry shortly")
        self._evict()
        future = self.batcher.submit(job)  # QueueFullError past max_queue
        self._jobs[job.spec.job_id] = (job.spec, future)

    async def wait(self, job_id: str, timeout: float) -> Outcome:
        _, future = self._entry(job_id)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:  # wait_for cancelled the job too, if it had not started
            raise DeadlineExceededError(f"no result within {timeout:.1f} s") from None
        finally:
            self._jobs.pop(job_id, None)

    def _entry(self, job_id: str) -> tuple[JobSpec, Future[Outcome]]:
        self._evict()
        entry = self._jobs.get(job_id)
        if entry is None:
            raise JobNotFoundError(f"no job {job_id!r} (unknown, or its result expired)")
        return entry

    async def view(self, job_id: str, *, with_result: bool = False) -> JobView:
        spec, future = self._entry(job_id)
        if future.cancelled():
            return JobView(spec, "cancelled", JobFailure("cancelled", "the job was cancelled"))
        if future.done():
            outcome = future.result()
            return JobView(spec, "failed" if isinstance(outcome, JobFailure) else "done", outcome)
        return JobView(spec, "running" if future.running() else "queued")

    async def cancel(self, job_id: str) -> None:
        entry = self._jobs.get(job_id)
        if entry is not None:
            entry[1].cancel()  # no effect once its batch runs; the result is then simply unread

    async def readiness(self) -> dict[str, bool]:
        return {"model": self.runner.ready, "queue": self.batcher.depth < self.settings.max_queue}

    async def depth(self) -> int:
        return self.batcher.depth
