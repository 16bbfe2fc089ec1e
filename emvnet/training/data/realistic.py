"""Realistic motion for synthetic brackets: parallax, large, articulated and deforming motion (Sec. 5.1).

The rigid simulator (`motion`) shakes one background plane by a few per cent and slides pasted
shapes. Real handheld brackets of people do more, and `sample_scene` draws each of these as a
`layers.LayeredScene`:
- camera motion with parallax: turning the camera moves every depth alike, moving it shifts the
  background (far layer) by a fraction of what it shifts a near occluder (a pillar, a bush);
  and the view rolls a little;
- subjects at depths in between, each rigid (it translates and turns), articulated (limbs swing
  about joints on the body) or deforming (a smooth random displacement field over it);
- large displacements: a visible point moves up to `max_step` of the frame between neighbouring
  frames, camera and own motion together. The bound holds by construction: the camera's worst
  case at a layer's depth is taken off the budget, and each part of a subject's own motion gets a
  share of the rest for its worst case (translation, turn x radius, swing x limb length, the
  field's peak); the shares add up to at most one;
- subjects that appear or vanish partway through the bracket, or change brightness between frames;
- a bright window behind the first subject, exposed to clip in the frames longer than the anchor;
- motion blur in those long frames, along each layer's motion, a share of its step that grows
  with the exposure time.

The anchor frame (the median exposure) sees the background crop unmoved and every subject at its
drawn place, as in `motion`. Distances in `RealisticMotion` are fractions of the output side S.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from emvnet.io.tonemap import luminance
from emvnet.training.data.layers import Layer, LayeredScene, LayerKind, compose, rotation, translation
from emvnet.training.data.motion import shape_alpha
from emvnet.training.data.scenes import SceneSource

# The window's level is set against the anchor's clip level at a clip share in the middle of the
# simulator's range (2..20 %): the anchor's true exposure gain is drawn after the views exist.
_CLIP_QUANTILE = 0.9
_FIELD_GRID = 4  # control points per side of a deformation field: smooth, one or two bends


@dataclass(frozen=True)
class RealisticMotion:
    """Ranges of the layered motion; distances are fractions of S between neighbouring frames."""

    p_use: float = 1.0  # share of brackets drawn with this motion; the rest get the rigid `motion`
    max_step: float = 0.10  # the largest displacement of any visible point between neighbours
    p_handheld: float = 0.85  # else a tripod: only the subjects move
    # Handheld brackets show 5-6 % between frames: turning the camera moves every depth alike,
    # moving it moves near things more than far ones (parallax).
    max_pan_step: float = 0.05
    max_shift_step: float = 0.04  # the near layer's; far layers get `far_parallax` of it
    max_roll_deg: float = 0.5
    far_parallax: tuple[float, float] = (0.15, 0.6)  # background shift / near-layer shift
    p_near: float = 0.7  # a near occluder in front of everything (handheld brackets only)
    near_size_range: tuple[float, float] = (0.35, 0.8)
    p_subjects: float = 0.9
    subjects_range: tuple[int, int] = (1, 3)
    subject_size_range: tuple[float, float] = (0.15, 0.45)
    subject_gain_range: tuple[float, float] = (0.1, 20.0)  # radiance / scene median, log-uniform
    p_articulated: float = 0.4
    p_deforming: float = 0.35  # the rest are rigid
    limbs_range: tuple[int, int] = (1, 3)
    max_swing_deg: float = 35.0  # a limb's turn about its joint between neighbours
    max_deform: float = 0.08  # a field's peak change between neighbours, share of the subject's side
    p_appear: float = 0.25  # a subject appears or vanishes partway through the bracket
    p_flicker: float = 0.2  # a subject changes brightness between frames (a screen, a passing shadow)
    flicker_range: tuple[float, float] = (0.5, 2.0)
    p_backdrop: float = 0.4  # a bright window behind the first subject
    backdrop_size_range: tuple[float, float] = (0.3, 0.6)
    backdrop_level_range: tuple[float, float] = (0.5, 0.95)  # window median / the anchor's clip level
    p_blur: float = 0.8  # frames longer than the anchor are blurred by the motion during them
    blur_range: tuple[float, float] = (0.15, 0.6)  # blur length / step, for the longest frame

    def __post_init__(self) -> None:
        assert 0.0 <= self.p_use <= 1.0, f"p_use {self.p_use} must lie in [0, 1]"
        assert 0.0 < self.max_step <= 0.5, f"max_step {self.max_step} must be in (0, 0.5]"
        camera = self.max_pan_step + self.max_shift_step
        assert min(self.max_pan_step, self.max_shift_step) >= 0.0, "camera steps must be non-negative"
        assert camera <= self.max_step, "max_pan_step + max_shift_step must be within max_step"
        assert 0.0 < self.far_parallax[0] <= self.far_parallax[1] <= 1.0, "far_parallax must lie in (0, 1]"
        assert 1 <= self.subjects_range[0] <= self.subjects_range[1], "subjects_range must start at 1"
        assert 1 <= self.limbs_range[0] <= self.limbs_range[1], "limbs_range must start at 1"
        assert self.p_articulated + self.p_deforming <= 1.0, "p_articulated + p_deforming must be <= 1"
        assert 0.0 <= self.blur_range[0] <= self.blur_range[1] <= 1.0, "blur_range must lie in [0, 1]"
        assert 0.0 < self.flicker_range[0] <= self.flicker_range[1], "flicker_range must be positive"


@dataclass(frozen=True, eq=False)
class Camera:
    """The camera's path, zero at the anchor, in image terms.

    `pan` (n, 2) px: from turning the camera, every depth alike; `shift` (n, 2) px: from moving
    it, the near layer's (a layer at `parallax` gets that share); `roll` (n,) radians about the
    view's centre.
    """

    pan: np.ndarray
    shift: np.ndarray
    roll: np.ndarray
    size: int

    @staticmethod
    def still(n: int, size: int) -> Camera:
        return Camera(np.zeros((n, 2)), np.zeros((n, 2)), np.zeros(n), size)

    def offsets(self, parallax: float) -> np.ndarray:
        """(n, 2) px: the image motion of a layer at `parallax`, roll aside."""
        return np.asarray(self.pan + parallax * self.shift)

    def pose(self, k: int, parallax: float) -> np.ndarray:
        """(2, 3): how frame k's camera moves a layer at `parallax` (1 = the near layer)."""
        c = (self.size - 1) / 2
        return compose(translation(*self.offsets(parallax)[k]), rotation(float(self.roll[k]), c, c))

    def worst_step(self, parallax: float) -> float:
        """Px: the largest camera-made displacement between neighbours of a visible point at `parallax`.

        A point on screen is at most S / sqrt(2) + |offset| from the roll's centre before the offset.
        """
        if len(self.roll) < 2:
            return 0.0
        offsets = self.offsets(parallax)
        steps = np.linalg.norm(np.diff(offsets, axis=0), axis=1)  # (n-1,)
        turns = np.abs(np.diff(self.roll))  # (n-1,)
        reach = self.size / math.sqrt(2) + float(np.linalg.norm(offsets, axis=1).max())
        return float(np.max(steps + turns * reach))


