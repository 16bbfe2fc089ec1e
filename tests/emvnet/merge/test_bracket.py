"""Bracket validation, exposure precedence, reference selection and blind ratio estimation."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from helpers.synth import ldr_bracket, radiance_scene

from emvnet.errors import BracketError, ExposureError
from emvnet.frame import ExposureInfo, Frame
from emvnet.merge.bracket import (
    Bracket,
    CurveShape,
    _bands,
    estimate_ratios,
    fit_curve_shape,
    linearize,
    make_bracket,
    noise_misfit,
    noise_profile,
    read_grid,
    select_reference,
    snap_stops,
    unshape,
)
from emvnet.merge.response import apply_response

TIMES = [0.25, 1.0, 4.0]


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    return ldr_bracket(radiance_scene(64, 80, seed=3), TIMES)


def _strip_exif(frames: list[Frame]) -> list[Frame]:
    return [Frame(f.data, f.domain, f.layout, f.source_format, f.bit_depth) for f in frames]


def test_exif_exposures_used_when_none_given(frames: list[Frame]) -> None:
    """Every frame carries an EXIF time, so the bracket is not blind and says where times came from."""
    b = make_bracket(frames)
    assert b.exposures == tuple(TIMES)
    assert b.exposure_source == "exif"
    assert not b.blind


def test_given_exposures_win_over_exif(frames: list[Frame]) -> None:
    """Times from the caller replace EXIF times."""
    b = make_bracket(frames, [0.5, 2.0, 8.0], reference=1)
    assert b.exposures == (0.5, 2.0, 8.0)
    assert b.exposure_source == "given"
    np.testing.assert_allclose(b.ratios, [0.25, 1.0, 4.0])


def test_no_exposures_is_blind_with_estimated_ratios(frames: list[Frame]) -> None:
    """Without any time the merge is blind and the ratios come from the pixels, close to the truth."""
    b = make_bracket(_strip_exif(frames), reference=1)
    assert b.blind and b.exposure_source == "none"
    np.testing.assert_allclose(b.ratios, [0.25, 1.0, 4.0], rtol=0.05)


def test_partial_exif_is_blind(frames: list[Frame]) -> None:
    """If only some frames have an EXIF time, none is trusted."""
    mixed = [*_strip_exif(frames[:1]), *frames[1:]]
    assert make_bracket(mixed).blind


@pytest.mark.parametrize("blind", [False, True])
def test_subset_keeps_the_bracket_consistent(frames: list[Frame], blind: bool) -> None:
    """A subset keeps its frames' times (or, blind, the ratios measured on the whole bracket), its
    reference frame, exposure source, response gamma and curve: a blind bracket stays blind."""
    full = make_bracket(_strip_exif(frames) if blind else frames, reference=1)
    sub = full.subset([1, 2])
    assert sub.frames == full.frames[1:] and sub.reference == 0
    assert sub.blind == full.blind == blind and sub.exposure_source == full.exposure_source
    assert (sub.crf_gamma, sub.curve_shape, sub.response) == (full.crf_gamma, full.curve_shape, full.response)
    np.testing.assert_allclose(sub.ratios, full.ratios[1:])
    if blind:
        assert sub.exposures is None and sub.estimated_ratios == tuple(full.ratios[1:])
    else:
        assert sub.exposures == full.exposures[1:]


def test_auto_reference_is_middle_exposure(frames: list[Frame]) -> None:
    """The best-exposed frame of a -2/0/+2 bracket is the middle one, whatever the frame order."""
    assert make_bracket(frames).reference == 1
    shuffled = [frames[2], frames[0], frames[1]]
    assert make_bracket(shuffled).reference == 2
    assert select_reference(shuffled) == 2


@pytest.mark.parametrize("count", [0, 1])
def test_too_few_frames(frames: list[Frame], count: int) -> None:
    """A merge needs two frames at least."""
    with pytest.raises(BracketError, match="at least 2"):
        make_bracket(frames[:count])


def test_too_many_frames(frames: list[Frame]) -> None:
    """The caller's frame limit is enforced."""
    with pytest.raises(BracketError, match="at most 2"):
        make_bracket(frames, max_frames=2)


def test_size_mismatch(frames: list[Frame]) -> None:
    """Frames of different sizes are refused with both sizes in the message."""
    small = Frame(frames[1].data[:32, :40].copy(), "display", "rgb", "jpeg", 8)
    with pytest.raises(BracketError, match="frame 2 is 40x32x3 but frame 1 is 80x64x3"):
        make_bracket([frames[0], small])


