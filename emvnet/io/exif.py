"""EXIF: capture settings and orientation, read with the same bounded walker for every container.

JPEG APP1, PNG eXIf and TIFF/DNG all store EXIF as TIFF directories, so one parser
(`tiffmeta.parse_tiff`) serves them all: IFD0 holds the orientation (tag 274) and points to the EXIF
sub-IFD (0x8769) holding ExposureTime (33434), FNumber (33437) and ISO (34855); DNG writers often put
those three straight into IFD0, which is read as a fallback.

Orientation is applied as array views (no copy): the single float32 conversion at the end of each
reader materializes the upright image.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from emvnet.frame import ExposureInfo
from emvnet.io import tiffmeta

logger = logging.getLogger(__name__)

# EXIF orientation (1..8) -> LibRaw/dcraw "flip" bits: 1 mirror columns, 2 mirror rows, 4 transpose
# (applied in that order). LibRaw reports camera-raw orientation in these bits already.
_EXIF_TO_FLIP = {1: 0, 2: 1, 3: 3, 4: 2, 5: 4, 6: 6, 7: 7, 8: 5}


def apply_flip(arr: np.ndarray, flip: int) -> np.ndarray:
    """View of (H, W, ...) `arr` made upright from LibRaw flip bits."""
    if flip & 2:
        arr = arr[::-1]
    if flip & 1:
        arr = arr[:, ::-1]
    if flip & 4:
        arr = arr.swapaxes(0, 1)
    return arr


def exif_to_flip(orientation: int) -> int:
    """LibRaw flip bits for an EXIF orientation; unknown values mean 'as stored'."""
    return _EXIF_TO_FLIP.get(orientation, 0)


def orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """View of (H, W, ...) `arr` displayed the way EXIF orientation 1..8 asks."""
    return apply_flip(arr, exif_to_flip(orientation))


def upright_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """(width, height) after applying the EXIF orientation."""
    return (height, width) if exif_to_flip(orientation) & 4 else (width, height)


def parse_exif_block(block: bytes | None) -> tiffmeta.TiffLayout | None:
    """Directories of an EXIF block (JPEG APP1 payload or PNG eXIf); None if absent or broken."""
    if not block:
        return None
    if block.startswith(b"Exif\x00\x00"):
        block = block[6:]
    try:
        return tiffmeta.parse_tiff(block)
    except tiffmeta.TiffStructureError as exc:
        logger.warning("ignoring unreadable EXIF block: %s", exc)
        return None


def orientation_of(layout: tiffmeta.TiffLayout | None) -> int:
    """EXIF orientation 1..8 (1 when absent or out of range)."""
    if layout is None:
        return 1
    value = layout.first.integer(tiffmeta.ORIENTATION, 1)
    return value if 1 <= value <= 8 else 1


def exposure_of(layout: tiffmeta.TiffLayout | None) -> ExposureInfo:
    """Exposure time (s), ISO and f-number from the EXIF sub-IFD, falling back to IFD0."""
    if layout is None:
        return ExposureInfo()
    places = [ifd for ifd in (layout.exif, layout.first) if ifd is not None]

    def first_positive(tag: int) -> float | None:
        for ifd in places:
            value = positive_or_none(ifd.number(tag))
            if value is not None:
                return value
        return None

    return ExposureInfo(
        exposure_time=first_positive(tiffmeta.EXPOSURE_TIME),
        iso=first_positive(tiffmeta.ISO_SPEED),
        aperture=first_positive(tiffmeta.F_NUMBER),
    )


def merge_exposure(primary: ExposureInfo, fallback: ExposureInfo) -> ExposureInfo:
    """Field-wise: the primary's value where it has one, else the fallback's."""
    return ExposureInfo(
        exposure_time=primary.exposure_time if primary.exposure_time is not None else fallback.exposure_time,
        iso=primary.iso if primary.iso is not None else fallback.iso,
        aperture=primary.aperture if primary.aperture is not None else fallback.aperture,
    )


def positive_or_none(value: float | None) -> float | None:
    # Cameras write 0 (and 0/0 rationals) for "unknown"; none of these quantities can be <= 0.
    if value is None or not math.isfinite(value) or value <= 0:
        return None
    return float(value)