def _from_anchor(steps: np.ndarray, anchor: int) -> np.ndarray:
    """Cumulative positions (n, ...) from per-neighbour steps (n-1, ...), zero at the anchor."""
    path = np.concatenate([np.zeros_like(steps[:1]), np.cumsum(steps, axis=0)], 0)
    return np.asarray(path - path[anchor])


def _drift(rng: np.random.Generator, n: int, anchor: int, longest: float) -> np.ndarray:
    """(n, 2) px from the anchor: steps of 25..100 % of `longest`, the heading wandering."""
    heading = rng.uniform(0, 2 * math.pi) + np.cumsum(rng.normal(0, 0.6, n - 1))  # (n-1,)
    length = rng.uniform(0.25, 1.0, n - 1) * longest
    return _from_anchor(np.stack([np.cos(heading), np.sin(heading)], 1) * length[:, None], anchor)


def sample_camera_path(
    rng: np.random.Generator, n: int, anchor: int, size: int, config: RealisticMotion
) -> Camera:
    """A handheld drift: a pan and a shift, each wandering, and a little roll."""
    pan = _drift(rng, n, anchor, config.max_pan_step * size)
    shift = _drift(rng, n, anchor, config.max_shift_step * size)
    turns = rng.uniform(-1, 1, n - 1) * math.radians(config.max_roll_deg)
    camera = Camera(pan, shift, _from_anchor(turns, anchor), size)
    while camera.worst_step(1.0) > config.max_step * size:  # roll on top of the longest steps: less
        camera = Camera(pan, shift, camera.roll * 0.5, size)
    return camera


