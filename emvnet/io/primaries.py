"""RGB primaries: linear RGB in the primaries a file states (CIE xy, as OpenEXR's `chromaticities`
attribute gives them) converted to linear Rec.709 / sRGB primaries, the colour space of every frame.

The white point moves with a Bradford adaptation (ACES AP0's D60 white to Rec.709's D65).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# CIE xy of red, green, blue and white (IEC 61966-2-1 / ITU-R BT.709).
REC709 = (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290)
_BRADFORD = np.array(
    [[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]], dtype=np.float64
)
_SAME = 1e-4  # xy closer than this to Rec.709's count as Rec.709 (files store them as float32)


def _to_xyz(chromaticities: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(RGB -> XYZ matrix, white XYZ with Y = 1) of primaries given as 8 xy values."""
    xy = np.asarray(chromaticities, dtype=np.float64).reshape(4, 2)
    if np.any(xy[:, 1] == 0):
        raise ValueError(f"chromaticities {tuple(chromaticities)} have a primary with y = 0")
    xyz = np.stack([xy[:, 0] / xy[:, 1], np.ones(4), (1 - xy[:, 0] - xy[:, 1]) / xy[:, 1]], 1)  # (4, 3)
    primaries = xyz[:3].T  # columns: X, Y, Z of red, green, blue at Y = 1
    return primaries * np.linalg.solve(primaries, xyz[3]), xyz[3]  # scaled so RGB (1, 1, 1) is white


def to_rec709_matrix(chromaticities: Sequence[float]) -> np.ndarray | None:
    """(3, 3) float32 matrix taking linear RGB in `chromaticities` to Rec.709; None if they are
    Rec.709 already. ValueError for a degenerate set."""
    if len(chromaticities) != 8:
        raise ValueError(f"chromaticities are 8 numbers (xy of R, G, B, white), got {len(chromaticities)}")
    if np.allclose(chromaticities, REC709, atol=_SAME):
        return None
    src, src_white = _to_xyz(chromaticities)
    dst, dst_white = _to_xyz(REC709)
    cone_src, cone_dst = _BRADFORD @ src_white, _BRADFORD @ dst_white
    adapt = np.linalg.solve(_BRADFORD, np.diag(cone_dst / cone_src) @ _BRADFORD)
    return (np.linalg.solve(dst, adapt @ src)).astype(np.float32)
