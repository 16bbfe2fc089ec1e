"""Reference fidelity: moved content is a ghost, a changed hue is a colour error, any monotone
re-rendering of the reference is neither."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from emvnet.evaluation.fidelity import (
    COLOUR_THRESHOLD,
    GHOST_THRESHOLD,
    monotone_map,
    reference_fidelity,
    well_exposed_mask,
)


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """A colourful texture (detail of a few pixels) in 0.1..0.9, quantized as an 8-bit file is."""
    rng = np.random.default_rng(7)
    noise = cv2.GaussianBlur(rng.normal(size=(192, 256, 3)).astype(np.float32), (0, 0), 3)
    ldr = np.clip(0.5 + 0.15 * noise / noise.std(), 0.1, 0.9)
    return (np.round(ldr * 255) / 255).astype(np.float32)


def _linear(ldr: np.ndarray, exposure: float = 1.0) -> np.ndarray:
    return (ldr**2.2 * exposure).astype(np.float32)


def test_reference_itself_in_other_units_is_faithful(reference: np.ndarray) -> None:
    """Linear radiance at any scale and per-channel white balance maps back to the reference exactly."""
    out = _linear(reference, 40.0) * np.array([2.0, 1.0, 0.6], np.float32)
    fid = reference_fidelity(out, reference)
    assert fid.ghost_pct == 0 and fid.colour_pct == 0 and fid.rf_psnr > 60
    assert fid.coverage_pct > 80 and fid.ghost_map.shape == fid.mask.shape == reference.shape[:2]


def test_retonemapped_and_reexposed_copy_scores_near_zero(reference: np.ndarray) -> None:
    """A global tonemap (Reinhard), a re-exposure and 16-bit noise are not ghosts or colour errors."""
    lin = _linear(reference, 6.0)
    tonemapped = lin / (1 + lin)
    rng = np.random.default_rng(1)
    noisy = tonemapped + rng.normal(0, 2e-3, tonemapped.shape).astype(np.float32)
    for out in (tonemapped, noisy, _linear(reference, 0.25) ** 0.5):
        fid = reference_fidelity(out, reference)
        assert fid.ghost_pct < 0.5 and fid.colour_pct < 0.5 and fid.rf_psnr > 40


def test_shifted_copy_is_a_ghost(reference: np.ndarray) -> None:
    """The reference moved by 8 px shows other content nearly everywhere."""
    shifted = np.roll(reference, 8, axis=1)
    fid = reference_fidelity(_linear(shifted), reference)
    assert fid.ghost_pct > 90 and fid.rf_psnr < 25
    assert np.all(fid.ghost_fail <= fid.mask)


def test_local_ghost_is_counted_where_it_is(reference: np.ndarray) -> None:
    """Content moved in one block only: ghost % is about that block's share, and the map finds it."""
    out = reference.copy()
    out[40:104, 60:124] = np.roll(reference, 8, axis=0)[40:104, 60:124]
    fid = reference_fidelity(_linear(out), reference)
    share = 100 * 64 * 64 / fid.mask.sum()
    assert share * 0.7 < fid.ghost_pct < share * 1.3
    assert fid.ghost_fail[50:94, 70:114].mean() > 0.95 and not fid.ghost_fail[130:, 150:].any()


def test_hue_shifted_copy_is_a_colour_error(reference: np.ndarray) -> None:
    """A hue rotation is no per-channel curve: most of the frame fails colour."""
    hsv = cv2.cvtColor(reference, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + 40.0) % 360.0
    hue = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    fid = reference_fidelity(_linear(hue), reference)
    assert fid.colour_pct > 50
    assert np.nanmax(fid.colour_map) > COLOUR_THRESHOLD


def test_colour_rings_in_one_area_fail_colour_not_ghost(reference: np.ndarray) -> None:
    """A band whose red level is lifted 20 % (a merge's hue ring) fails colour but is no ghost."""
    out = _linear(reference)
    out[80:100, :, 0] *= 1.2**2.2
    fid = reference_fidelity(out, reference)
    band = fid.colour_fail[84:96].mean()
    assert band > 0.9 and not fid.colour_fail[140:].any() and fid.ghost_pct < 1


def test_empty_mask_gives_nan_not_a_crash(reference: np.ndarray) -> None:
    """A reference with no well-exposed pixel scores NaN and empty maps."""
    clipped = np.full_like(reference, 0.97)
    fid = reference_fidelity(_linear(reference), clipped)
    assert math.isnan(fid.ghost_pct) and math.isnan(fid.colour_pct) and math.isnan(fid.rf_psnr)
    assert fid.coverage_pct == 0 and not fid.ghost_fail.any() and np.isnan(fid.ghost_map).all()


def test_bad_output_values_and_shapes(reference: np.ndarray) -> None:
    """Non-finite or all-zero outputs score (badly) without NaN; a shape mismatch is a ValueError."""
    out = _linear(reference)
    out[::7] = np.nan
    fid = reference_fidelity(out, reference)
    assert fid.ghost_pct > 10 and math.isfinite(fid.rf_psnr)
    zero = reference_fidelity(np.zeros_like(reference), reference)
    assert zero.ghost_pct > 50 and math.isfinite(zero.rf_psnr)
    with pytest.raises(ValueError, match="one shape"):
        reference_fidelity(out[:, :-1], reference)


def test_mask_erodes_around_clipped_pixels() -> None:
    """A clipped pixel removes a 7x7 block (3 px erosion) from the mask; borders are eroded too."""
    ldr = np.full((32, 32, 3), 0.5, np.float32)
    ldr[16, 16, 2] = 0.95
    mask = well_exposed_mask(ldr)
    assert not mask[13:20, 13:20].any() and mask[12, 16] and mask[20, 16]
    assert not mask[:3].any() and mask[3:29, 3:29].sum() == 26 * 26 - 49


def test_monotone_map_inverts_a_response() -> None:
    """The isotonic curve recovers levels from any increasing response, within a bin's width."""
    rng = np.random.default_rng(3)
    level = rng.uniform(0.1, 0.9, (64, 64)).astype(np.float32)
    mapped = monotone_map(np.exp(8 * level), level, np.ones(level.shape, bool))
    assert np.max(np.abs(mapped - level)) < 0.01 < GHOST_THRESHOLD
