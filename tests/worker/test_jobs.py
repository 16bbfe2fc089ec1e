"""Job messages and blobs survive JSON / Redis round trips; settings fail fast on bad values."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from emvnet.io import DEFAULT_MAX_PIXELS
from worker.jobs import JobFailure, JobOutput, JobSpec
from worker.redis_layout import decode_outcome, outcome_fields, pack_frames, unpack_frames
from worker.runner import ModelRunner
from worker.settings import WorkerSettings


def test_spec_round_trips_through_json() -> None:
    """A task message carries the spec as plain JSON (no pickle) and rebuilds it exactly."""
    spec = JobSpec("abc", "auto", 3, 480, 320, "exr", (0.01, 0.1, 1.0), 1, "rid", 10.0, 20.0)
    again = JobSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert again.batch_key == ("auto", 3, 480, 320)


def test_frames_blob_round_trips() -> None:
    """Frames of any size, empty included, come back in order."""
    frames = (b"", b"x" * 5, bytes(range(256)) * 3)
    assert unpack_frames(pack_frames(frames)) == frames


def test_outcomes_round_trip_through_hash_fields() -> None:
    """What a worker records is what the gateway decodes."""
    out = JobOutput(b"img", "png", 4, 3, 1, True, "auto", 0.5)
    fields = {k.encode(): v.encode() if isinstance(v, str) else v for k, v in outcome_fields(out).items()}
    assert decode_outcome(fields) == out  # type: ignore[arg-type]
    kept = JobOutput(b"img", "png", 4, 3, 1, True, "auto", 0.5, linear=b"exr")
    fields = {k.encode(): v.encode() if isinstance(v, str) else v for k, v in outcome_fields(kept).items()}
    assert decode_outcome(fields) == kept and b"linear" not in fields[b"meta"]  # type: ignore[arg-type]
    fail = JobFailure("corrupt_image", "frame 2 is truncated")
    fields = {k.encode(): v.encode() if isinstance(v, str) else v for k, v in outcome_fields(fail).items()}
    assert decode_outcome(fields) == fail  # type: ignore[arg-type]
    assert decode_outcome({b"state": b"queued"}) is None


def test_deadline_helpers() -> None:
    """No deadline never expires; a past one does."""
    assert not JobSpec("a", "auto", 2, 1, 1).expired()
    assert JobSpec("a", "auto", 2, 1, 1, deadline=1.0).expired()
    assert JobSpec("a", "auto", 2, 1, 1, deadline=1.0).remaining() == 0.0


@pytest.mark.parametrize(
    "bad",
    [
        {"visibility_timeout_s": 10, "task_time_limit_s": 20, "job_timeout_s": 5},
        {"max_batch_size": 0},
        {"redis_url": "http://localhost:6379"},
        {"job_timeout_s": 1000, "task_time_limit_s": 100, "visibility_timeout_s": 200},
    ],
)
def test_settings_fail_fast(bad: dict[str, object]) -> None:
    """Inconsistent or invalid values are refused at construction."""
    with pytest.raises(ValidationError):
        WorkerSettings(**bad)  # type: ignore[arg-type]


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """EMVNET_* variables configure the worker."""
    monkeypatch.setenv("EMVNET_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("EMVNET_MODELS", '["auto", "mertens"]')
    s = WorkerSettings()
    assert s.max_batch_size == 7 and s.models == ["auto", "mertens"] and s.concurrency == 14


def test_one_pixel_limit_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings (the gateway's extend them), the runner and the library share one default limit."""
    monkeypatch.delenv("EMVNET_MAX_PIXELS", raising=False)
    settings = WorkerSettings()
    assert settings.max_pixels == DEFAULT_MAX_PIXELS
    assert ModelRunner().max_pixels == ModelRunner.from_settings(settings).max_pixels == DEFAULT_MAX_PIXELS
    monkeypatch.setenv("EMVNET_MAX_PIXELS", "1234")
    assert ModelRunner.from_settings(WorkerSettings()).max_pixels == 1234
