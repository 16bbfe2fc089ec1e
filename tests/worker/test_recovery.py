"""Orphan recovery against a real redis-server: jobs of a worker whose heartbeat lapsed are queued
again by exactly one scanner, at most `max_requeues` times, and every job is finished exactly once."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.servers import redis_server

from worker import metrics
from worker.jobs import JobFailure, JobOutput, JobSpec
from worker.recovery import HEARTBEAT_PERIODS, Recovery, ScanResult
from worker.redis_layout import UNACKED_KEY
from worker.settings import WorkerSettings
from worker.store import JobStore

SETTINGS = WorkerSettings(heartbeat_s=0.2, max_requeues=2)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with redis_server() as address:
        yield address


@pytest.fixture
def store(url: str) -> Iterator[JobStore]:
    s = JobStore.from_url(url, f"rec{uuid.uuid4().hex[:6]}", 300)
    yield s
    s.client.close()


class Sent:
    """A stand-in for the broker: records every (job id, params) queued."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def __call__(self, job_id: str, params: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append((job_id, params))


def new_job(store: JobStore, worker: str) -> JobSpec:
    spec = JobSpec(uuid.uuid4().hex, "auto", 2, 8, 8, exposures=(0.5, 2.0))
    store.put(spec, (b"a", b"b"))
    store.mark_running(spec.job_id, worker)
    return spec


def output() -> JobOutput:
    return JobOutput(b"img", "png", 8, 8, 0, False, "weighted", 0.1)


def published(store: JobStore) -> Iterator[list[str]]:
    """Job ids published on P:done from now on (read them after the block)."""
    pubsub = store.client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(store.keys.done)
    pubsub.get_message(timeout=1)
    ids: list[str] = []
    yield ids
    while (message := pubsub.get_message(timeout=0.2)) is not None:
        ids.append(message["data"].decode())
    pubsub.close()


def test_finish_is_atomic_and_idempotent(store: JobStore) -> None:
    """The first outcome wins and is published once; later ones (a duplicate run) change nothing."""
    spec = new_job(store, "w1")
    gen = published(store)
    ids = next(gen)
    assert store.finish(spec.job_id, output()) is True
    assert store.finish(spec.job_id, JobFailure("internal", "late duplicate")) is False
    next(gen, None)
    assert ids == [spec.job_id]
    assert store.state(spec.job_id) == "done" and store.frames(spec.job_id) is None
    assert store.held() == {}


