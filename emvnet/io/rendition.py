"""The HDR picture that HDR displays show: our SDR tonemap, and the same scene above SDR white.

Gain-map JPEG and PQ/HLG AVIF both want the merge on a display scale, and both should agree with the
SDR picture we already make (`tonemap.display`). `display` maps dark tones linearly with the slope
`auto_exposure`, so radiance x that exposure is in *SDR-white units*: 1.0 is the SDR picture's white
(reference white, 203 cd/m2 on an HDR display by ITU-R BT.2408), shadows land where the SDR picture
has them, and highlights rise above 1.0 up to the *headroom*, past which they are clipped.

The headroom is chosen from the image (the level nearly all of it stays under, 99.9th percentile of
the brightest channel) between 1 and `MAX_AUTO_HEADROOM`, or set by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emvnet.errors import EmvnetError
from emvnet.io.tonemap import auto_exposure, clean_linear, display, luminance

# 4 stops over SDR white: about what current phone and laptop HDR screens show; a larger range
# spreads the gain map's 8 bits thinner for highlights few displays can reach.
MAX_AUTO_HEADROOM = 16.0
MAX_HEADROOM = 10000.0 / 203.0  # PQ's 10000 cd/m2 peak over BT.2408 reference white
_HEADROOM_PERCENTILE = 99.9

# Linear BT.709 / sRGB primaries -> BT.2020 primaries (ITU-R BT.2087, D65 both).
BT709_TO_BT2020 = np.array(
    [
        [0.6274040, 0.3292820, 0.0433136],
        [0.0690970, 0.9195400, 0.0113612],
        [0.0163916, 0.0880132, 0.8955950],
    ],
    dtype=np.float32,
)


class HeadroomError(EmvnetError):
    """The requested HDR headroom is outside what the formats carry."""


@dataclass(frozen=True)
class Rendition:
    """One merge ready for an HDR format."""

    sdr: np.ndarray  # uint8 sRGB (H, W, 3): `display` of the merge, the picture SDR screens show
    lin: np.ndarray  # float32 linear BT.709 (H, W, 3) in SDR-white units, clipped to `headroom`
    exposure: float  # radiance x exposure = SDR-white units
    headroom: float  # brightest level kept, over SDR white (>= 1)


def check_headroom(headroom: float | None) -> None:
    """Refuse a headroom no HDR format here can carry (None = chosen from the image)."""
    if headroom is not None and not (1.0 <= headroom <= MAX_HEADROOM):
        raise HeadroomError(
            f"HDR headroom must be between 1 and {MAX_HEADROOM:.0f} (times SDR white), got {headroom:g}"
        )


def render(hdr: np.ndarray, headroom: float | None = None) -> Rendition:
    """The SDR picture and the SDR-white-unit HDR of linear RGB radiance `hdr` (H, W, 3)."""
    check_headroom(headroom)
    rgb = clean_linear(hdr)
    exposure = auto_exposure(luminance(rgb))
    lin = rgb * np.float32(exposure)
    if headroom is None:
        peak = np.max(lin, axis=2)
        headroom = float(np.clip(np.percentile(peak, _HEADROOM_PERCENTILE), 1.0, MAX_AUTO_HEADROOM))
    np.minimum(lin, np.float32(headroom), out=lin)
    return Rendition(sdr=display(rgb, exposure=exposure), lin=lin, exposure=exposure, headroom=headroom)
