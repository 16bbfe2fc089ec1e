"""Minimal DNG writer for tests: a Bayer mosaic plus the tags LibRaw needs, written with tifffile.

The colour matrix makes the camera's native space linear sRGB (D65) and the as-shot neutral is
white, so LibRaw's demosaic of a flat patch returns that patch's normalized values unchanged: tests
can predict the RGB output exactly. LibRaw refuses images under 22 pixels on a side.
"""

from __future__ import annotations

import io
import os
from fractions import Fraction

import numpy as np
import tifffile

_CFA_CODES = {"R": 0, "G": 1, "B": 2}
# XYZ (D65) -> linear sRGB: as DNG ColorMatrix1 it declares camera RGB = linear sRGB.
_XYZ_TO_SRGB = (
    (3.2404542, -1.5371385, -0.4985314),
    (-0.9692660, 1.8760108, 0.0415560),
    (0.0556434, -0.2040259, 1.0572252),
)


def _rational(value: float, limit: int = 1_000_000) -> tuple[int, int]:
    frac = Fraction(value).limit_denominator(limit)
    return frac.numerator, frac.denominator


def dng_bytes(
    mosaic: np.ndarray,
    pattern: str = "RGGB",
    black: int | tuple[int, int, int, int] = 64,
    white: int = 4095,
    exposure_time: float | None = None,
    iso: int | None = None,
    f_number: float | None = None,
    orientation: int = 1,
) -> bytes:
    """An uncompressed DNG 1.4 holding `mosaic` (uint16 (H, W)) with the given 2x2 CFA `pattern`.

    `black` is one level or four, one per position of the 2x2 pattern (row-major).
    """
    assert mosaic.ndim == 2 and mosaic.dtype == np.uint16, "mosaic must be uint16 (H, W)"
    assert len(pattern) == 4 and set(pattern) <= set(_CFA_CODES), f"bad CFA pattern {pattern}"
    blacks = (black,) if isinstance(black, int) else tuple(black)
    matrix = [v for row in _XYZ_TO_SRGB for x in row for v in (round(x * 10000), 10000)]
    tags: list[tuple[int, str, int, object, bool]] = [
        (271, "s", 0, "EMVNet", False),  # Make: LibRaw wants a camera name
        (272, "s", 0, "Test DNG", False),
        (274, "H", 1, (orientation,), False),
        (33421, "H", 2, (2, 2), False),  # CFARepeatPatternDim
        (33422, "B", 4, bytes(_CFA_CODES[c] for c in pattern), False),
        (50706, "B", 4, bytes((1, 4, 0, 0)), False),  # DNGVersion
        (50707, "B", 4, bytes((1, 1, 0, 0)), False),
        (50708, "s", 0, "EMVNet Test DNG", False),  # UniqueCameraModel
        (50713, "H", 2, (1, 1) if len(blacks) == 1 else (2, 2), False),  # BlackLevelRepeatDim
        (50714, "H", len(blacks), blacks, False),
        (50717, "H", 1, (white,), False),
        (50721, "2i", 9, tuple(matrix), False),  # ColorMatrix1
        (50728, "2I", 3, (1, 1, 1, 1, 1, 1), False),  # AsShotNeutral: white
        (50778, "H", 1, (21,), False),  # CalibrationIlluminant1: D65
    ]
    if exposure_time is not None:
        tags.append((33434, "2I", 1, _rational(exposure_time), False))
    if f_number is not None:
        tags.append((33437, "2I", 1, _rational(f_number, 1000), False))
    if iso is not None:
        tags.append((34855, "H", 1, (iso,), False))
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        mosaic,
        photometric=32803,  # CFA
        subfiletype=0,
        extratags=sorted(tags, key=lambda t: t[0]),
        metadata=None,
    )
    return buffer.getvalue()


def write_dng(
    path: str | os.PathLike[str],
    mosaic: np.ndarray,
    pattern: str = "RGGB",
    black: int | tuple[int, int, int, int] = 64,
    white: int = 4095,
    exposure_time: float | None = None,
    iso: int | None = None,
    f_number: float | None = None,
    orientation: int = 1,
) -> str:
    """Write `dng_bytes(...)` to `path` and return the path as a string."""
    data = dng_bytes(mosaic, pattern, black, white, exposure_time, iso, f_number, orientation)
    with open(path, "wb") as fh:
        fh.write(data)
    return os.fspath(path)


def mosaic_from_rgb(rgb_codes: np.ndarray, pattern: str = "RGGB") -> np.ndarray:
    """Sample an (H, W, 3) uint16 image through a 2x2 CFA `pattern` into an (H, W) mosaic."""
    channel = {"R": 0, "G": 1, "B": 2}
    mosaic = np.empty(rgb_codes.shape[:2], dtype=np.uint16)
    for k, letter in enumerate(pattern):
        y, x = divmod(k, 2)
        mosaic[y::2, x::2] = rgb_codes[y::2, x::2, channel[letter]]
    return mosaic
