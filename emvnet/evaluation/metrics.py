"""Quality metrics of the HDR literature (Kalantari et al. 2017 protocol).

PSNR-mu / SSIM-mu compare mu-law tonemapped images (mu = 5000) after dividing both by the ground
truth's maximum; PSNR-l / SSIM-l compare linear values on the same normalization (the prediction
clipped to [0, 1]). Blind outputs (unknown absolute scale) are first scale-aligned to the ground
truth by one least-squares factor, for every method alike (`scale_align`).

SSIM is the standard definition (Wang et al. 2004): Gaussian window 11x11, sigma 1.5, K1 = 0.01,
K2 = 0.03, dynamic range 1, statistics over "valid" windows only (no border padding), no
downsampling, computed per channel and averaged.

PU21-PSNR (Mantiuk & Azimi 2021, "banding + glare" encoding): PU21 maps *absolute* luminance in
cd/m^2 to perceptually uniform units. Our images are relative, so, as the PU21 reference code does
for HDR images, they are displayed on an assumed HDR display: both are multiplied by one factor that
maps the ground truth's maximum to `PU21_PEAK_LUMINANCE` = 4000 cd/m^2. Each RGB channel is encoded
(clamped to the encoding's 0.005..10000 cd/m^2 range) and PSNR is taken with the peak value of the
reference implementation's PSNR, 256 (the PU value of about 100 cd/m^2, the SDR white, so that PU21
numbers are comparable with SDR PSNR); `pu21_psnr(..., peak=pu21_encode(4000.0))` gives the
variant with the display peak's PU value as the peak (a constant offset of 20 log10(P(4000)/256)).
"""

from __future__ import annotations

import math
from typing import Literal

import cv2
import numpy as np

from emvnet.io.tonemap import MU, mu_law


def psnr(pred: np.ndarray, target: np.ndarray, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB; identical inputs give +inf."""
    assert pred.shape == target.shape, f"shape mismatch {pred.shape} vs {target.shape}"
    mse = float(np.mean((pred.astype(np.float64) - target.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(peak * peak / mse))


def scale_align(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """pred * s with s = argmin ||s pred - target||^2 (one factor for the whole image)."""
    return (pred * scale_factor(pred, target)).astype(np.float32)


def normalized(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both images divided by the target's maximum (Kalantari's protocol), clipped to [0, 1]."""
    peak = float(np.max(target))
    assert peak > 0, "ground truth must have a positive maximum"
    return np.clip(pred / peak, 0, 1), np.clip(target / peak, 0, 1)


def psnr_mu(pred: np.ndarray, target: np.ndarray, mu: float = MU) -> float:
    """PSNR of mu-law tonemapped images, both normalized by the target's maximum."""
    p, t = normalized(pred, target)
    return psnr(mu_law(p, mu), mu_law(t, mu))


def psnr_linear(pred: np.ndarray, target: np.ndarray) -> float:
    """PSNR of linear values, both normalized by the target's maximum."""
    return psnr(*normalized(pred, target))


# --- SSIM ---------------------------------------------------------------------------------------

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _gaussian_valid(x: np.ndarray) -> np.ndarray:
    """Gaussian-weighted local mean of (H, W) float64 over 'valid' 11x11 windows (H-10, W-10)."""
    g = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA, cv2.CV_64F)
    r = SSIM_WINDOW // 2
    full = cv2.sepFilter2D(x, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)
    return full[r:-r, r:-r]  # the border rows of a padded filter are exactly what 'valid' drops


