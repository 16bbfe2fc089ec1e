"""Radiance RGBE (.hdr/.pic): linear float frames.

The text header and the resolution line are parsed here so that the size is checked before OpenCV
allocates anything; OpenCV then decodes the (usually run-length encoded) scanlines. Values are
returned as stored: a header EXPOSURE= line is not divided out, as most HDR tools also ignore it.
"""

from __future__ import annotations

import re

import cv2
import numpy as np

from emvnet.errors import CorruptImageError, UnsupportedFormatError
from emvnet.frame import Frame
from emvnet.io.common import ImageInfo, check_size, printable, replace_nonfinite, to_rgb_float

_MAX_HEADER = 64 * 1024  # real headers are a few hundred bytes
_RESOLUTION = re.compile(rb"([-+])([XY]) (\d{1,9}) ([-+])([XY]) (\d{1,9})")


def parse_radiance_header(data: bytes, name: str) -> tuple[int, int]:
    """(width, height) from the header of a Radiance file in standard orientation."""
    end = data.find(b"\n\n", 0, _MAX_HEADER)
    if end < 0:
        raise CorruptImageError(f"{name}: Radiance HDR header is truncated (no blank line ending it)")
    for line in data[:end].split(b"\n"):
        if line.startswith(b"FORMAT=") and line[7:].strip() != b"32-bit_rle_rgbe":
            fmt = printable(line[7:].strip().decode("ascii", "replace"))
            raise UnsupportedFormatError(f"{name}: Radiance pixel format {fmt} is not supported (only RGBE)")
    line_end = data.find(b"\n", end + 2, end + 2 + 64)
    match = _RESOLUTION.fullmatch(data[end + 2 : line_end].strip()) if line_end > 0 else None
    if match is None:
        raise CorruptImageError(f"{name}: Radiance HDR resolution line is missing or malformed")
    sign1, axis1, size1, sign2, axis2, size2 = match.groups()
    if (sign1, axis1, sign2, axis2) != (b"-", b"Y", b"+", b"X"):
        orientation = match.group(0).decode("ascii")
        raise UnsupportedFormatError(
            f"{name}: Radiance HDR orientation '{orientation}' is not supported (only '-Y H +X W')"
        )
    width, height = int(size2), int(size1)
    if width == 0 or height == 0:
        raise CorruptImageError(f"{name}: Radiance HDR has an empty size {width}x{height}")
    return width, height


def probe_radiance(data: bytes, name: str, max_pixels: int) -> ImageInfo:
    """Size from the Radiance header."""
    width, height = parse_radiance_header(data, name)
    check_size(name, "hdr", width, height, max_pixels)
    return ImageInfo("hdr", width, height, 3, 32, True)


def read_radiance(data: bytes, name: str, max_pixels: int) -> Frame:
    """Decode a Radiance RGBE file to a float32 RGB frame of stored (linear) values."""
    width, height = parse_radiance_header(data, name)
    check_size(name, "hdr", width, height, max_pixels)
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise CorruptImageError(f"{name}: Radiance HDR scanlines are truncated or damaged")
    if pixels.shape != (height, width, 3) or pixels.dtype != np.float32:
        raise CorruptImageError(
            f"{name}: Radiance HDR decoded to {pixels.shape}, header says {width}x{height}"
        )
    out = replace_nonfinite(to_rgb_float(pixels, 1.0, bgr=True), name)
    return Frame(
        data=out,
        domain="linear",
        layout="rgb",
        source_format="hdr",
        bit_depth=32,  # decoded as float32; RGBE stores 8-bit mantissas sharing an 8-bit exponent
        floating=True,
    )
