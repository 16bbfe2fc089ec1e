"""What every reader shares: the probe result, the pixel limit, error wording, the float conversion,
and Pillow's header-only open."""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from emvnet.errors import CorruptImageError, ImageTooLargeError
from emvnet.frame import ExposureInfo
from emvnet.io.sniff import FORMAT_NAMES, ImageFormat

logger = logging.getLogger(__name__)

# Per frame. 100 MP covers medium-format sensors; past it a single float32 RGB frame is > 1.2 GB.
DEFAULT_MAX_PIXELS = 100_000_000

Source = str | os.PathLike[str] | bytes | bytearray | memoryview


@dataclass(frozen=True)
class ImageInfo:
    """What a header says about an image, read without decoding its pixels.

    `width` and `height` are those of the frame `read_image` returns in its default mode (upright,
    after EXIF/raw orientation; full sensor resolution for raws). `channels` counts the colour
    channels stored in the file (1 for grayscale and for a Bayer mosaic, 3 for RGB, 4 with alpha or
    CMYK); `bit_depth` is bits per stored sample (the sensor's bits for raws).
    """

    format: ImageFormat
    width: int
    height: int
    channels: int
    bit_depth: int
    floating: bool
    exposure: ExposureInfo = field(default_factory=ExposureInfo)


def describe(source: Source) -> str:
    """How error messages name the input: its path, or its size when it came as bytes."""
    if isinstance(source, bytes | bytearray | memoryview):
        return f"<{len(source)} bytes>"
    return printable(os.fspath(source))


def printable(text: str) -> str:
    """Text from a file or a path with control characters escaped: messages must stay one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def one_line(exc: BaseException) -> str:
    """A library exception's message squeezed onto one short line (some span several)."""
    text = printable(" ".join(str(exc).split())) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def check_size(name: str, fmt: str, width: int, height: int, max_pixels: int) -> None:
    """Refuse a header's size before anything is allocated for it."""
    label = FORMAT_NAMES.get(fmt, fmt)
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {label} image is {width}x{height} ({width * height / 1e6:.1f} MP), over the limit "
            f"of {max_pixels / 1e6:g} MP per frame"
        )


def open_with_pillow(data: bytes, name: str, pillow_format: str) -> Image.Image:
    """Pillow's lazy open as `pillow_format` ("JPEG", "AVIF"): the header is read, no pixels yet."""
    try:
        return Image.open(io.BytesIO(data), formats=[pillow_format])
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name}: {pillow_format} image is too large ({one_line(exc)})") from exc
    except Exception as exc:
        raise CorruptImageError(f"{name}: damaged {pillow_format} header ({one_line(exc)})") from exc


def to_rgb_float(pixels: np.ndarray, scale: float, *, bgr: bool = False) -> np.ndarray:
    """(H, W), (H, W, 1..4) samples -> float32 (H, W, 3) C-contiguous RGB, times `scale`.

    Grayscale is broadcast to three channels, a fourth (alpha) channel dropped, BGR reversed. Every
    step before the final multiply is a view, so the whole conversion is one pass and one allocation.
    """
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    channels = pixels.shape[2]
    assert channels in (1, 2, 3, 4), f"unexpected channel count {channels}"
    if channels <= 2:  # gray or gray + alpha
        view = np.broadcast_to(pixels[:, :, :1], (*pixels.shape[:2], 3))
    elif bgr:
        view = pixels[:, :, 2::-1]
    else:
        view = pixels[:, :, :3]
    out = np.empty((pixels.shape[0], pixels.shape[1], 3), dtype=np.float32)
    if scale == 1.0:
        np.copyto(out, view, casting="unsafe")
    else:
        np.multiply(view, np.float32(scale), out=out, casting="unsafe")
    return out


def replace_nonfinite(data: np.ndarray, name: str) -> np.ndarray:
    """Zero NaN/inf samples in place (with a warning): merges and metrics cannot use them."""
    # min/max propagate NaN and expose inf without allocating a mask for the common clean case.
    if data.size == 0 or (np.isfinite(data.min()) and np.isfinite(data.max())):
        return data
    bad = ~np.isfinite(data)
    logger.warning("%s: replaced %d NaN/inf samples with 0", name, int(np.count_nonzero(bad)))
    data[bad] = 0.0
    return data