def ssim(pred: np.ndarray, target: np.ndarray, data_range: float = 1.0) -> float:
    """Mean SSIM of (H, W) or (H, W, C) images, averaged over channels; identical inputs give 1."""
    assert pred.shape == target.shape, f"shape mismatch {pred.shape} vs {target.shape}"
    if min(pred.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {pred.shape[:2]}")
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    a3 = pred.reshape(*pred.shape[:2], -1).astype(np.float64)
    b3 = target.reshape(*target.shape[:2], -1).astype(np.float64)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    scores = []
    for ch in range(a3.shape[2]):
        a, b = np.ascontiguousarray(a3[..., ch]), np.ascontiguousarray(b3[..., ch])
        mu_a, mu_b = _gaussian_valid(a), _gaussian_valid(b)
        var_a = _gaussian_valid(a * a) - mu_a * mu_a
        var_b = _gaussian_valid(b * b) - mu_b * mu_b
        cov = _gaussian_valid(a * b) - mu_a * mu_b
        num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
        den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
        scores.append(float(np.mean(num / den)))
    return float(np.mean(scores))


def ssim_mu(pred: np.ndarray, target: np.ndarray, mu: float = MU) -> float:
    """SSIM of mu-law tonemapped images, both normalized by the target's maximum."""
    p, t = normalized(pred, target)
    return ssim(mu_law(p, mu), mu_law(t, mu))


def ssim_linear(pred: np.ndarray, target: np.ndarray) -> float:
    """SSIM of linear values, both normalized by the target's maximum (prediction clipped to [0, 1])."""
    return ssim(*normalized(pred, target))


# --- PU21 ---------------------------------------------------------------------------------------

# Mantiuk & Azimi 2021, Table 1 / reference code: the "banding + glare" fit (the recommended one).
PU21_PARAMS = (
    0.353487901,
    0.3734658629,
    8.277049286e-05,
    0.9062562627,
    0.09150303166,
    0.9099517204,
    596.3148142,
)
PU21_L_MIN, PU21_L_MAX = 0.005, 10000.0  # cd/m^2: the range the encoding was fitted on
PU21_PEAK_LUMINANCE = 4000.0  # cd/m^2 of the assumed HDR display (the PU21 reference examples' choice)
PU21_PSNR_PEAK = 256.0  # the peak of the reference implementation's PSNR on PU values


def pu21_encode(luminance: np.ndarray | float) -> np.ndarray:
    """Absolute luminance (cd/m^2) -> PU21 units: p6 (((p0 + p1 Y^p3) / (1 + p2 Y^p3))^p4 - p5), >= 0."""
    p0, p1, p2, p3, p4, p5, p6 = PU21_PARAMS
    y = np.clip(np.asarray(luminance, dtype=np.float64), PU21_L_MIN, PU21_L_MAX)
    yp = np.power(y, p3)
    return np.maximum(p6 * (np.power((p0 + p1 * yp) / (1.0 + p2 * yp), p4) - p5), 0.0)


def pu21_psnr(
    pred: np.ndarray,
    target: np.ndarray,
    peak_luminance: float = PU21_PEAK_LUMINANCE,
    peak: float = PU21_PSNR_PEAK,
) -> float:
    """PSNR of PU21-encoded RGB after mapping the target's maximum to `peak_luminance` cd/m^2."""
    top = float(np.max(target))
    assert top > 0, "ground truth must have a positive maximum"
    if peak_luminance <= 0 or peak <= 0:
        raise ValueError(f"peak_luminance and peak must be positive, got {peak_luminance}, {peak}")
    scale = peak_luminance / top
    return psnr(pu21_encode(pred * scale), pu21_encode(target * scale), peak=peak)


# --- speed and the table's row ------------------------------------------------------------------


def seconds_per_megapixel(seconds: float, height: int, width: int) -> float:
    """Run time normalized by the output's size in megapixels (10^6 pixels)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    return float(seconds) / (height * width / 1e6)


def scale_factor(pred: np.ndarray, target: np.ndarray) -> float:
    """The least-squares s of `scale_align` (1.0 for an all-zero prediction)."""
    p = pred.astype(np.float64).ravel()
    denom = float(p @ p)
    return float(p @ target.astype(np.float64).ravel()) / denom if denom > 0 else 1.0


METRIC_NAMES = ("psnr_mu", "ssim_mu", "psnr_l", "ssim_l", "pu21_psnr")
Align = Literal["none", "lsq"]


def hdr_metrics(pred: np.ndarray, target: np.ndarray, align: Align = "none") -> dict[str, float]:
    """The quality row of one image: PSNR/SSIM-mu, PSNR/SSIM-l and PU21-PSNR (`METRIC_NAMES`).

    `align="lsq"` first scale-aligns the prediction (blind outputs); the factor is returned under
    "scale". Non-finite predictions (NaN/inf) count as 0 so one bad pixel cannot hide a method.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {target.shape} differ in shape")
    clean = np.nan_to_num(pred.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    s = scale_factor(clean, target) if align == "lsq" else 1.0
    aligned = clean * np.float32(s)
    row = {
        "psnr_mu": psnr_mu(aligned, target),
        "ssim_mu": ssim_mu(aligned, target),
        "psnr_l": psnr_linear(aligned, target),
        "ssim_l": ssim_linear(aligned, target),
        "pu21_psnr": pu21_psnr(aligned, target),
        "scale": s,
    }
    assert all(not math.isnan(v) for v in row.values()), f"NaN metric in {row}"
    return row