def _textured(rng: np.random.Generator, textures: SceneSource, side: int, level: float) -> np.ndarray:
    """A (side, side, 3) float32 texture crop scaled to median `level`."""
    lin = textures.sample(rng, side)
    return (lin * np.float32(level / max(float(np.median(lin)), 1e-8))).astype(np.float32)


def _log_uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return math.exp(rng.uniform(math.log(lo_hi[0]), math.log(lo_hi[1])))


def _bar_alpha(rng: np.random.Generator, side: int) -> np.ndarray:
    """(side, side) float32 coverage of a bar across the canvas at a random angle: a pillar, a branch."""
    canvas = np.zeros((side, side), dtype=np.uint8)
    c, angle = side / 2, rng.uniform(0, math.pi)
    half_w, half_l = side * rng.uniform(0.08, 0.2), side
    along, across = (
        np.array([math.cos(angle), math.sin(angle)]),
        np.array([-math.sin(angle), math.cos(angle)]),
    )
    corners = [
        c + sl * half_l * along + sw * half_w * across for sl, sw in ((-1, -1), (1, -1), (1, 1), (-1, 1))
    ]
    cv2.fillPoly(canvas, [np.array(corners).astype(np.int32)], 255, cv2.LINE_AA)
    return canvas.astype(np.float32) / 255.0


def _smooth_field(rng: np.random.Generator, side: int, peak: float) -> np.ndarray:
    """(side, side, 2) float32: a smooth random displacement field whose largest vector is `peak` px."""
    coarse = rng.normal(0, 1, (_FIELD_GRID, _FIELD_GRID, 2)).astype(np.float32)
    field = cv2.resize(coarse, (side, side), interpolation=cv2.INTER_CUBIC)
    norm = float(np.sqrt((field**2).sum(-1)).max())
    return (field * np.float32(peak / max(norm, 1e-6))).astype(np.float32)


@dataclass(frozen=True)
class _Bracket:
    """What every layer of one bracket shares."""

    n: int
    anchor: int
    size: int
    camera: Camera
    level: float  # the anchor view's median luminance
    config: RealisticMotion


def _presence_and_gains(rng: np.random.Generator, b: _Bracket) -> tuple[tuple[bool, ...], tuple[float, ...]]:
    present: tuple[bool, ...] = ()
    if rng.random() < b.config.p_appear:
        k0 = int(rng.integers(1, b.n))
        appears = rng.random() < 0.5
        present = tuple((k >= k0) if appears else (k < k0) for k in range(b.n))
    gains: tuple[float, ...] = ()
    if rng.random() < b.config.p_flicker:
        gains = tuple(1.0 if k == b.anchor else _log_uniform(rng, b.config.flicker_range) for k in range(b.n))
    return present, gains


