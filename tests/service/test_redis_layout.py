"""The gateway's asyncio client and the worker's synchronous one share one Redis job layout: what
either writes, the other reads, and finishing and cancelling are atomic against each other."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from helpers.servers import make_settings, redis_server

from service.backends.redis_celery import RELEASED_TTL_S, RedisBackend
from worker.jobs import Job, JobFailure, JobOutput, JobSpec
from worker.redis_layout import JobField
from worker.store import JobStore

pytestmark = pytest.mark.integration

FRAMES = (b"frame-one", b"", b"frame-three")


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with redis_server() as address:
        yield address


@pytest.fixture
def prefix() -> str:
    return f"lay{uuid.uuid4().hex[:6]}"


@pytest.fixture
def store(url: str, prefix: str) -> Iterator[JobStore]:
    s = JobStore.from_url(url, prefix, 300)
    yield s
    s.client.close()


def backend(url: str, prefix: str) -> RedisBackend:
    return RedisBackend(make_settings(redis_url=url, key_prefix=prefix, queue_name=prefix))


def spec() -> JobSpec:
    return JobSpec(uuid.uuid4().hex, "auto", len(FRAMES), 8, 8, exposures=(0.5, 1.0, 2.0), request_id="r1")


def output() -> JobOutput:
    return JobOutput(b"img", "png", 8, 8, 0, False, "weighted", 0.1)


def test_a_job_put_by_the_worker_client_is_what_the_gateway_sees(
    url: str, prefix: str, store: JobStore
) -> None:
    """JobStore.put, then the gateway's view: queued with its spec; once finished, its outcome."""
    s = spec()
    store.put(s, FRAMES)
    assert (
        store.state(s.job_id) == "queued" and store.spec(s.job_id) == s and store.frames(s.job_id) == FRAMES
    )

    async def check() -> None:
        gw = backend(url, prefix)
        try:
            view = await gw.view(s.job_id)
            assert (view.spec, view.state, view.outcome) == (s, "queued", None)
            assert store.finish(s.job_id, output())
            view = await gw.view(s.job_id, with_result=True)
            assert (view.state, view.outcome) == ("done", output())
            assert await gw.wait(s.job_id, 1.0) == output()
        finally:
            await gw.close()

    asyncio.run(check())
    key = store.keys.job(s.job_id)
    assert store.client.hget(key, JobField.RESULT) is None and store.client.hget(key, JobField.FRAMES) is None
    assert 0 < store.client.ttl(key) <= RELEASED_TTL_S  # delivered: the small record stays a while


def test_the_gateway_writes_what_the_worker_client_reads(url: str, prefix: str, store: JobStore) -> None:
    """A job the gateway submits gives the worker its spec, frames, queued entry and task message."""
    s = spec()

    async def submit() -> None:
        gw = backend(url, prefix)
        try:
            await gw.submit(Job(s, FRAMES))
        finally:
            await gw.close()

    asyncio.run(submit())
    assert (
        store.state(s.job_id) == "queued" and store.spec(s.job_id) == s and store.frames(s.job_id) == FRAMES
    )
    assert store.queued_before(float("inf")) == [s.job_id]
    assert store.client.llen(prefix) == 1  # the Celery message, in the queue named like the prefix
    store.mark_running(s.job_id, "w1")
    assert store.state(s.job_id) == "running" and store.held() == {s.job_id: "w1"}
    assert store.queued_before(float("inf")) == []


@pytest.mark.parametrize("finished_first", [False, True])
def test_cancel_and_finish_are_atomic_against_each_other(
    url: str, prefix: str, store: JobStore, finished_first: bool
) -> None:
    """Whichever comes first wins: a cancelled job stays cancelled (the worker's finish is refused),
    a finished one stays finished (the gateway's cancel changes nothing)."""
    s = spec()
    store.put(s, FRAMES)
    store.mark_running(s.job_id, "w1")
    if finished_first:
        assert store.finish(s.job_id, output())

    async def cancel() -> None:
        gw = backend(url, prefix)
        try:
            await gw.cancel(s.job_id)
            await gw.cancel(uuid.uuid4().hex)  # an unknown job: nothing happens, nothing is created
        finally:
            await gw.close()

    asyncio.run(cancel())
    if finished_first:
        assert store.state(s.job_id) == "done"
    else:
        assert store.state(s.job_id) == "cancelled" and store.frames(s.job_id) is None
        assert not store.finish(s.job_id, JobFailure("internal", "too late"))
        assert store.state(s.job_id) == "cancelled"
    assert store.queued_before(float("inf")) == []
    assert len(list(store.client.scan_iter(f"{prefix}:job:*"))) == 1
