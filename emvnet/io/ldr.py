"""JPEG and PNG: camera-encoded 8/16-bit frames (domain "display").

JPEG goes through Pillow, which notices truncated entropy data (OpenCV silently pads it). PNG is
decoded by OpenCV because Pillow reduces 16-bit RGB PNGs to 8 bits; before OpenCV sees the bytes,
the chunk walk here checks the IHDR size against the limit and that the file is complete.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
from PIL import Image

from emvnet.errors import CorruptImageError, UnsupportedFormatError
from emvnet.frame import Frame
from emvnet.io import exif, tiffmeta
from emvnet.io.common import ImageInfo, check_size, one_line, open_with_pillow, to_rgb_float

# Pillow modes a JPEG decodes to -> stored colour channels.
_JPEG_CHANNELS = {"L": 1, "RGB": 3, "YCbCr": 3, "CMYK": 4}
# PNG colour type -> stored channels (a palette image expands to RGB).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


# --- JPEG --------------------------------------------------------------------------------------------


def _open_jpeg(data: bytes, name: str) -> Image.Image:
    return open_with_pillow(data, name, "JPEG")


def _jpeg_meta(im: Image.Image) -> tiffmeta.TiffLayout | None:
    block = im.info.get("exif")
    return exif.parse_exif_block(block if isinstance(block, bytes) else None)


def probe_jpeg(data: bytes, name: str, max_pixels: int) -> ImageInfo:
    """Size, channels and EXIF exposure from the JPEG markers (no entropy decoding)."""
    with _open_jpeg(data, name) as im:
        meta = _jpeg_meta(im)
        width, height = exif.upright_size(im.width, im.height, exif.orientation_of(meta))
        check_size(name, "jpeg", width, height, max_pixels)
        channels = _JPEG_CHANNELS.get(im.mode, 3)
    return ImageInfo("jpeg", width, height, channels, 8, False, exif.exposure_of(meta))


def read_jpeg(data: bytes, name: str, max_pixels: int) -> Frame:
    """Decode a JPEG to an upright float32 RGB frame in [0, 1]."""
    with _open_jpeg(data, name) as im:
        check_size(name, "jpeg", im.width, im.height, max_pixels)
        meta = _jpeg_meta(im)
        try:
            im.load()
            if im.mode not in ("L", "RGB"):
                im = im.convert("RGB")  # CMYK (incl. Adobe's inverted) and YCbCr
            pixels = np.asarray(im)
        except Exception as exc:
            raise CorruptImageError(f"{name}: truncated or damaged JPEG ({one_line(exc)})") from exc
    upright = exif.orient(pixels, exif.orientation_of(meta))
    return Frame(
        data=to_rgb_float(upright, 1.0 / 255.0),
        domain="display",
        layout="rgb",
        source_format="jpeg",
        bit_depth=8,
        exposure=exif.exposure_of(meta),
    )


# --- PNG ---------------------------------------------------------------------------------------------


def _png_header(data: bytes, name: str, max_pixels: int) -> tuple[int, int, int, int, bytes | None]:
    """(width, height, bit depth, colour type, eXIf payload) after walking every chunk once.

    The walk only reads the 8-byte chunk headers, so it is cheap, and it is what catches a truncated
    file (a chunk running past the end, or no IEND) before any decoder runs.
    """
    if len(data) < 33 or data[12:16] != b"IHDR" or struct.unpack_from(">I", data, 8)[0] != 13:
        raise CorruptImageError(f"{name}: PNG is truncated or lacks its IHDR header")
    ihdr = data[16:29]
    if struct.unpack_from(">I", data, 29)[0] != zlib.crc32(data[12:29]):
        raise CorruptImageError(f"{name}: PNG header (IHDR) fails its checksum")
    width, height, depth, colour = struct.unpack_from(">IIBB", ihdr)
    if width == 0 or height == 0 or colour not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16):
        raise CorruptImageError(f"{name}: PNG header is invalid ({width}x{height}, colour type {colour})")
    check_size(name, "png", width, height, max_pixels)
    exif_block = None
    pos, seen_idat = 8, False
    while True:
        if pos + 12 > len(data):
            raise CorruptImageError(f"{name}: PNG is truncated (ends before its IEND chunk)")
        length, kind = struct.unpack_from(">I4s", data, pos)
        if pos + 12 + length > len(data):
            raise CorruptImageError(f"{name}: PNG is truncated (chunk {kind!r} runs past the end)")
        if kind == b"IDAT":
            seen_idat = True
        elif kind == b"eXIf":
            exif_block = data[pos + 8 : pos + 8 + length]
        elif kind == b"IEND":
            break
        pos += 12 + length
    if not seen_idat:
        raise CorruptImageError(f"{name}: PNG has no image data (IDAT)")
    return width, height, depth, colour, exif_block


def probe_png(data: bytes, name: str, max_pixels: int) -> ImageInfo:
    """Size, depth and eXIf exposure from the PNG chunks (no inflating)."""
    width, height, depth, colour, block = _png_header(data, name, max_pixels)
    meta = exif.parse_exif_block(block)
    width, height = exif.upright_size(width, height, exif.orientation_of(meta))
    bit_depth = 8 if colour == 3 else depth
    return ImageInfo("png", width, height, _PNG_CHANNELS[colour], bit_depth, False, exif.exposure_of(meta))


def read_png(data: bytes, name: str, max_pixels: int) -> Frame:
    """Decode an 8- or 16-bit PNG to an upright float32 RGB frame in [0, 1]."""
    width, height, _, _, block = _png_header(data, name, max_pixels)
    meta = exif.parse_exif_block(block)
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise CorruptImageError(f"{name}: PNG image data is truncated or damaged")
    if pixels.ndim not in (2, 3) or pixels.shape[:2] != (height, width):
        raise CorruptImageError(f"{name}: PNG decoded to shape {pixels.shape}, header says {width}x{height}")
    if pixels.dtype == np.uint8:
        scale, bit_depth = 1.0 / 255.0, 8
    elif pixels.dtype == np.uint16:
        scale, bit_depth = 1.0 / 65535.0, 16
    else:
        raise UnsupportedFormatError(f"{name}: PNG sample type {pixels.dtype} is not supported")
    upright = exif.orient(pixels, exif.orientation_of(meta))
    return Frame(
        data=to_rgb_float(upright, scale, bgr=True),
        domain="display",
        layout="rgb",
        source_format="png",
        bit_depth=bit_depth,
        exposure=exif.exposure_of(meta),
    )
