"""Camera response calibrated from long brackets, and how merges use it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from helpers.synth import ldr_bracket, radiance_scene

from emvnet.frame import ExposureInfo
from emvnet.io.tonemap import mu_law
from emvnet.merge.bracket import gamma_mismatches, make_bracket
from emvnet.merge.classical import merge_weighted
from emvnet.merge.response import CALIBRATE_MIN_FRAMES, CLIP_CODE, apply_response, calibrate_response

TIMES = [2.0**k for k in range(-4, 4)]  # 8 frames one stop apart


def _s_curve_bracket(times: list[float], seed: int = 0) -> tuple[np.ndarray, list]:
    """Frames through a response far from gamma 2.2 (gamma 1.6 plus an S-shaped toe and shoulder)."""
    rad = radiance_scene(96, 128, seed=seed)
    frames = ldr_bracket(rad, times, gamma=1.6)
    for f in frames:
        s = f.data
        f.data[...] = np.round(255 * (3 * s**2 - 2 * s**3)) / 255  # smoothstep: still monotonic
    return rad, frames


def test_calibrated_curve_is_monotonic_and_clips_at_one() -> None:
    _, frames = _s_curve_bracket(TIMES)
    curve = calibrate_response([f.data for f in frames], TIMES)
    assert curve.shape == (256, 3) and curve.dtype == np.float32
    assert np.all(np.diff(curve, axis=0) >= 0)
    assert float(curve[CLIP_CODE].mean()) == pytest.approx(1.0, rel=1e-5)
    out = apply_response(np.full((2, 2, 3), CLIP_CODE / 255, np.float32), curve)
    assert out[0, 0] == pytest.approx(curve[CLIP_CODE], rel=1e-5)


def test_long_brackets_calibrate_short_ones_keep_gamma() -> None:
    _, frames = _s_curve_bracket(TIMES)
    assert make_bracket(frames, TIMES).response is not None
    short = frames[: CALIBRATE_MIN_FRAMES - 1]
    assert make_bracket(short, TIMES[: len(short)]).response is None
    assert make_bracket(frames, TIMES, calibrate=False).response is None
    no_exif = [replace(f, exposure=ExposureInfo()) for f in frames]
    # Blind: the measured steps land on whole stops and stand in for the times.
    assert make_bracket(no_exif, None).response is not None
    assert make_bracket(no_exif, None, calibrate=False).response is None


def test_calibration_beats_the_gamma_assumption_on_a_non_gamma_camera() -> None:
    """On a camera far from gamma 2.2, the calibrated merge is closer to the true radiance."""
    rad, frames = _s_curve_bracket(TIMES, seed=3)
    ref = TIMES.index(1.0)
    truth = mu_law(np.clip(rad, 0, None) / rad.max())
    errors = {}
    for calibrate in (True, False):
        hdr = merge_weighted(make_bracket(frames, TIMES, ref, calibrate=calibrate))
        # Compare shapes, not units: one least-squares scale, as blind metrics do.
        scale = float((hdr * rad).sum() / (hdr * hdr).sum())
        errors[calibrate] = float(np.abs(mu_law(hdr * scale / rad.max()) - truth).mean())
    assert errors[True] < 0.5 * errors[False], errors


def test_gamma_mismatches_tell_a_fitting_response_from_a_wrong_one() -> None:
    """Linearized with the camera's own gamma, neighbouring frames measure the stated steps (a
    small mismatch); through a response far from it they do not."""
    rad = radiance_scene(96, 128, seed=4)
    frames = ldr_bracket(rad, TIMES, gamma=2.2, noise=0.001, seed=2)
    assert gamma_mismatches(frames, TIMES, [2.2])[2.2] < 0.05
    s_curve = _s_curve_bracket(TIMES)[1]
    assert gamma_mismatches(s_curve, TIMES, [2.2])[2.2] > 0.1