def test_lapsed_workers_jobs_are_requeued_by_exactly_one_scanner(store: JobStore) -> None:
    """Two scanners race for the orphans of a dead worker: each job is queued again once, with the
    same id and spec; the live worker's job and the scanners' own stay where they are."""
    store.heartbeat("dead", -1)  # lapsed a second ago
    store.heartbeat("live", 60)
    store.heartbeat("s1", 60)
    store.heartbeat("s2", 60)
    orphans = [new_job(store, "dead") for _ in range(5)]
    kept = [new_job(store, "live"), new_job(store, "s1")]
    sent = Sent()
    before = metrics.ORPHANS_REQUEUED._value.get()
    scanners = [Recovery(store, "s1", SETTINGS, sent), Recovery(store, "s2", SETTINGS, sent)]
    barrier = threading.Barrier(2)

    def run(r: Recovery) -> None:
        barrier.wait()
        r.scan()

    threads = [threading.Thread(target=run, args=(r,)) for r in scanners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(j for j, _ in sent.calls) == sorted(s.job_id for s in orphans)
    assert all(JobSpec.from_dict(params).job_id == job_id for job_id, params in sent.calls)
    assert metrics.ORPHANS_REQUEUED._value.get() - before == len(orphans)
    for spec in orphans:
        assert store.state(spec.job_id) == "queued"
        assert store.client.hget(store.keys.job(spec.job_id), "requeues") == b"1"
        assert store.frames(spec.job_id) == (b"a", b"b")  # the next worker still has the frames
    assert store.held() == {kept[0].job_id: "live", kept[1].job_id: "s1"}
    # Another scan finds nothing more: the re-queued jobs belong to the broker now.
    assert scanners[1].scan().requeued == []
    # A worker that takes a re-queued job holds it again; when that one dies too, it is re-queued.
    store.mark_running(orphans[0].job_id, "dead")
    assert scanners[0].scan().requeued == [orphans[0].job_id]
    # A scanner never takes its own jobs, even while its own heartbeat lapsed.
    mine = new_job(store, "unbeaten")
    assert Recovery(store, "unbeaten", SETTINGS, sent).scan().requeued == []
    assert store.held()[mine.job_id] == "unbeaten"


def test_a_job_is_requeued_at_most_max_requeues_times_then_fails(store: JobStore) -> None:
    """The (max_requeues + 1)th loss fails the job with worker_lost, published once."""
    store.heartbeat("dead", -1)
    spec = new_job(store, "dead")
    sent = Sent()
    scanner = Recovery(store, "scanner", SETTINGS, sent)
    for _ in range(SETTINGS.max_requeues):
        assert scanner.scan().requeued == [spec.job_id]
        store.mark_running(spec.job_id, "dead")  # taken, and its worker died again
    gen = published(store)
    ids = next(gen)
    failed_before = metrics.ORPHANS_FAILED._value.get()
    result = scanner.scan()
    next(gen, None)
    assert result.requeued == [] and result.failed == [spec.job_id]
    assert len(sent.calls) == SETTINGS.max_requeues and ids == [spec.job_id]
    assert store.state(spec.job_id) == "failed"
    raw = store.client.hgetall(store.keys.job(spec.job_id))
    assert b'"worker_lost"' in raw[b"error"] and b"frames" not in raw
    assert metrics.ORPHANS_FAILED._value.get() - failed_before == 1
    assert store.held() == {}


def test_stale_entries_and_a_worker_that_beats_again_are_left_alone(store: JobStore) -> None:
    """A finished, cancelled or expired job is no orphan (its entry is dropped); nor is the job of a
    worker that beat again between the scan's snapshot and the claim."""
    store.heartbeat("dead", -1)
    cancelled, expired, revived = (new_job(store, "dead") for _ in range(3))
    store.client.hset(store.keys.job(cancelled.job_id), "state", "cancelled")
    store.client.delete(store.keys.job(expired.job_id))
    assert store.claim_orphan(revived.job_id, "dead", "scanner", time.time() - 2) == -1  # alive then
    sent = Sent()
    result = Recovery(store, "scanner", SETTINGS, sent).scan()
    assert result.requeued == [revived.job_id]
    assert store.held() == {}


def test_a_failed_send_gives_the_orphan_back_for_the_next_scan(store: JobStore) -> None:
    """The broker is down when the orphan is re-queued: the job stays an orphan, the next scan retries."""
    store.heartbeat("dead", -1)
    spec = new_job(store, "dead")

    def broken(job_id: str, params: dict[str, Any]) -> None:
        raise ConnectionError("broker down")

    assert Recovery(store, "scanner", SETTINGS, broken).scan().requeued == []
    assert store.held() == {spec.job_id: "dead"}
    sent = Sent()
    assert Recovery(store, "scanner", SETTINGS, sent).scan().requeued == [spec.job_id]


def test_scanning_waits_for_a_whole_heartbeat_lifetime_of_own_beats(store: JobStore) -> None:
    """After start-up or a Redis outage a worker scans only once every live worker has beaten again."""
    recovery = Recovery(store, "w", SETTINGS, Sent())
    assert recovery.valid_s == HEARTBEAT_PERIODS * SETTINGS.heartbeat_s
    assert not recovery.may_scan()
    assert recovery.beat()
    assert not recovery.may_scan()
    time.sleep(recovery.valid_s + 0.05)
    assert recovery.beat() and recovery.may_scan()
    assert store.alive({"w", "other"}, time.time()) == {"w"}


def test_a_task_outlives_a_redis_outage_and_still_finishes_its_job(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis unreachable when the task records its outcome: it retries instead of failing, so the job
    is finished (once) when Redis is back, not stranded until the visibility timeout."""
    import redis

    from worker import celery_app
    from worker.batcher import DynamicBatcher
    from worker.celery_app import WorkerContext, process

    spec = JobSpec(uuid.uuid4().hex, "auto", 2, 8, 8)
    store.put(spec, (b"a", b"b"))
    batcher = DynamicBatcher(
        lambda jobs: [output() for _ in jobs], max_batch_size=1, max_wait_s=0, max_queue=2
    )
    batcher.start()
    real_finish, failures = store.finish, [redis.ConnectionError("down"), redis.TimeoutError("restarting")]

    def flaky_finish(job_id: str, outcome: Any) -> bool:
        if failures:
            raise failures.pop(0)
        return real_finish(job_id, outcome)

    monkeypatch.setattr(store, "finish", flaky_finish)
    monkeypatch.setattr(celery_app, "STORE_RETRY_S", 0.01)
    try:
        assert process(WorkerContext(store, batcher, SETTINGS, "w"), spec.job_id, spec.to_dict()) == "done"
    finally:
        batcher.stop()
    assert not failures and store.state(spec.job_id) == "done" and store.held() == {}


def queue_messages(store: JobStore, queue: str) -> dict[str, bytes]:
    """The task messages waiting in the broker list `queue`, by the id in their JSON headers."""
    raw: list[bytes] = store.client.lrange(queue, 0, -1)  # type: ignore[assignment]
    return {json.loads(m)["headers"]["id"]: m for m in raw}


def test_a_queued_job_whose_message_vanished_is_sent_again_by_exactly_one_scanner(
    store: JobStore, url: str
) -> None:
    """A job queued past the grace period whose task message is in neither the broker's queue nor
    kombu's `unacked` hash (popped as Redis crashed) is sent again once by two racing scanners, on
    their second scan; jobs whose message waits in the queue or was delivered are left alone, and
    the entry of a job that vanished is dropped."""
    from worker.celery_app import make_celery, send_merge

    queue = store.keys.prefix
    settings = WorkerSettings(
        redis_url=url, queue_name=queue, key_prefix=queue, heartbeat_s=0.2, max_requeues=2, queued_grace_s=5
    )
    app = make_celery(settings)
    lost, waiting, delivered = (JobSpec(uuid.uuid4().hex, "auto", 2, 8, 8) for _ in range(3))
    sent: list[str] = []
    lock = threading.Lock()

    def send(job_id: str, params: dict[str, Any]) -> None:
        with lock:
            sent.append(job_id)
            send_merge(app, queue, job_id, params)

    tag = uuid.uuid4().hex
    try:
        for spec in (lost, waiting, delivered):
            store.put(spec, (b"a", b"b"))
            send_merge(app, queue, spec.job_id, spec.to_dict())
        messages = queue_messages(store, queue)
        assert set(messages) == {lost.job_id, waiting.job_id, delivered.job_id}  # task id = job id
        store.client.lrem(queue, 1, messages[lost.job_id])  # BRPOP'd, the reply lost with Redis
        store.client.lrem(queue, 1, messages[delivered.job_id])  # delivered: kombu's unacked hash
        store.client.hset(UNACKED_KEY, tag, json.dumps([json.loads(messages[delivered.job_id]), "", queue]))
        vanished = uuid.uuid4().hex
        store.client.zadd(store.keys.queued, {vanished: time.time()})
        store.heartbeat("s1", 60)  # live scanners (they scan only while their own beats succeed),
        store.heartbeat("s2", 60)  # so neither takes the other's claim for an orphan
        scanners = [Recovery(store, "s1", settings, send), Recovery(store, "s2", settings, send)]
        t0 = time.time()
        assert scanners[0].scan(t0) == ScanResult()  # within the grace period: nothing is judged
        first = [r.scan(t0 + 10) for r in scanners]  # first sighting of the missing message
        assert [r.requeued for r in first] == [[], []] and first[0].dropped == [vanished]
        barrier = threading.Barrier(2)
        results: list[ScanResult] = []

        def run(r: Recovery) -> None:
            barrier.wait()
            results.append(r.scan(t0 + 11))

        threads = [threading.Thread(target=run, args=(r,)) for r in scanners]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert sorted(j for r in results for j in r.requeued) == [lost.job_id] and sent == [lost.job_id]
        assert metrics.LOST_TASKS_REQUEUED._value.get() >= 1
        assert store.state(lost.job_id) == "queued" and store.held() == {}
        assert store.client.hget(store.keys.job(lost.job_id), "requeues") == b"1"
        assert store.frames(lost.job_id) == (b"a", b"b")
        assert set(queue_messages(store, queue)) == {lost.job_id, waiting.job_id}  # sent again
        assert store.client.zscore(store.keys.queued, lost.job_id) == t0 + 11  # a fresh grace period
        # Later scans, within and past the new grace period, find every message where it should be.
        for at in (t0 + 12, t0 + 12, t0 + 30, t0 + 30):
            assert scanners[0].scan(at).requeued == [] and scanners[1].scan(at).requeued == []
        assert sent == [lost.job_id] and store.client.zscore(store.keys.queued, vanished) is None
        # A worker takes the jobs: their entries leave P:queued.
        store.mark_running(waiting.job_id, "w")
        store.finish(delivered.job_id, output())
        assert store.queued_before(t0 + 60) == [lost.job_id]
    finally:
        store.client.hdel(UNACKED_KEY, tag)
        store.client.delete(queue)
        app.close()


def test_a_job_whose_message_keeps_vanishing_fails_after_max_requeues(store: JobStore) -> None:
    """The lost-message path spends the same requeue budget as orphan recovery, then fails the job."""
    settings = WorkerSettings(queue_name=store.keys.prefix, heartbeat_s=0.2, max_requeues=2)
    spec = JobSpec(uuid.uuid4().hex, "auto", 2, 8, 8)
    store.put(spec, (b"a", b"b"))  # queued, and no message was ever sent
    store.client.hset(store.keys.job(spec.job_id), "requeues", settings.max_requeues)
    sent = Sent()
    scanner = Recovery(store, "scanner", settings, sent)
    assert scanner.grace_s == HEARTBEAT_PERIODS * settings.heartbeat_s  # the default grace
    later = time.time() + 5
    assert scanner.scan(later).requeued == []
    result = scanner.scan(later + 0.1)
    assert result.failed == [spec.job_id] and sent.calls == []
    assert store.state(spec.job_id) == "failed" and store.queued_before(later + 60) == []
    assert b'"worker_lost"' in store.client.hget(store.keys.job(spec.job_id), "error")  # type: ignore[operator]


def test_orphans_sent_again_are_tracked_as_queued(store: JobStore) -> None:
    """A job taken back from a lost worker is in P:queued again until a worker starts it."""
    store.heartbeat("dead", -1)
    spec = new_job(store, "dead")
    assert store.queued_before(time.time() + 60) == []  # running: not queued
    scanner = Recovery(store, "scanner", SETTINGS, Sent())
    assert scanner.scan().requeued == [spec.job_id]
    assert store.queued_before(time.time() + 60) == [spec.job_id]
