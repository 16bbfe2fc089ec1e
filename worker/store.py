"""Redis as the blob and result store: one hash per job, with a TTL.

Keys (`P` = settings.key_prefix):
  P:job:ID      hash: spec (JSON), state, frames (one blob), result (bytes), meta / error (JSON)
  P:done        pub/sub channel: a job id, published when that job finishes
  P:workers     sorted set: worker name -> epoch second until which it counts as ready
The Celery task message carries only the job id and the spec; the frames stay here. Finishing a job
is idempotent (a redelivered task sees the final state and returns), and drops the frames.
`JobStore` (sync) is the worker's view, `service.redis_backend` holds the gateway's async one.
"""

from __future__ import annotations

import json
import struct
import time

import redis
from redis.typing import EncodableT, FieldT

from worker.jobs import FINISHED, JobFailure, JobOutput, JobSpec, JobState, Outcome

_BLOB_MAGIC = b"EMVF"


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

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"


def outcome_fields(outcome: Outcome) -> dict[FieldT, EncodableT]:
    """Hash fields that record a finished job (frames are deleted separately)."""
    if isinstance(outcome, JobOutput):
        return {"state": "done", "result": outcome.image, "meta": json.dumps(outcome.meta())}
    return {"state": "failed", "error": json.dumps({"code": outcome.code, "message": outcome.message})}


def decode_outcome(fields: dict[bytes, bytes]) -> Outcome | None:
    """The outcome recorded in a job hash, or None while it is unfinished (or was cancelled)."""
    state = fields.get(b"state", b"").decode()
    if state == "done":
        return JobOutput.from_meta(json.loads(fields[b"meta"]), fields.get(b"result", b""))
    if state == "failed":
        err = json.loads(fields[b"error"])
        return JobFailure(err["code"], err["message"])
    if state == "cancelled":
        return JobFailure("cancelled", "the job was cancelled")
    return None


class JobStore:
    """The worker's synchronous access to jobs."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: int) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.ttl_s = ttl_s

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
        pipe = self.client.pipeline()
        pipe.hset(key, mapping=fields)
        pipe.expire(key, self.ttl_s)
        pipe.execute()

    def state(self, job_id: str) -> JobState | None:
        value = self.client.hget(self.keys.job(job_id), "state")
        return value.decode() if isinstance(value, bytes) else None  # type: ignore[return-value]

    def frames(self, job_id: str) -> tuple[bytes, ...] | None:
        blob = self.client.hget(self.keys.job(job_id), "frames")
        return unpack_frames(blob) if isinstance(blob, bytes) else None

    def mark_running(self, job_id: str) -> None:
        self.client.hset(self.keys.job(job_id), "state", "running")

    def finish(self, job_id: str, outcome: Outcome) -> None:
        """Record the outcome unless the job already finished, drop the frames, tell the gateways."""
        key = self.keys.job(job_id)
        if self.state(job_id) in FINISHED:
            return
        pipe = self.client.pipeline()
        pipe.hset(key, mapping=outcome_fields(outcome))
        pipe.hdel(key, "frames")
        pipe.expire(key, self.ttl_s)
        pipe.publish(self.keys.done, job_id)
        pipe.execute()

    def heartbeat(self, name: str, valid_s: float) -> None:
        """Count this worker as ready for `valid_s` more seconds (and forget long-dead ones)."""
        now = time.time()
        pipe = self.client.pipeline()
        pipe.zadd(self.keys.workers, {name: now + valid_s})
        pipe.zremrangebyscore(self.keys.workers, "-inf", now - 3600)
        pipe.execute()

    def retire(self, name: str) -> None:
        self.client.zrem(self.keys.workers, name)
