"""Camera raw (DNG and whatever LibRaw reads: CR2/CR3, NEF, ARW, RAF, ORF, RW2, ...) through rawpy.

Two outputs:
- "rgb": LibRaw's demosaic with the camera's white balance, linear (gamma 1), no auto-brightening
  and no data-driven white-level adjustment, converted to linear sRGB; 1.0 = the sensor's clipping
  level times the white-balance gain. Upright (the raw's orientation applied).
- "packed": the Bayer mosaic black/white-normalized, clipped to [0, 1] (noise below black is lost;
  the model only needs the signal) and packed to half size as R, G1, G2, B, whatever the sensor's
  own pattern. The mosaic is made upright first, then one row and/or column is cropped where needed
  to bring an R site to the top-left, and the size is cropped to even.

Sizes are checked from LibRaw's header parse before `unpack` decodes any sensor data.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import numpy as np
import rawpy

from emvnet.errors import CorruptImageError, ImageTooLargeError, UnsupportedFormatError
from emvnet.frame import ExposureInfo, Frame, RawInfo
from emvnet.io import exif, tiffmeta
from emvnet.io.common import ImageInfo, check_size, one_line, to_rgb_float

RawMode = Literal["rgb", "packed"]
RawFormat = Literal["dng", "raw"]

# Packed channel k holds the sensor site at this offset from an R site.
_PACKED_OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1))  # R, G1 (R's row), G2 (B's row), B


@contextmanager
def _opened(data: bytes, name: str, fmt: RawFormat, max_pixels: int) -> Iterator[rawpy.RawPy]:
    """A LibRaw handle on the bytes, with the sensor size already checked; errors made typed."""
    label = "DNG" if fmt == "dng" else "camera raw"
    try:
        raw = rawpy.imread(io.BytesIO(data))
    except rawpy.LibRawFileUnsupportedError as exc:
        raise UnsupportedFormatError(f"{name}: LibRaw does not support this {label} file") from exc
    except Exception as exc:
        raise CorruptImageError(f"{name}: damaged {label} header ({one_line(exc)})") from exc
    with raw:
        sizes = raw.sizes
        check_size(name, fmt, sizes.width, sizes.height, max_pixels)
        # Margins are allocated too: a forged raw size must not slip past the visible one.
        check_size(name, fmt, sizes.raw_width, sizes.raw_height, max_pixels)
        try:
            yield raw
        except (rawpy.LibRawTooBigError, rawpy.LibRawUnsufficientMemoryError) as exc:
            raise ImageTooLargeError(
                f"{name}: {label} needs more memory than allowed ({one_line(exc)})"
            ) from exc
        except (rawpy.LibRawError, rawpy.NotSupportedError) as exc:
            raise CorruptImageError(f"{name}: damaged or truncated {label} data ({one_line(exc)})") from exc


def _tiff_layout(data: bytes) -> tiffmeta.TiffLayout | None:
    if not tiffmeta.is_tiff_header(data):
        return None
    try:
        return tiffmeta.parse_tiff(data)
    except tiffmeta.TiffStructureError:
        return None  # LibRaw may still read it; only the tag-based metadata is lost


def _raw_ifd(layout: tiffmeta.TiffLayout | None) -> tiffmeta.TiffIfd | None:
    """The directory holding the full-size sensor data (DNG: NewSubfileType 0 with CFA/linear data)."""
    if layout is None:
        return None
    raw_kinds = (tiffmeta.PHOTOMETRIC_CFA, tiffmeta.PHOTOMETRIC_LINEAR_RAW)
    for ifd in layout.ifds:
        if ifd.integer(tiffmeta.PHOTOMETRIC, -1) in raw_kinds and ifd.integer(tiffmeta.NEW_SUBFILE_TYPE) == 0:
            return ifd
    return None


def _check_extents(data: bytes, name: str, fmt: RawFormat, layout: tiffmeta.TiffLayout | None) -> None:
    # LibRaw pads a short read with zeros (and only sometimes reports it): check strips ourselves.
    ifd = _raw_ifd(layout)
    if ifd is not None and not tiffmeta.strips_within(ifd, len(data)):
        label = "DNG" if fmt == "dng" else "camera raw"
        raise CorruptImageError(f"{name}: {label} sensor data runs past the end of the file (truncated?)")


def _bits_of(white: float) -> int:
    return max(int(white).bit_length(), 1)


def probe_raw(data: bytes, name: str, fmt: RawFormat, max_pixels: int) -> ImageInfo:
    """Upright full-resolution size from LibRaw's header parse, exposure from TIFF/EXIF tags.

    Exposure comes only from TIFF-structured raws (DNG, CR2, NEF, ARW, ...) here; for others (CR3,
    RAF) it is None until `read_image`, which gets it from LibRaw after decoding.
    """
    layout = _tiff_layout(data)
    with _opened(data, name, fmt, max_pixels) as raw:
        sizes = raw.sizes
        width, height = (sizes.height, sizes.width) if sizes.flip & 4 else (sizes.width, sizes.height)
    ifd = _raw_ifd(layout)
    white = ifd.number(tiffmeta.WHITE_LEVEL) if ifd is not None else None
    bits = _bits_of(white) if white else (ifd.integer(tiffmeta.BITS_PER_SAMPLE, 16) if ifd else 16)
    return ImageInfo(fmt, width, height, 1, bits, False, exif.exposure_of(layout))


def read_raw(data: bytes, name: str, fmt: RawFormat, max_pixels: int, mode: RawMode) -> Frame:
    """Decode a camera raw to linear RGB or to packed R, G1, G2, B (see the module docstring)."""
    layout = _tiff_layout(data)
    _check_extents(data, name, fmt, layout)
    with _opened(data, name, fmt, max_pixels) as raw:
        raw.unpack()
        info = _raw_info(raw)
        other = raw.other
        # rawpy renamed Other.shutter to shutter_speed; accept either.
        shutter = getattr(other, "shutter_speed", None) or getattr(other, "shutter", None)
        exposure = exif.merge_exposure(
            exif.exposure_of(layout),
            ExposureInfo(
                exposure_time=exif.positive_or_none(shutter),
                iso=exif.positive_or_none(other.iso_speed),
                aperture=exif.positive_or_none(other.aperture),
            ),
        )
        white = float(raw.white_level)
        if mode == "packed":
            if info is None or not is_bayer(info.cfa_pattern):
                pattern = info.cfa_pattern if info else "none"
                raise UnsupportedFormatError(
                    f"{name}: packed raw mode needs a 2x2 Bayer sensor (this one's pattern: {pattern}); "
                    "use raw_mode='rgb'"
                )
            if white <= max(info.black_level):
                level = max(info.black_level)
                raise CorruptImageError(
                    f"{name}: raw white level {white:g} is not above black level {level:g}"
                )
            pixels = pack_rggb(
                raw.raw_image_visible, info.cfa_pattern, info.black_level, white, raw.sizes.flip
            )
        else:
            rgb = raw.postprocess(
                gamma=(1, 1),
                no_auto_bright=True,
                output_bps=16,
                use_camera_wb=True,
                output_color=rawpy.ColorSpace.sRGB,
                adjust_maximum_thr=0.0,  # keep the file's white level, not one guessed from the data
            )
            pixels = to_rgb_float(rgb, 1.0 / 65535.0)
    return Frame(
        data=pixels,
        domain="linear",
        layout="rggb" if mode == "packed" else "rgb",
        source_format=fmt,
        bit_depth=_bits_of(white),
        exposure=exposure,
        raw=info,
    )


def _raw_info(raw: rawpy.RawPy) -> RawInfo | None:
    """Pattern and levels of the visible sensor area as stored (before orientation)."""
    try:
        pattern = raw.raw_pattern
    except (NotImplementedError, RuntimeError):
        return None  # rawpy has no pattern for exotic (or damaged) filter layouts
    if pattern is None:
        return None  # not a mosaic (e.g. linear DNG): nothing sensor-specific to report
    n = pattern.shape[0]
    top, left = raw.sizes.top_margin, raw.sizes.left_margin
    # raw_pattern is anchored at the full raw's corner; the visible area may start at an odd offset.
    indices = [raw.raw_color(top + y, left + x) for y in range(n) for x in range(n)]
    desc = raw.color_desc.decode("ascii", "replace")
    blacks = raw.black_level_per_channel
    wb = tuple(float(v) for v in raw.camera_whitebalance)
    if len(wb) == 4 and wb[3] == 0.0:
        wb = (*wb[:3], wb[1])  # LibRaw writes 0 for "second green same as first"
    # LibRaw's colour indices normally lie inside color_desc and the 4 black levels; damaged files
    # can say otherwise, which then shows as "?" (and makes packed mode refuse the pattern).
    return RawInfo(
        cfa_pattern="".join(desc[i] if 0 <= i < len(desc) else "?" for i in indices),
        black_level=tuple(float(blacks[i]) if 0 <= i < len(blacks) else 0.0 for i in indices),
        white_level=float(raw.white_level),
        camera_wb=wb if any(wb) else None,
    )


def is_bayer(pattern: str) -> bool:
    """Whether a row-major 2x2 pattern is Bayer: one R and one B on a diagonal, two G on the other."""
    return sorted(pattern) == ["B", "G", "G", "R"] and pattern.index("R") + pattern.index("B") == 3


def pack_rggb(
    mosaic: np.ndarray, pattern: str, black: tuple[float, ...], white: float, flip: int = 0
) -> np.ndarray:
    """Sensor mosaic (H, W) -> float32 (H'/2, W'/2, 4) as R, G1, G2, B in [0, 1], made upright.

    `pattern` and `black` describe the stored 2x2 tile row-major; `flip` holds LibRaw orientation
    bits. H', W' are the upright size less the row/column cropped to start on an R site.
    """
    height, width = mosaic.shape
    # A tile of position indices with the mosaic's parity, oriented like it: its top-left 2x2 then
    # says which stored position each upright position came from.
    tile = np.tile(np.arange(4).reshape(2, 2), (2, 2))[: 2 + height % 2, : 2 + width % 2]
    where = exif.apply_flip(tile, flip)[:2, :2]
    upright = exif.apply_flip(mosaic, flip)
    letters = [[pattern[where[y, x]] for x in range(2)] for y in range(2)]
    dy, dx = next((y, x) for y in range(2) for x in range(2) if letters[y][x] == "R")
    assert letters[1 - dy][1 - dx] == "B", f"R and B are not diagonal in pattern {pattern}"
    h2, w2 = (upright.shape[0] - dy) // 2, (upright.shape[1] - dx) // 2
    out = np.empty((h2, w2, 4), dtype=np.float32)
    for k, (oy, ox) in enumerate(_PACKED_OFFSETS):
        y0, x0 = dy + oy, dx + ox
        level = black[where[y0 % 2, x0 % 2]]
        assert white > level, f"white level {white} is not above black level {level}"
        site = upright[y0::2, x0::2][:h2, :w2]
        np.subtract(site, np.float32(level), out=out[:, :, k], casting="unsafe")
        out[:, :, k] *= np.float32(1.0 / (white - level))
    return np.clip(out, 0.0, 1.0, out=out)
