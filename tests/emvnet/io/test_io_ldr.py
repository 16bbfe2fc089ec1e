"""JPEG and PNG reading: values, bit depths, channels, EXIF exposure and orientation."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps, PngImagePlugin

from emvnet.io import probe_image, read_image

Encode = Callable[..., bytes]


def _check_frame_basics(data: np.ndarray, shape: tuple[int, int]) -> None:
    assert data.dtype == np.float32
    assert data.shape == (*shape, 3)
    assert data.flags.c_contiguous


def test_jpeg_values_and_metadata(rgb8: np.ndarray, pil_encode: Encode) -> None:
    """A Pillow-written JPEG reads back as display-domain RGB in [0, 1] close to the source."""
    frame = read_image(pil_encode(rgb8, "JPEG", quality=98))
    _check_frame_basics(frame.data, rgb8.shape[:2])
    assert (frame.domain, frame.layout, frame.source_format, frame.bit_depth) == ("display", "rgb", "jpeg", 8)
    assert not frame.floating
    assert np.abs(frame.data * 255 - rgb8).mean() < 2.0


def test_jpeg_exif_exposure(rgb8: np.ndarray, pil_encode: Encode, make_exif: Encode) -> None:
    """Exposure time, ISO and f-number come from the EXIF sub-IFD, rationals included."""
    data = pil_encode(rgb8, "JPEG", exif=make_exif(exposure_time=1 / 8, iso=400, f_number=5.6))
    for exposure in (read_image(data).exposure, probe_image(data).exposure):
        assert exposure.exposure_time == pytest.approx(0.125)
        assert exposure.iso == 400
        assert exposure.aperture == pytest.approx(5.6)


def test_jpeg_without_exif_has_no_exposure(rgb8: np.ndarray, pil_encode: Encode) -> None:
    """A JPEG without EXIF reports every exposure field as None."""
    exposure = read_image(pil_encode(rgb8, "JPEG")).exposure
    assert (exposure.exposure_time, exposure.iso, exposure.aperture) == (None, None, None)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_orientation_matches_pillow(
    rgb8: np.ndarray, pil_encode: Encode, make_exif: Encode, orientation: int
) -> None:
    """Every EXIF orientation is applied exactly as Pillow's exif_transpose applies it."""
    data = pil_encode(rgb8, "JPEG", exif=make_exif(orientation=orientation))
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data)))).astype(np.float32) / 255
    frame = read_image(data)
    np.testing.assert_allclose(frame.data, expected, atol=1e-6)
    info = probe_image(data)
    assert (info.width, info.height) == (frame.width, frame.height)


@pytest.mark.parametrize(
    ("orientation", "corner"),
    [(1, (0, 0)), (3, (-1, -1)), (6, (0, -1)), (8, (-1, 0))],
)
def test_jpeg_orientation_marker(
    pil_encode: Encode, make_exif: Encode, orientation: int, corner: tuple[int, int]
) -> None:
    """A red block stored top-left ends up top-left / bottom-right / top-right / bottom-left."""
    pixels = np.full((48, 80, 3), 40, dtype=np.uint8)
    pixels[:16, :16] = (255, 0, 0)
    frame = read_image(pil_encode(pixels, "JPEG", quality=95, exif=make_exif(orientation=orientation)))
    expected_shape = (80, 48) if orientation in (6, 8) else (48, 80)
    assert frame.data.shape[:2] == expected_shape
    y, x = corner
    y0 = 4 if y == 0 else frame.height - 5
    x0 = 4 if x == 0 else frame.width - 5
    assert frame.data[y0, x0, 0] > 0.9 and frame.data[y0, x0, 1] < 0.1


def test_grayscale_and_cmyk_jpeg_become_rgb(rgb8: np.ndarray, pil_encode: Encode) -> None:
    """Grayscale JPEG expands to three equal channels; CMYK JPEG converts to RGB."""
    gray = read_image(pil_encode(rgb8[:, :, 1], "JPEG", quality=95)).data
    assert gray.shape == (*rgb8.shape[:2], 3)
    assert np.array_equal(gray[..., 0], gray[..., 2])
    buffer = io.BytesIO()
    Image.fromarray(rgb8).convert("CMYK").save(buffer, "JPEG", quality=95)
    cmyk = read_image(buffer.getvalue()).data
    assert np.abs(cmyk * 255 - rgb8).mean() < 6.0


