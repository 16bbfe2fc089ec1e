"""The Celery application: Redis broker, JSON only, late acknowledgement, and the merge task.

`make_celery(settings)` builds an app (no module-level app, so tests and the gateway configure
their own). The gateway only sends `MERGE_TASK` by name; `register_tasks` binds the task to a
worker's store and batcher.

Delivery: acks_late + reject_on_worker_lost put the message back when a worker dies mid-job, and
the Redis visibility timeout (longer than the task time limit, checked by the settings) restores
messages of workers that vanished, but only after that timeout (900 s by default, past any job's
deadline). So each job also records its worker, and live workers queue the jobs of a worker whose
heartbeat lapsed again within seconds (`worker.recovery`). Results are written once
(`JobStore.finish`), so a redelivered or re-queued job that already finished returns at once. A
task whose Redis goes away (a crash and restart) retries its store calls rather than fail, so the
job in flight is still finished once Redis is back.
The threads pool never forks, so it is CUDA-safe. Celery's time limits need the prefork pool;
here the task enforces its own (the job deadline, capped at `task_time_limit_s`) while waiting on
the batcher.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from celery import Celery

from worker.batcher import DynamicBatcher
from worker.jobs import FINISHED, DeadlineExceededError, Job, JobFailure, JobSpec
from worker.logs import REQUEST_ID
from worker.settings import WorkerSettings
from worker.store import JobStore

log = logging.getLogger(__name__)

MERGE_TASK = "emvnet.merge"
STORE_RETRY_S = 0.5  # pause between tries while the job store (Redis) is unreachable

T = TypeVar("T")


def make_celery(settings: WorkerSettings) -> Celery:
    """A Celery app on `settings.redis_url` that accepts JSON only."""
    assert settings.redis_url is not None, "a Celery app needs a Redis URL"
    app = Celery("emvnet", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],  # never pickle: messages come from the network
        result_serializer="json",
        task_ignore_result=True,  # results live in the job store, not in Celery's backend
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        task_default_queue=settings.queue_name,
        task_routes={MERGE_TASK: {"queue": settings.queue_name}},
        task_time_limit=settings.task_time_limit_s,
        task_soft_time_limit=max(1.0, settings.task_time_limit_s - 5),
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            # Sweep for messages of dead workers a few times per visibility timeout (kombu's default
            # sweep is every 100 s), so a lost job is redelivered soon after its timeout.
            "unacked_restore_interval": int(max(1, min(30, settings.visibility_timeout_s / 5))),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_prefetch_multiplier=1,  # a thread holds one message; the rest stay for other workers
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_enable_remote_control=False,
        task_send_sent_event=False,
    )
    return app


@dataclass
class WorkerContext:
    """What the merge task needs in a worker process."""

    store: JobStore
    batcher: DynamicBatcher
    settings: WorkerSettings
    name: str = "emvnet@local"  # this worker's heartbeat name: recorded on the jobs it runs


def _retrying(ctx: WorkerContext, started: float, call: Callable[[], T]) -> T:
    """`call()`, retried while Redis is unreachable (a crash and restart), so that a job in flight
    is neither dropped nor left running; for at most the task time limit since `started`."""
    while True:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() - started > ctx.settings.task_time_limit_s:
                raise
            log.warning("the job store is unreachable (%s); retrying", exc)
            time.sleep(STORE_RETRY_S)


def process(ctx: WorkerContext, job_id: str, params: dict[str, Any]) -> str:
    """Run one queued job to its final state; returns that state. Safe to call twice."""
    started = time.monotonic()
    store = ctx.store
    state = _retrying(ctx, started, lambda: store.state(job_id))
    if state is None:
        log.warning("job %s expired before a worker took it", job_id)
        return "expired"
    if state in FINISHED:
        return state
    spec = JobSpec.from_dict(params)
    REQUEST_ID.set(spec.request_id)
    frames = _retrying(ctx, started, lambda: store.frames(job_id))
    if frames is None:
        return "expired"
    if spec.expired():
        late = JobFailure.from_exception(DeadlineExceededError("deadline passed in the queue"))
        _retrying(ctx, started, lambda: store.finish(job_id, late))
        return "failed"
    _retrying(ctx, started, lambda: store.mark_running(job_id, ctx.name))
    future = ctx.batcher.submit(Job(spec, frames))
    remaining = spec.remaining()
    limit = (
        ctx.settings.task_time_limit_s
        if remaining is None
        else min(remaining, ctx.settings.task_time_limit_s)
    )
    t0 = time.monotonic()
    try:
        outcome = future.result(timeout=limit + 0.5)  # the batcher answers expired jobs itself
    except FutureTimeout:
        future.cancel()
        outcome = JobFailure.from_exception(
            DeadlineExceededError(f"the job did not finish within {time.monotonic() - t0:.1f} s")
        )
    _retrying(ctx, started, lambda: store.finish(job_id, outcome))
    return "done" if not isinstance(outcome, JobFailure) else "failed"


def send_merge(app: Celery, queue: str, job_id: str, params: dict[str, Any]) -> None:
    """Queue the merge task of a stored job (the gateway's step, and orphan recovery's). The task id
    is the job id, so that it stands verbatim in the message's (JSON) headers, where the lost-message
    scan (`worker.recovery`) looks for it; the body is base64."""
    app.send_task(MERGE_TASK, args=[job_id, params], queue=queue, task_id=job_id)


def register_tasks(app: Celery, ctx: WorkerContext) -> None:
    """Bind the merge task of `app` to this process's store and batcher."""

    @app.task(name=MERGE_TASK, ignore_result=True)
    def merge(job_id: str, params: dict[str, Any]) -> str:
        return process(ctx, job_id, params)
