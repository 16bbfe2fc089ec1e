"""Camera response estimated from a long bracket (Robertson et al. 2003, through OpenCV).

With many frames of known exposure (a tripod sequence of 5 to 16+ shots), the bracket itself pins
the response curve down far better than the fixed gamma 2.2 that short brackets fall back to: every
code value is seen at many radiances. With 2-4 frames the calibration is under-determined and
often non-monotonic near white (rainbow highlights), so `make_bracket` calibrates only from
`CALIBRATE_MIN_FRAMES` frames on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

# Fewest frames with known exposure times from which the response is calibrated.
CALIBRATE_MIN_FRAMES = 5
# Pixels per frame the calibration looks at: a regular subsample (exact codes, same positions in
# every frame) keeps a 12 MP sequence's calibration well under a second.
_SAMPLE_PIXELS = 200_000
CLIP_CODE = 254  # the top code collects every clipped sample: the clip level is read just below it


def calibrate_response(display: Sequence[np.ndarray], times: Sequence[float]) -> np.ndarray:
    """(256, C) inverse response: linear value of each 8-bit code, 1.0 at the clipping code.

    `display` are the frames' data (H, W, 3) in [0, 1], `times` their exposure times. The curve is
    made monotonic (noise at rarely seen codes can bend it), and one scalar normalizes it so the
    colour balance the calibration fixed at mid-grey is kept, as in `baselines.merge_calibrated`.
    """
    h, w = display[0].shape[:2]
    stride = max(1, math.ceil(math.sqrt(h * w / _SAMPLE_PIXELS)))
    images = [
        np.ascontiguousarray(np.round(np.clip(d[::stride, ::stride, ::-1], 0, 1) * 255).astype(np.uint8))
        for d in display
    ]
    raw = cv2.createCalibrateRobertson().process(
        images, np.asarray(times, dtype=np.float32)
    )  # (256, 1, 3) BGR
    curve = np.asarray(raw, dtype=np.float64)[:, 0, ::-1]  # (256, 3) RGB
    curve = np.nan_to_num(curve, nan=0.0, posinf=0.0, neginf=0.0)
    curve = np.maximum.accumulate(np.maximum(curve, 1e-9), axis=0)
    curve /= float(np.mean(curve[CLIP_CODE]))
    return curve.astype(np.float32)


def apply_response(data: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """Display data (H, W, C) in [0, 1] -> linear through `curve` (256, C), interpolated between codes."""
    codes = np.clip(data, 0.0, 1.0) * 255.0
    levels = np.arange(curve.shape[0], dtype=np.float32)
    out = np.empty(data.shape, dtype=np.float32)
    for c in range(data.shape[-1]):
        out[..., c] = np.interp(codes[..., c], levels, curve[:, c])
    return out