def _subject(
    rng: np.random.Generator,
    textures: SceneSource,
    b: _Bracket,
    parallax: float,
    over: tuple[float, float, float, float] | None,
) -> list[Layer]:
    """A subject's layers: its body, then limbs in front of it; `over`: a window (x, y, w, h) behind it."""
    config, size = b.config, b.size
    side = max(8, int(size * rng.uniform(*config.subject_size_range)))
    u = rng.random()
    kind: LayerKind = "rigid"
    if u < config.p_articulated:
        kind = "articulated"
    elif u < config.p_articulated + config.p_deforming:
        kind = "deforming"
    gain_range = (0.05, 1.0) if over is not None else config.subject_gain_range  # darker than the window
    body = _textured(rng, textures, side, b.level * _log_uniform(rng, gain_range))
    alpha = shape_alpha(rng, side)
    if over is None:
        centre = rng.uniform(0, size, 2)
    else:
        x, y, w, h = over
        centre = np.array([x + w / 2, y + h / 2]) + rng.uniform(-0.25, 0.25, 2) * np.array([w, h])
    limbs = []  # (sprite, coverage, joint in body pixels, lever: its farthest point's distance, rest angle)
    radius = side / math.sqrt(2)  # the farthest body point from the body's centre
    if kind == "articulated":
        for _ in range(int(rng.integers(config.limbs_range[0], config.limbs_range[1] + 1))):
            length = side * rng.uniform(0.35, 0.7)
            width = length * rng.uniform(0.2, 0.4)
            half = math.ceil(length) + 2
            canvas = np.zeros((2 * half, 2 * half), dtype=np.uint8)
            axes = (int(length / 2 + width / 4), int(width / 2))
            cv2.ellipse(canvas, (half + int(length / 2), half), axes, 0, 0, 360, 255, -1, cv2.LINE_AA)
            beta, reach = rng.uniform(0, 2 * math.pi), side * rng.uniform(0.1, 0.3)
            joint = side / 2 + reach * np.array([math.cos(beta), math.sin(beta)])
            # The body's own material (a sleeve, a leg), brighter or darker: no second texture draw.
            fabric = cv2.resize(body, (2 * half, 2 * half), interpolation=cv2.INTER_LINEAR)
            lin = (fabric * np.float32(rng.uniform(0.5, 2.0))).astype(np.float32)
            lever = length + width / 2  # the ellipse reaches length + width / 4 past the joint, plus its edge
            limbs.append((lin, canvas.astype(np.float32) / 255.0, joint, lever, beta + rng.normal(0, 0.4)))
            radius = max(radius, reach + lever)

    # Own motion per neighbour pair, within what the camera leaves of the budget.
    budget = max(0.0, config.max_step * size - b.camera.worst_step(parallax))
    magnitude = rng.uniform(0.2, 1.0) * budget
    part = rng.uniform(0.3, 0.7) if kind != "rigid" else 0.0  # swing or deformation
    turn = rng.uniform(0.0, 0.3 if kind == "rigid" else 0.15)
    move = 1.0 - part - turn
    heading = rng.uniform(0, 2 * math.pi) + rng.normal(0, 0.3, b.n - 1)  # (n-1,)
    speed = magnitude * move * rng.uniform(0.6, 1.0, b.n - 1)
    places = _from_anchor(
        np.stack([np.cos(heading), np.sin(heading)], 1) * speed[:, None], b.anchor
    )  # (n, 2)
    angles = _from_anchor(rng.uniform(-1, 1, b.n - 1) * magnitude * turn / radius, b.anchor)  # (n,)
    to_centre = translation(-side / 2, -side / 2)
    body_poses = tuple(
        compose(
            b.camera.pose(k, parallax),
            compose(translation(*(centre + places[k])), compose(rotation(float(angles[k]), 0, 0), to_centre)),
        )
        for k in range(b.n)
    )
    fields = None
    if kind == "deforming":
        peak = min(config.max_deform * side, magnitude * part)
        steps = np.stack([_smooth_field(rng, side, peak * rng.uniform(0.5, 1.0)) for _ in range(b.n - 1)])
        fields = tuple(np.ascontiguousarray(f) for f in _from_anchor(steps, b.anchor).astype(np.float32))
    present, gains = _presence_and_gains(rng, b)
    layers = [Layer(kind, body, alpha, body_poses, fields, gains, present)]
    for lin, coverage, joint, lever, rest in limbs:
        limit = min(math.radians(config.max_swing_deg), magnitude * part / lever)
        swings = _from_anchor(rng.uniform(-1, 1, b.n - 1) * limit, b.anchor)  # (n,)
        half = coverage.shape[0] / 2
        poses = tuple(
            compose(
                body_poses[k],
                compose(
                    translation(*joint),
                    compose(rotation(float(rest + swings[k]), 0, 0), translation(-half, -half)),
                ),
            )
            for k in range(b.n)
        )
        layers.append(Layer("limb", lin, coverage, poses, None, gains, present))
    return layers


