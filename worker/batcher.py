"""Dynamic batcher: groups compatible jobs and hands each group to the runner.

Two knobs: `max_batch_size`, and `max_wait_s`, how long the oldest waiting job may be held for
batch-mates. The oldest job picks the batch key (model, frame count, size), so no key starves; jobs
of other keys keep their place. Jobs whose deadline has passed are answered with
`DeadlineExceededError` instead of running, and jobs whose future was cancelled are skipped. The
queue is bounded: `submit` raises `QueueFullError` past `max_queue` waiting jobs (backpressure).

One thread executes batches, so the model is only ever called from one thread; the runner returns
one outcome per job, and an exception of the runner itself fails that batch's jobs only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from worker import metrics
from worker.jobs import DeadlineExceededError, Job, JobFailure, Outcome, QueueFullError

log = logging.getLogger(__name__)

RunFn = Callable[[Sequence[Job]], list[Outcome]]


@dataclass
class _Pending:
    job: Job
    future: Future[Outcome]
    enqueued: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    """Collects jobs from any thread and runs them in batches on its own thread."""

    def __init__(self, run: RunFn, *, max_batch_size: int, max_wait_s: float, max_queue: int) -> None:
        assert max_batch_size >= 1 and max_wait_s >= 0 and max_queue >= 1, "invalid batcher knobs"
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._pending: deque[_Pending] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def depth(self) -> int:
        """Jobs waiting (not yet in a running batch)."""
        return len(self._pending)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="emvnet-batcher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the waiting jobs, then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def submit(self, job: Job) -> Future[Outcome]:
        """Queue a job; its future resolves to a `JobOutput` or a `JobFailure` (never raises)."""
        future: Future[Outcome] = Future()
        with self._cond:
            if self._stopping:
                raise QueueFullError("the worker is shutting down; retry on another one")
            if len(self._pending) >= self.max_queue:
                raise QueueFullError(f"{len(self._pending)} jobs are waiting; retry shortly")
            self._pending.append(_Pending(job, future))
            metrics.QUEUE_DEPTH.set(len(self._pending))
            self._cond.notify_all()
        return future

    def _take_batch(self) -> list[_Pending] | None:
        """Block until a batch is due; None when stopping with nothing left."""
        with self._cond:
            while True:
                while not self._pending:
                    if self._stopping:
                        return None
                    self._cond.wait()
                key = self._pending[0].job.spec.batch_key
                mates = sum(1 for p in self._pending if p.job.spec.batch_key == key)
                waited = time.monotonic() - self._pending[0].enqueued
                if mates >= self.max_batch_size or waited >= self.max_wait_s or self._stopping:
                    break
                self._cond.wait(self.max_wait_s - waited)
            batch: list[_Pending] = []
            keep: deque[_Pending] = deque()
            for p in self._pending:
                if len(batch) < self.max_batch_size and p.job.spec.batch_key == key:
                    batch.append(p)
                else:
                    keep.append(p)
            self._pending = keep
            metrics.QUEUE_DEPTH.set(len(keep))
            return batch

    def _loop(self) -> None:
        while (batch := self._take_batch()) is not None:
            now = time.time()
            live: list[_Pending] = []
            for p in batch:
                if not p.future.set_running_or_notify_cancel():
                    continue  # the caller cancelled while the job waited
                if p.job.spec.expired(now):
                    metrics.JOBS.labels(DeadlineExceededError.code).inc()
                    p.future.set_result(
                        JobFailure.from_exception(
                            DeadlineExceededError("the job's deadline passed in the queue")
                        )
                    )
                    continue
                metrics.QUEUE_WAIT.observe(max(0.0, now - p.job.spec.submitted_at))
                live.append(p)
            if live:
                self._execute(live)

    def _execute(self, batch: list[_Pending]) -> None:
        metrics.BATCH_SIZE.observe(len(batch))
        metrics.INFLIGHT.inc(len(batch))
        try:
            outcomes = self._run([p.job for p in batch])
            assert len(outcomes) == len(batch), "the runner must return one outcome per job"
        except Exception as exc:  # a runner bug fails this batch, never the batcher thread
            log.exception("batch of %d failed in the runner", len(batch))
            outcomes = [JobFailure.from_exception(exc)] * len(batch)
        finally:
            metrics.INFLIGHT.dec(len(batch))
        for p, outcome in zip(batch, outcomes, strict=True):
            metrics.JOBS.labels(getattr(outcome, "code", "ok")).inc()
            p.future.set_result(outcome)
