"""Bracket synthesis: determinism, exposure ratios, clipping, target units, motion, blind and raw modes."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from emvnet.merge.bracket import linearize, select_reference
from emvnet.training.data.camera import GAMMA_22, CrfConfig, NoiseConfig
from emvnet.training.data.datasets import SyntheticBrackets
from emvnet.training.data.motion import MotionConfig, render_view, shake_homography
from emvnet.training.data.scenes import SyntheticScenes
from emvnet.training.data.simulator import Sample, SimulatorConfig, simulate

SIZE = 64
STILL = MotionConfig(p_shake=0.0, p_objects=0.0)
# Noise-free, exact gamma 2.2, 16-bit, known times, automatic reference: the frames are then an
# exact function of the target.
EXACT = SimulatorConfig(
    size=SIZE,
    crf=CrfConfig(p_default=1.0),
    noise=NoiseConfig(p_clean=1.0),
    motion=STILL,
    bit_depths=(16,),
    bit_weights=(1.0,),
    p_blind=0.0,
    p_auto_reference=1.0,
    p_shuffle=0.0,
)
SCENES = SyntheticScenes()


def _sample(config: SimulatorConfig, seed: int) -> Sample:
    return simulate(np.random.default_rng(seed), SCENES, config)


def test_same_seed_and_index_give_the_same_sample() -> None:
    """SyntheticBrackets(seed).sample(i) is reproducible; another index or seed differs."""
    config = SimulatorConfig(size=SIZE)
    a = SyntheticBrackets(SCENES, config, seed=7).sample(3)
    b = SyntheticBrackets(SCENES, config, seed=7).sample(3)
    assert a.exposure_times == b.exposure_times and a.reference == b.reference and a.crf == b.crf
    for fa, fb in zip(a.frames, b.frames, strict=True):
        np.testing.assert_array_equal(fa.data, fb.data)
    np.testing.assert_array_equal(a.hdr, b.hdr)
    np.testing.assert_array_equal(a.mask, b.mask)
    c = SyntheticBrackets(SCENES, config, seed=7).sample(4)
    d = SyntheticBrackets(SCENES, config, seed=8).sample(3)
    assert not np.array_equal(a.hdr, c.hdr) and not np.array_equal(a.hdr, d.hdr)


def test_frame_counts_ratios_and_frame_format() -> None:
    """2..4 display RGB frames, ascending times x2..x16 apart, quantized at the stated bit depth."""
    config = SimulatorConfig(size=SIZE)
    counts = set()
    for seed in range(30):
        s = _sample(config, seed)
        counts.add(len(s.frames))
        times = np.sort(s.exposure_times)
        steps = times[1:] / times[:-1]
        assert np.all(steps >= 2 - 1e-9) and np.all(steps <= 16 + 1e-9), steps
        for f in s.frames:
            assert (f.domain, f.layout, f.data.shape) == ("display", "rgb", (SIZE, SIZE, 3))
            codes = f.data.astype(np.float64) * (2**f.bit_depth - 1)
            assert np.abs(codes - np.round(codes)).max() < 1e-2 and f.bit_depth in (8, 10, 12, 16)
            assert (f.exposure.exposure_time is None) == s.blind
    assert counts == {2, 3, 4}


def test_anchor_frame_clips_the_drawn_share() -> None:
    """Without motion, the median-exposure frame clips (any channel >= 1) the drawn 2..20 % of pixels."""
    for seed in range(12):
        s = _sample(replace(EXACT, p_auto_reference=0.0), seed)
        anchor = (len(s.frames) - 1) // 2
        ratio = s.exposure_times[anchor] / s.exposure_times[s.reference]
        clipped = float(((s.hdr * ratio).max(axis=2) >= 1.0).mean())
        assert 0.02 <= s.clip_goal <= 0.20
        assert clipped == pytest.approx(s.clip_goal, abs=0.02)


def test_target_is_in_reference_units() -> None:
    """Linearized reference frame == target where unclipped; other frames / ratio == target too."""
    for seed in range(6):
        s = _sample(EXACT, seed)
        assert s.reference == select_reference(s.frames, s.exposure_times)
        bracket = s.bracket()
        for i, frame in enumerate(s.frames):
            lin = linearize(frame) / bracket.ratios[i]
            ok = (frame.data < 0.95) & (frame.data > 0.05)
            np.testing.assert_allclose(lin[ok], s.hdr[ok], rtol=2e-3, atol=1e-5)
        ref = s.frames[s.reference].data
        assert np.all(ref[s.hdr >= 1.0] == 1.0)  # the target exceeds 1 exactly where the reference clips


def test_noisy_frames_agree_with_target_within_noise() -> None:
    """With noise and 8-bit codes, the reference's linearized mid-tones match the target on average."""
    config = replace(EXACT, noise=NoiseConfig(p_clean=0.0), bit_depths=(8,))
    s = _sample(config, 1)
    lin = linearize(s.frames[s.reference])
    ok = (lin > 0.1) & (lin < 0.8)
    rel = np.abs(lin[ok] - s.hdr[ok]) / s.hdr[ok]
    assert float(np.median(rel)) < 0.1
    assert s.crf == GAMMA_22 and s.noise.shot > 0


