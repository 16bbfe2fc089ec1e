"""Heartbeats and orphan recovery: the jobs of a worker that died are queued again within seconds.

A worker beats every `heartbeat_s` (`P:workers`, valid for `HEARTBEAT_PERIODS` periods; gateways
read it for `/readyz`) and records itself on every job it runs (`P:held`). Each live worker also
scans `P:held` every `orphan_scan_s`: a job held by a worker whose heartbeat lapsed (SIGKILL, OOM,
node loss) is an orphan. The scanner takes it back with an atomic compare-and-set in Redis
(`JobStore.claim_orphan`, the lock: of several scanners exactly one wins), sends a fresh merge task
with the same job id and spec, then lets go of it. A job is re-queued at most `max_requeues` times;
the next loss fails it with `worker_lost`. Without this, Celery would redeliver the dead worker's
unacknowledged message only after the visibility timeout (900 s by default), past every deadline;
that late message, like any duplicate run, then finds the job finished and changes nothing.

A scanner only scans once its own heartbeats have succeeded for a whole heartbeat lifetime, so that
after a Redis outage (when every heartbeat lapsed) live workers have beaten again before anyone is
declared dead. The scanners live in the workers, not in the gateway: the workers are what a dead
worker's jobs need (without one nothing could run them anyway, and a worker that starts recovers
what its predecessors left), they already hold the Redis and Celery clients synchronously, and a
gateway may run in many replicas or embedded, where nothing is ever orphaned.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker import metrics
from worker.jobs import JobFailure, WorkerLostError
from worker.settings import WorkerSettings
from worker.store import JobStore

log = logging.getLogger(__name__)

HEARTBEAT_PERIODS = 3  # a worker counts as alive this many heartbeat periods after its last beat

SendFn = Callable[[str, dict[str, Any]], None]  # (job id, spec as a dict): queue a merge task


@dataclass
class ScanResult:
    """What one scan did: the job ids it queued again, and those it failed with worker_lost."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class Recovery:
    """One worker's heartbeat and orphan scanner (two daemon threads once started)."""

    def __init__(self, store: JobStore, name: str, settings: WorkerSettings, send: SendFn) -> None:
        self.store = store
        self.name = name
        self.settings = settings
        self.send = send
        self.valid_s = HEARTBEAT_PERIODS * settings.heartbeat_s
        self._healthy_since: float | None = None  # monotonic time of the first of unbroken beats

    def beat(self) -> bool:
        """Renew this worker's heartbeat; False (and readiness lapses) while Redis is unreachable."""
        try:
            self.store.heartbeat(self.name, self.valid_s)
        except Exception as exc:
            log.warning("heartbeat failed: %s", exc)
            self._healthy_since = None
            return False
        if self._healthy_since is None:
            self._healthy_since = time.monotonic()
        return True

    def may_scan(self) -> bool:
        """Only once this worker's own beats have succeeded for a heartbeat's whole lifetime."""
        since = self._healthy_since
        return since is not None and time.monotonic() - since >= self.valid_s

    def scan(self, now: float | None = None) -> ScanResult:
        """Queue again (or fail) every job held by a worker whose heartbeat lapsed before `now`."""
        now = time.time() if now is None else now
        result = ScanResult()
        held = self.store.held()
        alive = self.store.alive({w for w in held.values() if w != self.name}, now)
        for job_id, worker in held.items():
            if worker != self.name and worker not in alive:
                self._recover(job_id, worker, now, result)
        return result

    def _recover(self, job_id: str, lost: str, now: float, result: ScanResult) -> None:
        count = self.store.claim_orphan(job_id, lost, self.name, now)
        if count < 0:
            return  # finished, cancelled or expired, taken by another scanner, or `lost` beat again
        if count > self.settings.max_requeues:
            failure = JobFailure.from_exception(
                WorkerLostError(
                    f"the workers running this job were lost {count} times (last {lost}); it was not merged"
                )
            )
            if self.store.finish(job_id, failure):
                metrics.ORPHANS_FAILED.inc()
                metrics.JOBS.labels(failure.code).inc()
                result.failed.append(job_id)
                log.error("job %s failed: its worker %s was lost %d times", job_id, lost, count)
            return
        spec = self.store.spec(job_id)
        if spec is None:  # its record expired meanwhile
            self.store.hand_over(job_id, self.name)
            return
        try:
            self.send(job_id, spec.to_dict())
        except Exception as exc:  # the broker is down: give it back to the lost worker, retry later
            log.warning("could not queue orphaned job %s again: %s", job_id, exc)
            self.store.hand_over(job_id, self.name, lost)
            return
        self.store.hand_over(job_id, self.name)  # the broker has it now
        metrics.ORPHANS_REQUEUED.inc()
        result.requeued.append(job_id)
        log.warning(
            "job %s queued again: its worker %s is lost (requeue %d of at most %d)",
            job_id,
            lost,
            count,
            self.settings.max_requeues,
        )

    def start(self, stop: threading.Event) -> None:
        """Beat every `heartbeat_s` and scan every `orphan_scan_s` until `stop` is set."""
        threading.Thread(target=self._beat_loop, args=(stop,), name="emvnet-heartbeat", daemon=True).start()
        threading.Thread(target=self._scan_loop, args=(stop,), name="emvnet-orphans", daemon=True).start()

    def _beat_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.beat()
            stop.wait(self.settings.heartbeat_s)

    def _scan_loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.orphan_scan_s):
            if not self.may_scan():
                continue
            try:
                self.scan()
            except Exception as exc:  # Redis down: the heartbeat notices too; scan again later
                log.warning("orphan scan failed: %s", exc)
