"""A job whose worker dies mid-job is redelivered (acks_late + visibility timeout) and finishes on
another worker, exactly once."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from helpers.brackets import synthetic_pngs
from helpers.servers import celery_worker, redis_server, wait_until

from worker.celery_app import MERGE_TASK, make_celery
from worker.jobs import JobSpec
from worker.settings import WorkerSettings
from worker.store import JobStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Short limits so that redelivery happens within seconds: kombu restores unacknowledged messages
# older than the visibility timeout (checked every 10 s by a live consumer).
LIMITS = {"EMVNET_TASK_TIME_LIMIT_S": "4", "EMVNET_VISIBILITY_TIMEOUT_S": "5", "EMVNET_JOB_TIMEOUT_S": "4"}


def test_killed_worker_job_is_redelivered(tmp_path: Path) -> None:
    prefix = f"loss{uuid.uuid4().hex[:6]}"
    with redis_server() as url:
        env = {"EMVNET_REDIS_URL": url, "EMVNET_KEY_PREFIX": prefix, "EMVNET_QUEUE_NAME": prefix, **LIMITS}
        settings = WorkerSettings(
            redis_url=url,
            key_prefix=prefix,
            queue_name=prefix,
            task_time_limit_s=4,
            visibility_timeout_s=5,
            job_timeout_s=4,
        )
        store = JobStore.from_url(url, prefix, 300)
        spec = JobSpec(uuid.uuid4().hex, "auto", 3, 128, 96, exposures=(0.25, 1.0, 4.0))
        store.put(spec, tuple(synthetic_pngs()))
        # Worker A holds every job 3 s in its batcher (a long batching window), so it dies mid-job.
        slow = {**env, "EMVNET_MAX_WAIT_MS": "3000", "EMVNET_MAX_BATCH_SIZE": "8"}
        with celery_worker(slow, tmp_path / "a.log") as a:
            app = make_celery(settings)
            app.send_task(MERGE_TASK, args=[spec.job_id, spec.to_dict()], queue=prefix)
            wait_until(lambda: store.state(spec.job_id) == "running", 60, "worker A taking the job")
            os.killpg(a.pid, signal.SIGKILL)
            a.wait(10)
        assert store.state(spec.job_id) == "running"
        with celery_worker(env, tmp_path / "b.log"):
            t0 = time.monotonic()
            try:
                wait_until(lambda: store.state(spec.job_id) == "done", 40, "redelivery to worker B")
            except TimeoutError:
                raise AssertionError((tmp_path / "b.log").read_text()[-3000:]) from None
            assert time.monotonic() - t0 < 40
        app.close()
        store.client.close()