def test_domain_mismatch(frames: list[Frame]) -> None:
    """LDR and linear frames cannot be mixed."""
    lin = Frame(frames[1].data, "linear", "rgb", "exr", 16, floating=True)
    with pytest.raises(BracketError, match="do not mix"):
        make_bracket([frames[0], lin])


@pytest.mark.parametrize(
    ("times", "message"),
    [
        ([1.0, 2.0], "2 exposure times for 3 frames"),
        ([1.0, -2.0, 3.0], "exposure time 2 is -2.0"),
        ([1.0, 0.0, 3.0], "exposure time 2 is 0.0"),
        ([1.0, math.nan, 3.0], "exposure time 2 is nan"),
        ([1.0, math.inf, 3.0], "exposure time 2 is inf"),
    ],
)
def test_bad_exposures(frames: list[Frame], times: list[float], message: str) -> None:
    """Wrong counts and non-positive or non-finite times are ExposureErrors that name the value."""
    with pytest.raises(ExposureError, match=message):
        make_bracket(frames, times)


@pytest.mark.parametrize("reference", [3, -1, True, "1"])
def test_bad_reference(frames: list[Frame], reference: object) -> None:
    """Out-of-range or non-integer references are refused."""
    with pytest.raises(BracketError):
        make_bracket(frames, reference=reference)  # type: ignore[arg-type]


def test_linearize_display_and_linear() -> None:
    """Display frames are gamma-decoded; linear frames pass through untouched."""
    data = np.full((2, 2, 3), 0.5, np.float32)
    disp = Frame(data, "display", "rgb", "png", 8)
    assert np.allclose(linearize(disp, 2.2), 0.5**2.2)
    lin = Frame(data, "linear", "rgb", "exr", 16, floating=True)
    assert linearize(lin) is data


def test_estimate_ratios_robust_to_motion() -> None:
    """A moving object covering a small share of the frame does not bias the estimate off the grid."""
    rad = radiance_scene(128, 160, seed=5)
    lin = np.stack([np.clip(rad * t, 0, 1) for t in TIMES])
    lin[2, 5:23, 5:23] = lin[2, 100:118, 130:148]  # a bright object moved into a dark corner (1.6 %)
    np.testing.assert_allclose(estimate_ratios(lin, 1), [0.25, 1.0, 4.0])
    raw = np.log2(estimate_ratios(lin, 1, snap=False))
    assert np.all(np.abs(raw - [-2, 0, 2]) < 0.2), raw


def test_estimate_ratios_ignore_camera_shake() -> None:
    """Histogram matching needs no alignment: a frame shifted by 9 px still gives its exact ratio
    (a pixel-wise ratio over a textured scene is pulled towards 1 by the misregistration)."""
    rad = radiance_scene(128, 160, seed=2)
    frames = ldr_bracket(rad, TIMES, noise=0.002, seed=1)
    lin = np.stack([linearize(f) for f in frames])
    lin[0] = np.roll(lin[0], (9, -7), axis=(0, 1))
    lin[2] = np.roll(lin[2], (-6, 9), axis=(0, 1))
    np.testing.assert_allclose(estimate_ratios(lin, 1), [0.25, 1.0, 4.0])


def test_estimate_ratios_chain_a_long_bracket() -> None:
    """16 frames one stop apart: the ends share no well-exposed sample with the reference, yet
    chaining neighbour steps recovers every ratio; fully clipped frames take the typical step."""
    rad = radiance_scene(128, 160, seed=4, dynamic_range=2e5)
    times = [2.0 ** (k - 8) for k in range(16)]
    lin = np.stack([linearize(f) for f in ldr_bracket(rad, times)])
    np.testing.assert_allclose(estimate_ratios(lin, 8), np.asarray(times) / times[8])


def test_estimate_ratios_keep_off_grid_steps() -> None:
    """A ratio far from the whole/third-stop grid is reported as measured, not snapped."""
    rad = radiance_scene(128, 160, seed=6)
    times = [1.0, 2.0**1.5]  # 1.5 stops: 1/6 stop from the third-stop grid
    lin = np.stack([linearize(f) for f in ldr_bracket(rad, times)])
    assert abs(math.log2(estimate_ratios(lin, 0)[1]) - 1.5) < 0.05


@pytest.mark.parametrize(
    ("stops", "snapped"),
    [(1.9, 2.0), (-2.15, -2.0), (2.3, 2.3333333), (0.7, 0.6666667), (1.5, 1.5), (-0.25, -0.25), (0.02, 0.0)],
)
def test_snap_stops(stops: float, snapped: float) -> None:
    """Whole stops win within 0.2 stop, then third stops within 0.08; the rest is kept."""
    assert snap_stops(np.array([stops]))[0] == pytest.approx(snapped, abs=1e-6)


