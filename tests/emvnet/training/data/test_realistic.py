"""Realistic motion: deterministic, bounded, every kind drawn, geometry and masks that hold."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import cv2
import numpy as np
import pytest

from emvnet.merge.bracket import linearize
from emvnet.training.config import ConfigError, parse_config
from emvnet.training.data.camera import CrfConfig, NoiseConfig
from emvnet.training.data.layers import Layer, LayeredScene, apply, translation
from emvnet.training.data.realistic import RealisticMotion, sample_scene
from emvnet.training.data.scenes import SyntheticScenes
from emvnet.training.data.simulator import Sample, SimulatorConfig, simulate

SIZE = 96
SCENES = SyntheticScenes()
MOTION = RealisticMotion()
# Noise-free, gamma 2.2, 16-bit, known times, no shuffling: frames are an exact function of the views.
EXACT = SimulatorConfig(
    size=SIZE,
    crf=CrfConfig(p_default=1.0),
    noise=NoiseConfig(p_clean=1.0),
    bit_depths=(16,),
    bit_weights=(1.0,),
    p_blind=0.0,
    p_shuffle=0.0,
    realistic_motion=MOTION,
)


def _sample(config: SimulatorConfig, seed: int) -> Sample:
    return simulate(np.random.default_rng([11, seed]), SCENES, config)


def _scene(seed: int, n: int = 4, size: int = SIZE, motion: RealisticMotion = MOTION) -> LayeredScene:
    rel_times = 4.0 ** np.arange(n)
    return sample_scene(np.random.default_rng([5, seed]), SCENES, size, rel_times, (n - 1) // 2, motion)


def _screen_points(layer: Layer, k: int, grid: np.ndarray) -> np.ndarray:
    """Where frame k shows the sprite points `grid` (m, 2): the renderer's sampling, inverted exactly.

    Frame k samples the sprite at u + field(u) with u = pose^-1(q), so a point p shows at
    pose(u) where u + field(u) = p; solved by fixed-point iteration (the field is smooth and small).
    """
    u = grid.copy()
    if layer.fields is not None:
        field = layer.fields[k]
        for _ in range(20):
            offset = cv2.remap(
                field,
                u[:, 0:1].astype(np.float32),
                u[:, 1:2].astype(np.float32),
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )[:, 0]  # (m, 2)
            u = grid - offset
    return np.asarray(apply(layer.poses[k], u))


def test_same_seed_gives_the_same_bracket_and_another_seed_another() -> None:
    """simulate() with realistic motion is a function of the generator state."""
    config = replace(EXACT, noise=NoiseConfig(), bit_depths=(8,))
    a, b, c = _sample(config, 1), _sample(config, 1), _sample(config, 2)
    for fa, fb in zip(a.frames, b.frames, strict=True):
        np.testing.assert_array_equal(fa.data, fb.data)
    np.testing.assert_array_equal(a.hdr, b.hdr)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.moving, b.moving)
    assert not np.array_equal(a.hdr, c.hdr)


def test_displacements_stay_within_max_step_and_reach_it() -> None:
    """No visible sprite point moves more than max_step x S between neighbours; some move over half of it."""
    limit = MOTION.max_step * SIZE
    largest = 0.0
    for seed in range(40):
        scene = _scene(seed)
        for layer in scene.layers:
            h, w = layer.lin.shape[:2]
            ys, xs = np.mgrid[0:h:3, 0:w:3]
            grid = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)  # (m, 2) sprite pixels
            if layer.alpha is not None:
                grid = grid[layer.alpha[ys.ravel(), xs.ravel()] > 0.5]
            for k in range(scene.n_frames - 1):
                if not (layer.shown(k) and layer.shown(k + 1)):
                    continue
                here, there = _screen_points(layer, k, grid), _screen_points(layer, k + 1, grid)
                visible = np.all((here >= 0) & (here < SIZE) & (there >= 0) & (there < SIZE), axis=1)
                if visible.any():
                    step = float(np.linalg.norm(there - here, axis=1)[visible].max())
                    assert step <= limit * 1.02 + 0.5, (seed, layer.kind, k, step, limit)
                    largest = max(largest, step)
    assert largest > 0.7 * limit


def test_every_kind_of_motion_is_drawn() -> None:
    """Over a few dozen brackets: every layer kind, parallax, tripods, appear/vanish, flicker, blur."""
    kinds: Counter[str] = Counter()
    appear = flicker = parallax = tripod = 0
    for seed in range(40):
        scene = _scene(seed)
        kinds.update(layer.kind for layer in scene.layers)
        appear += any(not all(layer.present) for layer in scene.layers if layer.present)
        flicker += any(len(set(layer.gains)) > 1 for layer in scene.layers if layer.gains)
        background = scene.layers[0].poses
        moved = np.linalg.norm(background[-1][:, 2] - background[0][:, 2])
        tripod += moved == 0
        near = [layer for layer in scene.layers if layer.kind == "near"]
        if near and moved > 0:  # two depths, two image motions
            gap = np.linalg.norm(scene.step(scene.layers[0], 3) - scene.step(near[0], 3))
            parallax += gap > 0.5
        long = [k for k in range(scene.n_frames) if scene.blur[k] > 0]
        assert all(k > (scene.n_frames - 1) // 2 for k in long), "only frames longer than the anchor blur"
    assert set(kinds) == {"background", "backdrop", "rigid", "articulated", "deforming", "limb", "near"}
    assert appear > 0 and flicker > 0 and parallax > 0 and tripod > 0


def test_long_frames_are_blurred_along_the_motion() -> None:
    """Blur softens the long frames only: short frames render the same with and without it."""
    scenes = (_scene(seed) for seed in range(40))
    scene = next(s for s in scenes if s.blur[-1] > 0.3 and np.linalg.norm(s.step(s.layers[0], 3)) > 4)
    for k in range(scene.n_frames):
        sharp, blurred = scene.render(k, blur=False).lin, scene.render(k).lin
        if scene.blur[k] == 0:
            np.testing.assert_array_equal(sharp, blurred)
    assert scene.blur[-1] > 0 and not np.array_equal(sharp, blurred)  # the last, longest frame
    energy = [
        float(np.abs(np.diff(np.log(v + 1e-3), axis=a)).mean()) for v in (sharp, blurred) for a in (0, 1)
    ]
    assert sum(energy[2:]) < 0.97 * sum(energy[:2])


def _exposed(lin: np.ndarray) -> np.ndarray:
    """(S, S) uint8: 1 where `lin` (1.0 = clipping) and its 3x3 neighbours are well exposed."""
    ok = ((lin.max(axis=2) < 0.9) & (lin.min(axis=2) > 0.02)).astype(np.uint8)
    return np.asarray(cv2.erode(ok, np.ones((3, 3), np.uint8)))


def test_frames_show_the_reference_content_where_the_scene_says_so() -> None:
    """Sampled where `correspondence` puts it, another frame matches the target; 3 px off, it does not."""
    errors, kinds = [], set()
    nearest = {"interpolation": cv2.INTER_NEAREST, "borderMode": cv2.BORDER_CONSTANT}
    for seed in range(16):
        s = _sample(replace(EXACT, size=160, realistic_motion=replace(MOTION, p_blur=0.0)), seed)
        assert s.scene is not None
        bracket = s.bracket()
        rendered = [s.scene.render(k) for k in range(len(s.frames))]
        for k, frame in enumerate(s.frames):
            lin = linearize(frame)  # (S, S, 3), 1.0 = where frame k clips
            for index, layer in enumerate(s.scene.layers):
                if k == s.reference or not (layer.shown(k) and layer.shown(s.reference)):
                    continue
                if layer.gain(k) != layer.gain(s.reference):
                    continue
                interior = cv2.erode((rendered[s.reference].ids == index).astype(np.uint8), np.ones((5, 5)))
                ok = (interior > 0) & (_exposed(s.hdr) > 0)
                rel = []
                for dx in (0.0, 3.0):
                    map_x, map_y = s.scene.correspondence(layer, s.reference, k)
                    map_x = map_x + np.float32(dx)
                    there = cv2.remap(lin, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                    shown = cv2.remap(rendered[k].ids, map_x, map_y, borderValue=255, **nearest) == index
                    usable = (
                        ok & shown & (cv2.remap(_exposed(lin), map_x, map_y, borderValue=0, **nearest) > 0)
                    )
                    if usable.sum() < 30:
                        break
                    diff = np.abs(there[usable] / bracket.ratios[k] - s.hdr[usable]) / s.hdr[usable]
                    rel.append(float(np.median(diff)))
                if len(rel) == 2:
                    errors.append(rel)
                    kinds.add(layer.kind)
    errors_arr = np.array(errors)  # (checks, 2): the right map, 3 px off
    assert len(errors_arr) >= 10 and len(kinds - {"background", "backdrop"}) >= 2, kinds
    assert float(np.median(errors_arr[:, 0])) < 0.01 and np.all(errors_arr[:, 0] < 0.06)
    assert np.all(errors_arr[:, 0] < 0.5 * errors_arr[:, 1])


def test_mask_leaves_out_clipped_content_no_other_frame_shows() -> None:
    """A bright object only the reference sees, where the reference clips, is masked; the rest is not."""
    size, n = 64, 3
    background = Layer(
        "background", np.full((size, size, 3), 0.2, np.float32), None, (translation(0, 0),) * n
    )
    blob = np.zeros((20, 20), np.float32)
    blob[4:16, 4:16] = 1.0
    flash = Layer(
        "rigid",
        np.full((20, 20, 3), 5.0, np.float32),
        blob,
        (translation(10, 10),) * n,
        present=(False, True, False),
    )
    scene = LayeredScene(size, (background, flash), (0.0,) * n)
    frames = [scene.render(k) for k in range(n)]
    seen = scene.seen_elsewhere(1, frames)
    assert not seen[14:26, 14:26].any() and seen[40:, 40:].all() and seen[:10].all()
    assert scene.moving(frames)[14:26, 14:26].all() and not scene.moving(frames)[40:, 40:].any()

    masked = 0
    for seed in range(12):
        s = _sample(EXACT, seed)
        assert s.mask.shape == s.hdr.shape[:2] == s.moving.shape and s.mask.dtype == bool
        clipped = s.hdr.max(axis=2) >= 1.0
        assert not (~s.mask & ~clipped).any(), "only clipped reference pixels are ever masked"
        masked += int((~s.mask).sum())
    assert masked > 0


def test_raw_mode_and_small_sizes_work() -> None:
    """Realistic motion also feeds raw brackets and crops as small as the trainer's smoke runs."""
    s = _sample(replace(EXACT, mode="raw", size=32), 3)
    assert s.hdr.shape == (16, 16, 4) and s.mask.shape == (16, 16) and np.isfinite(s.hdr).all()
    s = _sample(replace(EXACT, size=16, frames_range=(2, 4)), 4)
    assert s.hdr.shape == (16, 16, 3)


def test_share_mixes_rigid_and_realistic_brackets() -> None:
    """p_use draws that share of brackets with layered motion and the rest with the rigid motion."""
    config = replace(EXACT, realistic_motion=replace(MOTION, p_use=0.5))
    layered = sum(_sample(config, seed).scene is not None for seed in range(30))
    assert 5 < layered < 25


def test_training_configs_opt_in_with_a_table() -> None:
    """[data.simulator.realistic_motion] turns it on (defaults or overrides); bad values are ConfigErrors."""
    base = {"model": {"variant": "emvnet-fast-rgb"}}
    assert parse_config(base).data.simulator.realistic_motion is None
    on = parse_config({**base, "data": {"simulator": {"realistic_motion": {"max_step": 0.12}}}})
    assert on.data.simulator.realistic_motion == RealisticMotion(max_step=0.12)
    with pytest.raises(ConfigError, match="max_step"):
        parse_config({**base, "data": {"simulator": {"realistic_motion": {"max_step": 2.0}}}})
