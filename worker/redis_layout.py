"""The Redis job layout: key names, the fields of a job hash, the frames blob, and every write.

Keys (`P` = settings.key_prefix):
  P:job:ID      hash (`JobField`): spec (JSON), state, frames (one blob), result (bytes), linear
                (half-float OpenEXR, asynchronous jobs only), meta / error (JSON), worker (who holds
                it now), requeues (times it was taken back from a lost worker)
  P:done        pub/sub channel: a job id, published when that job finishes
  P:workers     sorted set: worker name -> epoch second until which it counts as ready (heartbeat)
  P:held        hash: job id -> the worker that holds it (running it, or re-queueing it)
  P:queued      sorted set: job id -> epoch second it was (last) queued; left when a worker starts
                it or it finishes (entries of jobs that expired are dropped by the scan)
The Celery task message carries only the job id and the spec; the frames stay here. Finishing a job
is atomic and idempotent (a Lua script: the first outcome wins, is published once, and drops the
frames), so a redelivered or duplicated task changes nothing; so is cancelling one (a finished job
stays finished). `P:held` is what orphan recovery (`worker.recovery`) scans: a held job whose
worker's heartbeat lapsed is taken back with a compare-and-set (`claim_orphan`), so that of several
scanners exactly one re-queues it. `P:queued` is what the lost-message scan reads: a job queued for
longer than a grace period whose task message is in neither the broker's queue nor kombu's
`unacked` hash is taken back the same way (`claim_lost`).

This module is the only one that names a field or writes a job: multi-key writes are `Command`
lists that a client runs in one MULTI/EXEC, the rest are `ScriptCall`s. The clients stay thin:
`worker.store.JobStore` (synchronous, the worker's) and `service.backends.redis_celery` (the
gateway's, asyncio).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from redis.typing import EncodableT

from worker.jobs import JobFailure, JobOutput, JobSpec, JobState, Outcome

_BLOB_MAGIC = b"EMVF"
UNACKED_KEY = "unacked"  # kombu's Redis transport: delivery tag -> [message, exchange, routing key]

Command = tuple[EncodableT, ...]  # one Redis command and its arguments, e.g. ("ZREM", key, member)


class JobField:
    """The fields of a job hash (the scripts below spell the same names)."""

    SPEC = "spec"
    STATE = "state"
    FRAMES = "frames"
    RESULT = "result"
    LINEAR = "linear"
    META = "meta"
    ERROR = "error"
    WORKER = "worker"
    REQUEUES = "requeues"


# What a waiting synchronous caller reads (no linear copy: a synchronous job keeps none), and what
# the status endpoint reads (plus the result fields when it serves the image).
WAIT_FIELDS = (JobField.STATE, JobField.META, JobField.ERROR, JobField.RESULT)
STATUS_FIELDS = (JobField.STATE, JobField.SPEC, JobField.META, JobField.ERROR)
RESULT_FIELDS = (JobField.RESULT, JobField.LINEAR)


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


def outcome_fields(outcome: Outcome) -> dict[str, EncodableT]:
    """Hash fields that record a finished job (frames are deleted separately)."""
    if isinstance(outcome, JobOutput):
        fields: dict[str, EncodableT] = {
            JobField.STATE: "done",
            JobField.RESULT: outcome.image,
            JobField.META: json.dumps(outcome.meta()),
        }
        if outcome.linear:
            fields[JobField.LINEAR] = outcome.linear
        return fields
    error = json.dumps({"code": outcome.code, "message": outcome.message})
    return {JobField.STATE: "failed", JobField.ERROR: error}


def _pairs(fields: dict[str, EncodableT]) -> list[EncodableT]:
    """field, value, field, value ...: HSET's arguments."""
    return [item for pair in fields.items() for item in pair]


def record(names: Sequence[str], values: Sequence[object]) -> dict[bytes, bytes]:
    """The present fields of an HMGET of `names` (absent ones answer None), keyed as HGETALL's."""
    return {k.encode(): v for k, v in zip(names, values, strict=True) if isinstance(v, bytes)}


def decode_state(fields: dict[bytes, bytes]) -> JobState | None:
    state = fields.get(JobField.STATE.encode())
    return state.decode() if state is not None else None  # type: ignore[return-value]


def decode_spec(fields: dict[bytes, bytes]) -> JobSpec | None:
    raw = fields.get(JobField.SPEC.encode())
    return JobSpec.from_dict(json.loads(raw)) if raw is not None else None


def decode_outcome(fields: dict[bytes, bytes]) -> Outcome | None:
    """The outcome recorded in a job hash, or None while it is unfinished."""
    state = decode_state(fields)
    if state == "done":
        return JobOutput.from_meta(
            json.loads(fields[JobField.META.encode()]),
            fields.get(JobField.RESULT.encode(), b""),
            fields.get(JobField.LINEAR.encode(), b""),
        )
    if state == "failed":
        err = json.loads(fields[JobField.ERROR.encode()])
        return JobFailure(err["code"], err["message"])
    if state == "cancelled":
        return JobFailure("cancelled", "the job was cancelled")
    return None


