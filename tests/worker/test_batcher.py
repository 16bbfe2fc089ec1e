"""The dynamic batcher: batch size and wait knobs, compatible keys only, deadlines, isolation, bounds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence

import pytest

from worker.batcher import DynamicBatcher
from worker.jobs import Job, JobFailure, JobOutput, JobSpec, Outcome, QueueFullError


def job(i: int, *, model: str = "auto", width: int = 8, deadline: float = 0.0) -> Job:
    spec = JobSpec(job_id=f"j{i}", model=model, frame_count=2, width=width, height=8, deadline=deadline)
    return Job(spec, (b"a", b"b"))


def output(j: Job) -> JobOutput:
    return JobOutput(j.spec.job_id.encode(), "png", 8, 8, 0, False, j.spec.model, 0.0)


class Recorder:
    """A run function that records each batch, optionally blocking until released."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[str]] = []
        self.gate = gate
        self.running = threading.Event()

    def __call__(self, batch: Sequence[Job]) -> list[Outcome]:
        self.running.set()
        if self.gate is not None:
            self.gate.wait(10)
        self.batches.append([j.spec.job_id for j in batch])
        return [output(j) for j in batch]


Factory = Callable[..., DynamicBatcher]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make(recorder: Recorder) -> Iterator[Factory]:
    started: list[DynamicBatcher] = []

    def factory(**kw: float) -> DynamicBatcher:
        b = DynamicBatcher(
            recorder,
            max_batch_size=int(kw.get("max_batch_size", 4)),
            max_wait_s=kw.get("max_wait_s", 0.05),
            max_queue=int(kw.get("max_queue", 64)),
        )
        started.append(b)
        return b

    yield factory
    for b in started:
        b.stop()


def test_full_batches_go_at_once(make: Factory, recorder: Recorder) -> None:
    """Jobs queued before the thread starts leave in batches of max_batch_size, in order."""
    b = make(max_batch_size=3, max_wait_s=5.0)
    futures = [b.submit(job(i)) for i in range(6)]
    b.start()
    results = [f.result(timeout=2) for f in futures]
    assert recorder.batches == [["j0", "j1", "j2"], ["j3", "j4", "j5"]]
    assert [r.image for r in results if isinstance(r, JobOutput)] == [f"j{i}".encode() for i in range(6)]


def test_partial_batch_waits_at_most_max_wait(make: Factory, recorder: Recorder) -> None:
    """A lone job runs after about max_wait, not later."""
    b = make(max_batch_size=8, max_wait_s=0.1)
    b.start()
    t0 = time.monotonic()
    b.submit(job(0)).result(timeout=2)
    assert 0.08 <= time.monotonic() - t0 < 1.0
    assert recorder.batches == [["j0"]]


def test_only_compatible_jobs_share_a_batch(make: Factory, recorder: Recorder) -> None:
    """Model, frame count and size must agree; the oldest job's key goes first."""
    b = make(max_batch_size=4, max_wait_s=5.0)
    jobs = [job(0), job(1, model="mertens"), job(2), job(3, width=16), job(4, model="mertens")]
    futures = [b.submit(j) for j in jobs]
    b.stop()  # a stopping batcher flushes what waits without waiting for max_wait...
    b.start()  # ...so starting it now runs every queued job at once, then ends
    b.stop()
    assert all(f.done() for f in futures)
    assert recorder.batches == [["j0", "j2"], ["j1", "j4"], ["j3"]]


def test_expired_jobs_are_dropped_with_an_error(make: Factory, recorder: Recorder) -> None:
    """A job past its deadline gets deadline_exceeded and never reaches the runner."""
    b = make(max_batch_size=4, max_wait_s=0.0)
    late, fresh = b.submit(job(0, deadline=time.time() - 1)), b.submit(job(1, deadline=time.time() + 60))
    b.start()
    assert isinstance(late.result(2), JobFailure) and late.result().code == "deadline_exceeded"
    assert isinstance(fresh.result(2), JobOutput)
    assert recorder.batches == [["j1"]]


def test_cancelled_jobs_are_skipped(make: Factory, recorder: Recorder) -> None:
    """A future cancelled while queued is never run."""
    b = make(max_batch_size=4, max_wait_s=0.0)
    gone, kept = b.submit(job(0)), b.submit(job(1))
    assert gone.cancel()
    b.start()
    kept.result(2)
    assert recorder.batches == [["j1"]]


def test_queue_bound_refuses_new_jobs(make: Factory) -> None:
    """Past max_queue waiting jobs, submit raises QueueFullError (backpressure)."""
    b = make(max_queue=2)
    b.submit(job(0))
    b.submit(job(1))
    with pytest.raises(QueueFullError):
        b.submit(job(2))
    assert b.depth == 2


def test_runner_exception_fails_only_its_batch() -> None:
    """A runner that raises fails that batch's jobs with 'internal'; the next batch still runs."""
    calls: list[int] = []

    def flaky(batch: Sequence[Job]) -> list[Outcome]:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return [output(j) for j in batch]

    b = DynamicBatcher(flaky, max_batch_size=1, max_wait_s=0.0, max_queue=8)
    first, second = b.submit(job(0)), b.submit(job(1))
    b.start()
    try:
        assert isinstance(first.result(2), JobFailure) and first.result().code == "internal"
        assert isinstance(second.result(2), JobOutput)
    finally:
        b.stop()


def test_batches_form_under_concurrency() -> None:
    """While one batch runs, arriving jobs gather into the next one (mean batch size above 1)."""
    gate = threading.Event()
    rec = Recorder(gate)
    b = DynamicBatcher(rec, max_batch_size=4, max_wait_s=0.01, max_queue=64)
    b.start()
    try:
        futures = [b.submit(job(0))]
        assert rec.running.wait(5)  # job 0 is now running, blocked on the gate
        futures += [b.submit(job(i)) for i in range(1, 5)]
        gate.set()
        for f in futures:
            f.result(2)
        assert rec.batches == [["j0"], ["j1", "j2", "j3", "j4"]]
    finally:
        b.stop()
