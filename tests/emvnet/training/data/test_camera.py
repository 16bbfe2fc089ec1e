"""Camera model: response curves invert, noise has the stated variance, quantization hits the grid."""

from __future__ import annotations

import numpy as np
import pytest

from emvnet.training.data.camera import (
    GAMMA_22,
    Crf,
    CrfConfig,
    Noise,
    NoiseConfig,
    quantize,
    sample_crf,
    sample_noise,
)

CRFS = (GAMMA_22, Crf("gamma", 1.8), Crf("srgb"), Crf("filmic", 2.4, toe=0.25, shoulder=1.2))


@pytest.mark.parametrize("crf", CRFS, ids=lambda c: c.name)
def test_crf_is_monotone_with_fixed_ends_and_inverts(crf: Crf) -> None:
    """Every response maps 0 -> 0 and 1 -> 1, increases, and decode undoes encode."""
    lin = np.linspace(0.0, 1.0, 2001, dtype=np.float32)
    ldr = crf.encode(lin)
    assert ldr[0] == pytest.approx(0.0, abs=1e-6) and ldr[-1] == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.diff(ldr) >= 0)
    assert np.abs(crf.decode(ldr) - lin).max() < 2e-3


def test_sample_crf_draws_the_family() -> None:
    """The default configuration gives exact gamma 2.2 about half the time and all kinds sometimes."""
    rng = np.random.default_rng(0)
    crfs = [sample_crf(rng, CrfConfig()) for _ in range(400)]
    share = sum(c == GAMMA_22 for c in crfs) / len(crfs)
    assert 0.4 < share < 0.6
    assert {c.kind for c in crfs} == {"gamma", "srgb", "filmic"}


def test_noise_variance_is_shot_times_signal_plus_read_squared() -> None:
    """Measured variance at two signal levels matches shot * x + read ** 2."""
    noise = Noise(shot=1e-3, read=5e-3)
    rng = np.random.default_rng(1)
    for level in (0.05, 0.5):
        x = np.full(200_000, level, dtype=np.float32)
        var = float(np.var(noise.apply(x, rng) - x))
        assert var == pytest.approx(1e-3 * level + 25e-6, rel=0.03)


def test_sampled_noise_is_in_brooks_range() -> None:
    """Shot noise stays within the configured log range; read noise is positive."""
    rng = np.random.default_rng(2)
    config = NoiseConfig(p_clean=0.0)
    for _ in range(50):
        noise = sample_noise(rng, config)
        assert 1e-4 * 0.999 <= noise.shot <= 1.2e-2 * 1.001 and noise.read > 0


@pytest.mark.parametrize("bits", [8, 10, 12, 16])
def test_quantize_lands_on_the_code_grid(bits: int) -> None:
    """Quantized values are integer codes / (2^bits - 1), clipped to [0, 1]."""
    x = np.random.default_rng(3).uniform(-0.2, 1.2, 1000).astype(np.float32)
    q = quantize(x, bits)
    codes = q.astype(np.float64) * (2**bits - 1)
    assert np.abs(codes - np.round(codes)).max() < 1e-2
    assert q.min() >= 0.0 and q.max() <= 1.0
