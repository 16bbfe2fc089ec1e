"""In-memory frames: what every reader returns and every merge consumes.

Units are part of the type: `Frame.domain` says whether `data` is camera-encoded ("display": a
JPEG/PNG/8-16-bit TIFF still carries the camera response and needs linearizing) or proportional to
scene radiance ("linear": camera raw, float TIFF, OpenEXR, Radiance). Axis order is always
(H, W, C) with RGB (never OpenCV's BGR) or packed Bayer RGGB channels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

Domain = Literal["display", "linear"]
Layout = Literal["rgb", "rggb"]


@dataclass(frozen=True)
class ExposureInfo:
    """Capture settings read from EXIF/DNG tags; None where the file does not say."""

    exposure_time: float | None = None  # seconds
    iso: float | None = None
    aperture: float | None = None  # f-number


@dataclass(frozen=True)
class RawInfo:
    """Sensor facts of a camera-raw frame, kept so raw-domain models and tests can check them."""

    cfa_pattern: str  # the sensor's 2x2 pattern as stored, row-major, e.g. "RGGB", "BGGR", "GRBG"
    black_level: tuple[float, ...]  # per CFA position of the 2x2 pattern, in sensor units
    white_level: float  # sensor units
    camera_wb: tuple[float, ...] | None = None  # as-shot multipliers (R, G, B, G2), where known


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded image.

    `data` is float32 (H, W, C), C-contiguous. For display and raw frames values lie in [0, 1]
    (1.0 = the sensor's or the encoding's clipping level); float formats may exceed 1.
    Layout "rggb" is camera raw packed to 4 channels at half size, always reordered to R, G1, G2, B
    whatever the sensor's own pattern.
    """

    data: np.ndarray
    domain: Domain
    layout: Layout
    source_format: str  # "jpeg", "png", "tiff", "dng", "raw", "exr", "hdr", "heic", "avif"
    bit_depth: int  # bits per sample in the file: 8, 16, 32, or the raw sensor's bits
    floating: bool = False  # samples are floating point in the file (EXR, Radiance, float TIFF)
    exposure: ExposureInfo = field(default_factory=ExposureInfo)
    raw: RawInfo | None = None

    def __post_init__(self) -> None:
        assert self.data.dtype == np.float32, f"frame data must be float32, got {self.data.dtype}"
        assert self.data.ndim == 3, f"frame data must be (H, W, C), got shape {self.data.shape}"
        want = 4 if self.layout == "rggb" else 3
        assert self.data.shape[2] == want, f"layout {self.layout} needs {want} channels"

    @property
    def height(self) -> int:
        return int(self.data.shape[0])

    @property
    def width(self) -> int:
        return int(self.data.shape[1])

    @property
    def megapixels(self) -> float:
        scale = 4 if self.layout == "rggb" else 1  # a packed raw pixel covers 2x2 sensor sites
        return self.height * self.width * scale / 1e6

    def without_exposure_time(self) -> Frame:
        """The frame without its EXIF/DNG exposure time, which a merge reads when none is given:
        a merge of such frames is blind unless times are stated."""
        return replace(self, exposure=replace(self.exposure, exposure_time=None))

    @property
    def clips(self) -> bool:
        """Whether 1.0 is a hard clipping level (true for LDR and raw, false for float HDR files)."""
        return not self.floating
