"""Quality metrics of the HDR literature (Kalantari et al. 2017 protocol).

PSNR-mu compares mu-law tonemapped images after dividing both by the ground truth's maximum;
PSNR-l compares linear values on the same normalization. Blind outputs (unknown absolute scale)
are first scale-aligned to the ground truth by one least-squares factor, for every method alike.
"""

from __future__ import annotations

import numpy as np

from emvnet.tonemap import MU, mu_law


def psnr(pred: np.ndarray, target: np.ndarray, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB; identical inputs give +inf."""
    assert pred.shape == target.shape, f"shape mismatch {pred.shape} vs {target.shape}"
    mse = float(np.mean((pred.astype(np.float64) - target.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(peak * peak / mse))


def scale_align(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """pred * s with s = argmin ||s pred - target||^2 (one factor for the whole image)."""
    p = pred.astype(np.float64).ravel()
    denom = float(p @ p)
    s = float(p @ target.astype(np.float64).ravel()) / denom if denom > 0 else 1.0
    return (pred * s).astype(np.float32)


def psnr_mu(pred: np.ndarray, target: np.ndarray, mu: float = MU) -> float:
    """PSNR of mu-law tonemapped images, both normalized by the target's maximum."""
    peak = float(np.max(target))
    assert peak > 0, "ground truth must have a positive maximum"
    return psnr(mu_law(np.clip(pred / peak, 0, 1), mu), mu_law(np.clip(target / peak, 0, 1), mu))


def psnr_linear(pred: np.ndarray, target: np.ndarray) -> float:
    """PSNR of linear values, both normalized by the target's maximum."""
    peak = float(np.max(target))
    assert peak > 0, "ground truth must have a positive maximum"
    return psnr(np.clip(pred / peak, 0, 1), target / peak)
