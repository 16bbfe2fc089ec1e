"""SSIM, PU21, seconds per megapixel and the per-image metric row of the HDR protocol."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emvnet.evaluation.metrics import (
    PU21_PSNR_PEAK,
    hdr_metrics,
    pu21_encode,
    pu21_psnr,
    scale_align,
    scale_factor,
    seconds_per_megapixel,
    ssim,
    ssim_linear,
    ssim_mu,
)


def _image(seed: int = 0, shape: tuple[int, int, int] = (32, 40, 3)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape)


def test_ssim_of_identical_images_is_one() -> None:
    """SSIM(x, x) = 1 for colour and grey images."""
    x = _image()
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    assert ssim(x[..., 0], x[..., 0]) == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_a_constant_shift_matches_the_luminance_term() -> None:
    """Flat a vs flat a + c: only the luminance term, (2a(a+c) + C1) / (a^2 + (a+c)^2 + C1), remains."""
    a, c = 0.3, 0.2
    x = np.full((24, 24), a)
    c1 = (0.01 * 1.0) ** 2
    expected = (2 * a * (a + c) + c1) / (a * a + (a + c) ** 2 + c1)
    assert ssim(x, x + c) == pytest.approx(expected, rel=1e-9)


def test_ssim_drops_with_noise_and_rejects_tiny_images() -> None:
    """More noise gives a lower SSIM; images under 11x11 are refused."""
    x = _image(1)
    rng = np.random.default_rng(2)
    low = ssim(x, x + 0.05 * rng.standard_normal(x.shape))
    high = ssim(x, x + 0.2 * rng.standard_normal(x.shape))
    assert 0 < high < low < 1
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))


def test_ssim_mu_and_linear_normalize_by_the_ground_truth_max() -> None:
    """Both SSIM variants are invariant to scaling prediction and ground truth together."""
    gt = _image(3) * 20
    pred = gt * (1 + 0.05 * _image(4))
    assert ssim_mu(pred * 7, gt * 7) == pytest.approx(ssim_mu(pred, gt), abs=1e-6)
    assert ssim_linear(pred * 7, gt * 7) == pytest.approx(ssim_linear(pred, gt), abs=1e-9)
    assert ssim_mu(gt, gt) == pytest.approx(1.0, abs=1e-9)


def test_pu21_known_values_and_monotonic() -> None:
    """PU21 (banding+glare) is ~0 at 0.005 cd/m^2, ~256 at 100 cd/m^2 (SDR white), and increasing."""
    assert float(pu21_encode(0.005)) == pytest.approx(0.0, abs=1e-6)
    assert float(pu21_encode(100.0)) == pytest.approx(256.38, abs=0.05)
    lum = np.logspace(np.log10(0.005), 4, 200)
    assert np.all(np.diff(pu21_encode(lum)) > 0)
    # Clamped outside the fitted 0.005..10000 cd/m^2 range.
    assert float(pu21_encode(1e5)) == float(pu21_encode(1e4))
    assert float(pu21_encode(-1.0)) == float(pu21_encode(0.0))


def test_pu21_psnr_scale_convention() -> None:
    """PU21-PSNR is invariant to a common scale (the gt max is mapped to the display peak)."""
    gt = _image(5) * 3 + 0.01
    pred = gt * 1.02
    assert pu21_psnr(pred, gt) == pytest.approx(pu21_psnr(pred * 100, gt * 100), abs=1e-9)
    assert math.isinf(pu21_psnr(gt, gt))
    peak_variant = pu21_psnr(pred, gt, peak=float(pu21_encode(4000.0)))
    offset = 20 * math.log10(float(pu21_encode(4000.0)) / PU21_PSNR_PEAK)
    assert peak_variant - pu21_psnr(pred, gt) == pytest.approx(offset, abs=1e-9)


def test_seconds_per_megapixel() -> None:
    """2 s on a 1000x500 image is 4 s/MP; empty images are refused."""
    assert seconds_per_megapixel(2.0, 500, 1000) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="positive"):
        seconds_per_megapixel(1.0, 0, 10)


def test_hdr_metrics_alignment_recovers_a_global_scale() -> None:
    """A prediction off by one factor scores perfectly once aligned, and badly without alignment."""
    gt = (_image(6) * 4).astype(np.float32)
    row = hdr_metrics(gt * 0.25, gt, align="lsq")
    assert row["scale"] == pytest.approx(4.0, rel=1e-5)
    assert row["psnr_mu"] > 80 and row["ssim_mu"] == pytest.approx(1.0, abs=1e-6)
    unaligned = hdr_metrics(gt * 0.25, gt)
    assert unaligned["scale"] == 1.0 and unaligned["psnr_mu"] < 30
    assert set(row) == {"psnr_mu", "ssim_mu", "psnr_l", "ssim_l", "pu21_psnr", "scale"}


def test_hdr_metrics_survive_non_finite_predictions() -> None:
    """NaN and inf pixels count as black instead of poisoning the scores."""
    gt = (_image(7) + 0.1).astype(np.float32)
    bad = gt.copy()
    bad[0, 0, 0], bad[1, 1, 1] = np.nan, np.inf
    row = hdr_metrics(bad, gt, align="lsq")
    assert all(np.isfinite(v) for v in row.values())


def test_scale_align_uses_the_least_squares_factor() -> None:
    """scale_align multiplies by scale_factor, which is 1 for an all-zero prediction."""
    gt = _image(8).astype(np.float32)
    np.testing.assert_allclose(scale_align(gt * 2, gt), gt, rtol=1e-5)
    assert scale_factor(np.zeros_like(gt), gt) == 1.0
