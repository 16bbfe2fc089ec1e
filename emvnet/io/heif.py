"""HEIC/HEIF (iPhone photos, through pillow-heif / libheif) and AVIF (Pillow / libavif) frames.

Both are display-encoded frames like JPEG ("display" domain) with EXIF exposure, ISO and f-number.
Orientation differs: libheif applies the file's own rotation and mirror boxes (irot/imir) while
decoding, and iPhones (like pillow-heif) keep the EXIF orientation equal to them, so for HEIC the
EXIF tag is already done and is not applied again (HEIF makes the boxes authoritative). Pillow
reports AVIF's boxes as the EXIF orientation instead, which is applied as for JPEG. Headers are read
(and sizes checked) before any pixel is decoded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pillow_heif
from PIL import Image

from emvnet.errors import CorruptImageError
from emvnet.frame import ExposureInfo, Frame
from emvnet.io import exif
from emvnet.io.common import ImageInfo, check_size, one_line, open_with_pillow, to_rgb_float

# --- HEIC --------------------------------------------------------------------------------------------


def _open_heic(data: bytes, name: str) -> Any:
    try:
        # 10/12-bit HEIC stays 16-bit: the merge gains from the extra levels.
        return pillow_heif.open_heif(data, convert_hdr_to_8bit=False)
    except Exception as exc:  # libheif reports every damage as ValueError or RuntimeError
        raise CorruptImageError(f"{name}: damaged HEIC/HEIF container ({one_line(exc)})") from exc


def _heic_meta(heif: Any) -> tuple[int, int, int, int, ExposureInfo]:
    """(width, height, channels, bit depth, exposure) of the primary image, upright."""
    width, height = heif.size  # after libheif's irot/imir
    channels = 4 if heif.has_alpha else 3
    block = heif.info.get("exif")
    meta = exif.parse_exif_block(block if isinstance(block, bytes) else None)
    return width, height, channels, int(heif.info.get("bit_depth", 8)), exif.exposure_of(meta)


def probe_heic(data: bytes, name: str, max_pixels: int) -> ImageInfo:
    """Size, depth and EXIF exposure from the HEIF boxes (no HEVC decoding)."""
    width, height, channels, depth, exposure = _heic_meta(_open_heic(data, name))
    check_size(name, "heic", width, height, max_pixels)
    return ImageInfo("heic", width, height, channels, depth, False, exposure)


def read_heic(data: bytes, name: str, max_pixels: int) -> Frame:
    """Decode the primary image of a HEIC/HEIF to an upright float32 RGB frame in [0, 1]."""
    heif = _open_heic(data, name)
    width, height, _, depth, exposure = _heic_meta(heif)
    check_size(name, "heic", width, height, max_pixels)
    try:
        pixels = np.asarray(heif)
    except Exception as exc:
        raise CorruptImageError(f"{name}: truncated or damaged HEIC image data ({one_line(exc)})") from exc
    if pixels.shape[:2] != (height, width):
        raise CorruptImageError(f"{name}: HEIC decoded to shape {pixels.shape}, header says {width}x{height}")
    # pillow-heif returns deeper samples scaled to the full 16-bit range.
    scale = 1.0 / 255.0 if pixels.dtype == np.uint8 else 1.0 / 65535.0
    return Frame(
        data=to_rgb_float(pixels, scale),
        domain="display",
        layout="rgb",
        source_format="heic",
        bit_depth=depth,
        exposure=exposure,
    )


# --- AVIF --------------------------------------------------------------------------------------------


def _avif_meta(im: Image.Image) -> tuple[int, ExposureInfo]:
    block = im.info.get("exif")
    meta = exif.parse_exif_block(block if isinstance(block, bytes) else None)
    return exif.orientation_of(meta), exif.exposure_of(meta)


def probe_avif(data: bytes, name: str, max_pixels: int) -> ImageInfo:
    """Size and EXIF exposure of an AVIF's primary image, before its pixels are used."""
    with open_with_pillow(data, name, "AVIF") as im:
        orientation, exposure = _avif_meta(im)
        width, height = exif.upright_size(im.width, im.height, orientation)
        check_size(name, "avif", width, height, max_pixels)
        channels = 4 if im.mode == "RGBA" else 3
    return ImageInfo("avif", width, height, channels, 8, False, exposure)


def read_avif(data: bytes, name: str, max_pixels: int) -> Frame:
    """Decode an AVIF to an upright float32 RGB frame in [0, 1] (Pillow gives 8-bit sRGB)."""
    with open_with_pillow(data, name, "AVIF") as im:
        check_size(name, "avif", im.width, im.height, max_pixels)
        orientation, exposure = _avif_meta(im)
        try:
            im.load()
            pixels = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
        except Exception as exc:
            raise CorruptImageError(f"{name}: truncated or damaged AVIF ({one_line(exc)})") from exc
    return Frame(
        data=to_rgb_float(exif.orient(pixels, orientation), 1.0 / 255.0),
        domain="display",
        layout="rgb",
        source_format="avif",
        bit_depth=8,
        exposure=exposure,
    )
