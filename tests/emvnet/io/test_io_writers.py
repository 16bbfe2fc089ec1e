"""Writing: output formats by extension, encoders, what other tools make of our files, atomic writes."""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
import OpenEXR
import pytest
import tifffile
from PIL import Image

from emvnet.errors import UnsupportedFormatError
from emvnet.io import encode_image, output_format_for, read_image, write_image
from emvnet.io.tonemap import display


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("out.exr", "exr"),
        ("out.HDR", "hdr"),
        ("out.pic", "hdr"),
        ("a/b/out.tif", "tiff"),
        ("out.TIFF", "tiff"),
        ("out.png", "png"),
        ("out.jpg", "jpeg"),
        ("out.JPEG", "jpeg"),
    ],
)
def test_output_format_by_extension(name: str, fmt: str) -> None:
    """Extensions map to formats case-insensitively."""
    assert output_format_for(name) == fmt
    assert output_format_for(Path(name)) == fmt


@pytest.mark.parametrize("name", ["out.webp", "out", "out.exr.bak"])
def test_unknown_output_extension(name: str) -> None:
    """An unknown extension raises UnsupportedFormatError listing the allowed ones."""
    with pytest.raises(UnsupportedFormatError, match=r"\.exr \.hdr \.pic \.tif \.tiff \.png \.jpg \.jpeg"):
        output_format_for(name)


def test_exr_half_and_float_round_trip(hdr_rgb: np.ndarray) -> None:
    """Our EXR reads back through our reader: float exactly, half to float16 precision."""
    exact = read_image(encode_image(hdr_rgb, "exr", exr_precision="float"))
    assert exact.bit_depth == 32 and np.array_equal(exact.data, hdr_rgb)
    half = read_image(encode_image(hdr_rgb, "exr"))
    assert half.bit_depth == 16
    assert np.array_equal(half.data, hdr_rgb.astype(np.float16).astype(np.float32))


def test_exr_opens_in_openexr_and_opencv(hdr_rgb: np.ndarray) -> None:
    """The OpenEXR package and OpenCV read our EXR with the right channels and order."""
    data = encode_image(hdr_rgb, "exr", exr_precision="float")
    with OpenEXR.File(io.BytesIO(data), separate_channels=True) as exr:
        channels = exr.channels()
        assert exr.header()["compression"] == OpenEXR.ZIP_COMPRESSION
        assert np.array_equal(channels["R"].pixels, hdr_rgb[:, :, 0])
        assert np.array_equal(channels["B"].pixels, hdr_rgb[:, :, 2])
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if bgr is None:
        pytest.skip("this OpenCV build does not read OpenEXR")
    np.testing.assert_array_equal(bgr[:, :, ::-1], hdr_rgb)


def test_exr_half_saturates_instead_of_inf() -> None:
    """Values beyond float16's range are stored as 65504, not inf."""
    hdr = np.full((4, 4, 3), 1e6, dtype=np.float32)
    assert read_image(encode_image(hdr, "exr")).data.max() == 65504.0


def test_radiance_round_trip_and_opencv(hdr_rgb: np.ndarray) -> None:
    """Our Radiance file reads back within RGBE precision, and OpenCV sees it in BGR order."""
    data = encode_image(hdr_rgb, "hdr")
    frame = read_image(data)
    scale = hdr_rgb.max(axis=-1, keepdims=True)
    assert np.all(np.abs(frame.data - hdr_rgb) <= 0.01 * scale)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(bgr[:, :, ::-1], frame.data)


def test_tiff_float_round_trip_and_other_readers(hdr_rgb: np.ndarray) -> None:
    """Our float32 TIFF is exact through our reader, tifffile, OpenCV and imageio."""
    data = encode_image(hdr_rgb, "tiff")
    assert np.array_equal(read_image(data).data, hdr_rgb)
    assert np.array_equal(tifffile.imread(io.BytesIO(data)), hdr_rgb)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert bgr is not None and np.array_equal(bgr[:, :, ::-1], hdr_rgb)
    iio = pytest.importorskip("imageio.v3")
    assert np.array_equal(iio.imread(data, extension=".tif"), hdr_rgb)


@pytest.mark.parametrize("fmt", ["exr", "tiff"])
def test_packed_rggb_round_trip(rng: np.random.Generator, fmt: str) -> None:
    """(H, W, 4) packed raw written as EXR or TIFF reads back as layout rggb, unchanged."""
    packed = rng.uniform(0, 1, size=(12, 20, 4)).astype(np.float32)
    frame = read_image(encode_image(packed, fmt, exr_precision="float"))  # type: ignore[arg-type]
    assert frame.layout == "rggb"
    assert np.array_equal(frame.data, packed)


