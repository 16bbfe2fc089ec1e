"""`read_image` and `probe_image`: sniff the bytes, then hand them to the one reader for that format.

Paths are read whole (every decoder here wants the full buffer), but only after the first bytes are
seen to be an image, so pointing a reader at a large non-image costs one small read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from emvnet.errors import UnsupportedFormatError
from emvnet.frame import Frame
from emvnet.io import exr, heif, ldr, radiance, raw, tiff
from emvnet.io.common import DEFAULT_MAX_PIXELS, ImageInfo, Source, describe
from emvnet.io.sniff import SNIFF_BYTES, SUPPORTED_INPUTS, ImageFormat, sniff_format


def _not_an_image(name: str, head: bytes) -> UnsupportedFormatError:
    if not head:
        return UnsupportedFormatError(f"{name} is empty (0 bytes), not an image")
    sample = head[:SNIFF_BYTES]
    hint = " (it looks like text)" if sample.isascii() and all(b >= 9 for b in sample) else ""
    return UnsupportedFormatError(f"{name} is not an image in a supported format ({SUPPORTED_INPUTS}){hint}")


def _load(source: Source) -> tuple[bytes, str, ImageFormat]:
    """The file's bytes, its name for messages, and its format; raises if it is not an image."""
    name = describe(source)
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    else:
        with open(source, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
            if sniff_format(head) is None:
                raise _not_an_image(name, head)
            fh.seek(0)
            data = fh.read()
    fmt = sniff_format(data)
    if fmt is None:
        raise _not_an_image(name, data)
    return data, name, fmt


def _check_limit(max_pixels: int) -> None:
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")


# One probe and one decoder per format; raws take their format (DNG or other) and a mode too.
_PROBES: dict[str, Callable[[bytes, str, int], ImageInfo]] = {
    "jpeg": ldr.probe_jpeg,
    "png": ldr.probe_png,
    "tiff": tiff.probe_tiff,
    "exr": exr.probe_exr,
    "hdr": radiance.probe_radiance,
    "heic": heif.probe_heic,
    "avif": heif.probe_avif,
}
_READERS: dict[str, Callable[[bytes, str, int], Frame]] = {
    "jpeg": ldr.read_jpeg,
    "png": ldr.read_png,
    "tiff": tiff.read_tiff,
    "exr": exr.read_exr,
    "hdr": radiance.read_radiance,
    "heic": heif.read_heic,
    "avif": heif.read_avif,
}


def probe_image(source: Source, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Format, upright size, sample type and exposure from the headers, without decoding pixels.

    Raises the same typed errors as `read_image` for non-images and over-large images; damage in the
    pixel data itself may only show when reading.
    """
    _check_limit(max_pixels)
    data, name, fmt = _load(source)
    if fmt == "dng" or fmt == "raw":
        return raw.probe_raw(data, name, fmt, max_pixels)
    return _PROBES[fmt](data, name, max_pixels)


def read_image(
    source: Source,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    raw_mode: Literal["rgb", "packed"] = "rgb",
) -> Frame:
    """Decode a JPEG, PNG, TIFF, DNG/camera raw, OpenEXR, Radiance, HEIC or AVIF file (path or bytes).

    `max_pixels` bounds the upright image size and is checked from the header before any pixel
    buffer exists. `raw_mode` applies to camera raws only: "rgb" demosaics to linear sRGB, "packed"
    returns the normalized Bayer mosaic as half-size R, G1, G2, B. Raises UnsupportedFormatError,
    CorruptImageError or ImageTooLargeError for bad input; OSError if a path cannot be opened.
    """
    _check_limit(max_pixels)
    if raw_mode not in ("rgb", "packed"):
        raise ValueError(f"raw_mode must be 'rgb' or 'packed', got {raw_mode!r}")
    data, name, fmt = _load(source)
    if fmt == "dng" or fmt == "raw":
        return raw.read_raw(data, name, fmt, max_pixels, raw_mode)
    return _READERS[fmt](data, name, max_pixels)
