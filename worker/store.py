"""Redis as the blob and result store: one hash per job, with a TTL.

Keys (`P` = settings.key_prefix):
  P:job:ID      hash: spec (JSON), state, frames (one blob), result (bytes), linear (half-float
                OpenEXR, asynchronous jobs only), meta / error (JSON),
                worker (who holds it now), requeues (times it was taken back from a lost worker)
  P:done        pub/sub channel: a job id, published when that job finishes
  P:workers     sorted set: worker name -> epoch second until which it counts as ready (heartbeat)
  P:held        hash: job id -> the worker that holds it (running it, or re-queueing it)
  P:queued      sorted set: job id -> epoch second it was (last) queued; left when a worker starts
                it or it finishes (entries of jobs that expired are dropped by the scan)
The Celery task message carries only the job id and the spec; the frames stay here. Finishing a job
is atomic and idempotent (a Lua script: the first outcome wins, is published once, and drops the
frames), so a redelivered or duplicated task changes nothing. `P:held` is what orphan recovery
(`worker.recovery`) scans: a held job whose worker's heartbeat lapsed is taken back with a
compare-and-set (`claim_orphan`), so that of several scanners exactly one re-queues it. `P:queued`
is what the lost-message scan reads: a job queued for longer than a grace period whose task message
is in neither the broker's queue nor kombu's `unacked` hash (`broker_messages`) is taken back the
same way (`claim_lost`).
`JobStore` (sync) is the worker's view, `service.backends.redis_celery` holds the gateway's async one.
"""

from __future__ import annotations

import json
import struct
import time

import redis
from redis.typing import EncodableT, FieldT

from worker.jobs import JobFailure, JobOutput, JobSpec, JobState, Outcome

_BLOB_MAGIC = b"EMVF"
UNACKED_KEY = "unacked"  # kombu's Redis transport: delivery tag -> [message, exchange, routing key]


def pack_frames(frames: tuple[bytes, ...] | list[bytes]) -> bytes:
    """Frames as one blob: magic, count, lengths, then the bytes in order."""
    head = _BLOB_MAGIC + struct.pack(f"<I{len(frames)}Q", len(frames), *(len(f) for f in frames))
    return head + b"".join(frames)


def unpack_frames(blob: bytes) -> tuple[bytes, ...]:
    assert blob[:4] == _BLOB_MAGIC, "not a frame blob"
    (count,) = struct.unpack_from("<I", blob, 4)
    sizes = struct.unpack_from(f"<{count}Q", blob, 8)
    out, pos = [], 8 + 8 * count
    for size in sizes:
        out.append(blob[pos : pos + size])
        pos += size
    return tuple(out)


class Keys:
    """Key names under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.done = f"{prefix}:done"
        self.workers = f"{prefix}:workers"
        self.held = f"{prefix}:held"
        self.queued = f"{prefix}:queued"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"


def outcome_fields(outcome: Outcome) -> dict[FieldT, EncodableT]:
    """Hash fields that record a finished job (frames are deleted separately)."""
    if isinstance(outcome, JobOutput):
        fields: dict[FieldT, EncodableT] = {
            "state": "done",
            "result": outcome.image,
            "meta": json.dumps(outcome.meta()),
        }
        if outcome.linear:
            fields["linear"] = outcome.linear
        return fields
    return {"state": "failed", "error": json.dumps({"code": outcome.code, "message": outcome.message})}


def decode_outcome(fields: dict[bytes, bytes]) -> Outcome | None:
    """The outcome recorded in a job hash, or None while it is unfinished (or was cancelled)."""
    state = fields.get(b"state", b"").decode()
    if state == "done":
        return JobOutput.from_meta(
            json.loads(fields[b"meta"]), fields.get(b"result", b""), fields.get(b"linear", b"")
        )
    if state == "failed":
        err = json.loads(fields[b"error"])
        return JobFailure(err["code"], err["message"])
    if state == "cancelled":
        return JobFailure("cancelled", "the job was cancelled")
    return None


# KEYS: job hash, P:held, P:done, P:queued. ARGV: job id, TTL, then field/value pairs of the outcome.
_FINISH = """
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'done' or state == 'failed' or state == 'cancelled' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('HDEL', KEYS[1], 'frames', 'worker')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', KEYS[3], ARGV[1])
return 1
"""

# KEYS: job hash, P:held, P:workers, P:queued. ARGV: job id, the lost worker, the claimant, now
# (epoch s). Returns the job's requeue count after this claim, or -1 when it is not (or no longer)
# an orphan of that worker; a stale entry of P:held is dropped then.
_CLAIM_ORPHAN = """
local score = redis.call('ZSCORE', KEYS[3], ARGV[2])
if score and tonumber(score) >= tonumber(ARGV[4]) then return -1 end
local state = redis.call('HGET', KEYS[1], 'state')
if redis.call('HGET', KEYS[1], 'worker') ~= ARGV[2] or (state ~= 'running' and state ~= 'queued') then
  if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[2], ARGV[1]) end
  return -1
