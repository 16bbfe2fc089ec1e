"""Bracket synthesis: what a camera would write for 2..4 exposures of a radiance scene (Sec. 5.1).

One call of `simulate` draws, from one `numpy.random.Generator`:
1. a scene crop with a margin (see `scenes`), and 2..4 exposure times with x2..x16 between
   neighbours (the paper's +2..+16), ascending (sometimes shuffled at the end, as callers may send
   frames in any order);
2. the views: a camera-shake homography per frame (the median-exposure "anchor" frame keeps the
   identity) and 1..3 moving objects (see `motion`); or, with `realistic_motion`, a layered scene
   (see `realistic`): parallax between depth layers, large, articulated and deforming motion,
   subjects that appear, vanish or flicker, a bright window behind a subject, motion blur in the
   frames longer than the anchor;
3. the absolute scale: the anchor frame clips a random 2..20 % of its pixels;
4. the sensor: one response curve (RGB) or camera model (raw), one noise level and bit depth for
   the whole bracket; each frame is noised, clipped, encoded and quantized;
5. the reference as at inference: `emvnet.merge.bracket.select_reference` on the synthesized frames
   (with the exposure times unless the sample is blind), or sometimes a random index, as users may
   name any frame;
6. the target: the reference frame's view in its units (linear, 1.0 = where the reference
   clips, unclipped and noise-free), with a mask of pixels the warp could render. With realistic
   motion the mask also leaves out what the bracket cannot know: pixels where the reference clips
   and no other frame shows the same content unoccluded and unchanged (it moved behind something,
   appeared only in the reference, or changed brightness).

RGB frames are `Frame(domain="display", layout="rgb")` and go through the inference path
unchanged (`Sample.bracket()` calls `make_bracket`). Raw frames are normalized packed RGGB
`Frame(domain="linear", layout="rggb")`, their target the packed mosaic of the reference view; the
E2E-ISP target is the processed sRGB reference view at full resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from emvnet.frame import ExposureInfo, Frame, RawInfo
from emvnet.io.tonemap import luminance
from emvnet.merge.bracket import Bracket, make_bracket, select_reference
from emvnet.training.data.camera import (
    Crf,
    CrfConfig,
    Noise,
    NoiseConfig,
    expose_ldr,
    sample_crf,
    sample_noise,
)
from emvnet.training.data.layers import LayeredScene
from emvnet.training.data.motion import (
    MotionConfig,
    make_objects,
    paste,
    render_view,
    shake_homography,
)
from emvnet.training.data.raw import (
    CameraModel,
    RawConfig,
    finish,
    mosaic_packed,
    process,
    sample_camera,
    sensor_packed,
    unprocess,
)
from emvnet.training.data.realistic import RealisticMotion, sample_scene
from emvnet.training.data.scenes import SceneSource

Mode = Literal["rgb", "raw"]
SOURCE_FORMAT = "synthetic"  # Frame.source_format of simulated frames


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything `simulate` draws from. Sizes in output pixels (raw: sensor pixels, even)."""

    mode: Mode = "rgb"
    size: int = 256  # output side S; raw frames are packed to S/2
    frames_range: tuple[int, int] = (2, 4)
    ratio_range: tuple[float, float] = (2.0, 16.0)  # t_{k+1} / t_k between neighbours
    p_integer_ev: float = 0.5  # cameras bracket in whole stops; the rest log-uniform in between
    clip_range: tuple[float, float] = (0.02, 0.20)  # share of the anchor frame's pixels that clip
    bit_depths: tuple[int, ...] = (8, 10, 12, 16)
    bit_weights: tuple[float, ...] = (0.55, 0.15, 0.15, 0.15)  # 8-bit JPEG/PNG is the common case
    p_auto_reference: float = 0.8  # else a random index, as a caller may name any frame
    middle_reference: bool = False  # always frame n // 2 (Kalantari's convention: the dev set)
    p_blind: float = 0.2  # frames without exposure times: the merge must estimate the ratios
    # Callers send frames in any order (the service keeps theirs), so position must not mean exposure.
    p_shuffle: float = 0.25
    anchor_time_range: tuple[float, float] = (1 / 2000, 1 / 15)  # seconds, log-uniform
    crf: CrfConfig = field(default_factory=CrfConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    # None: the rigid motion above (shaken plane, sliding shapes); set: the layered scenes of
    # `realistic`, and `motion` is not used.
    realistic_motion: RealisticMotion | None = None
    raw: RawConfig = field(default_factory=RawConfig)

    def __post_init__(self) -> None:
        assert self.size >= 16 and (self.mode == "rgb" or self.size % 2 == 0), (
            "size must be >= 16 (even for raw)"
        )
        lo, hi = self.frames_range
        assert 2 <= lo <= hi, f"frames_range {self.frames_range} must allow at least 2 frames"
        assert 1.0 < self.ratio_range[0] <= self.ratio_range[1], "exposure ratios must exceed 1"
        assert 0.0 <= self.clip_range[0] <= self.clip_range[1] < 1.0, "clip_range must lie in [0, 1)"
        assert len(self.bit_depths) == len(self.bit_weights), "one weight per bit depth"


@dataclass(frozen=True, eq=False)
class Sample:
    """One synthetic bracket and its ground truth."""

    frames: tuple[Frame, ...]
    exposure_times: tuple[float, ...]  # seconds, the truth (frames carry them unless blind)
    blind: bool
    reference: int
    hdr: np.ndarray  # target, float32: RGB (S, S, 3) or packed raw (S/2, S/2, 4); reference units
    mask: np.ndarray  # bool, the target's (H, W): pixels the target is known at (see the module doc)
    moving: np.ndarray  # bool, the target's (H, W): covered in some frame by what moves unlike the background
    crf: Crf | None  # the response actually used (RGB mode)
    noise: Noise  # in linear units of every frame (1.0 = clipping)
    clip_goal: float  # share of the anchor frame's pixels drawn to clip
    camera: CameraModel | None = None  # raw mode
    isp: np.ndarray | None = None  # raw mode: E2E-ISP target, display sRGB (S, S, 3) in [0, 1]
    scene: LayeredScene | None = None  # realistic motion: the layers, frames in ascending exposure

    @property
    def exposures(self) -> tuple[float, ...] | None:
        """What a caller would pass to `make_bracket`: the times, or None when blind."""
        return None if self.blind else self.exposure_times

    def bracket(self) -> Bracket:
        """The frames through the inference path, with the sample's reference."""
        return make_bracket(self.frames, self.exposures, self.reference)


def sample_times(rng: np.random.Generator, n: int, config: SimulatorConfig) -> np.ndarray:
    """(n,) relative exposure times, ascending, t[0] = 1, neighbour ratios within ratio_range."""
    lo, hi = (math.log2(r) for r in config.ratio_range)
    steps = rng.uniform(lo, hi, n - 1)
    if rng.random() < config.p_integer_ev:
        steps = np.clip(np.round(steps), math.ceil(lo - 1e-9), math.floor(hi + 1e-9))
    return np.exp2(np.concatenate([[0.0], np.cumsum(steps)]))


def clip_gain(sensor: np.ndarray, clip_share: float) -> float:
    """Gain that makes `clip_share` of the pixels of `sensor` (H, W, C) reach 1.0 in some channel."""
    peak = np.max(sensor[::2, ::2], axis=2)  # (H/2, W/2): every other pixel is plenty for a quantile
    level = float(np.quantile(peak, 1.0 - clip_share))
    if level <= 0:  # a black or nearly black crop: expose its brightest pixel at 1
        level = max(float(peak.max()), 1e-6)
    return 1.0 / level


def _views(
    rng: np.random.Generator, scenes: SceneSource, n: int, anchor: int, config: SimulatorConfig
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Per-frame linear radiance (S, S, 3), valid masks (S, S) and the moving-object coverage (S, S)."""
    size, motion = config.size, config.motion
    shake = rng.random() < motion.p_shake
    margin = motion.margin(size) if shake else 0
    crop = scenes.sample(rng, size + 2 * margin)  # (S + 2m, S + 2m, 3)
    views, valid = [], []
    for i in range(n):
        if not shake or i == anchor:
            views.append(crop[margin : margin + size, margin : margin + size].copy())
            valid.append(np.ones((size, size), dtype=bool))
        else:
            view, ok = render_view(crop, shake_homography(rng, size, margin, motion), size)
            views.append(view)
            valid.append(ok)
    level = float(np.median(luminance(views[anchor][::4, ::4])))
    objects = make_objects(rng, scenes, size, n, anchor, max(level, 1e-6), motion)
    coverage = np.zeros((size, size), dtype=np.float32)
    for obj in objects:
        for i in range(n):
            paste(views[i], obj, i, coverage)
    return views, valid, coverage > 0


def simulate(rng: np.random.Generator, scenes: SceneSource, config: SimulatorConfig) -> Sample:
    """One synthetic bracket; the same generator state always gives the same sample."""
    n = int(rng.integers(config.frames_range[0], config.frames_range[1] + 1))
    rel_times = sample_times(rng, n, config)  # (n,) ascending
    anchor = (n - 1) // 2  # the median exposure: the frame `select_reference` prefers
    scene, rendered = None, []
    layered = config.realistic_motion
    if layered is None or (layered.p_use < 1.0 and rng.random() >= layered.p_use):
        views, valid, moving = _views(rng, scenes, n, anchor, config)
    else:
        scene = sample_scene(rng, scenes, config.size, rel_times, anchor, layered)
        rendered = [scene.render(k) for k in range(n)]
        views, valid, moving = [r.lin for r in rendered], [r.valid for r in rendered], scene.moving(rendered)

    camera = sample_camera(rng, config.raw) if config.mode == "raw" else None
    sensor = views if camera is None else [unprocess(v, camera) for v in views]  # each (S, S, 3)
    clip_goal = float(rng.uniform(*config.clip_range))
    gain = clip_gain(sensor[anchor], clip_goal) / rel_times[anchor]  # exposure 1.0 = rel time 1
    noise = sample_noise(rng, config.noise)
    blind = bool(rng.random() < config.p_blind)
    t_lo, t_hi = config.anchor_time_range
    anchor_seconds = math.exp(rng.uniform(math.log(t_lo), math.log(t_hi)))
    seconds = tuple(float(anchor_seconds * t / rel_times[anchor]) for t in rel_times)

    frames: list[Frame] = []
    crf: Crf | None = None
    if camera is None:
        crf = sample_crf(rng, config.crf)
        bits = int(rng.choice(config.bit_depths, p=np.asarray(config.bit_weights) / sum(config.bit_weights)))
        for i in range(n):
            lin = sensor[i] * np.float32(gain * rel_times[i])  # (S, S, 3), 1.0 = clipping
            ldr = expose_ldr(lin, crf, noise, bits, rng)
            exposure = ExposureInfo() if blind else ExposureInfo(exposure_time=seconds[i])
            frames.append(Frame(ldr, "display", "rgb", SOURCE_FORMAT, bits, exposure=exposure))
    else:
        info = RawInfo(
            cfa_pattern="RGGB",
            black_level=(float(camera.black_level),) * 4,
            white_level=float(camera.white_level),
            camera_wb=(camera.wb_gains[0], 1.0, camera.wb_gains[2], 1.0),
        )
        for i in range(n):
            lin = sensor[i] * np.float32(gain * rel_times[i])  # (S, S, 3) camera RGB, 1.0 = white
            packed = sensor_packed(lin, camera, noise, rng)  # (S/2, S/2, 4)
            exposure = ExposureInfo() if blind else ExposureInfo(exposure_time=seconds[i])
            frames.append(
                Frame(packed, "linear", "rggb", SOURCE_FORMAT, camera.bits, exposure=exposure, raw=info)
            )

    order = list(range(n))  # order[i]: the exposure rank of frame i
    if rng.random() < config.p_shuffle:
        order = [int(k) for k in rng.permutation(n)]
        frames, sensor, valid = (
            [frames[k] for k in order],
            [sensor[k] for k in order],
            [valid[k] for k in order],
        )
        seconds, rel_times = tuple(seconds[k] for k in order), rel_times[order]
    if config.middle_reference:
        reference = n // 2
    elif rng.random() < config.p_auto_reference:
        reference = select_reference(frames, None if blind else seconds)
    else:
        reference = int(rng.integers(n))

    target = sensor[reference] * np.float32(gain * rel_times[reference])  # (S, S, 3), reference units
    mask, isp = valid[reference], None
    if scene is not None:
        clipped = target.max(axis=2) >= 1.0  # (S, S): the reference clips in some channel
        mask = mask & (~clipped | scene.seen_elsewhere(order[reference], rendered, clipped))
    if camera is not None:
        isp = finish(process(target, camera))  # (S, S, 3) display sRGB
        target = mosaic_packed(target)  # (S/2, S/2, 4)
        mask = mask[0::2, 0::2] & mask[1::2, 1::2]
        moving = moving[0::2, 0::2] | moving[1::2, 1::2]
    return Sample(
        frames=tuple(frames),
        exposure_times=seconds,
        blind=blind,
        reference=reference,
        hdr=np.ascontiguousarray(target, dtype=np.float32),
        mask=mask,
        moving=moving,
        crf=crf,
        noise=noise,
        clip_goal=clip_goal,
        camera=camera,
        isp=isp,
        scene=scene,
    )