def test_exposure_info_defaults() -> None:
    """Frames without metadata report unknown exposure."""
    assert ExposureInfo().exposure_time is None


def test_reversed_exposures_are_refused(frames: list[Frame]) -> None:
    """Times listed in the wrong order contradict the pixels and are refused with a hint."""
    with pytest.raises(ExposureError, match="check the order"):
        make_bracket(frames, list(reversed(TIMES)))


def test_equal_exposures_are_accepted(frames: list[Frame]) -> None:
    """A burst of equal times is no contradiction."""
    same = [frames[1]] * 3
    assert make_bracket(same, [1.0, 1.0, 1.0]).exposures == (1.0, 1.0, 1.0)


def test_known_times_fit_the_response_gamma() -> None:
    """With the times known, a short bracket from a gamma-2.8 camera gets gamma 2.8 (the stated
    steps say so), which brings the weighted merge closer to the radiance; a gamma-2.2 camera,
    a caller's own gamma and blind brackets keep theirs."""
    from emvnet.merge.classical import merge_weighted

    rad = radiance_scene(96, 128, seed=8)
    steep = ldr_bracket(rad, TIMES, gamma=2.8, noise=0.001, seed=3)
    fitted = make_bracket(steep, TIMES, reference=1)
    assert abs(fitted.crf_gamma - 2.8) <= 0.1 + 1e-9
    assert make_bracket(steep, TIMES, reference=1, crf_gamma=2.2).crf_gamma == 2.2
    assert make_bracket(steep, TIMES, reference=1, calibrate=False).crf_gamma == 2.2
    no_times = [dataclasses.replace(f, exposure=ExposureInfo()) for f in steep]
    assert make_bracket(no_times, None, reference=1, calibrate=False).crf_gamma == 2.2
    plain = ldr_bracket(rad, TIMES, gamma=2.2, noise=0.001, seed=3)
    assert make_bracket(plain, TIMES, reference=1).crf_gamma == 2.2

    truth = np.clip(rad, 0, 1 / TIMES[0])  # what the shortest frame can still see

    def error(br: Bracket) -> float:
        out = merge_weighted(br)
        return float(np.abs(np.log1p(1000 * out) - np.log1p(1000 * truth)).mean())

    assert error(fitted) < 0.5 * error(make_bracket(steep, TIMES, reference=1, crf_gamma=2.2))


@pytest.mark.parametrize("gamma", [1.95, 2.45])
def test_blind_brackets_fit_a_response_that_is_not_gamma_22(gamma: float) -> None:
    """Blind, a gamma-1.95 or -2.45 camera shows 2-stop steps as ~2.25 or ~1.8 stops at gamma 2.2,
    off the grid: the nearest gamma that puts every step on whole stops finds the true ratios,
    and the response is fitted to them as if they were stated times."""
    rad = radiance_scene(96, 128, seed=8)
    frames = _strip_exif(ldr_bracket(rad, TIMES, gamma=gamma, noise=0.001, seed=3))
    assert make_bracket(frames, None, reference=1, calibrate=False).ratios[2] != pytest.approx(4.0, rel=0.05)
    b = make_bracket(frames, None, reference=1)
    assert b.blind
    np.testing.assert_allclose(b.ratios, [0.25, 1.0, 4.0])
    assert abs(b.crf_gamma - gamma) <= 0.2 + 1e-9


def test_blind_brackets_see_through_a_shoulder() -> None:
    """A strong highlight roll-off reads 2-stop steps as ~1.3-1.5 stops (no gamma puts both on the
    grid): the shoulder is measured from the frames' histograms and undone before the steps are."""
    rad = radiance_scene(96, 128, seed=8)
    frames = _strip_exif(ldr_bracket(rad, TIMES, gamma=2.2, noise=0.001, seed=3, shoulder=1.3))
    assert fit_curve_shape(frames) >= 0.75
    np.testing.assert_allclose(make_bracket(frames, None, reference=1).ratios, [0.25, 1.0, 4.0])
    plain = _strip_exif(ldr_bracket(rad, TIMES, gamma=2.2, noise=0.001, seed=3))
    assert fit_curve_shape(plain) == 0.0