end
redis.call('HSET', KEYS[1], 'state', 'queued', 'worker', ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'requeues', 1)
"""

# KEYS: job hash, P:held, P:queued. ARGV: job id, the claimant, the cutoff (queued at or before it:
# past the grace period), now (epoch s). Returns the job's requeue count after this claim, or -1
# when it is not (or no longer) a queued job of nobody's queued before the cutoff: a second scanner
# finds the score moved to `now` by the first. The P:queued entry of a job that expired, finished
# or started is dropped then.
_CLAIM_LOST = """
local score = redis.call('ZSCORE', KEYS[3], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[3]) then return -1 end
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return -1
end
if redis.call('HEXISTS', KEYS[1], 'worker') == 1 then return -1 end
redis.call('HSET', KEYS[1], 'worker', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'requeues', 1)
"""

# KEYS: job hash, P:held. ARGV: job id, the holder, the next holder ('' = nobody: the broker has it).
_HAND_OVER = """
if redis.call('HGET', KEYS[1], 'worker') ~= ARGV[2] then return 0 end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], 'worker')
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[1], 'worker', ARGV[3])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
end
return 1
"""


class JobStore:
    """The worker's synchronous access to jobs."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: int) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.ttl_s = ttl_s
        self._finish = client.register_script(_FINISH)
        self._claim_orphan = client.register_script(_CLAIM_ORPHAN)
        self._claim_lost = client.register_script(_CLAIM_LOST)
        self._hand_over = client.register_script(_HAND_OVER)

    @classmethod
    def from_url(cls, url: str, prefix: str, ttl_s: int) -> JobStore:
        return cls(redis.Redis.from_url(url, socket_timeout=30, health_check_interval=30), prefix, ttl_s)

    def put(self, spec: JobSpec, frames: tuple[bytes, ...]) -> None:
        """Store a new job (the gateway's step; here for tools and tests)."""
        key = self.keys.job(spec.job_id)
        fields: dict[FieldT, EncodableT] = {
            "spec": json.dumps(spec.to_dict()),
            "state": "queued",
            "frames": pack_frames(frames),
        }
        pipe = self.client.pipeline()  # MULTI/EXEC: the job and its P:queued entry together
        pipe.hset(key, mapping=fields)
        pipe.expire(key, self.ttl_s)
        pipe.zadd(self.keys.queued, {spec.job_id: time.time()})
        pipe.execute()

    def state(self, job_id: str) -> JobState | None:
        value = self.client.hget(self.keys.job(job_id), "state")
        return value.decode() if isinstance(value, bytes) else None  # type: ignore[return-value]

    def frames(self, job_id: str) -> tuple[bytes, ...] | None:
        blob = self.client.hget(self.keys.job(job_id), "frames")
        return unpack_frames(blob) if isinstance(blob, bytes) else None

    def spec(self, job_id: str) -> JobSpec | None:
        raw = self.client.hget(self.keys.job(job_id), "spec")
        return JobSpec.from_dict(json.loads(raw)) if isinstance(raw, bytes) else None

    def mark_running(self, job_id: str, worker: str) -> None:
        """`worker` runs the job now: recorded on the job and in P:held, for orphan recovery (and
        no longer in P:queued: its message was delivered)."""
        pipe = self.client.pipeline()
        pipe.hset(self.keys.job(job_id), mapping={"state": "running", "worker": worker})
        pipe.hset(self.keys.held, job_id, worker)
        pipe.zrem(self.keys.queued, job_id)
        pipe.execute()

    def finish(self, job_id: str, outcome: Outcome) -> bool:
        """Record the outcome unless the job already finished (atomically: the first outcome wins),
        drop the frames, tell the gateways. Whether this call recorded it."""
        args: list[EncodableT] = [job_id, self.ttl_s]
        for name, value in outcome_fields(outcome).items():
            args += [name, value]
        keys = [self.keys.job(job_id), self.keys.held, self.keys.done, self.keys.queued]
        return bool(self._finish(keys=keys, args=args))

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
        keys = [self.keys.job(job_id), self.keys.held, self.keys.workers, self.keys.queued]
        return int(self._claim_orphan(keys=keys, args=[job_id, lost, claimant, now]))

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
        keys = [self.keys.job(job_id), self.keys.held, self.keys.queued]
        return int(self._claim_lost(keys=keys, args=[job_id, claimant, cutoff, now]))

    def hand_over(self, job_id: str, holder: str, to: str = "") -> bool:
        """Pass a job held by `holder` to `to` ('' = nobody: it is in the broker's queue again)."""
        return bool(self._hand_over(keys=[self.keys.job(job_id), self.keys.held], args=[job_id, holder, to]))

    def heartbeat(self, name: str, valid_s: float) -> None:
        """Count this worker as ready for `valid_s` more seconds (and forget long-dead ones)."""
        now = time.time()
        pipe = self.client.pipeline()
        pipe.zadd(self.keys.workers, {name: now + valid_s})
        pipe.zremrangebyscore(self.keys.workers, "-inf", now - 3600)
        pipe.execute()

    def retire(self, name: str) -> None:
        self.client.zrem(self.keys.workers, name)