def _backdrop(
    rng: np.random.Generator, textures: SceneSource, b: _Bracket, background: Layer, margin: int
) -> tuple[Layer, tuple[float, float, float, float]]:
    """A bright window in the background plane, exposed near the anchor's clip level; and its anchor box."""
    size, config = b.size, b.config
    w, h = (max(8, int(size * rng.uniform(*config.backdrop_size_range))) for _ in range(2))
    x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
    anchor_view = background.lin[margin : margin + size : 2, margin : margin + size : 2]
    clip = float(np.quantile(anchor_view.max(axis=2), _CLIP_QUANTILE))
    texture = textures.sample(rng, max(w, h))[:h, :w]
    # Seen through glass from indoors the view outside is bright and of low contrast (0.6 of the
    # crop's in log), so most of the window clips together in the long frames.
    soft = np.power(texture / max(float(np.median(texture.max(axis=2))), 1e-8), np.float32(0.6))
    level = clip * rng.uniform(*config.backdrop_level_range)
    lin = np.ascontiguousarray(soft * np.float32(level), dtype=np.float32)
    place = translation(x + margin, y + margin)
    poses = tuple(compose(pose, place) for pose in background.poses)
    return Layer("backdrop", lin, np.ones((h, w), dtype=np.float32), poses), (x, y, float(w), float(h))


def _near(rng: np.random.Generator, textures: SceneSource, b: _Bracket) -> Layer:
    """A near occluder (a blob or a bar) off the centre, moving with the camera's full image motion."""
    size = b.size
    side = max(8, int(size * rng.uniform(*b.config.near_size_range)))
    alpha = shape_alpha(rng, side) if rng.random() < 0.5 else _bar_alpha(rng, side)
    lin = _textured(rng, textures, side, b.level * _log_uniform(rng, (0.05, 2.0)))
    direction, distance = rng.uniform(0, 2 * math.pi), rng.uniform(0.3, 0.6) * size
    centre = (size - 1) / 2 + distance * np.array([math.cos(direction), math.sin(direction)])
    place = translation(*(centre - side / 2))
    return Layer("near", lin, alpha, tuple(compose(b.camera.pose(k, 1.0), place) for k in range(b.n)))


def sample_scene(
    rng: np.random.Generator,
    textures: SceneSource,
    size: int,
    rel_times: np.ndarray,
    anchor: int,
    config: RealisticMotion,
) -> LayeredScene:
    """The layers of one bracket of len(rel_times) frames (ascending exposure), anchor unmoved."""
    n = len(rel_times)
    if rng.random() < config.p_handheld and n > 1:
        camera = sample_camera_path(rng, n, anchor, size, config)
    else:
        camera = Camera.still(n, size)
    far = rng.uniform(*config.far_parallax)
    reach = np.linalg.norm(camera.offsets(far), axis=1) + np.abs(camera.roll) * size / math.sqrt(2)
    margin = math.ceil(float(reach.max())) + 2  # the background never samples outside its crop
    crop = textures.sample(rng, size + 2 * margin)  # (S + 2m, S + 2m, 3)
    shift = translation(-margin, -margin)
    background = Layer("background", crop, None, tuple(compose(camera.pose(k, far), shift) for k in range(n)))
    level = float(np.median(luminance(crop[margin : margin + size : 4, margin : margin + size : 4])))
    b = _Bracket(n, anchor, size, camera, max(level, 1e-6), config)
    layers = [background]
    window = None
    if rng.random() < config.p_backdrop:
        backdrop, window = _backdrop(rng, textures, b, background, margin)
        layers.append(backdrop)
    if rng.random() < config.p_subjects:
        subjects = []
        for i in range(int(rng.integers(config.subjects_range[0], config.subjects_range[1] + 1))):
            parallax = float(rng.uniform(far, 1.0))
            subjects.append((parallax, _subject(rng, textures, b, parallax, window if i == 0 else None)))
        subjects.sort(key=lambda s: s[0])  # the farther (smaller image motion) behind
        for _, parts in subjects:
            layers.extend(parts)
    if camera.worst_step(1.0) > 0 and rng.random() < config.p_near:
        layers.append(_near(rng, textures, b))
    blur = [0.0] * n
    if rng.random() < config.p_blur:
        share = rng.uniform(*config.blur_range)
        longest = float(np.max(rel_times))
        blur = [share * float(t) / longest if t > rel_times[anchor] else 0.0 for t in rel_times]
    assert len(layers) < 255, "layer ids are uint8"
    return LayeredScene(size, tuple(layers), tuple(blur))