def test_blind_long_bracket_calibrates_its_response() -> None:
    """16 blind frames one stop apart from a camera with a shoulder: the measured steps land on the
    grid and the response is calibrated from them, as with stated times."""
    rad = radiance_scene(96, 128, seed=4, dynamic_range=2e5)
    times = [2.0 ** (k - 8) for k in range(16)]
    frames = _strip_exif(ldr_bracket(rad, times, gamma=2.4, noise=0.001, seed=2, shoulder=0.7))
    b = make_bracket(frames, None, reference=8)
    assert b.blind and b.response is not None
    np.testing.assert_allclose(b.ratios, np.asarray(times) / times[8])


def test_grid_reading_needs_distinct_exposures() -> None:
    """A burst of equal exposures has no steps to fit a response to: no grid ratios, and the
    blind bracket keeps gamma 2.2 with the ratios measured."""
    rad = radiance_scene(64, 80, seed=3)
    burst = _strip_exif(ldr_bracket(rad, [1.0, 1.0, 1.0], noise=0.002, seed=5))
    lin = np.stack([linearize(f) for f in burst])
    assert read_grid(lin, 1)[0] is None
    b = make_bracket(burst, None, reference=1)
    assert b.crf_gamma == 2.2 and b.response is None
    np.testing.assert_allclose(b.ratios, [1.0, 1.0, 1.0])


def test_grid_reading_refuses_an_ambiguous_reading() -> None:
    """2-stop steps from a gamma-1.76 camera measure 2.5 stops at gamma 2.2: 2 stops through a
    flat curve or 3 through a steep one, both common. Neither is guessed (a wrong guess distorts
    the radiance by a power of 1.5): no grid ratios, and the blind bracket keeps gamma 2.2 with
    the steps as measured. Noise of one level at every signal (no shot noise) is no sensor's and
    settles nothing."""
    rad = radiance_scene(96, 128, seed=8)
    frames = _strip_exif(ldr_bracket(rad, TIMES, gamma=1.76, noise=0.001, seed=3))
    lin = np.stack([linearize(f) for f in frames])
    assert read_grid(lin, 1)[0] is None
    assert read_grid(lin, 1, frames=frames)[0] is None
    b = make_bracket(frames, None, reference=1)
    assert b.crf_gamma == 2.2
    assert abs(math.log2(b.ratios[2]) - 2.5) < 0.15


@pytest.mark.parametrize(("gamma", "stops"), [(1.8, 2), (2.7, 3)])
def test_sensor_noise_settles_an_ambiguous_reading(gamma: float, stops: int) -> None:
    """2 stops through gamma 1.8 and 3 through gamma 2.7 measure alike (2.44 stops at 2.2); with
    shot noise, how the noise changes with the level shows the gamma: the blind bracket gets the
    right steps and response."""
    rad = radiance_scene(128, 160, seed=3)
    times = [2.0**-stops, 1.0, 2.0**stops]
    frames = _strip_exif(ldr_bracket(rad, times, gamma=gamma, shot=0.002, noise=1e-4, seed=3))
    lin = np.stack([linearize(f) for f in frames])
    assert read_grid(lin, 1)[0] is None  # the levels alone cannot tell
    b = make_bracket(frames, None, reference=1)
    np.testing.assert_allclose(b.ratios, times)
    assert b.crf_gamma == pytest.approx(gamma, abs=0.15)


def test_large_frames_are_heard_in_bands() -> None:
    """Frames over 2 MP are read in bands of rows spread over the frame (noise needs neighbours, so
    a strided sample would not do); the bands still settle an ambiguous reading."""
    rad = radiance_scene(1500, 1440, seed=3)
    times = [0.125, 1.0, 8.0]
    frames = _strip_exif(ldr_bracket(rad, times, gamma=2.7, shot=0.002, noise=1e-4, seed=3))
    assert len(_bands(frames[0].data)) > 1
    b = make_bracket(frames, None, reference=1)
    np.testing.assert_allclose(b.ratios, times)


def test_noise_misfit_tells_flat_from_steep_responses() -> None:
    """Shot noise (plus some read noise) through gamma 1.8 and 2.7 is explained by its own gamma
    and not by the other; a clean frame shows no noise profile at all."""
    u = np.linspace(0.15, 0.7, 20)
    flat = (u, u**0.2 + 0.01 * u**-1.6)  # gamma 1.8, read noise equal to shot noise at 1 % signal
    steep = (u, u**-0.7)  # gamma 2.7, shot noise alone
    assert noise_misfit(flat, 1.8) < 0.03 < 0.1 < noise_misfit(flat, 2.7)
    assert noise_misfit(steep, 2.7) < 0.03 < 0.1 < noise_misfit(steep, 1.8)
    clean = ldr_bracket(radiance_scene(128, 160, seed=3), TIMES)
    assert noise_profile(clean) is None
    noisy = ldr_bracket(radiance_scene(128, 160, seed=3), TIMES, shot=0.002, seed=3)
    assert noise_profile(noisy) is not None


