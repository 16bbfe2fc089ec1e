"""Reference fidelity: does a merge show the reference frame's content where that frame is good?

Real brackets have no ground truth, but where the reference frame is well exposed a merge must
show what the reference shows (its content, its colour); other frames may only lower its noise.
The metric needs no units or response: it compares the output with the reference frame's own
encoded levels after mapping the output back to them.

- Mask: pixels whose reference levels (0..1 as read from the file: encoded for JPEG/PNG/TIFF,
  linear for raw and float frames) lie in `WELL_EXPOSED` on every channel, eroded by
  `ERODE_PX` pixels so that edges of clipped areas do not count.
- Mapping: per channel, the isotonic (non-decreasing, least-squares) regression of the reference
  level on the output value over the mask, fitted on `BINS` log-spaced bins of the output value
  and applied by linear interpolation between bin centres. Any response, scale, white balance or
  global tonemapping of the output is undone by it; content that moved or a hue that changed
  locally is not.
- ghost %: share of mask pixels whose `WINDOW` x `WINDOW` mean of |mapped - reference| (mean over
  the channels) exceeds `GHOST_THRESHOLD`.
- colour %: share of mask pixels whose `WINDOW` x `WINDOW` mean chromaticity (r, g, b over
  r + g + b, of the mapped output and of the reference) differs by more than `COLOUR_THRESHOLD`
  on the chromaticity coordinate that differs most (max over r, g and b).
- RF-PSNR: PSNR (peak 1) of the mapped output against the reference over the mask.

Window means are taken over mask pixels only (normalized box filters), so clipped pixels next to
the mask never enter them. An output that ignores the other frames scores perfectly here: read it
together with a ground-truth PSNR on scenes that have one, which rewards using them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

WELL_EXPOSED = (0.08, 0.92)  # reference levels where a frame's content is trustworthy
ERODE_PX = 3
WINDOW = 9
GHOST_THRESHOLD = 0.05  # mean |mapped - reference| in reference levels
COLOUR_THRESHOLD = 0.02  # chromaticity difference
BINS = 2048  # log-spaced bins of the output value per channel: the isotonic fit's resolution
DYNAMIC_RANGE = 1e7  # output values below max / DYNAMIC_RANGE share the lowest bin


@dataclass(frozen=True)
class Fidelity:
    """The reference-fidelity scores of one output; maps are (H, W) float32, NaN outside `mask`."""

    ghost_pct: float  # NaN when the mask is empty
    colour_pct: float
    rf_psnr: float
    coverage_pct: float  # share of the frame in the mask
    ghost_map: np.ndarray  # window mean |mapped - reference|
    colour_map: np.ndarray  # window mean chromaticity difference, max over r, g, b
    mask: np.ndarray  # (H, W) bool

    @property
    def ghost_fail(self) -> np.ndarray:
        """(H, W) bool: mask pixels counted in ghost %."""
        return self.mask & (np.nan_to_num(self.ghost_map) > GHOST_THRESHOLD)

    @property
    def colour_fail(self) -> np.ndarray:
        """(H, W) bool: mask pixels counted in colour %."""
        return self.mask & (np.nan_to_num(self.colour_map) > COLOUR_THRESHOLD)

    def scores(self) -> dict[str, float]:
        """The scalar scores under the names `emvnet eval` reports."""
        return {
            "ghost_pct": self.ghost_pct,
            "colour_pct": self.colour_pct,
            "rf_psnr": self.rf_psnr,
            "rf_coverage_pct": self.coverage_pct,
        }


FIDELITY_NAMES = ("ghost_pct", "colour_pct", "rf_psnr", "rf_coverage_pct")


def well_exposed_mask(reference_ldr: np.ndarray, erode_px: int = ERODE_PX) -> np.ndarray:
    """(H, W) bool: every channel inside `WELL_EXPOSED`, eroded by `erode_px` pixels."""
    return _mask(_planes(reference_ldr.astype(np.float32)), erode_px)


def _planes(image: np.ndarray) -> list[np.ndarray]:
    """(H, W, C) -> C contiguous (H, W) planes (per-plane arithmetic beats last-axis reductions)."""
    return [np.asarray(plane) for plane in cv2.split(np.ascontiguousarray(image))]


def _mask(ref: list[np.ndarray], erode_px: int) -> np.ndarray:
    lo, hi = WELL_EXPOSED
    inside = (_reduce(np.minimum, ref) >= lo) & (_reduce(np.maximum, ref) <= hi)
    if erode_px > 0:
        kernel = np.ones((2 * erode_px + 1, 2 * erode_px + 1), np.uint8)
        eroded = cv2.erode(inside.view(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        inside = eroded.astype(bool)
    return inside


def _reduce(op: np.ufunc, planes: list[np.ndarray]) -> np.ndarray:
    """`op` folded over (H, W) planes: channel reductions without numpy's slow last-axis reduce."""
    acc = planes[0].copy()
    for plane in planes[1:]:
        op(acc, plane, out=acc)
    return acc


