"""Fixtures for the image I/O tests: every test image is generated here, nothing binary is committed."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import OpenEXR
import pytest
import tifffile
from helpers.brackets import encode_heic
from helpers.dng import dng_bytes
from PIL import Image, TiffImagePlugin

# OpenCV reads this when it first decodes an EXR, so setting it before any test runs is enough.
os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")

_REPO = Path(__file__).resolve().parents[3]
# The committed, downsized copy first; the original set where the shared data folder exists.
FROBISHER_DIRS = (
    _REPO / "tests" / "fixtures" / "brackets" / "frobisher",
    _REPO.parent / "shared" / "data" / "brackets" / "frobisher",
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def rgb8(rng: np.random.Generator) -> np.ndarray:
    """A 48x64 uint8 RGB image with a smooth gradient (JPEG-friendly) plus a little noise."""
    y, x = np.mgrid[0:48, 0:64]
    base = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.float64)
    return np.clip(base + rng.normal(0, 2, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def rgb16(rng: np.random.Generator) -> np.ndarray:
    """A 40x56 uint16 RGB image using the full 16-bit range (odd values included)."""
    return rng.integers(0, 65536, size=(40, 56, 3), dtype=np.uint16)


@pytest.fixture
def hdr_rgb(rng: np.random.Generator) -> np.ndarray:
    """A 32x48 float32 linear RGB image spanning 1e-3 .. 1e3."""
    return np.exp(rng.uniform(np.log(1e-3), np.log(1e3), size=(32, 48, 3))).astype(np.float32)


def _exif_bytes(
    orientation: int | None = None,
    exposure_time: float | None = None,
    iso: int | None = None,
    f_number: float | None = None,
) -> bytes:
    """An EXIF block as Pillow writes it into JPEG APP1 / PNG eXIf."""
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    sub = exif.get_ifd(0x8769)
    if exposure_time is not None:
        frac = Fraction(exposure_time).limit_denominator(100000)
        sub[33434] = TiffImagePlugin.IFDRational(frac.numerator, frac.denominator)
    if f_number is not None:
        frac = Fraction(f_number).limit_denominator(1000)
        sub[33437] = TiffImagePlugin.IFDRational(frac.numerator, frac.denominator)
    if iso is not None:
        sub[34855] = iso
    return exif.tobytes()


def _pil_bytes(pixels: np.ndarray, fmt: str, **save: object) -> bytes:
    """Encode an array with Pillow."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **save)
    return buffer.getvalue()


@pytest.fixture
def make_exif() -> Callable[..., bytes]:
    """Factory: make_exif(orientation=, exposure_time=, iso=, f_number=) -> EXIF block bytes."""
    return _exif_bytes


@pytest.fixture
def pil_encode() -> Callable[..., bytes]:
    """Factory: pil_encode(array, "JPEG"/"PNG"/"TIFF", **save_options) -> file bytes."""
    return _pil_bytes


def _exr_bytes(channels: dict[str, np.ndarray]) -> bytes:
    # The OpenEXR binding reads a strided plane's buffer as if contiguous: hand it copies.
    channels = {name: np.ascontiguousarray(plane) for name, plane in channels.items()}
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    buffer = io.BytesIO()
    with OpenEXR.File(header, channels) as exr:
        exr.write(buffer)
    return buffer.getvalue()


def _tiff_bytes(pixels: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, pixels, metadata=None, **options)
    return buffer.getvalue()


@pytest.fixture
def exr_encode() -> Callable[[dict[str, np.ndarray]], bytes]:
    """Factory: exr_encode({"R": plane, ...}) -> OpenEXR bytes written by the OpenEXR package."""
    return _exr_bytes


@pytest.fixture
def tiff_encode() -> Callable[..., bytes]:
    """Factory: tiff_encode(array, **tifffile.imwrite options) -> TIFF bytes."""
    return _tiff_bytes


@pytest.fixture(scope="session")
def samples() -> dict[str, bytes]:
    """One 64x64 image per readable kind, each written by a third-party encoder."""
    rng = np.random.default_rng(7)
    rgb8 = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    rgb16 = rng.integers(0, 65536, size=(64, 64, 3), dtype=np.uint16)
    lin = rng.uniform(0.01, 50.0, size=(64, 64, 3)).astype(np.float32)
    ok, png16 = cv2.imencode(".png", rgb16)
    assert ok
    ok, radiance = cv2.imencode(".hdr", lin)
    assert ok
    mosaic = rng.integers(64, 4096, size=(64, 64), dtype=np.uint16)
    return {
        "jpeg": _pil_bytes(rgb8, "JPEG", quality=90),
        "png8": _pil_bytes(rgb8, "PNG"),
        "png16": png16.tobytes(),
        "tiff8": _tiff_bytes(rgb8, photometric="rgb"),
        "tiff16": _tiff_bytes(rgb16, photometric="rgb", compression="zlib"),
        "tiff32f": _tiff_bytes(lin, photometric="rgb"),
        "exr": _exr_bytes({c: lin[:, :, i].astype(np.float16) for i, c in enumerate("RGB")}),
        "hdr": radiance.tobytes(),
        "dng": dng_bytes(mosaic, "RGGB", exposure_time=0.01),
        "heic": encode_heic(rgb8, exif=_exif_bytes(exposure_time=0.01)),
        "avif": _pil_bytes(rgb8, "AVIF", quality=90),
    }


@pytest.fixture
def frobisher_dir() -> Path:
    """The frobisher bracket (EXIF 1/8, 1, 8 s): the committed copy, else shared data; else skip."""
    for folder in FROBISHER_DIRS:
        if len(sorted(folder.glob("IMG_26*.jpg"))) == 3:
            return folder
    pytest.skip("frobisher bracket not available")
