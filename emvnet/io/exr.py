"""OpenEXR: linear float frames (half or float channels; RGB, luminance-only Y, or packed R/G1/G2/B).

The header is parsed here, bounded, before the OpenEXR library reads anything: the data window
against the pixel limit, the channel list (names, types, subsampling), and the version flags. Deep
and multi-part files are refused because the library would decode every part, whatever part 0 says.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Literal

import numpy as np
import OpenEXR

from emvnet.errors import CorruptImageError, ImageTooLargeError, UnsupportedFormatError
from emvnet.frame import Frame, Layout
from emvnet.io.common import ImageInfo, check_size, one_line, printable, replace_nonfinite, to_rgb_float

ExrPrecision = Literal["half", "float"]
_HALF_MAX = 65504.0  # largest finite float16; beyond it half would store inf
# The library's thread pool stays off (its default): with it ZIP-compressing a 2 MP merge is 1.7x
# faster on 2 cores, but its threads do not survive a fork, and a forked process (a DataLoader
# worker reading training scenes) would wait on them forever.

_DEEP, _MULTIPART = 0x800, 0x1000  # version-field flags
_MAX_ATTRIBUTES = 1024
_MAX_NAME = 256  # long-name files allow 255 characters plus the terminator
_HALF = 1

# Channel sets we understand, in output order, tried in turn.
_LAYOUTS: tuple[tuple[tuple[str, ...], Layout], ...] = (
    (("R", "G", "B"), "rgb"),
    (("R", "G1", "G2", "B"), "rggb"),
    (("Y",), "rgb"),
)


@dataclass(frozen=True)
class ExrHeader:
    """The parts of an OpenEXR header that decide whether and how we read it."""

    width: int
    height: int
    channels: dict[str, tuple[int, int, int]]  # name -> (pixel type 0 uint/1 half/2 float, x/y sampling)
    # CIE xy of the red, green and blue primaries and the white point; None = not stated (Rec.709).
    chromaticities: tuple[float, ...] | None = None


def parse_exr_header(data: bytes, name: str) -> ExrHeader:
    """Data window and channel list of a single-part OpenEXR file."""
    if len(data) < 8:
        raise CorruptImageError(f"{name}: OpenEXR file is truncated (no version field)")
    flags = int.from_bytes(data[4:8], "little")
    if flags & 0xFF != 2:
        raise UnsupportedFormatError(f"{name}: OpenEXR version {flags & 0xFF} is not supported")
    if flags & (_DEEP | _MULTIPART):
        raise UnsupportedFormatError(f"{name}: deep or multi-part OpenEXR files are not supported")
    pos, found = 8, {}
    for _ in range(_MAX_ATTRIBUTES):
        attr, pos = _cstring(data, pos, name)
        if not attr:
            break
        _, pos = _cstring(data, pos, name)  # attribute type name
        if pos + 4 > len(data):
            raise CorruptImageError(f"{name}: OpenEXR header is truncated")
        size = int.from_bytes(data[pos : pos + 4], "little", signed=True)
        pos += 4
        if size < 0 or pos + size > len(data):
            raise CorruptImageError(f"{name}: OpenEXR header is truncated (attribute {printable(attr)})")
        if attr in ("channels", "dataWindow", "chromaticities"):
            found[attr] = data[pos : pos + size]
        pos += size
    else:
        raise CorruptImageError(f"{name}: OpenEXR header has too many attributes")
    if len(found.get("dataWindow", b"")) != 16 or "channels" not in found:
        raise CorruptImageError(f"{name}: OpenEXR header lacks a valid dataWindow or channel list")
    xmin, ymin, xmax, ymax = struct.unpack("<4i", found["dataWindow"])
    width, height = xmax - xmin + 1, ymax - ymin + 1
    if width <= 0 or height <= 0:
        raise CorruptImageError(f"{name}: OpenEXR data window is empty ({width}x{height})")
    primaries = found.get("chromaticities", b"")
    chromaticities = struct.unpack("<8f", primaries) if len(primaries) == 32 else None
    return ExrHeader(width, height, _channel_list(found["channels"], name), chromaticities)


def _cstring(data: bytes, pos: int, name: str) -> tuple[str, int]:
    end = data.find(b"\0", pos, pos + _MAX_NAME)
    if end < 0:
        raise CorruptImageError(f"{name}: OpenEXR header is truncated or has an over-long name")
    return data[pos:end].decode("latin-1"), end + 1


def _channel_list(raw: bytes, name: str) -> dict[str, tuple[int, int, int]]:
    channels: dict[str, tuple[int, int, int]] = {}
    pos = 0
    while pos < len(raw):
        channel, pos = _cstring(raw, pos, name)
        if not channel:
            return channels
        if pos + 16 > len(raw):
            break
        pixel_type, _, xs, ys = struct.unpack_from("<iI2i", raw, pos)
        channels[channel] = (pixel_type, xs, ys)
        pos += 16
    raise CorruptImageError(f"{name}: OpenEXR channel list is malformed")


def _pick(header: ExrHeader, name: str) -> tuple[tuple[str, ...], Layout]:
    for names, layout in _LAYOUTS:
        if all(c in header.channels for c in names):
            if any(header.channels[c][1:] != (1, 1) for c in names):
                raise UnsupportedFormatError(f"{name}: OpenEXR with subsampled channels is not supported")
            return names, layout
    listed = ", ".join(printable(c) for c in sorted(header.channels)) or "none"
    raise UnsupportedFormatError(
        f"{name}: OpenEXR channels ({listed}) are not R,G,B, Y, or R,G1,G2,B; export an RGB image"
    )


def _checked(data: bytes, name: str, max_pixels: int) -> tuple[ExrHeader, tuple[str, ...], Layout]:
    header = parse_exr_header(data, name)
    check_size(name, "exr", header.width, header.height, max_pixels)
    # The library decodes every channel, chosen or not: bound the total, not just the window.
    if header.width * header.height * len(header.channels) > 4 * max_pixels:
        raise ImageTooLargeError(
            f"{name}: OpenEXR image has {len(header.channels)} channels of {header.width}x{header.height}, "
            f"over the limit of {4 * max_pixels / 1e6:g} M samples"
        )
    names, layout = _pick(header, name)
    return header, names, layout


def _bit_depth(header: ExrHeader, names: tuple[str, ...]) -> int:
    return 16 if all(header.channels[c][0] == _HALF for c in names) else 32


def probe_exr(data: bytes, name: str, max_pixels: int) -> ImageInfo:
    """Size, channel count and precision from the OpenEXR header."""
    header, names, _ = _checked(data, name, max_pixels)
    return ImageInfo("exr", header.width, header.height, len(names), _bit_depth(header, names), True)


def read_exr(data: bytes, name: str, max_pixels: int) -> Frame:
    """Decode an OpenEXR file to a float32 frame of stored (linear) values."""
    header, names, layout = _checked(data, name, max_pixels)
    try:
        with OpenEXR.File(io.BytesIO(data), separate_channels=True) as exr:
            planes = [exr.channels()[c].pixels for c in names]
    except Exception as exc:
        raise CorruptImageError(f"{name}: damaged or truncated OpenEXR data ({one_line(exc)})") from exc
    shape = (header.height, header.width)
    if any(p is None or p.shape != shape for p in planes):
        raise CorruptImageError(
            f"{name}: OpenEXR channels do not match the {header.width}x{header.height} header"
        )
    if len(planes) == 1:
        out = to_rgb_float(planes[0], 1.0)
    else:
        out = np.empty((*shape, len(planes)), dtype=np.float32)
        for i, plane in enumerate(planes):
            np.copyto(out[:, :, i], plane, casting="unsafe")
    replace_nonfinite(out, name)
    return Frame(
        data=out,
        domain="linear",
        layout=layout,
        source_format="exr",
        bit_depth=_bit_depth(header, names),
        floating=True,
    )


def encode_exr(lin: np.ndarray, precision: ExrPrecision = "half") -> bytes:
    """A linear (H, W, 3 or 4) frame as a ZIP-compressed scanline OpenEXR file (half or float)."""
    names = ("R", "G", "B") if lin.shape[2] == 3 else ("R", "G1", "G2", "B")
    planes = np.clip(lin, -_HALF_MAX, _HALF_MAX).astype(np.float16) if precision == "half" else lin
    channels = {n: np.ascontiguousarray(planes[:, :, i]) for i, n in enumerate(names)}
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    buffer = io.BytesIO()
    with OpenEXR.File(header, channels) as exr:
        exr.write(buffer)
    return buffer.getvalue()
