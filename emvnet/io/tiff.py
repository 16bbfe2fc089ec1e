"""TIFF: 8/16-bit integer frames (domain "display") and float16/32 frames (domain "linear").

The directory is read by `tiffmeta` first: size against the limit, strips inside the file, enough
bytes for an uncompressed image. Only then does tifffile decode the first image. tifffile alone lacks
LZW, PackBits, JPEG and the float predictor (they need the optional `imagecodecs`); such files, and
palette/YCbCr/CMYK photometrics, are decoded by OpenCV's libtiff instead, on the same checked sizes.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import tifffile

from emvnet.errors import CorruptImageError, UnsupportedFormatError
from emvnet.frame import Frame
from emvnet.io import exif, tiffmeta
from emvnet.io.common import ImageInfo, check_size, one_line, replace_nonfinite, to_rgb_float

# Written into ImageDescription by our writer so a packed-raw TIFF reads back as packed raw
# rather than as RGB plus alpha.
RGGB_MARKER = "emvnet:layout=rggb"

_UNCOMPRESSED = 1
_PHOTOMETRIC_GRAY, _PHOTOMETRIC_RGB = 1, 2
_SAMPLE_UINT, _SAMPLE_FLOAT = 1, 3
# (bits, sample format) pairs we turn into frames.
_SUPPORTED_SAMPLES = {(8, _SAMPLE_UINT), (16, _SAMPLE_UINT), (16, _SAMPLE_FLOAT), (32, _SAMPLE_FLOAT)}


def _inspect(data: bytes, name: str, max_pixels: int) -> tuple[tiffmeta.TiffLayout, tiffmeta.TiffIfd]:
    try:
        layout = tiffmeta.parse_tiff(data)
    except tiffmeta.TiffStructureError as exc:
        raise CorruptImageError(f"{name}: damaged or truncated TIFF structure ({exc})") from exc
    ifd = layout.first
    width, height = ifd.integer(tiffmeta.IMAGE_WIDTH), ifd.integer(tiffmeta.IMAGE_LENGTH)
    if width <= 0 or height <= 0:
        raise CorruptImageError(f"{name}: TIFF header gives an invalid size {width}x{height}")
    check_size(name, "tiff", width, height, max_pixels)
    bits = ifd.integer(tiffmeta.BITS_PER_SAMPLE, 1)
    sample_format = ifd.integer(tiffmeta.SAMPLE_FORMAT, _SAMPLE_UINT)
    if (bits, sample_format) not in _SUPPORTED_SAMPLES:
        kind = {1: "unsigned", 2: "signed", 3: "float"}.get(sample_format, f"format-{sample_format}")
        raise UnsupportedFormatError(
            f"{name}: TIFF with {bits}-bit {kind} samples is not supported "
            "(use 8/16-bit unsigned or 16/32-bit float)"
        )
    return layout, ifd


def probe_tiff(data: bytes, name: str, max_pixels: int) -> ImageInfo:
    """Size, sample type and EXIF exposure from the TIFF directories."""
    layout, ifd = _inspect(data, name, max_pixels)
    width, height = exif.upright_size(
        ifd.integer(tiffmeta.IMAGE_WIDTH), ifd.integer(tiffmeta.IMAGE_LENGTH), exif.orientation_of(layout)
    )
    photometric = ifd.integer(tiffmeta.PHOTOMETRIC, _PHOTOMETRIC_GRAY)
    channels = 3 if photometric == 3 else ifd.integer(tiffmeta.SAMPLES_PER_PIXEL, 1)
    floating = ifd.integer(tiffmeta.SAMPLE_FORMAT, _SAMPLE_UINT) == _SAMPLE_FLOAT
    bits = ifd.integer(tiffmeta.BITS_PER_SAMPLE, 1)
    return ImageInfo("tiff", width, height, channels, bits, floating, exif.exposure_of(layout))


def read_tiff(data: bytes, name: str, max_pixels: int) -> Frame:
    """Decode the first image of a TIFF to an upright float32 frame."""
    layout, ifd = _inspect(data, name, max_pixels)
    if not tiffmeta.strips_within(ifd, len(data)):
        raise CorruptImageError(f"{name}: TIFF pixel data runs past the end of the file (truncated?)")
    segments = len(ifd.numbers(tiffmeta.STRIP_OFFSETS) or ifd.numbers(tiffmeta.TILE_OFFSETS))
    if segments != tiffmeta.segment_count(ifd):
        raise CorruptImageError(
            f"{name}: TIFF has {segments} strips/tiles where its size needs {tiffmeta.segment_count(ifd)}"
        )
    compression = ifd.integer(tiffmeta.COMPRESSION, _UNCOMPRESSED)
    if compression == _UNCOMPRESSED:
        stored = sum(ifd.numbers(tiffmeta.STRIP_BYTE_COUNTS) or ifd.numbers(tiffmeta.TILE_BYTE_COUNTS))
        needed = tiffmeta.uncompressed_bytes(ifd)
        if stored < needed:
            raise CorruptImageError(
                f"{name}: TIFF strips hold {int(stored)} bytes, the header needs {needed}"
            )
    pixels, bgr = _decode(data, name, ifd)
    height, width = ifd.integer(tiffmeta.IMAGE_LENGTH), ifd.integer(tiffmeta.IMAGE_WIDTH)
    if pixels.ndim not in (2, 3) or pixels.shape[:2] != (height, width):
        raise CorruptImageError(f"{name}: TIFF decoded to shape {pixels.shape}, header says {width}x{height}")
    if pixels.dtype == np.uint8:
        scale, floating = 1.0 / 255.0, False
    elif pixels.dtype == np.uint16:
        scale, floating = 1.0 / 65535.0, False
    elif pixels.dtype.kind == "f":
        scale, floating = 1.0, True
    else:
        raise UnsupportedFormatError(f"{name}: TIFF sample type {pixels.dtype} is not supported")
    upright = exif.orient(pixels, exif.orientation_of(layout))
    packed = (
        floating
        and upright.ndim == 3
        and upright.shape[2] == 4
        and RGGB_MARKER in ifd.text(tiffmeta.IMAGE_DESCRIPTION)
    )
    if packed:
        out = np.ascontiguousarray(upright, dtype=np.float32)
    else:
        out = to_rgb_float(upright[..., :4] if upright.ndim == 3 else upright, scale, bgr=bgr)
    if floating:
        replace_nonfinite(out, name)
    return Frame(
        data=out,
        domain="linear" if floating else "display",
        layout="rggb" if packed else "rgb",
        source_format="tiff",
        bit_depth=ifd.integer(tiffmeta.BITS_PER_SAMPLE, 8),
        floating=floating,
        exposure=exif.exposure_of(layout),
    )


def _decode(data: bytes, name: str, ifd: tiffmeta.TiffIfd) -> tuple[np.ndarray, bool]:
    """Pixels of the first image as (H, W[, S]) and whether their channels are in BGR order."""
    photometric = ifd.integer(tiffmeta.PHOTOMETRIC, _PHOTOMETRIC_GRAY)
    if photometric in (_PHOTOMETRIC_GRAY, _PHOTOMETRIC_RGB):
        try:
            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                page = tif.pages.first
                pixels = page.asarray()
                if page.axes.startswith("S") and pixels.ndim == 3:  # planar: (S, H, W)
                    pixels = np.moveaxis(pixels, 0, -1)
                return pixels, False
        except Exception as exc:
            if "imagecodecs" not in str(exc):
                raise CorruptImageError(f"{name}: damaged TIFF image data ({one_line(exc)})") from exc
            # else: a codec tifffile lacks without imagecodecs; libtiff (in OpenCV) has it
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        compression = ifd.integer(tiffmeta.COMPRESSION, _UNCOMPRESSED)
        raise CorruptImageError(
            f"{name}: could not decode TIFF image data (compression {compression}, photometric {photometric})"
        )
    return decoded, decoded.ndim == 3 and decoded.shape[2] >= 3