def has_result(fields: dict[bytes, bytes]) -> bool:
    """Whether the image is still stored (a synchronous caller's delivery drops it)."""
    return JobField.RESULT.encode() in fields


# Writes run in one MULTI/EXEC each.


def put(keys: Keys, spec: JobSpec, frames: Sequence[bytes], ttl_s: int, now: float) -> list[Command]:
    """Store a new job, queued at `now` (epoch s): the hash and its P:queued entry exist together,
    which lets workers re-send a task message that the broker lost (`worker.recovery`)."""
    key = keys.job(spec.job_id)
    fields: dict[str, EncodableT] = {
        JobField.SPEC: json.dumps(spec.to_dict()),
        JobField.STATE: "queued",
        JobField.FRAMES: pack_frames(list(frames)),
    }
    return [("HSET", key, *_pairs(fields)), ("EXPIRE", key, ttl_s), ("ZADD", keys.queued, now, spec.job_id)]


def discard(keys: Keys, job_id: str) -> list[Command]:
    """Forget a job whose task message could not be sent."""
    return [("DEL", keys.job(job_id)), ("ZREM", keys.queued, job_id)]


def mark_running(keys: Keys, job_id: str, worker: str) -> list[Command]:
    """`worker` runs the job now: recorded on the job and in P:held, for orphan recovery (and no
    longer in P:queued: its message was delivered)."""
    return [
        ("HSET", keys.job(job_id), JobField.STATE, "running", JobField.WORKER, worker),
        ("HSET", keys.held, job_id, worker),
        ("ZREM", keys.queued, job_id),
    ]


def release(keys: Keys, job_id: str, ttl_s: int) -> list[Command]:
    """A synchronous caller has its image: drop it, keep the small record `ttl_s` more seconds (a
    redelivered task then finds the job finished)."""
    key = keys.job(job_id)
    return [("HDEL", key, JobField.RESULT, JobField.LINEAR), ("EXPIRE", key, ttl_s)]


# Scripts: atomic reads-and-writes.


@dataclass(frozen=True)
class ScriptCall:
    """One run of a Lua script of this module; every script answers an integer."""

    source: str
    keys: list[str]
    args: list[EncodableT]


# KEYS: job hash, P:held, P:done, P:queued. ARGV: job id, TTL, then field/value pairs of the outcome.
FINISH = """
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

# KEYS: job hash, P:queued. ARGV: job id. An unfinished job turns cancelled (a worker then skips it)
# and its frames go; 0 when the job is finished or gone.
CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'done' or state == 'failed' or state == 'cancelled' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'cancelled')
redis.call('HDEL', KEYS[1], 'frames')
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: job hash, P:held, P:workers, P:queued. ARGV: job id, the lost worker, the claimant, now
# (epoch s). Returns the job's requeue count after this claim, or -1 when it is not (or no longer)
# an orphan of that worker; a stale entry of P:held is dropped then.
CLAIM_ORPHAN = """
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
CLAIM_LOST = """
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
HAND_OVER = """
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

SCRIPTS = (FINISH, CANCEL, CLAIM_ORPHAN, CLAIM_LOST, HAND_OVER)


def finish(keys: Keys, job_id: str, outcome: Outcome, ttl_s: int) -> ScriptCall:
    """Record the outcome unless the job already finished, drop the frames, publish the id; 1 when
    this call recorded it."""
    args: list[EncodableT] = [job_id, ttl_s, *_pairs(outcome_fields(outcome))]
    return ScriptCall(FINISH, [keys.job(job_id), keys.held, keys.done, keys.queued], args)


def cancel(keys: Keys, job_id: str) -> ScriptCall:
    """Mark an unfinished job cancelled and free its frames; 1 when it was unfinished."""
    return ScriptCall(CANCEL, [keys.job(job_id), keys.queued], [job_id])


def claim_orphan(keys: Keys, job_id: str, lost: str, claimant: str, now: float) -> ScriptCall:
    """Take a job back from the lapsed worker `lost`: its requeue count, or -1."""
    return ScriptCall(
        CLAIM_ORPHAN, [keys.job(job_id), keys.held, keys.workers, keys.queued], [job_id, lost, claimant, now]
    )


def claim_lost(keys: Keys, job_id: str, claimant: str, cutoff: float, now: float) -> ScriptCall:
    """Take back a job queued at or before `cutoff` that nobody holds: its requeue count, or -1."""
    return ScriptCall(CLAIM_LOST, [keys.job(job_id), keys.held, keys.queued], [job_id, claimant, cutoff, now])


def hand_over(keys: Keys, job_id: str, holder: str, to: str) -> ScriptCall:
    """Pass a job held by `holder` to `to` ('' = nobody); 1 when `holder` held it."""
    return ScriptCall(HAND_OVER, [keys.job(job_id), keys.held], [job_id, holder, to])
