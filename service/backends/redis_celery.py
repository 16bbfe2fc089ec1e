"""Redis mode: the gateway stores frames and queues a JSON Celery task; workers do the merging.

Completion reaches waiting requests through one pub/sub subscription per gateway (`P:done` carries
job ids), with a slow poll of the job hash as a safety net for a missed message or a reconnect.
Backpressure reads the broker queue's length: past `max_queue` new jobs are refused with
QueueFullError, so a burst waits in clients' retry loops, not in Redis memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from service.backends.contract import JobView
from service.errors import JobNotFoundError
from service.settings import Settings
from worker import redis_layout as layout
from worker.celery_app import make_celery, send_merge
from worker.jobs import DeadlineExceededError, Job, JobOutput, Outcome, QueueFullError, UnavailableError

log = logging.getLogger(__name__)

POLL_S = 1.0  # safety-net poll while waiting; pub/sub normally answers within a millisecond
RELEASED_TTL_S = 300  # how long a delivered job's record stays (a redelivered task then skips it)


class RedisBackend:
    """Queues through Celery, stores blobs and reads results in Redis."""

    def __init__(self, settings: Settings) -> None:
        assert settings.redis_url is not None, "Redis mode needs a URL"
        self.settings = settings
        self.keys = layout.Keys(settings.key_prefix)
        self.redis = aioredis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
        self._cancel: AsyncScript = self.redis.register_script(layout.CANCEL)
        self.celery = make_celery(settings)
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen())

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self.redis.aclose()
        await asyncio.to_thread(self.celery.close)

    async def _listen(self) -> None:
        """Wake the waiters of finished jobs; reconnects after Redis errors."""
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.keys.done)
                    async for message in pubsub.listen():
                        data = message["data"]
                        job_id = data.decode() if isinstance(data, bytes) else str(data)
                        waiter = self._waiters.get(job_id)
                        if waiter is not None and not waiter.done():
                            waiter.set_result(None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis restarts: waiters fall back to polling meanwhile
                log.warning("result subscription lost (%s); reconnecting", exc)
                await asyncio.sleep(POLL_S)

    async def _run(self, commands: list[layout.Command]) -> list[Any]:
        """The layout's commands in one MULTI/EXEC; their replies."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return await pipe.execute()

    async def submit(self, job: Job) -> None:
        spec = job.spec
        try:
            if await self.redis.llen(self.settings.queue_name) >= self.settings.max_queue:
                raise QueueFullError("the queue is full; retry shortly")
            await self._run(layout.put(self.keys, spec, job.frames, self.settings.job_ttl_s, time.time()))
        except RedisError as exc:
            raise UnavailableError(f"the job store is unreachable ({type(exc).__name__})") from None
        try:
            # kombu's producer is synchronous; a thread keeps the event loop free while it sends.
            await asyncio.to_thread(
                send_merge, self.celery, self.settings.queue_name, spec.job_id, spec.to_dict()
            )
        except Exception as exc:
            # Redis is often down too (the broker is the same server): then the record is left to
            # its TTL, and the client still gets 503, not the cleanup's own error as a 500. (Such a
            # record may then be sent by the lost-message scan and run once, unseen: harmless.)
            with contextlib.suppress(RedisError):
                await self._run(layout.discard(self.keys, spec.job_id))
            raise UnavailableError(f"the queue is unreachable ({type(exc).__name__})") from None

    async def _fields(self, job_id: str, names: tuple[str, ...]) -> dict[bytes, bytes]:
        """The present fields among `names` of a job hash."""
        return layout.record(names, await self.redis.hmget(self.keys.job(job_id), names))

    async def _outcome(self, job_id: str) -> tuple[bool, Outcome | None]:
        """(exists, outcome-if-finished) from the job hash."""
        record = await self._fields(job_id, layout.WAIT_FIELDS)
        if layout.decode_state(record) is None:
            return False, None
        return True, layout.decode_outcome(record)

    async def wait(self, job_id: str, timeout: float) -> Outcome:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[job_id] = waiter
        end = time.monotonic() + timeout
        try:
            while True:
                exists, outcome = await self._outcome(job_id)  # also covers a finish before subscribing
                if not exists:
                    raise JobNotFoundError(f"job {job_id!r} expired while waiting")
                if outcome is not None:
                    await self._release(job_id)
                    return outcome
                left = end - time.monotonic()
                if left <= 0:
                    await self.cancel(job_id)
                    raise DeadlineExceededError(f"no result within {timeout:.1f} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(waiter), min(left, POLL_S))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.cancel(job_id))
            raise
        except RedisError as exc:
            raise UnavailableError(f"the job store is unreachable ({type(exc).__name__})") from None
        finally:
            self._waiters.pop(job_id, None)

    async def _release(self, job_id: str) -> None:
        """A synchronous caller has its image: drop it, keep the small record a while (redelivery)."""
        await self._run(layout.release(self.keys, job_id, RELEASED_TTL_S))

    async def view(self, job_id: str, *, with_result: bool = False) -> JobView:
        fields = layout.STATUS_FIELDS + (layout.RESULT_FIELDS if with_result else ())
        try:
            record = await self._fields(job_id, fields)
        except RedisError as exc:
            raise UnavailableError(f"the job store is unreachable ({type(exc).__name__})") from None
        spec, state = layout.decode_spec(record), layout.decode_state(record)
        if spec is None or state is None:
            raise JobNotFoundError(f"no job {job_id!r} (unknown, or its result expired)")
        outcome = layout.decode_outcome(record)
        if with_result and isinstance(outcome, JobOutput) and not layout.has_result(record):
            raise JobNotFoundError(f"the result of job {job_id} was already delivered synchronously")
        # Without `with_result` a finished output comes back with an empty image: status needs no bytes.
        return JobView(spec, state, outcome)

    async def cancel(self, job_id: str) -> None:
        """Mark an unfinished job cancelled so a worker skips it, and free its frames (atomically:
        a job that finished meanwhile stays finished)."""
        call = layout.cancel(self.keys, job_id)
        await self._cancel(keys=call.keys, args=call.args)

    async def readiness(self) -> dict[str, bool]:
        try:
            await self.redis.ping()
            workers = await self.redis.zcount(self.keys.workers, time.time(), "+inf")
        except RedisError:
            return {"queue": False, "model": False}
        return {"queue": True, "model": workers > 0}

    async def depth(self) -> int:
        try:
            return int(await self.redis.llen(self.settings.queue_name))
        except RedisError:
            return 0
