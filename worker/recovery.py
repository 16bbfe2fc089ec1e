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

The same scan covers a job that is `queued` but whose task message vanished: kombu's Redis transport
pops a message with `BRPOP` and only then copies it to its `unacked` hash, so a reply lost with the
connection (Redis crashed in between) leaves the message nowhere, and no visibility timeout brings
it back. Queued jobs are recorded in `P:queued` (by the gateway, and by recovery when it re-sends);
a job queued for longer than `queued_grace_s` whose id (the task id, in the message headers) is in
neither the broker's queue nor the `unacked` hash, on two scans in a row (the message of a job being
delivered is in neither for a moment), is taken back by the same kind of compare-and-set
(`JobStore.claim_lost`) and sent again, within the same `max_requeues` budget.

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
QUEUE_SCAN_LIMIT = 10_000  # longer broker queues are not searched for lost messages (none is judged)

SendFn = Callable[[str, dict[str, Any]], None]  # (job id, spec as a dict): queue a merge task


@dataclass
class ScanResult:
    """What one scan did: the job ids it queued again (of lost workers, then with lost messages),
    those it failed with worker_lost, and the stale P:queued entries (vanished jobs) it dropped."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


class Recovery:
    """One worker's heartbeat and orphan scanner (two daemon threads once started)."""

    def __init__(self, store: JobStore, name: str, settings: WorkerSettings, send: SendFn) -> None:
        self.store = store
        self.name = name
        self.settings = settings
        self.send = send
        self.valid_s = HEARTBEAT_PERIODS * settings.heartbeat_s
        self.grace_s = settings.queued_grace_s or self.valid_s
        self._healthy_since: float | None = None  # monotonic time of the first of unbroken beats
        self._missing: set[str] = set()  # queued jobs whose message the previous scan did not find

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
        """Queue again (or fail) every job held by a worker whose heartbeat lapsed before `now`, then
        every job queued before the grace period whose task message is gone."""
        now = time.time() if now is None else now
        result = ScanResult()
        held = self.store.held()
        alive = self.store.alive({w for w in held.values() if w != self.name}, now)
        for job_id, worker in held.items():
            if worker != self.name and worker not in alive:
                self._recover(job_id, worker, now, result)
        self._scan_queued(now, result)
        return result

    def _recover(self, job_id: str, lost: str, now: float, result: ScanResult) -> None:
        count = self.store.claim_orphan(job_id, lost, self.name, now)
        if count < 0:
            return  # finished, cancelled or expired, taken by another scanner, or `lost` beat again
        if self._requeue(job_id, count, f"its worker {lost} is lost", give_back=lost, result=result):
            metrics.ORPHANS_REQUEUED.inc()

    def _scan_queued(self, now: float, result: ScanResult) -> None:
        """Re-send the queued jobs whose task message is in neither the broker's queue nor its
        `unacked` hash, on this scan and the previous one; drop the entries of vanished jobs."""
        cutoff = now - self.grace_s
        candidates = self.store.queued_before(cutoff)
        result.dropped = self.store.drop_vanished(candidates)
        candidates = [j for j in candidates if j not in result.dropped]
        if not candidates:
            self._missing = set()
            return
        messages = self.store.broker_messages(self.settings.queue_name, QUEUE_SCAN_LIMIT)
        if messages is None:
            log.warning(
                "the broker queue holds over %d messages; not looking for lost ones", QUEUE_SCAN_LIMIT
            )
            return
        missing = {j for j in candidates if j.encode() not in messages}
        confirmed, self._missing = missing & self._missing, missing
        for job_id in candidates:  # oldest first
            if job_id not in confirmed:
                continue
            count = self.store.claim_lost(job_id, self.name, cutoff, now)
            if count < 0:
                continue  # started, finished or expired meanwhile, or taken by another scanner
            if self._requeue(job_id, count, "its task message was lost", give_back="", result=result):
                metrics.LOST_TASKS_REQUEUED.inc()

    def _requeue(self, job_id: str, count: int, why: str, *, give_back: str, result: ScanResult) -> bool:
        """Send a job this scanner claimed (its `count`th time) again, or fail it past
        `max_requeues`; on a failed send hand it to `give_back` (retried by a later scan). Whether
        it was sent."""
        if count > self.settings.max_requeues:
            failure = JobFailure.from_exception(
                WorkerLostError(f"the job was lost {count} times (last: {why}); it was not merged")
            )
            if self.store.finish(job_id, failure):
                metrics.ORPHANS_FAILED.inc()
                metrics.JOBS.labels(failure.code).inc()
                result.failed.append(job_id)
                log.error("job %s failed: lost %d times (last: %s)", job_id, count, why)
            return False
        spec = self.store.spec(job_id)
        if spec is None:  # its record expired meanwhile
            self.store.hand_over(job_id, self.name)
            return False
        try:
            self.send(job_id, spec.to_dict())
        except Exception as exc:  # the broker is down: retry later
            log.warning("could not queue job %s again: %s", job_id, exc)
            self.store.hand_over(job_id, self.name, give_back)
            return False
        self.store.hand_over(job_id, self.name)  # the broker has it now
        result.requeued.append(job_id)
        limit = self.settings.max_requeues
        log.warning("job %s queued again: %s (requeue %d of at most %d)", job_id, why, count, limit)
        return True

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
