"""Everything rejected before queueing: counts, formats, sizes, pixels, exposures, reference, model."""

from __future__ import annotations

import pytest
from helpers.brackets import frobisher, synthetic_pngs

from emvnet.errors import (
    BracketError,
    EmvnetError,
    ExposureError,
    ImageTooLargeError,
    UnknownModelError,
    UnsupportedFormatError,
)
from service.settings import Settings
from service.validation import EnhanceParams, parse_exposures, parse_reference, validate

SETTINGS = Settings(max_frames=4)


def check(frames: list[bytes], settings: Settings = SETTINGS, **kw: object) -> None:
    validate(EnhanceParams(frames=frames, **kw), settings, deadline_s=10)  # type: ignore[arg-type]


def test_a_good_bracket_becomes_a_job() -> None:
    """Sizes come from the headers; exposures, reference and deadline are carried."""
    job = validate(
        EnhanceParams(frames=frobisher(), exposures=[0.01, 0.1, 1], reference=1, request_id="r"),
        SETTINGS,
        deadline_s=10,
    )
    spec = job.spec
    assert (spec.width, spec.height, spec.frame_count, spec.reference) == (480, 320, 3, 1)
    assert spec.exposures == (0.01, 0.1, 1.0) and spec.deadline > spec.submitted_at
    assert len(spec.job_id) == 32 and spec.request_id == "r"


@pytest.mark.parametrize(
    ("frames", "error", "text"),
    [
        (lambda: frobisher()[:1], BracketError, "at least 2"),
        (lambda: frobisher() * 2, BracketError, "at most 4"),
        (lambda: [frobisher()[0], b"hello world, not an image"], UnsupportedFormatError, "frame 2"),
        (lambda: [frobisher()[0], b""], UnsupportedFormatError, "empty"),
        (lambda: [frobisher()[0], synthetic_pngs()[0]], BracketError, "one size"),
    ],
)
def test_bad_frames(frames, error: type[EmvnetError], text: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=text):
        check(frames())


def test_pixel_limit_uses_headers() -> None:
    """A frame over max_pixels is refused from its header alone."""
    with pytest.raises(ImageTooLargeError, match="frame 1"):
        check(frobisher(), Settings(max_pixels=1000))


@pytest.mark.parametrize(
    ("kw", "error"),
    [
        ({"exposures": [0.1, 0.2]}, ExposureError),
        ({"exposures": [0.1, -1, 1]}, ExposureError),
        ({"exposures": [0.1, float("nan"), 1]}, ExposureError),
        ({"reference": 3}, BracketError),
        ({"model": "nope"}, UnknownModelError),
    ],
)
def test_bad_parameters(kw: dict[str, object], error: type[EmvnetError]) -> None:
    with pytest.raises(error):
        check(frobisher(), **kw)


def test_parsers() -> None:
    """Exposures accept fractions; reference accepts auto or an index."""
    assert parse_exposures("1/250, 0.01 ,1") == [0.004, 0.01, 1.0]
    assert parse_exposures("") is None
    with pytest.raises(ExposureError, match="exposure 2"):
        parse_exposures("1/250,abc")
    assert parse_reference("auto") is None and parse_reference("2") == 2
    with pytest.raises(BracketError):
        parse_reference("middle")
