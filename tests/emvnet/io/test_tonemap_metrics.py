"""Tonemappers and metrics: the mu-law of the metric, the display curve, PSNR variants."""

from __future__ import annotations

import numpy as np
import pytest

from emvnet.evaluation.metrics import psnr, psnr_linear, psnr_mu, scale_align
from emvnet.io.tonemap import display, mu_law, srgb_decode, srgb_encode


def test_mu_law_endpoints_and_monotonic() -> None:
    """mu-law maps 0 -> 0 and 1 -> 1, increases, and clips negatives."""
    x = np.linspace(-0.1, 1.0, 101, dtype=np.float32)
    y = mu_law(x)
    assert y[0] == 0 and np.isclose(y[-1], 1.0)
    assert np.all(np.diff(y[10:]) > 0)
    assert np.isclose(mu_law(np.float32(0.5)), np.log1p(2500) / np.log1p(5000))


def test_mu_law_rejects_bad_mu() -> None:
    """mu must be positive."""
    with pytest.raises(ValueError, match="positive"):
        mu_law(np.zeros(3), mu=0)


def test_srgb_round_trip() -> None:
    """sRGB encode and decode invert each other."""
    x = np.linspace(0, 1, 257, dtype=np.float32)
    np.testing.assert_allclose(srgb_decode(srgb_encode(x)), x, atol=1e-5)


def test_display_is_8bit_ordered_and_robust() -> None:
    """The display curve gives uint8, keeps brightness order, and survives NaN/inf/negatives."""
    ramp = np.exp(np.linspace(np.log(1e-3), np.log(50.0), 256, dtype=np.float32))
    hdr = np.repeat(np.repeat(ramp[None, :, None], 4, axis=0), 3, axis=2)
    out = display(hdr)
    assert out.dtype == np.uint8 and out.shape == hdr.shape
    assert np.all(np.diff(out[0, :, 1].astype(int)) >= 0)
    assert out[0, 0, 1] < 30 and out[0, -1, 1] > 240
    bad = hdr.copy()
    bad[0, 0] = np.nan
    bad[0, 1] = np.inf
    bad[0, 2] = -5
    assert display(bad).dtype == np.uint8


def test_display_exposure_override_brightens() -> None:
    """A larger exposure multiplier gives a brighter picture."""
    hdr = np.full((4, 4, 3), 0.05, np.float32)
    assert display(hdr, exposure=4.0).mean() > display(hdr, exposure=1.0).mean()


def test_psnr_values() -> None:
    """PSNR is infinite for equal inputs and 20 dB for a 0.1 error on a unit peak."""
    a = np.zeros((8, 8, 3), np.float32)
    assert psnr(a, a) == float("inf")
    assert np.isclose(psnr(a + 0.1, a), 20.0, atol=1e-4)


def test_scale_align_recovers_scale() -> None:
    """A blind output off by a constant factor is aligned exactly."""
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 4, (16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(scale_align(gt * 0.3, gt), gt, rtol=1e-5)


def test_psnr_mu_normalizes_by_target_max() -> None:
    """PSNR-mu and PSNR-l are invariant to scaling prediction and target together."""
    rng = np.random.default_rng(1)
    gt = rng.uniform(0, 4, (16, 16, 3)).astype(np.float32)
    pred = gt * rng.uniform(0.9, 1.1, gt.shape).astype(np.float32)
    assert np.isclose(psnr_mu(pred, gt), psnr_mu(pred * 7, gt * 7), atol=1e-3)
    assert np.isclose(psnr_linear(pred, gt), psnr_linear(pred * 7, gt * 7), atol=1e-3)


def test_display_lut_matches_exact_curve() -> None:
    """The sRGB lookup table in `display` is within one 8-bit code of the exact transfer curve."""
    from emvnet.io.tonemap import _srgb8_lut

    lin = np.linspace(0, 1, 100_003, dtype=np.float32)
    exact = np.round(srgb_encode(lin) * 255).astype(int)
    via_lut = _srgb8_lut()[(lin * 16383 + 0.5).astype(np.uint16)].astype(int)
    assert np.abs(exact - via_lut).max() <= 1
