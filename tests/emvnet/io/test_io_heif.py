"""HEIC/HEIF and AVIF frames: pixels, EXIF exposure and ISO, orientation, depth, sniffing by brand."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pillow_heif
import pytest
from helpers.brackets import encode_heic, frobisher_heic
from PIL import Image

from emvnet.io import probe_image, read_image, sniff_format


def test_heic_pixels_and_exif(rgb8: np.ndarray, make_exif: Callable[..., bytes]) -> None:
    """A HEIC frame decodes close to its source and reports EXIF exposure time, ISO and f-number."""
    data = encode_heic(rgb8, exif=make_exif(exposure_time=1 / 250, iso=400, f_number=2.8), quality=95)
    frame = read_image(data)
    assert frame.source_format == "heic" and frame.domain == "display" and frame.bit_depth == 8
    assert frame.data.shape == (*rgb8.shape[:2], 3)
    assert np.abs(frame.data * 255 - rgb8).mean() < 12  # lossy HEVC of noise
    assert frame.exposure.exposure_time == pytest.approx(1 / 250)
    assert frame.exposure.iso == 400
    assert frame.exposure.aperture == pytest.approx(2.8)
    info = probe_image(data)
    assert (info.format, info.width, info.height, info.exposure) == (
        "heic",
        rgb8.shape[1],
        rgb8.shape[0],
        frame.exposure,
    )


def test_heic_orientation_is_applied_once(make_exif: Callable[..., bytes]) -> None:
    """EXIF orientation 6 (as iPhones write) gives an upright portrait frame, not one rotated twice."""
    landscape = np.zeros((40, 64, 3), dtype=np.uint8)
    landscape[:, :8] = 255  # a white band on the stored image's left edge
    data = encode_heic(landscape, exif=make_exif(orientation=6))
    frame = read_image(data)
    # Orientation 6: rotate 90 degrees clockwise to display, so the left edge becomes the top.
    assert frame.data.shape[:2] == (64, 40)
    assert frame.data[:6].mean() > 0.9 and frame.data[10:].mean() < 0.1
    assert (probe_image(data).width, probe_image(data).height) == (40, 64)


def test_ten_bit_heic_keeps_its_levels() -> None:
    """A 10-bit HEIC reads as 10-bit with more than 256 distinct levels."""
    ramp = np.linspace(0, 65535, 64 * 48 * 3).reshape(48, 64, 3).astype(np.uint16)
    buffer = io.BytesIO()
    pillow_heif.from_bytes(mode="RGB;16", size=(64, 48), data=ramp.tobytes()).save(buffer, quality=-1)
    frame = read_image(buffer.getvalue())
    assert frame.bit_depth == 10
    assert len(np.unique(frame.data)) > 256
    assert np.abs(frame.data - ramp / 65535.0).max() < 0.01


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_grey_and_alpha_heic(mode: str) -> None:
    """Grey HEIC comes back as three equal channels; alpha is dropped."""
    buffer = io.BytesIO()
    pillow_heif.from_pillow(Image.new(mode, (32, 24), 128 if mode == "L" else (200, 100, 50, 255))).save(
        buffer, quality=95
    )
    frame = read_image(buffer.getvalue())
    assert frame.data.shape == (24, 32, 3)
    if mode == "L":
        assert np.allclose(frame.data[..., 0], frame.data[..., 2])
    else:
        assert frame.data[..., 0].mean() > frame.data[..., 2].mean()


def test_frobisher_heic_bracket_keeps_exif_times() -> None:
    """The test-made HEIC bracket carries the frobisher exposure times (1/8, 1, 8 s)."""
    times = [read_image(data).exposure.exposure_time for data in frobisher_heic()]
    assert times == pytest.approx([1 / 8, 1.0, 8.0])


def test_avif_frame_with_exif(
    rgb8: np.ndarray, pil_encode: Callable[..., bytes], make_exif: Callable[..., bytes]
) -> None:
    """An 8-bit AVIF frame decodes with its EXIF exposure and orientation."""
    data = pil_encode(rgb8, "AVIF", quality=95, exif=make_exif(exposure_time=0.5, orientation=6))
    frame = read_image(data)
    assert frame.source_format == "avif"
    assert frame.data.shape[:2] == (rgb8.shape[1], rgb8.shape[0])  # rotated upright
    assert frame.exposure.exposure_time == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("brands", "expected"),
    [
        (b"heic\x00\x00\x00\x00mif1heic", "heic"),
        (b"mif1\x00\x00\x00\x00mif1heic", "heic"),
        (b"heix\x00\x00\x00\x00mif1", "heic"),
        (b"msf1\x00\x00\x00\x00msf1hevc", "heic"),
        (b"avif\x00\x00\x00\x00avifmif1miaf", "avif"),
        (b"mif1\x00\x00\x00\x00mif1avif", "avif"),
        (b"crx \x00\x00\x00\x01crx isom", "raw"),  # Canon CR3
        (b"isom\x00\x00\x02\x00isomiso2mp41", None),  # an MP4 video
    ],
)
def test_sniff_iso_media_brands(brands: bytes, expected: str | None) -> None:
    """`ftyp` brands tell HEIC from AVIF, CR3 stays a camera raw and other ISO media are refused."""
    box = (8 + len(brands)).to_bytes(4, "big") + b"ftyp" + brands
    assert sniff_format(box + b"\x00" * 32) == expected
