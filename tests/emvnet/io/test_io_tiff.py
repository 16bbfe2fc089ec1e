"""TIFF reading: 8/16-bit and float16/32 samples, layouts, codecs, orientation and EXIF."""

from __future__ import annotations

import io
import logging
import struct
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from PIL import Image

from emvnet.errors import CorruptImageError, UnsupportedFormatError
from emvnet.io import probe_image, read_image

Encode = Callable[..., bytes]


def test_tiff_8bit_exact(rgb8: np.ndarray, tiff_encode: Encode) -> None:
    """An 8-bit RGB TIFF reads back exactly, display domain."""
    frame = read_image(tiff_encode(rgb8, photometric="rgb"))
    assert (frame.domain, frame.bit_depth, frame.floating, frame.source_format) == (
        "display",
        8,
        False,
        "tiff",
    )
    assert np.array_equal(np.round(frame.data * 255).astype(np.uint8), rgb8)


def test_tiff_16bit_exact(rgb16: np.ndarray, tiff_encode: Encode) -> None:
    """Every 16-bit code of a deflate-compressed RGB TIFF survives."""
    frame = read_image(tiff_encode(rgb16, photometric="rgb", compression="zlib", predictor=True))
    assert frame.bit_depth == 16
    assert np.array_equal(np.round(frame.data * 65535).astype(np.uint16), rgb16)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_tiff_float_values_as_stored(hdr_rgb: np.ndarray, tiff_encode: Encode, dtype: type) -> None:
    """Float32 and float16 TIFFs read back as linear values, unscaled and exact."""
    stored = hdr_rgb.astype(dtype)
    frame = read_image(tiff_encode(stored, photometric="rgb"))
    assert (frame.domain, frame.floating) == ("linear", True)
    assert frame.bit_depth == np.dtype(dtype).itemsize * 8
    assert np.array_equal(frame.data, stored.astype(np.float32))


def test_tiff_planar_and_gray_and_alpha(rgb16: np.ndarray, tiff_encode: Encode) -> None:
    """Planar-separate RGB, grayscale and RGBA TIFFs all become interleaved RGB."""
    planar = read_image(tiff_encode(np.moveaxis(rgb16, -1, 0), photometric="rgb", planarconfig="separate"))
    assert np.array_equal(np.round(planar.data * 65535).astype(np.uint16), rgb16)
    gray = read_image(tiff_encode(rgb16[:, :, 0], photometric="minisblack"))
    assert np.array_equal(np.round(gray.data[..., 2] * 65535).astype(np.uint16), rgb16[:, :, 0])
    rgba = np.dstack([rgb16, np.zeros(rgb16.shape[:2], np.uint16)])
    alpha = read_image(tiff_encode(rgba, photometric="rgb", extrasamples=["unassalpha"]))
    assert np.array_equal(np.round(alpha.data * 65535).astype(np.uint16), rgb16)


def test_tiff_lzw_decodes_through_libtiff(rgb8: np.ndarray) -> None:
    """An LZW TIFF (a codec tifffile lacks without imagecodecs) still reads exactly."""
    buffer = io.BytesIO()
    Image.fromarray(rgb8).save(buffer, "TIFF", compression="tiff_lzw")
    frame = read_image(buffer.getvalue())
    assert np.array_equal(np.round(frame.data * 255).astype(np.uint8), rgb8)


def test_tiff_orientation_tag(rgb8: np.ndarray, tiff_encode: Encode) -> None:
    """Orientation 8 (rotate 90 degrees counter-clockwise) is applied; probe reports the upright size."""
    data = tiff_encode(rgb8, photometric="rgb", extratags=[(274, "H", 1, (8,), False)])
    frame = read_image(data)
    assert np.array_equal(np.round(frame.data * 255).astype(np.uint8), np.rot90(rgb8, k=1))
    info = probe_image(data)
    assert (info.width, info.height) == (rgb8.shape[0], rgb8.shape[1])


def test_tiff_exposure_tags(rgb8: np.ndarray, tiff_encode: Encode) -> None:
    """ExposureTime, FNumber and ISO tags of a TIFF are read."""
    tags = [
        (33434, "2I", 1, (1, 250), False),
        (33437, "2I", 1, (8, 1), False),
        (34855, "H", 1, (800,), False),
    ]
    exposure = read_image(tiff_encode(rgb8, photometric="rgb", extratags=tags)).exposure
    assert exposure.exposure_time == pytest.approx(1 / 250)
    assert exposure.aperture == pytest.approx(8.0) and exposure.iso == 800


def test_tiff_nonfinite_replaced_with_warning(
    hdr_rgb: np.ndarray, tiff_encode: Encode, caplog: pytest.LogCaptureFixture
) -> None:
    """NaN and inf samples of a float TIFF become 0, with a logged warning."""
    bad = hdr_rgb.copy()
    bad[0, 0, 0], bad[1, 1, 1], bad[2, 2, 2] = np.nan, np.inf, -np.inf
    with caplog.at_level(logging.WARNING, logger="emvnet.io"):
        frame = read_image(tiff_encode(bad, photometric="rgb"))
    assert np.isfinite(frame.data).all()
    assert frame.data[0, 0, 0] == frame.data[1, 1, 1] == frame.data[2, 2, 2] == 0
    assert "3 NaN/inf" in caplog.text


def test_tiff_unsupported_sample_type(tiff_encode: Encode) -> None:
    """Signed-integer TIFF samples are refused with a clear message."""
    data = tiff_encode(np.zeros((8, 8), dtype=np.int16), photometric="minisblack")
    with pytest.raises(UnsupportedFormatError, match="16-bit signed"):
        read_image(data)


@pytest.mark.parametrize("layout", [{"tile": (16, 32)}, {"rowsperstrip": 7}])
def test_tiff_tiles_and_strips(rgb16: np.ndarray, tiff_encode: Encode, layout: dict[str, object]) -> None:
    """Tiled TIFFs and many-strip TIFFs read exactly."""
    frame = read_image(tiff_encode(rgb16, photometric="rgb", **layout))
    assert np.array_equal(np.round(frame.data * 65535).astype(np.uint16), rgb16)


def test_tiff_written_by_opencv(rgb16: np.ndarray) -> None:
    """A 16-bit TIFF written by OpenCV (from BGR) reads back exactly in RGB order."""
    ok, data = cv2.imencode(".tif", np.ascontiguousarray(rgb16[:, :, ::-1]))
    assert ok
    frame = read_image(data.tobytes())
    assert np.array_equal(np.round(frame.data * 65535).astype(np.uint16), rgb16)


def test_tiff_missing_strips_are_corrupt(rgb8: np.ndarray, tiff_encode: Encode) -> None:
    """A TIFF with fewer strips than its RowsPerStrip and height call for is corrupt."""
    data = tiff_encode(rgb8, photometric="rgb", rowsperstrip=64)  # one strip for 48 rows
    at = data.index(struct.pack("<HHI", 278, 4, 1)) + 8  # RowsPerStrip's value
    forged = data[:at] + struct.pack("<I", 8) + data[at + 4 :]  # now 6 strips are needed
    with pytest.raises(CorruptImageError, match="strips/tiles"):
        read_image(forged)
