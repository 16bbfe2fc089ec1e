"""A job whose worker is SIGKILLed mid-job finishes on another worker, exactly once, within
seconds, with the default visibility timeout (900 s): orphan recovery re-queues it as soon as the
dead worker's heartbeat lapses, long before Celery would redeliver its message."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest
from helpers.brackets import synthetic_pngs
from helpers.cluster import DoneCounter
from helpers.servers import celery_worker, redis_server, wait_until

from worker.celery_app import make_celery, send_merge
from worker.jobs import JobSpec
from worker.settings import WorkerSettings
from worker.store import JobStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Only the heartbeat and the scan are quick; the delivery limits are the shipped defaults.
FAST_DETECTION = {"EMVNET_HEARTBEAT_S": "0.5", "EMVNET_ORPHAN_SCAN_S": "0.5"}


def test_killed_worker_job_is_requeued_and_finishes_once(tmp_path: Path) -> None:
    prefix = f"loss{uuid.uuid4().hex[:6]}"
    with redis_server() as url:
        env = {
            "EMVNET_REDIS_URL": url,
            "EMVNET_KEY_PREFIX": prefix,
            "EMVNET_QUEUE_NAME": prefix,
            **FAST_DETECTION,
        }
        settings = WorkerSettings(redis_url=url, key_prefix=prefix, queue_name=prefix)
        assert settings.visibility_timeout_s == 900  # Celery alone would redeliver after 15 minutes
        store = JobStore.from_url(url, prefix, 300)
        done = DoneCounter(url, store.keys.done)
        spec = JobSpec(uuid.uuid4().hex, "auto", 3, 128, 96, exposures=(0.25, 1.0, 4.0))
        store.put(spec, tuple(synthetic_pngs()))
        # Each worker holds every job 3 s in its batcher (a long batching window), so the one that
        # takes it dies mid-job; the other runs beside it: its periodic scan, not its start, recovers.
        slow = {**env, "EMVNET_MAX_WAIT_MS": "3000", "EMVNET_MAX_BATCH_SIZE": "8"}
        with celery_worker(slow, tmp_path / "a.log") as a, celery_worker(slow, tmp_path / "b.log") as b:
            names = {f"emvnet@{socket.gethostname()}:{p.pid}" for p in (a, b)}
            wait_until(lambda: store.alive(names, time.time()) == names, 60, "both workers ready")
            app = make_celery(settings)
            send_merge(app, prefix, spec.job_id, spec.to_dict())
            wait_until(lambda: store.state(spec.job_id) == "running", 30, "a worker taking the job")
            (holder,) = store.held().values()
            victim, survivor = (a, b) if holder.endswith(f":{a.pid}") else (b, a)
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait(10)
            t0 = time.monotonic()
            assert store.state(spec.job_id) == "running"
            try:
                wait_until(lambda: store.state(spec.job_id) == "done", 40, "re-queued to the other worker")
            except TimeoutError:
                logs = [(tmp_path / f"{w}.log").read_text()[-2000:] for w in "ab"]
                raise AssertionError("\n".join(logs)) from None
            recovered_s = time.monotonic() - t0
            assert survivor.poll() is None
        time.sleep(0.3)  # let the completion message arrive
        done.close()
        assert recovered_s < 40
        assert done.counts == {spec.job_id: 1}
        assert store.client.hget(store.keys.job(spec.job_id), "requeues") == b"1"
        assert store.held() == {}
        app.close()
        store.client.close()


def test_queued_job_whose_message_vanished_is_sent_again_and_finishes_once(tmp_path: Path) -> None:
    """A job recorded as queued whose task message is nowhere in the broker (kombu's BRPOP popped it
    as Redis crashed, and the reply died with the connection) is sent again by a live worker's scan
    once the grace period has passed, and finishes exactly once."""
    prefix = f"lost{uuid.uuid4().hex[:6]}"
    with redis_server() as url:
        env = {
            "EMVNET_REDIS_URL": url,
            "EMVNET_KEY_PREFIX": prefix,
            "EMVNET_QUEUE_NAME": prefix,
            "EMVNET_QUEUED_GRACE_S": "1",
            **FAST_DETECTION,
        }
        store = JobStore.from_url(url, prefix, 300)
        done = DoneCounter(url, store.keys.done)
        spec = JobSpec(uuid.uuid4().hex, "auto", 3, 128, 96, exposures=(0.25, 1.0, 4.0))
        store.put(spec, tuple(synthetic_pngs()))  # queued, as the gateway records it; no message
        with celery_worker(env, tmp_path / "w.log"):
            try:
                wait_until(lambda: store.state(spec.job_id) == "done", 40, "the lost message sent again")
            except TimeoutError:
                raise AssertionError((tmp_path / "w.log").read_text()[-2000:]) from None
        time.sleep(0.3)  # let the completion message arrive
        done.close()
        assert done.counts == {spec.job_id: 1}
        assert store.client.hget(store.keys.job(spec.job_id), "requeues") == b"1"
        assert store.held() == {} and store.queued_before(time.time() + 60) == []
        assert "its task message was lost" in (tmp_path / "w.log").read_text()
        store.client.close()
