"""The worker's synchronous client of the Redis job store (the layout: `worker.redis_layout`).

`JobStore` runs the layout's commands and scripts, and the scans of orphan recovery
(`worker.recovery`): who holds which job, whose heartbeat lapsed, which queued job's task message
is missing from the broker (`broker_messages`). The gateway's asyncio client is
`service.backends.redis_celery`.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from redis.commands.core import Script

from worker import redis_layout as layout
from worker.jobs import JobSpec, JobState, Outcome
from worker.redis_layout import UNACKED_KEY, JobField, Keys, unpack_frames


class JobStore:
    """The worker's synchronous access to jobs."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: int) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.ttl_s = ttl_s
        self._scripts: dict[str, Script] = {src: client.register_script(src) for src in layout.SCRIPTS}

    @classmethod
    def from_url(cls, url: str, prefix: str, ttl_s: int) -> JobStore:
        return cls(redis.Redis.from_url(url, socket_timeout=30, health_check_interval=30), prefix, ttl_s)

    def _run(self, commands: list[layout.Command]) -> list[Any]:
        """The layout's commands in one MULTI/EXEC; their replies."""
        pipe = self.client.pipeline()
        for command in commands:
            pipe.execute_command(*command)
        return pipe.execute()

    def _eval(self, call: layout.ScriptCall) -> int:
        return int(self._scripts[call.source](keys=call.keys, args=call.args))

    def _field(self, job_id: str, name: str) -> dict[bytes, bytes]:
        return layout.record([name], [self.client.hget(self.keys.job(job_id), name)])

    def put(self, spec: JobSpec, frames: tuple[bytes, ...]) -> None:
        """Store a new job (the gateway's step; here for tools and tests)."""
        self._run(layout.put(self.keys, spec, frames, self.ttl_s, time.time()))

    def state(self, job_id: str) -> JobState | None:
        return layout.decode_state(self._field(job_id, JobField.STATE))

    def frames(self, job_id: str) -> tuple[bytes, ...] | None:
        blob = self._field(job_id, JobField.FRAMES).get(JobField.FRAMES.encode())
        return unpack_frames(blob) if blob is not None else None

    def spec(self, job_id: str) -> JobSpec | None:
        return layout.decode_spec(self._field(job_id, JobField.SPEC))

    def mark_running(self, job_id: str, worker: str) -> None:
        """`worker` runs the job now (recorded for orphan recovery)."""
        self._run(layout.mark_running(self.keys, job_id, worker))

    def finish(self, job_id: str, outcome: Outcome) -> bool:
        """Record the outcome unless the job already finished (atomically: the first outcome wins),
        drop the frames, tell the gateways. Whether this call recorded it."""
        return bool(self._eval(layout.finish(self.keys, job_id, outcome, self.ttl_s)))

    def held(self) -> dict[str, str]:
        """Jobs held by a worker (running, or being re-queued): job id -> worker name."""
        entries: dict[bytes, bytes] = self.client.hgetall(self.keys.held)  # type: ignore[assignment]
        return {k.decode(): v.decode() for k, v in entries.items()}

    def alive(self, names: set[str], now: float) -> set[str]:
        """Those of `names` whose heartbeat has not lapsed at `now` (epoch seconds)."""
        ordered = sorted(names)
        if not ordered:
            return set()
        scores = self.client.zmscore(self.keys.workers, ordered)
        return {n for n, score in zip(ordered, scores, strict=True) if score is not None and score >= now}

    def claim_orphan(self, job_id: str, lost: str, claimant: str, now: float) -> int:
        """Take a job back from the lapsed worker `lost` (state queued, held by `claimant`); its
        requeue count, or -1 if it is no orphan of `lost` (finished, taken, or `lost` beat again)."""
        return self._eval(layout.claim_orphan(self.keys, job_id, lost, claimant, now))

    def queued_before(self, cutoff: float) -> list[str]:
        """Jobs in P:queued that were (last) queued at or before `cutoff` (epoch seconds), oldest first."""
        ids: list[bytes] = self.client.zrangebyscore(self.keys.queued, "-inf", cutoff)  # type: ignore[assignment]
        return [i.decode() for i in ids]

    def drop_vanished(self, job_ids: list[str]) -> list[str]:
        """Drop the P:queued entries of those of `job_ids` whose job hash is gone (expired or
        deleted: a job id never comes back, so no compare-and-set is needed); the ids dropped."""
        if not job_ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.exists(self.keys.job(job_id))
        gone = [j for j, exists in zip(job_ids, pipe.execute(), strict=True) if not exists]
        if gone:
            self.client.zrem(self.keys.queued, *gone)
        return gone

    def broker_messages(self, queue: str, limit: int) -> bytes | None:
        """Every task message waiting in the broker list `queue` or delivered and unacknowledged
        (kombu's `unacked` hash), as one blob to look job ids up in; one consistent snapshot (MULTI).
        None when more than `limit` messages wait: the caller cannot tell what is missing then."""
        pipe = self.client.pipeline()
        pipe.lrange(queue, 0, limit)
        pipe.hvals(UNACKED_KEY)
        waiting, unacked = pipe.execute()
        if len(waiting) > limit:
            return None
        return b"\n".join([*waiting, *unacked])

    def claim_lost(self, job_id: str, claimant: str, cutoff: float, now: float) -> int:
        """Take back a job queued at or before `cutoff` that nobody holds (its task message was
        lost; state stays queued, held by `claimant`): its requeue count, or -1 if it is no such job
        (started, finished, expired: its P:queued entry is dropped; or claimed by another scanner)."""
        return self._eval(layout.claim_lost(self.keys, job_id, claimant, cutoff, now))

    def hand_over(self, job_id: str, holder: str, to: str = "") -> bool:
        """Pass a job held by `holder` to `to` ('' = nobody: it is in the broker's queue again)."""
        return bool(self._eval(layout.hand_over(self.keys, job_id, holder, to)))

    def heartbeat(self, name: str, valid_s: float) -> None:
        """Count this worker as ready for `valid_s` more seconds (and forget long-dead ones)."""
        now = time.time()
        pipe = self.client.pipeline()
        pipe.zadd(self.keys.workers, {name: now + valid_s})
        pipe.zremrangebyscore(self.keys.workers, "-inf", now - 3600)
        pipe.execute()

    def retire(self, name: str) -> None:
        self.client.zrem(self.keys.workers, name)