def test_moving_objects_occlude_and_are_masked() -> None:
    """Objects make frames disagree with the target inside the moving mask and only there."""
    config = replace(EXACT, motion=MotionConfig(p_shake=0.0, p_objects=1.0, max_object_speed=0.15))
    s = _sample(config, 3)
    assert 0.0 < s.moving.mean() < 1.0 and s.mask.all()
    bracket = s.bracket()
    for i, frame in enumerate(s.frames):
        if i == s.reference:
            continue
        lin = linearize(frame) / bracket.ratios[i]
        ok = (frame.data < 0.95) & (frame.data > 0.05)
        still = ok & ~s.moving[..., None]
        np.testing.assert_allclose(lin[still], s.hdr[still], rtol=2e-3, atol=1e-5)
        moved = ok & s.moving[..., None]
        assert np.mean(np.abs(lin[moved] - s.hdr[moved]) > 0.05 * s.hdr[moved]) > 0.2


def test_camera_shake_stays_inside_the_margin_and_holes_are_flagged() -> None:
    """Shaken views within the margin are fully valid; a shift beyond the crop leaves invalid pixels."""
    config = replace(EXACT, motion=MotionConfig(p_shake=1.0, p_objects=0.0))
    s = _sample(config, 4)
    assert s.mask.all()
    crop = np.ones((40, 40, 3), dtype=np.float32)
    far = np.array([[1, 0, 30], [0, 1, 0], [0, 0, 1]], dtype=np.float64)  # output x -> crop x + 30
    _, valid = render_view(crop, far, 32)
    assert 0 < valid.mean() < 1 and not valid[:, -1].any()
    h = shake_homography(np.random.default_rng(0), 32, config.motion.margin(32), config.motion)
    _, valid = render_view(np.ones((32 + 2 * config.motion.margin(32),) * 2 + (3,), np.float32), h, 32)
    assert valid.all()


def test_blind_samples_carry_no_exposure_times() -> None:
    """Blind samples give frames without EXIF times, so make_bracket estimates the ratios."""
    s = _sample(replace(EXACT, p_blind=1.0), 5)
    bracket = s.bracket()
    assert s.exposures is None and bracket.blind
    true = np.asarray(s.exposure_times) / s.exposure_times[s.reference]
    np.testing.assert_allclose(np.log2(bracket.ratios), np.log2(true), atol=0.1)


def test_user_chosen_reference_sets_the_target_units() -> None:
    """A randomly named reference still gets its own view and units as the target."""
    config = replace(EXACT, p_auto_reference=0.0, frames_range=(3, 3))
    refs = set()
    for seed in range(12):
        s = _sample(config, seed)
        refs.add(s.reference)
        frame = s.frames[s.reference]
        ok = (frame.data < 0.95) & (frame.data > 0.05)
        np.testing.assert_allclose(linearize(frame)[ok], s.hdr[ok], rtol=2e-3, atol=1e-5)
    assert len(refs) >= 2


def test_raw_mode_gives_packed_frames_and_both_targets() -> None:
    """Raw samples: packed RGGB linear frames, packed target in reference units, full-size sRGB target."""
    config = replace(EXACT, mode="raw")
    s = _sample(config, 6)
    assert s.camera is not None and s.isp is not None and s.crf is None
    assert s.hdr.shape == (SIZE // 2, SIZE // 2, 4) and s.isp.shape == (SIZE, SIZE, 3)
    assert s.mask.shape == (SIZE // 2, SIZE // 2) and s.isp.min() >= 0.0 and s.isp.max() <= 1.0
    for f in s.frames:
        assert (f.domain, f.layout, f.data.shape) == ("linear", "rggb", (SIZE // 2, SIZE // 2, 4))
        assert f.raw is not None and f.raw.cfa_pattern == "RGGB"
    ref = s.frames[s.reference].data
    ok = ref < 0.99
    step = 1.0 / (s.camera.white_level - s.camera.black_level)
    np.testing.assert_allclose(ref[ok], s.hdr[ok], atol=step)
    bracket = s.bracket()
    assert bracket.layout == "rggb" and math.isclose(bracket.ratios[s.reference], 1.0)


def test_shuffled_frames_keep_times_reference_and_target_together() -> None:
    """With shuffling, times follow their frames and the target stays the reference's view and units."""
    config = replace(EXACT, p_shuffle=1.0, frames_range=(3, 4))
    unsorted = 0
    for seed in range(8):
        s = _sample(config, seed)
        unsorted += list(s.exposure_times) != sorted(s.exposure_times)
        bracket = s.bracket()
        for i, frame in enumerate(s.frames):
            lin = linearize(frame) / bracket.ratios[i]
            ok = (frame.data < 0.95) & (frame.data > 0.05)
            np.testing.assert_allclose(lin[ok], s.hdr[ok], rtol=2e-3, atol=1e-5)
    assert unsorted > 0
