"""probe_image: header-only answers that agree with what read_image returns."""

from __future__ import annotations

from pathlib import Path

import pytest

from emvnet.io import DEFAULT_MAX_PIXELS, ImageInfo, probe_image, read_image

KINDS = ("jpeg", "png8", "png16", "tiff8", "tiff16", "tiff32f", "exr", "hdr", "dng")


@pytest.mark.parametrize("kind", KINDS)
def test_probe_agrees_with_read(samples: dict[str, bytes], kind: str) -> None:
    """Format, size, sample type and exposure from the probe match the decoded frame."""
    info = probe_image(samples[kind])
    frame = read_image(samples[kind])
    assert isinstance(info, ImageInfo)
    assert info.format == frame.source_format
    assert (info.width, info.height) == (frame.width, frame.height)
    assert (info.bit_depth, info.floating) == (frame.bit_depth, frame.floating)
    assert info.exposure == frame.exposure


def test_probe_reads_paths(tmp_path: Path, samples: dict[str, bytes]) -> None:
    """probe_image accepts a path as well as bytes."""
    path = tmp_path / "x.tif"
    path.write_bytes(samples["tiff16"])
    assert probe_image(path) == probe_image(samples["tiff16"])


def test_probe_channel_counts(samples: dict[str, bytes]) -> None:
    """Channels count what the file stores: 3 for RGB, 1 for a Bayer mosaic."""
    assert probe_image(samples["png16"]).channels == 3
    assert probe_image(samples["dng"]).channels == 1


def test_default_limit() -> None:
    """The default pixel limit is 100 megapixels."""
    assert DEFAULT_MAX_PIXELS == 100_000_000


def test_nonpositive_limit_is_a_value_error(samples: dict[str, bytes]) -> None:
    """A max_pixels of 0 is a programming error."""
    with pytest.raises(ValueError, match="max_pixels"):
        probe_image(samples["jpeg"], max_pixels=0)