@pytest.mark.parametrize("fmt", ["hdr", "png", "jpeg"])
def test_packed_rggb_refused_by_rgb_only_formats(rng: np.random.Generator, fmt: str) -> None:
    """Radiance, PNG and JPEG refuse 4-channel input with a typed error."""
    with pytest.raises(UnsupportedFormatError, match="packed raw"):
        encode_image(np.zeros((4, 4, 4), np.float32), fmt)  # type: ignore[arg-type]


def test_png_is_the_display_tonemap(hdr_rgb: np.ndarray) -> None:
    """PNG output is exactly tonemap.display's 8-bit sRGB picture, tagged sRGB."""
    data = encode_image(hdr_rgb, "png")
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "RGB" and "srgb" in image.info
        assert np.array_equal(np.asarray(image), display(hdr_rgb))


def test_jpeg_quality_and_content() -> None:
    """JPEG output decodes close to the display tonemap, and lower quality makes smaller files."""
    y, x = np.mgrid[0:48, 0:64].astype(np.float32)
    hdr = np.stack([np.exp(x / 8), np.exp(y / 8), np.full_like(x, 3.0)], axis=-1) / 20
    high = encode_image(hdr, "jpeg", jpeg_quality=95)
    low = encode_image(hdr, "jpeg", jpeg_quality=30)
    assert len(low) < len(high)
    decoded = np.asarray(Image.open(io.BytesIO(high))).astype(np.float32)
    assert np.abs(decoded - display(hdr)).mean() < 3.0


def test_nonfinite_and_negative_values(hdr_rgb: np.ndarray) -> None:
    """NaN/inf become 0 everywhere; negatives survive in EXR and TIFF but not in Radiance."""
    hdr = hdr_rgb.copy()
    hdr[0, 0] = (np.nan, np.inf, -np.inf)
    hdr[1, 1] = (-2.0, 1.0, 1.0)
    for fmt in ("exr", "tiff", "hdr"):
        data = read_image(encode_image(hdr, fmt, exr_precision="float")).data  # type: ignore[arg-type]
        assert np.array_equal(data[0, 0], [0, 0, 0])
        assert data[1, 1, 0] == (0.0 if fmt == "hdr" else -2.0)
    for fmt in ("png", "jpeg"):
        assert encode_image(hdr, fmt)[:2] in (b"\x89P", b"\xff\xd8")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("array", "kwargs"),
    [
        (np.zeros((4, 4), np.float32), {}),
        (np.zeros((4, 4, 2), np.float32), {}),
        (np.zeros((0, 4, 3), np.float32), {}),
        (np.zeros((4, 4, 3), np.float32), {"jpeg_quality": 0}),
        (np.zeros((4, 4, 3), np.float32), {"exr_precision": "double"}),
    ],
)
def test_bad_arguments_are_value_errors(array: np.ndarray, kwargs: dict[str, object]) -> None:
    """Malformed arrays and out-of-range options are programming errors (ValueError)."""
    with pytest.raises(ValueError):  # noqa: PT011  (each case has its own message)
        encode_image(array, "exr", **kwargs)  # type: ignore[arg-type]


def test_write_image_is_atomic_and_clean(tmp_path: Path, hdr_rgb: np.ndarray) -> None:
    """write_image replaces the target in one step, leaves no temp files, and honours the umask."""
    target = tmp_path / "result.exr"
    target.write_bytes(b"old")
    write_image(target, hdr_rgb)
    assert read_image(target).data.shape == hdr_rgb.shape
    assert os.listdir(tmp_path) == ["result.exr"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_image_failure_keeps_the_old_file(tmp_path: Path) -> None:
    """A failed encode neither touches the existing file nor leaves a temp file behind."""
    target = tmp_path / "result.png"
    target.write_bytes(b"old")
    with pytest.raises(UnsupportedFormatError):
        write_image(target, np.zeros((4, 4, 4), np.float32))
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["result.png"]


def test_write_image_format_override(tmp_path: Path, hdr_rgb: np.ndarray) -> None:
    """An explicit fmt wins over the extension; an unknown extension without fmt is refused."""
    target = tmp_path / "result.bin"
    write_image(target, hdr_rgb, fmt="tiff")
    assert read_image(target).source_format == "tiff"
    with pytest.raises(UnsupportedFormatError):
        write_image(tmp_path / "result.bin", hdr_rgb)
