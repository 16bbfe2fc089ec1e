"""The model runner: real classical merges of encoded brackets, one outcome per job, isolation."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
from helpers.brackets import frobisher, synthetic_pngs
from prometheus_client import REGISTRY

from emvnet.errors import UnknownModelError
from worker import metrics
from worker.jobs import Job, JobFailure, JobOutput, JobSpec
from worker.runner import ModelRunner, check_model


def make_job(frames: list[bytes], i: int = 0, **spec: object) -> Job:
    fields: dict[str, object] = {
        "job_id": f"j{i}",
        "model": "auto",
        "frame_count": len(frames),
        "width": 0,
        "height": 0,
    }
    fields.update(spec)
    return Job(JobSpec(**fields), tuple(frames))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def runner() -> ModelRunner:
    r = ModelRunner("auto")
    r.load()
    return r


def model_ready_gauge() -> float | None:
    return REGISTRY.get_sample_value("emvnet_model_ready")


@pytest.mark.parametrize("warmup", [True, False])
def test_load_reports_ready_with_or_without_warmup(warmup: bool, caplog: pytest.LogCaptureFixture) -> None:
    """`ready` and the model-ready gauge stay down until load() has loaded the default model (and
    warmed it up, when asked to); either way they are up after it."""
    metrics.MODEL_READY.set(0)
    r = ModelRunner("debevec")
    assert not r.ready and model_ready_gauge() == 0
    with caplog.at_level(logging.INFO, logger="worker.runner"):
        r.load(warmup=warmup)
    assert r.ready and model_ready_gauge() == 1
    assert ("warmed up" in caplog.text) == warmup


def test_merges_a_real_bracket_to_png(runner: ModelRunner) -> None:
    """The frobisher JPEGs merge (EXIF exposures) into a decodable 480x320 PNG."""
    (out,) = runner.run([make_job(frobisher())])
    assert isinstance(out, JobOutput)
    assert (out.width, out.height, out.blind, out.content_type) == (480, 320, False, "image/png")
    img = cv2.imdecode(np.frombuffer(out.image, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img.shape == (320, 480, 3)


@pytest.mark.parametrize(
    ("fmt", "magic"), [("exr", b"\x76\x2f\x31\x01"), ("hdr", b"#?"), ("tiff", b"II"), ("jpeg", b"\xff\xd8")]
)
def test_encodes_the_requested_format(runner: ModelRunner, fmt: str, magic: bytes) -> None:
    """Each output format comes back with its own magic bytes."""
    (out,) = runner.run([make_job(synthetic_pngs(), output_format=fmt, exposures=(0.25, 1.0, 4.0))])
    assert isinstance(out, JobOutput) and out.image.startswith(magic)


def test_keeps_the_linear_result_only_when_asked(runner: ModelRunner) -> None:
    """Async jobs keep a half-float OpenEXR of the linear result (the EXR itself when that was asked
    for); sync jobs encode nothing more."""
    common = {"exposures": (0.25, 1.0, 4.0)}
    sync, png, exr = runner.run(
        [
            make_job(synthetic_pngs(), 0, **common),
            make_job(synthetic_pngs(), 1, keep_linear=True, **common),
            make_job(synthetic_pngs(), 2, keep_linear=True, output_format="exr", **common),
        ]
    )
    assert isinstance(sync, JobOutput) and sync.linear == b""
    assert isinstance(png, JobOutput) and png.linear.startswith(b"\x76\x2f\x31\x01")
    assert isinstance(exr, JobOutput) and exr.linear == exr.image


def test_a_bad_job_never_fails_its_batch_mates(runner: ModelRunner) -> None:
    """A corrupt frame and an unknown model fail their own jobs only, in order."""
    good = synthetic_pngs()
    truncated = [good[0], good[1][: len(good[1]) // 3], good[2]]
    batch = [make_job(good, 0), make_job(truncated, 1), make_job(good, 2, model="nope"), make_job(good, 3)]
    outs = runner.run(batch)
    assert len(outs) == 4
    assert isinstance(outs[0], JobOutput) and isinstance(outs[3], JobOutput)
    assert isinstance(outs[1], JobFailure) and outs[1].code in ("corrupt_image", "unsupported_format")
    assert isinstance(outs[2], JobFailure) and outs[2].code == "unknown_model"


def test_wrong_exposure_count_is_a_job_error(runner: ModelRunner) -> None:
    """Exposure validation in the library surfaces as invalid_exposures for that job."""
    (out,) = runner.run([make_job(synthetic_pngs(), exposures=(1.0, 2.0))])
    assert isinstance(out, JobFailure) and out.code == "invalid_exposures"


def test_check_model_respects_the_served_list() -> None:
    """A registered model outside the served list is refused like an unknown one."""
    assert check_model("mertens", None) == "mertens"
    with pytest.raises(UnknownModelError):
        check_model("mertens", ["auto"])
    with pytest.raises(UnknownModelError):
        check_model("no-such-model", None)