def _isotonic(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-decreasing fit of `y` (pool adjacent violators)."""
    means: list[float] = []
    weights: list[float] = []
    sizes: list[int] = []
    for value, weight in zip(y.tolist(), w.tolist(), strict=True):
        means.append(value)
        weights.append(weight)
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            total = weights[-2] + weights[-1]
            merged = (means[-2] * weights[-2] + means[-1] * weights[-1]) / total
            size = sizes[-2] + sizes[-1]
            del means[-1], weights[-1], sizes[-1]
            means[-1], weights[-1], sizes[-1] = merged, total, size
    return np.repeat(np.asarray(means), sizes)


def monotone_map(output: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`output` (H, W) mapped by the isotonic fit of `reference` (H, W) on it over `mask`, float32."""
    top = float(output[mask].max())
    if not top > 0:  # no positive output in the mask: a constant is all a monotone curve can give
        return np.full(output.shape, float(reference[mask].mean()), np.float32)
    floor = top / DYNAMIC_RANGE
    log_lo = math.log(floor)
    step = max(math.log(top) - log_lo, 1e-6) / BINS
    # Fractional bin position of every pixel; bin i holds positions [i, i + 1).
    pos = np.log(np.maximum(output, np.float32(floor)))
    pos -= np.float32(log_lo)
    pos *= np.float32(1.0 / step)
    np.clip(pos, 0.0, BINS, out=pos)
    index = np.minimum(pos.astype(np.int32), BINS - 1)
    index_fit = index[mask]
    counts = np.bincount(index_fit, minlength=BINS).astype(np.float64)
    used = counts > 0
    mean_y = np.bincount(index_fit, weights=reference[mask], minlength=BINS)[used] / counts[used]
    mean_pos = np.bincount(index_fit, weights=pos[mask], minlength=BINS)[used] / counts[used]
    fitted = _isotonic(mean_y, counts[used])
    # The curve through the bins' (mean position, fitted level), sampled at the bin edges and
    # read by linear interpolation: a gather instead of a search per pixel.
    lut = np.interp(np.arange(BINS + 1, dtype=np.float64), mean_pos, fitted).astype(np.float32)
    frac = pos - index
    low = lut[index]
    return low + frac * (lut[index + 1] - low)


def _box(values: np.ndarray) -> np.ndarray:
    return cv2.boxFilter(values, -1, (WINDOW, WINDOW), normalize=False, borderType=cv2.BORDER_CONSTANT)


def _chromaticity(planes: list[np.ndarray]) -> list[np.ndarray]:
    total = np.maximum(planes[0] + planes[1] + planes[2], np.float32(1e-6))
    return [plane / total for plane in planes]


def reference_fidelity(output_linear_hdr: np.ndarray, reference_ldr_encoded: np.ndarray) -> Fidelity:
    """Ghost %, colour %, RF-PSNR and their maps of an output against the reference frame.

    Both are (H, W, 3): the merge (any units or response; non-finite values count as 0) and the
    reference frame's levels as read from its file (0..1). ValueError when the shapes differ.
    """
    if output_linear_hdr.shape != reference_ldr_encoded.shape or output_linear_hdr.shape[-1:] != (3,):
        raise ValueError(
            f"output {output_linear_hdr.shape} and reference {reference_ldr_encoded.shape} must be "
            "RGB images (H, W, 3) of one shape"
        )
    out = np.nan_to_num(output_linear_hdr.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    ref = _planes(np.clip(reference_ldr_encoded.astype(np.float32), 0.0, 1.0))
    mask = _mask(ref, ERODE_PX)
    n = int(np.count_nonzero(mask))
    coverage = 100.0 * n / mask.size
    if n == 0:
        empty = np.full(mask.shape, np.nan, np.float32)
        return Fidelity(math.nan, math.nan, math.nan, coverage, empty, empty.copy(), mask)
    mapped = [monotone_map(o, r, mask) for o, r in zip(_planes(out), ref, strict=True)]
    mask_f = mask.astype(np.float32)
    # Window means over mask pixels only; a window with none lies outside the mask anyway.
    inv_count = 1.0 / np.maximum(_box(mask_f), 1.0)

    diff = [m - r for m, r in zip(mapped, ref, strict=True)]
    abs_mean = (np.abs(diff[0]) + np.abs(diff[1]) + np.abs(diff[2])) * np.float32(1.0 / 3.0)
    ghost_map = _box(abs_mean * mask_f) * inv_count
    chroma = [
        np.abs(_box((cm - cr) * mask_f) * inv_count)
        for cm, cr in zip(_chromaticity(mapped), _chromaticity(ref), strict=True)
    ]
    colour_map = _reduce(np.maximum, chroma)

    sq = diff[0] ** 2 + diff[1] ** 2 + diff[2] ** 2
    mse = float(np.sum(sq[mask], dtype=np.float64)) / (3 * n)
    rf_psnr = math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)
    ghost_map[~mask] = np.nan
    colour_map[~mask] = np.nan
    ghost_pct = 100.0 * float(np.count_nonzero(ghost_map > GHOST_THRESHOLD)) / n
    colour_pct = 100.0 * float(np.count_nonzero(colour_map > COLOUR_THRESHOLD)) / n
    return Fidelity(ghost_pct, colour_pct, rf_psnr, coverage, ghost_map, colour_map, mask)