def test_known_times_undo_a_shoulder_before_the_gamma() -> None:
    """A film-like curve (gamma 2.2 rolled off by a shoulder) with known times: the shoulder is
    found and undone, so the linear frames and the weighted merge are far closer to the radiance
    than through the best plain gamma."""
    from emvnet.merge.classical import merge_weighted

    rad = radiance_scene(96, 128, seed=8)
    frames = ldr_bracket(rad, TIMES, gamma=2.2, noise=0.001, seed=3, shoulder=1.3)
    shaped = make_bracket(frames, TIMES, reference=1)
    assert shaped.curve_shape != 0.0
    plain = make_bracket(frames, TIMES, reference=1, calibrate=False)
    truth = np.clip(rad, 0, 1 / TIMES[0])

    def error(br: Bracket) -> float:
        return float(np.abs(np.log1p(1000 * merge_weighted(br)) - np.log1p(1000 * truth)).mean())

    assert error(shaped) < 0.5 * error(plain)


def test_srgb_frames_are_read_as_srgb() -> None:
    """Frames encoded with the sRGB curve are recognized as such (not as a mild shoulder, which
    would misread their exposure steps), blind or not; a plain gamma-2.2 camera keeps no shape."""
    from emvnet.io.tonemap import srgb_encode

    rad = radiance_scene(96, 128, seed=8)
    frames = [
        Frame(
            np.round(srgb_encode(np.clip(rad * t, 0, 1)) * 255).astype(np.float32) / 255,
            "display",
            "rgb",
            "jpeg",
            8,
        )
        for t in TIMES
    ]
    assert fit_curve_shape(frames) == "srgb"
    b = make_bracket(frames, None, reference=1)
    assert b.curve_shape == "srgb"
    np.testing.assert_allclose(b.ratios, [0.25, 1.0, 4.0])
    assert make_bracket(ldr_bracket(rad, TIMES, noise=0.001, seed=3), TIMES, reference=1).curve_shape == 0.0


def test_third_stop_steps_need_a_plain_power_law() -> None:
    """Steps of 2/3 stop from a gamma-2.2 camera read no whole stops through any common gamma;
    they snap to the third-stop grid, but only when no curve shape was fitted."""
    rad = radiance_scene(96, 128, seed=8)
    times = [2.0 ** (-2 / 3), 1.0, 2.0 ** (2 / 3)]
    lin = np.stack([linearize(f) for f in ldr_bracket(rad, times, noise=0.001, seed=3)])
    np.testing.assert_allclose(read_grid(lin, 1)[0], times, rtol=1e-6)
    assert read_grid(lin, 1, thirds=False)[0] is None


@pytest.mark.parametrize("shape", ["srgb", 0.5])
def test_an_8bit_frame_linearizes_through_a_lookup_as_through_the_curve(shape: CurveShape) -> None:
    codes = np.random.default_rng(3).integers(0, 256, (37, 53, 3)).astype(np.float32)
    frame = Frame(codes / np.float32(255), "display", "rgb", "jpeg", 8)
    looked_up = linearize(frame, 1.7, shape)
    direct = np.power(np.clip(unshape(frame.data, shape), 0.0, 1.0), 1.7)
    assert looked_up.shape == frame.data.shape and looked_up.dtype == np.float32
    np.testing.assert_allclose(looked_up, direct, rtol=1e-5, atol=1e-7)
    # A resized frame holds values between codes: the curve itself, not the nearest code's value.
    between = Frame((codes + 0.5) / np.float32(256), "display", "rgb", "jpeg", 8)
    exact = np.power(np.clip(unshape(between.data, shape), 0.0, 1.0), 1.7)
    np.testing.assert_allclose(linearize(between, 1.7, shape), exact, rtol=1e-5, atol=1e-7)


def test_a_calibrated_response_looks_8bit_frames_up_as_it_interpolates() -> None:
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 256, (5, 29, 31, 3)).astype(np.float32)
    frames = [Frame(c / np.float32(255), "display", "rgb", "jpeg", 8) for c in codes]
    response = np.sort(rng.random((256, 3)), axis=0).astype(np.float32)
    bracket = Bracket(frames=tuple(frames), exposures=None, reference=2, response=response)
    expected = np.stack([apply_response(f.data, response) for f in frames])
    np.testing.assert_allclose(bracket.linear, expected, rtol=1e-6, atol=1e-7)