def test_png_8bit_exact(rgb8: np.ndarray, pil_encode: Encode) -> None:
    """An 8-bit PNG reads back exactly (value / 255), in RGB order."""
    frame = read_image(pil_encode(rgb8, "PNG"))
    _check_frame_basics(frame.data, rgb8.shape[:2])
    assert frame.bit_depth == 8 and frame.domain == "display"
    assert np.array_equal(np.round(frame.data * 255).astype(np.uint8), rgb8)


def test_png_16bit_exact(rgb16: np.ndarray) -> None:
    """Every 16-bit code of an RGB PNG survives (value / 65535), in RGB order."""
    ok, data = cv2.imencode(".png", rgb16[:, :, ::-1])  # OpenCV writes BGR
    assert ok
    frame = read_image(data.tobytes())
    assert frame.bit_depth == 16
    assert np.array_equal(np.round(frame.data * 65535).astype(np.uint16), rgb16)


def test_png_16bit_gray_exact(rgb16: np.ndarray) -> None:
    """A 16-bit grayscale PNG expands to three identical exact channels."""
    ok, data = cv2.imencode(".png", rgb16[:, :, 0])
    assert ok
    frame = read_image(data.tobytes())
    codes = np.round(frame.data * 65535).astype(np.uint16)
    for c in range(3):
        assert np.array_equal(codes[..., c], rgb16[:, :, 0])


def test_png_alpha_is_dropped_and_palette_expanded(rgb8: np.ndarray, pil_encode: Encode) -> None:
    """RGBA loses its alpha; a palette PNG reads as the palette's RGB colours."""
    rgba = np.dstack([rgb8, np.full(rgb8.shape[:2], 7, dtype=np.uint8)])
    frame = read_image(pil_encode(rgba, "PNG"))
    assert np.array_equal(np.round(frame.data * 255).astype(np.uint8), rgb8)
    palette = Image.fromarray(rgb8).quantize(colors=16)
    buffer = io.BytesIO()
    palette.save(buffer, "PNG")
    expected = np.asarray(palette.convert("RGB"))
    got = read_image(buffer.getvalue()).data
    assert np.array_equal(np.round(got * 255).astype(np.uint8), expected)


def test_png_exif_orientation_and_exposure(rgb8: np.ndarray, make_exif: Encode) -> None:
    """A PNG eXIf chunk supplies exposure and orientation (6: rotated 90 degrees clockwise)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb8).save(buffer, "PNG", exif=make_exif(orientation=6, exposure_time=2.0, iso=100))
    frame = read_image(buffer.getvalue())
    assert frame.exposure.exposure_time == pytest.approx(2.0) and frame.exposure.iso == 100
    expected = np.rot90(rgb8, k=-1)
    assert np.array_equal(np.round(frame.data * 255).astype(np.uint8), expected)


def test_png_text_chunks_are_skipped(rgb8: np.ndarray) -> None:
    """Ancillary chunks (tEXt) between IHDR and IDAT do not disturb reading."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "made by a test")
    buffer = io.BytesIO()
    Image.fromarray(rgb8).save(buffer, "PNG", pnginfo=info)
    assert read_image(buffer.getvalue()).data.shape == (*rgb8.shape[:2], 3)


def test_read_from_path_and_bytes_agree(tmp_path: Path, rgb8: np.ndarray, pil_encode: Encode) -> None:
    """A path (str or Path) and the same file's bytes decode to identical frames."""
    data = pil_encode(rgb8, "PNG")
    path = tmp_path / "image.png"
    path.write_bytes(data)
    from_bytes = read_image(data).data
    assert np.array_equal(read_image(path).data, from_bytes)
    assert np.array_equal(read_image(str(path)).data, from_bytes)


def test_real_camera_bracket_exposures(frobisher_dir: Path) -> None:
    """The frobisher bracket's EXIF exposure times read as 1/8, 1 and 8 seconds."""
    paths = sorted(frobisher_dir.glob("IMG_26*.jpg"))
    times = [read_image(p).exposure.exposure_time for p in paths]
    assert times == [pytest.approx(0.125), pytest.approx(1.0), pytest.approx(8.0)]
    assert [probe_image(p).exposure.exposure_time for p in paths] == times
