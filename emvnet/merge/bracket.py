"""A validated bracket: the frames of one merge, their exposure times and the reference frame.

Every merge (classical or network) takes a `Bracket`, so the rules live in one place: at least two
frames of one size, layout and domain; exposure times from the caller win over EXIF, and without
either the merge is blind; the reference is given or chosen as the best-exposed frame.

Units: `linear` values are proportional to scene radiance with 1.0 = each frame's own clipping level.
`ratios[i] = t_i / t_ref`, so `linear[i] / ratios[i]` is frame i in reference units.

How display frames are linearized: with known times, a 2-4 frame bracket's curve is one model
fitted to the evidence (`fit_response`: shape and gamma scored against the stated steps, the
simplest of the near-best taken); 5+ frames calibrate their response (`emvnet.merge.response`).
Blind, the steps are read on the whole-stop grid (`read_grid`, the frames' noise settling two
readings) and say how far they can be trusted (`blind_confidence`). Why each reading works and
what it can confuse: docs/blind-reading.md. Each tuned constant below names the benchmark that
measures it.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Literal

import cv2
import numpy as np

from emvnet.errors import BracketError, ExposureError
from emvnet.frame import Frame
from emvnet.io.tonemap import ENCODING_GAMMA, srgb_decode
from emvnet.merge.response import CALIBRATE_MIN_FRAMES, apply_response, calibrate_response

log = logging.getLogger(__name__)

MIN_FRAMES = 2
# A code value at or above this fraction of full scale counts as clipped (JPEG ringing near white
# rarely reaches 1.0 exactly, so a strict 1.0 would miss most saturated pixels).
SATURATION_LEVEL = 0.95
# Below this fraction of full scale a display-encoded pixel is mostly noise and quantization.
UNDEREXPOSED_LEVEL = 0.05
# How much worse (share of well-exposed samples) the median exposure may be than the best frame and
# still be the reference: a short frame always "wins" on clipping alone, but its shadows are noise.
# Set by hand, not by a benchmark: the Kalantari convention (the middle frame) wins ties; the
# reference choices it makes are pinned by tests/emvnet/merge/test_bracket.py.
REFERENCE_TOLERANCE = 0.10

# The gammas the curve fits consider (`fit_response`, `fit_gamma`, `read_grid`); blind, `fit_gamma`
# takes another than 2.2 when it cuts the step mismatch below GAMMA_FIT_GAIN of 2.2's
# (`python benchmarks/blind_gap.py`).
GAMMA_GRID = tuple(round(1.6 + 0.1 * k, 1) for k in range(15))  # 1.6 .. 3.0
GAMMA_FIT_GAIN = 0.7
_FIT_QUANTILES = 4096  # per channel and frame: plenty for a step measured to a hundredth of a stop

Reference = int | Literal["auto"]


# Many in-camera curves are no power law: they roll off into a shoulder, which shortens the exposure
# steps measured between bright frames (a 2-stop step can read 1.25 stops at gamma 2.2), or follow
# sRGB's offset curve. Either defeats the grid of `read_grid`. `fit_curve_shape` picks the shape
# from these (a shoulder strength, or "srgb") that makes the frames agree best, if it cuts their
# disagreement to below `SHAPE_FIT_GAIN` of what a plain power law leaves (blind brackets; the
# margins are measured by `python benchmarks/blind_ratios.py` and `benchmarks/noise_reading.py`).
CurveShape = float | Literal["srgb"]
SHAPES: tuple[CurveShape, ...] = (0.0, "srgb", 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.3, 1.6, 2.0)
SHAPE_FIT_GAIN = 0.6
# sRGB's curve and a mild shoulder look alike between 0.2 and 0.8; taking the shoulder for an sRGB
# camera misreads its exposure steps by up to half a stop (blind merges lean on them).
SRGB_PREFERENCE = 1.25


def unshape(display: np.ndarray, shape: CurveShape) -> np.ndarray:
    """Display values in [0, 1] with a curve's shape undone, leaving a gamma-2.2 power law: a
    shoulder y (1 + s) / (1 + s y) inverted (s = 0: unchanged), or sRGB decoded and re-encoded
    with gamma 2.2."""
    y = np.clip(display, 0.0, 1.0)
    if shape == "srgb":
        return np.power(srgb_decode(y), 1 / ENCODING_GAMMA)
    return y if shape == 0 else y / (1 + shape - shape * y)


def linearize(frame: Frame, crf_gamma: float = ENCODING_GAMMA, shape: CurveShape = 0.0) -> np.ndarray:
    """Frame data in the linear domain (H, W, C), 1.0 = clipping; display frames get x ** gamma,
    after their curve's `shape` is undone (`unshape`)."""
    if frame.domain == "linear":
        return frame.data
    if shape != 0:  # a plain power law costs no more than a lookup
        levels = np.arange(256, dtype=np.float32) / np.float32(255)
        looked_up = _looked_up(frame, _curve(levels, crf_gamma, shape))
        if looked_up is not None:
            return looked_up
    return _curve(frame.data, crf_gamma, shape)


# |data x 255 - code| under which an 8-bit frame's sample is that code: float32 rounding of code / 255
# stays far below it, a value between codes (a resized frame) is mostly far above.
CODE_TOLERANCE = 0.01


def _looked_up(frame: Frame, curve: np.ndarray) -> np.ndarray | None:
    """An 8-bit frame through `curve` (256,) or (256, C), its value at each code: exactly the curve
    (or `apply_response`'s interpolation, which is exact at codes) at 4x (sRGB's curve) to 80x
    (`np.interp` per channel) the speed; None for a frame whose data are not code / 255 (16-bit or
    float files, resized frames)."""
    if frame.domain != "display" or frame.floating or frame.bit_depth != 8:
        return None
    codes = cv2.convertScaleAbs(frame.data, alpha=255.0)  # rounded and saturated
    back = codes.astype(np.float32)
    back *= np.float32(1 / 255)
    if cv2.norm(back, frame.data, cv2.NORM_INF) >= CODE_TOLERANCE / 255:
        return None
    table = np.ascontiguousarray(curve, dtype=np.float32).reshape(256, 1, -1)
    return cv2.LUT(codes, table).reshape(frame.data.shape)


def _through_response(frame: Frame, response: np.ndarray) -> np.ndarray:
    """A display frame through a calibrated response (256, C): a lookup for 8-bit frames."""
    looked_up = _looked_up(frame, response)
    return apply_response(frame.data, response) if looked_up is None else looked_up


def _curve(display: np.ndarray, crf_gamma: float, shape: CurveShape) -> np.ndarray:
    """Display values through `unshape` and the power `crf_gamma`: float32 linear values."""
    display = display if shape == 0 else unshape(display, shape)
    return np.power(np.clip(display, 0.0, 1.0), crf_gamma, dtype=np.float32)


def _subsample(x: np.ndarray, max_pixels: int = 250_000) -> np.ndarray:
    """A strided view with at most about `max_pixels` pixels: statistics do not need every pixel."""
    step = max(1, int(math.sqrt(x.shape[0] * x.shape[1] / max_pixels)))
    return x[::step, ::step]


def well_exposed_fraction(display: np.ndarray) -> float:
    """Share of samples neither clipped nor in the noise floor, on display-encoded [0, 1] values."""
    sub = _subsample(display)
    good = (sub > UNDEREXPOSED_LEVEL) & (sub < SATURATION_LEVEL)
    return float(good.mean())


def select_reference(frames: Sequence[Frame], exposures: Sequence[float] | None = None) -> int:
    """The best-exposed frame: most samples neither clipped nor dark.

    Frames within `REFERENCE_TOLERANCE` of the best score count as ties, and a tie goes to the frame
    of median exposure: the usual reference of bracketed captures (and of Kalantari's dataset),
    because it minimizes the largest exposure ratio the merge has to bridge.
    """
    scores = []
    for frame in frames:
        display = (
            frame.data
            if frame.domain == "display"
            else np.power(np.clip(frame.data, 0.0, 1.0), 1.0 / ENCODING_GAMMA)
        )
        scores.append(well_exposed_fraction(display))
    best = max(scores)
    candidates = [i for i, s in enumerate(scores) if s >= best - REFERENCE_TOLERANCE]
    if exposures is not None:
        order = sorted(range(len(frames)), key=lambda i: exposures[i])
    else:  # brightness stands in for exposure when times are unknown
        means = [float(_subsample(f.data).mean()) for f in frames]
        order = sorted(range(len(frames)), key=lambda i: means[i])
    median = order[(len(order) - 1) // 2]
    if median in candidates:
        return median
    return min(candidates, key=lambda i: abs(order.index(i) - order.index(median)))


# Blind ratio estimation (`estimate_ratios`): samples darker than this display level carry too much
# noise to compare exposures (a quantile match is biased by noise, not only scaled by it).
RATIO_FLOOR_LEVEL = 0.2
# ... and samples brighter than this sit on the shoulder many in-camera responses roll off with.
# Both: `python benchmarks/blind_ratios.py` (how far blind ratios land, real and simulated).
RATIO_CEILING_LEVEL = 0.8
# Bracketing cameras step exposure in whole or third stops. An estimate this close (in stops) to a
# whole stop is taken to be it; failing that, one this close to a third stop is snapped to it
# (`python benchmarks/blind_ratios.py`: the unsnapped and snapped errors of each).
SNAP_WHOLE_STOPS = 0.2
SNAP_THIRD_STOPS = 0.08
_RATIO_POOL_PIXELS = 250_000
_RATIO_MIN_POOLED = 16_384  # pixels a pooled frame keeps at least (else it is not pooled)
_RATIO_MIN_SAMPLES = 64


def _pooled(x: np.ndarray) -> np.ndarray:
    """(H, W, C) area-averaged to at most about `_RATIO_POOL_PIXELS` pixels, and at least 2x smaller
    when that leaves enough samples: averaging cuts the noise that biases quantiles."""
    h, w = x.shape[:2]
    factor = max(math.ceil(math.sqrt(h * w / _RATIO_POOL_PIXELS)), 2 if h * w >= 4 * _RATIO_MIN_POOLED else 1)
    if factor == 1:
        return x
    size = (max(1, w // factor), max(1, h // factor))
    out = cv2.resize(np.ascontiguousarray(x, dtype=np.float32), size, interpolation=cv2.INTER_AREA)
    return out.reshape(size[1], size[0], -1)


def _pair_log_ratio(a: np.ndarray, b: np.ndarray, crf_gamma: float, *, widen: bool = True) -> float | None:
    """log(t_b / t_a) for two pooled linear frames, by matching their histograms.

    The mapping between two exposures of one scene is monotonic, so the k-th darkest sample of one
    frame corresponds to the k-th darkest of the other: unlike a pixel-wise ratio this needs no
    alignment and ignores camera shake (a moving object shifts the ranks by the share of the frame
    it covers). Each channel is matched on its own, over samples in the trusted range of both
    frames, and the weighted median of the log ratios (weight = the darker value, a proxy of its
    SNR) is robust to the rest. Too few such samples widen the range to everything neither dark
    nor clipped (unless not `widen`); None if even that leaves too few (a frame all but clipped or
    black).
    """
    return _matched_log_ratio(_sorted_channels(a), _sorted_channels(b), crf_gamma, widen=widen)


def _sorted_channels(x: np.ndarray) -> list[np.ndarray]:
    return [np.sort(x[..., c], axis=None) for c in range(x.shape[-1])]


def _matched_log_ratio(
    sorted_a: list[np.ndarray], sorted_b: list[np.ndarray], crf_gamma: float, *, widen: bool = True
) -> float | None:
    """`_pair_log_ratio` on each frame's channels already sorted (sorting is the costly part)."""
    ranges = [(RATIO_FLOOR_LEVEL, RATIO_CEILING_LEVEL)] + [(UNDEREXPOSED_LEVEL, SATURATION_LEVEL)] * widen
    for floor, ceiling in ranges:
        lo, hi = floor**crf_gamma, ceiling**crf_gamma
        logs, weights = [], []
        for qa, qb in zip(sorted_a, sorted_b, strict=True):
            ok = (qa > lo) & (qa < hi) & (qb > lo) & (qb < hi)
            logs.append(np.log(qb[ok]) - np.log(qa[ok]))
            weights.append(np.minimum(qa[ok], qb[ok]))
        lr, w = np.concatenate(logs), np.concatenate(weights)
        if lr.size >= _RATIO_MIN_SAMPLES:
            order = np.argsort(lr)
            cum = np.cumsum(w[order], dtype=np.float64)
            return float(lr[order][np.searchsorted(cum, cum[-1] / 2)])
    return None


def snap_stops(stops: np.ndarray) -> np.ndarray:
    """Estimated exposure offsets in stops, snapped to the whole- or third-stop grid where close."""
    out = np.asarray(stops, dtype=np.float64).copy()
    whole = np.round(out)
    third = np.round(out * 3) / 3
    near_whole = np.abs(out - whole) <= SNAP_WHOLE_STOPS
    near_third = ~near_whole & (np.abs(out - third) <= SNAP_THIRD_STOPS)
    out[near_whole] = whole[near_whole]
    out[near_third] = third[near_third]
    return out


def estimate_ratios(
    linear: np.ndarray, reference: int, crf_gamma: float = ENCODING_GAMMA, *, snap: bool = True
) -> np.ndarray:
    """Blind exposure ratios t_i / t_ref from the frames themselves (`_estimate_stops`)."""
    stops, _ = _estimate_stops(linear, crf_gamma, snap=snap)
    return np.exp2(stops - stops[reference])


def _step_spread(sorted_a: list[np.ndarray], sorted_b: list[np.ndarray], shape: CurveShape) -> float | None:
    """How much the log ratio between two frames' matched display quantiles varies across levels
    (median absolute deviation over the median) once `shape` is undone: ~0 when the curve left is
    a power law, whatever its gamma. None with too few samples in the trusted range."""
    logs = []
    for qa, qb in zip(sorted_a, sorted_b, strict=True):
        lo, hi = RATIO_FLOOR_LEVEL, RATIO_CEILING_LEVEL
        ok = (qa > lo) & (qa < hi) & (qb > lo) & (qb < hi)
        logs.append(np.log(unshape(qb[ok], shape)) - np.log(unshape(qa[ok], shape)))
    d = np.concatenate(logs)
    if d.size < _RATIO_MIN_SAMPLES:
        return None
    median = float(np.median(d))
    return float(np.median(np.abs(d - median))) / median if median > 0.05 else None


def fit_curve_shape(frames: Sequence[Frame], quantiles: list[list[np.ndarray]] | None = None) -> CurveShape:
    """The shape of display frames' response beyond its gamma (`SHAPES`; 0 = a power law), from how
    neighbouring frames' histograms relate: through a power law every level of a frame is one
    fixed factor brighter in the next, through a shoulder the bright levels gain less. The gamma
    and the exposure ratio cannot be told apart this way (the exponential ambiguity); the shape can.
    `quantiles`: the frames' `_quantiles`, if already taken."""
    if len(frames) < 2 or frames[0].domain != "display":
        return 0.0
    stats = _quantiles(frames) if quantiles is None else quantiles
    order = np.argsort([float(np.mean([c.mean() for c in channels])) for channels in stats])
    pairs = [(a, b) for a, b in itertools.pairwise(order) if _step_spread(stats[a], stats[b], 0) is not None]
    if not pairs:
        return 0.0
    scores: dict[CurveShape, float] = {}
    for shape in SHAPES:
        spreads = [_step_spread(stats[a], stats[b], shape) for a, b in pairs]
        scores[shape] = math.inf if None in spreads else float(np.mean(spreads))  # type: ignore[arg-type]
    best = min(scores, key=lambda k: scores[k])
    if scores["srgb"] <= SRGB_PREFERENCE * scores[best]:
        best = "srgb"  # the standard curve over a fitted shoulder that explains the frames about as well
    return best if scores[best] < SHAPE_FIT_GAIN * scores[0.0] else 0.0


# `read_grid` reads blind steps as whole stops through the gammas of `GAMMA_GRID` in this range (the
# responses of most cameras) when some put every step within `GRID_WHOLE_STOPS` of one, and all that
# do agree on the reading. Whole-stop brackets are the common case, so a third-stop bracket that one
# of these gammas reads as whole stops (1 1/3 stops of a gamma-2.2 camera read as 1 stop at gamma
# 1.8-1.9) is taken for the whole-stop bracket of another camera.
GRID_GAMMAS = (1.8, 2.7)
GRID_WHOLE_STOPS = 0.15
# The frames' noise (`_noise_reading`) may choose among readings this close to whole stops: it
# settles two close readings, and overrules a close reading for one a little further off (a curve
# shape fitted not quite right bends the measured steps) when it hears that one's gamma clearly.
# Both margins: `python benchmarks/noise_reading.py` (right / abstain / wrong per response).
GRID_NOISE_STOPS = 0.25


GridReading = Literal["noise", "whole stops", "thirds"]


def read_grid(
    linear: np.ndarray,
    reference: int,
    crf_gamma: float = ENCODING_GAMMA,
    *,
    thirds: bool = True,
    frames: Sequence[Frame] = (),
    shape: CurveShape = 0.0,
) -> tuple[np.ndarray | None, GridReading | None]:
    """Blind ratios t_i / t_ref on the whole- or third-stop grid, and how they were read ("noise":
    the frames' noise chose between two gammas' readings; "whole stops": one gamma's reading;
    "thirds": the steps snapped at `crf_gamma`, only with `thirds`), or (None, None) when the
    frames do not say (two readings and no noise to tell them apart, no grid fits, or steps
    shorter than a third of a stop). `linear` (n, H, W, C) is linearized at `crf_gamma`; `frames`
    are the display frames whose noise is heard, their curve's `shape` undone. The result stands
    in for stated times (`make_bracket` fits the response to it). Why: docs/blind-reading.md.
    """
    raw, measured = _estimate_stops(linear, crf_gamma, snap=False)
    if not measured:
        return None, None
    order = np.argsort(raw, kind="stable")
    steps = np.diff(raw[order])
    readings: dict[tuple[float, ...], float] = {}  # whole-stop reading: its least distance off the grid
    for gamma in (g for g in GAMMA_GRID if GRID_GAMMAS[0] <= g <= GRID_GAMMAS[1]):
        scaled = steps * gamma / crf_gamma
        off = float(np.max(np.abs(scaled - np.round(scaled))))
        reading = tuple(float(x) for x in np.round(scaled))
        if off <= GRID_NOISE_STOPS and min(reading) > 0:
            readings[reading] = min(off, readings.get(reading, math.inf))
    close = [r for r, off in readings.items() if off <= GRID_WHOLE_STOPS]
    heard = _noise_reading(set(readings), float(steps.sum()) / crf_gamma, frames, shape)
    how: GridReading
    if heard is not None:
        snapped, how = np.asarray(heard, dtype=np.float64), "noise"
    elif len(close) == 1:
        snapped, how = np.asarray(close[0], dtype=np.float64), "whole stops"
    elif close:
        return None, None  # 2 stops through a flat curve or 3 through a steep one, and no noise tells
    elif thirds:
        snapped, how = snap_stops(steps), "thirds"
        if not np.allclose(snapped * 3, np.round(snapped * 3)):
            return None, None
    else:
        return None, None
    if np.any(snapped < 1 / 3 - 1e-9):
        return None, None
    stops = np.zeros(len(raw), dtype=np.float64)
    stops[order[1:]] = np.cumsum(snapped)
    return np.exp2(stops - stops[reference]), how


# Whole-stop readings of a blind bracket (`read_grid`) are gammas, which the frames' noise tells
# apart. Sensor noise has variance a L + b in the linear signal L (shot and read noise), so through
# a response u = L ** (1 / g) its variance in codes is a u^(2 - g) + b u^(2 - 2g) (up to g^-2):
# about flat over the levels for gammas near 2, falling for steeper curves. It is measured over
# `NOISE_LEVELS` of the display range in `_NOISE_BLOCK`-pixel blocks (at each level the quietest
# show noise rather than texture), and a reading is taken if its gamma explains the levels within
# `NOISE_MAX_MISFIT` (rms log variance; pipelines that denoise fail it) and `NOISE_MARGIN` times
# better than every other reading's. Through a fitted shoulder the shape's strength and the gamma
# trade off; both readings are weighed through the same shape, and the right one still fits best.
# The margins and block statistics: `python benchmarks/noise_reading.py`.
NOISE_LEVELS = (0.15, 0.7)
NOISE_MAX_MISFIT = 0.1
NOISE_MARGIN = 2.0
# Read noise is taken to equal shot noise no higher than this signal (of the clipping level): a few
# 1e-4 at base ISO, about 1e-2 at ISO 3200 (Brooks et al. 2019). Unbounded, its steep term lets a
# flat response imitate a steep one.
NOISE_READ_MAX = 0.03
_NOISE_READ_GRID = (0.0, *(float(r) for r in np.geomspace(NOISE_READ_MAX / 32, NOISE_READ_MAX, 6)))
_NOISE_BLOCK = 8
_NOISE_BINS = 24
_NOISE_QUIET = 0.1  # the quantile of block noise taken at each level
_NOISE_MIN_BLOCKS = 20  # per level bin
_NOISE_MIN_BINS = 8
_NOISE_CLIP = 0.002  # blocks with a sample this close to black or white are left out (clipped noise)
_NOISE_PIXELS = 2_000_000  # per frame: bands of rows beyond this (noise needs neighbours, not strides)
_DIAGONAL = np.array([[1, -1], [-1, 1]], dtype=np.float32) / np.float32(2)  # white noise's variance kept


def _noise_blocks(channel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(level, noise variance) of each block of one display channel with nothing near black or
    clipped in it: the mean value and the mean square of the diagonal differences of 2x2
    neighbours, which keep white noise's variance, drop smooth shading and of texture keep mostly
    what runs diagonally."""
    b = _NOISE_BLOCK
    detail = cv2.filter2D(channel, -1, _DIAGONAL, borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
    inner = channel[1:-1, 1:-1]
    h, w = (inner.shape[0] // b) * b, (inner.shape[1] // b) * b

    def blocks(x: np.ndarray) -> np.ndarray:
        return x[:h, :w].reshape(h // b, b, w // b, b).transpose(0, 2, 1, 3).reshape(-1, b * b)

    values = blocks(inner)
    ok = (values.max(axis=1) < 1 - _NOISE_CLIP) & (values.min(axis=1) > _NOISE_CLIP)
    return values[ok].mean(axis=1), np.mean(np.square(blocks(detail)[ok]), axis=1)


def _bands(data: np.ndarray) -> list[np.ndarray]:
    """The frame, or bands of whole rows spread over it if it exceeds `_NOISE_PIXELS`."""
    h, w = data.shape[:2]
    if h * w <= _NOISE_PIXELS:
        return [data]
    rows = 4 * _NOISE_BLOCK + 2  # four rows of blocks (a border row is lost on each side)
    count = max(1, _NOISE_PIXELS // (rows * w))
    return [data[int(top) : int(top) + rows] for top in np.linspace(0, h - rows, count)]


def noise_profile(frames: Sequence[Frame], shape: CurveShape = 0.0) -> tuple[np.ndarray, np.ndarray] | None:
    """(levels, variances): the display frames' noise variance at levels of `NOISE_LEVELS`, both
    with the curve's `shape` undone (gamma-2.2 codes), or None if the noise does not show (too
    little of it above the quantization, or too few levels with enough blocks)."""
    if not frames or frames[0].domain != "display" or any(f.floating for f in frames):
        return None
    levels, variances = [], []
    for frame in frames:
        for band in _bands(frame.data):
            for c in range(band.shape[-1]):
                level, variance = _noise_blocks(np.ascontiguousarray(band[..., c]))
                levels.append(level)
                variances.append(variance)
    level, variance = np.concatenate(levels), np.concatenate(variances)
    quantization = 1 / (12 * (2.0 ** max(f.bit_depth for f in frames) - 1) ** 2)
    edges = np.linspace(*NOISE_LEVELS, _NOISE_BINS + 1)
    u, var = [], []
    for lo, hi in itertools.pairwise(edges):
        v = variance[(level >= lo) & (level < hi)]
        if v.size < _NOISE_MIN_BLOCKS:
            continue
        noise = float(np.quantile(v, _NOISE_QUIET)) - quantization
        if noise <= quantization / 2:
            return None  # a clean (or denoised) frame: what is left is rounding, not sensor noise
        d = np.array([lo, (lo + hi) / 2, hi])
        shaped = unshape(d, shape)  # its noise is d's times du/dd
        u.append(float(shaped[1]))
        var.append(noise * float((shaped[2] - shaped[0]) / (d[2] - d[0])) ** 2)
    if len(u) < _NOISE_MIN_BINS:
        return None
    return np.asarray(u), np.asarray(var)


def noise_misfit(profile: tuple[np.ndarray, np.ndarray], gamma: float) -> float:
    """How far a `noise_profile` is from sensor noise through a response of `gamma`: the rms log
    error of the best a (u^(2 - g) + r u^(2 - 2g)), shot noise a L plus read noise a r seen through
    u = L^(1/g), with r up to `NOISE_READ_MAX`."""
    u, var = profile
    best = math.inf
    for r in _NOISE_READ_GRID:
        error = np.log(var) - np.log(u ** (2 - gamma) + r * u ** (2 - 2 * gamma))
        best = min(best, float(np.sqrt(np.mean(np.square(error - error.mean())))))
    return best


def _noise_reading(
    readings: set[tuple[float, ...]], stops_per_gamma: float, frames: Sequence[Frame], shape: CurveShape
) -> tuple[float, ...] | None:
    """The one of several whole-stop readings whose gamma (R stops in all: R / `stops_per_gamma`)
    explains the frames' noise (`noise_misfit`) within `NOISE_MAX_MISFIT` and `NOISE_MARGIN` times
    better than every other, if any (of two or more)."""
    if len(readings) < 2 or not frames:
        return None
    profile = noise_profile(frames, shape)
    if profile is None:
        return None
    misfits = sorted((noise_misfit(profile, sum(r) / stops_per_gamma), r) for r in readings)
    (best, reading), (runner_up, _) = misfits[:2]
    return reading if best <= NOISE_MAX_MISFIT and runner_up >= NOISE_MARGIN * best else None


def _estimate_stops(linear: np.ndarray, crf_gamma: float, *, snap: bool) -> tuple[np.ndarray, bool]:
    """(n,) exposure offsets in stops (0 = the darkest frame), and whether any step was measured
    (else all are guessed from the frames' mean brightness).

    Frames are ordered by brightness and each is compared with its neighbour (neighbours share the
    most well-exposed samples; a 16-frame bracket's ends share none), by histogram matching
    (`_pair_log_ratio`); the steps are chained to the reference. A step with nothing to compare
    (a frame all clipped or all black) is taken to be the bracket's typical (median) step; so is,
    in a long bracket (`CALIBRATE_MIN_FRAMES`), a step with too little in the trusted range while
    others have enough (its end frames are all but black or clipped, and the few samples they
    have left measure the step to half a stop at best). With
    `snap`, steps close to the whole/third-stop grid cameras bracket on are snapped to it
    (`snap_stops`): a step is measured to about 0.1 stop for a gamma-2.2 camera, and a response
    that is not gamma 2.2 shifts it further in a way the pixels alone cannot tell apart from a
    different ratio (the exponential ambiguity of response and exposure).
    """
    n = linear.shape[0]
    pooled = [_pooled(linear[i]) for i in range(n)]
    order = sorted(range(n), key=lambda i: float(pooled[i].mean()))
    pairs = list(itertools.pairwise(order))
    widen = n < CALIBRATE_MIN_FRAMES
    measured = [_pair_log_ratio(pooled[a], pooled[b], crf_gamma, widen=widen) for a, b in pairs]
    if all(m is None for m in measured):
        measured = [_pair_log_ratio(pooled[a], pooled[b], crf_gamma) for a, b in pairs]
    known = [m for m in measured if m is not None]
    if known:  # a step with nothing to compare (a frame all clipped or black) is the typical step
        typical = float(np.median(known))
        steps = np.array([typical if m is None else m for m in measured]) / math.log(2.0)
    else:
        means = [max(float(p.mean()), 1e-6) for p in pooled]
        steps = np.array([math.log2(means[b] / means[a]) for a, b in pairs])
    if snap:
        steps = snap_stops(steps)
    stops = np.zeros(n, dtype=np.float64)
    stops[order[1:]] = np.cumsum(steps)
    return stops, bool(known)


def _mismatch(sorted_frames: list[list[np.ndarray]], times: Sequence[float], crf_gamma: float) -> float:
    """Mean |measured - stated| exposure step, in stops, between frames neighbouring in time, of
    display frames given as sorted channel values and linearized with `crf_gamma`. Steps with
    nothing to compare (a frame all clipped or black) are skipped."""
    errors = []
    for a, b in itertools.pairwise(np.argsort(np.asarray(times, dtype=np.float64))):
        # A power law is monotonic: the decoded values stay sorted.
        lin_a = [np.power(np.clip(x, 0, 1), crf_gamma) for x in sorted_frames[a]]
        lin_b = [np.power(np.clip(x, 0, 1), crf_gamma) for x in sorted_frames[b]]
        measured = _matched_log_ratio(lin_a, lin_b, crf_gamma)
        if measured is not None:
            errors.append(abs(measured - math.log(times[b] / times[a])) / math.log(2.0))
    return float(np.mean(errors)) if errors else 0.0


def gamma_mismatches(
    frames: Sequence[Frame],
    times: Sequence[float],
    gammas: Sequence[float],
    shape: CurveShape = 0.0,
    quantiles: list[list[np.ndarray]] | None = None,
) -> dict[float, float]:
    """How well each of `gammas` explains a bracket with known times ({gamma: stops}): the mean
    |measured - stated| exposure step between frames neighbouring in time, near 0 when the
    response is right (a stop apart in time is a stop apart in the pixels). The curve's `shape`
    is undone first.

    The frames are sampled, pooled and sorted once in the display domain: the shape and a power
    law keep the order, so each gamma only re-encodes the sorted values (`quantiles`: the frames'
    `_quantiles`, if already taken).
    """
    picked = _quantiles(frames) if quantiles is None else quantiles
    if shape != 0:
        picked = [[unshape(x, shape) for x in channels] for channels in picked]
    return {g: _mismatch(picked, times, g) for g in gammas}


def _quantiles(frames: Sequence[Frame]) -> list[list[np.ndarray]]:
    """Each frame's display channels sampled, pooled and sorted, at `_FIT_QUANTILES` evenly spaced
    ranks (the same in every frame): fits that match histograms need quantiles, not every sample."""
    sorted_frames = [_sorted_channels(_pooled(_subsample(f.data))) for f in frames]
    ranks = np.linspace(0, sorted_frames[0][0].size - 1, min(_FIT_QUANTILES, sorted_frames[0][0].size))
    return [[x[ranks.astype(np.int64)] for x in channels] for channels in sorted_frames]


def fit_gamma(
    frames: Sequence[Frame],
    times: Sequence[float],
    shape: CurveShape = 0.0,
    quantiles: list[list[np.ndarray]] | None = None,
) -> float:
    """The response gamma for a short bracket with known times: gamma 2.2 unless another gamma of
    `GAMMA_GRID` explains the stated exposure steps clearly better (`GAMMA_FIT_GAIN`), once the
    curve's `shape` (`fit_curve_shape`) is undone.

    With the times known, the exponential ambiguity that defeats blind estimates is gone: a camera
    whose curve is steeper or flatter than 2.2 shows as steps measured longer or shorter than
    stated. Motion and noise leave the right response 0.03-0.15 stop of mismatch on handheld 3-frame
    brackets, hence the relative margin rather than a fit at any gain.
    """
    scores = gamma_mismatches(frames, times, GAMMA_GRID, shape, quantiles)
    best = min(scores, key=lambda g: scores[g])
    return best if scores[best] < GAMMA_FIT_GAIN * scores[ENCODING_GAMMA] else ENCODING_GAMMA


# The known-time response fit (`fit_response`) scores each curve of `SHAPES` x `GAMMA_GRID` by how
# far the stated steps miss the matched levels of neighbouring frames (median, in stops), over levels
# neither frame clips nor loses in black. Its prior: most cameras encode a plain power law or sRGB,
# so among the curves that score within RESPONSE_TIE of the best (relatively, plus
# RESPONSE_TIE_STOPS for a near-perfect fit), the simplest is taken (`_curve_complexity`). The
# margins are what separates a resized or re-encoded copy of a bracket from its source
# (`tests/emvnet/merge/test_response_fit.py`: the demo bracket and a 60 % JPEG copy read alike).
RESPONSE_TIE = 0.15
RESPONSE_TIE_STOPS = 0.01
_RESPONSE_LEVELS = (UNDEREXPOSED_LEVEL, SATURATION_LEVEL)


def _curve_complexity(shape: CurveShape, gamma: float) -> float:
    """The prior's order: gamma 2.2, then sRGB, then other gammas, then shoulders, stronger last."""
    rank = 0.0 if shape == 0 else 1.0 if shape == "srgb" else 2.0 + float(shape)
    return rank + abs(gamma - ENCODING_GAMMA)


def response_misfits(
    frames: Sequence[Frame], times: Sequence[float], quantiles: list[list[np.ndarray]] | None = None
) -> dict[tuple[CurveShape, float], float]:
    """{(shape, gamma): stops}: the median |measured - stated| step over every matched level of
    frames neighbouring in time, once the curve is undone. Histogram matching (the k-th darkest
    sample of one frame against the k-th of the next) needs no alignment, so camera and subject
    motion only move the ranks they cover; the median is robust to those."""
    stats = _quantiles(frames) if quantiles is None else quantiles
    lo, hi = _RESPONSE_LEVELS
    pairs = []
    for a, b in itertools.pairwise(np.argsort(np.asarray(times, dtype=np.float64))):
        keep = [
            (qa > lo) & (qa < hi) & (qb > lo) & (qb < hi) for qa, qb in zip(stats[a], stats[b], strict=True)
        ]
        pairs.append((a, b, keep, math.log(times[b] / times[a])))
    scores: dict[tuple[CurveShape, float], float] = {}
    for shape in SHAPES:
        curves = stats if shape == 0 else [[unshape(x, shape) for x in channels] for channels in stats]
        logs = [[np.log(np.maximum(x, 1e-6)) for x in channels] for channels in curves]
        diffs = [
            (np.concatenate([(lb - la)[k] for la, lb, k in zip(logs[a], logs[b], keep, strict=True)]), step)
            for a, b, keep, step in pairs
        ]
        if any(d.size < _RATIO_MIN_SAMPLES for d, _ in diffs):
            return {}
        for gamma in GAMMA_GRID:
            residual = np.concatenate([gamma * d - step for d, step in diffs])
            scores[(shape, gamma)] = float(np.median(np.abs(residual))) / math.log(2.0)
    return scores


def fit_response(
    frames: Sequence[Frame], times: Sequence[float], quantiles: list[list[np.ndarray]] | None = None
) -> tuple[CurveShape, float]:
    """The display curve (shape, gamma) of a short bracket with known times: the simplest curve
    that explains the stated exposure steps about as well as the best (`response_misfits`). With
    the times known the exponential ambiguity that defeats blind readings is gone: a wrong gamma
    makes every step too long or too short, a wrong shape makes the bright levels' steps differ
    from the dark ones'. Frames with too few levels to compare keep gamma 2.2."""
    scores = response_misfits(frames, times, quantiles)
    if not scores:
        return 0.0, ENCODING_GAMMA
    best = min(scores.values())
    bound = best * (1.0 + RESPONSE_TIE) + RESPONSE_TIE_STOPS
    return min((k for k, v in scores.items() if v <= bound), key=lambda k: _curve_complexity(*k))


# A blind reading is trusted ("high") only on all of this evidence: the steps landed on the whole-stop
# grid through one gamma (or the frames' noise settled between two), the curve left no shoulder to
# trade against the steps (a shoulder and longer steps explain the frames alike), and the response
# fitted to the read steps explains every matched level within BLIND_MAX_MISFIT stops. Anything
# else is "low": the ratios are measured values that can be a stop or more off. On the shared real
# brackets with known times every reading more than a third of a stop off is "low"
# (`python benchmarks/blind_confidence.py`).
BLIND_MAX_MISFIT = 0.12
BlindConfidence = Literal["high", "low"]


def blind_confidence(
    frames: Sequence[Frame],
    ratios: Sequence[float] | None,
    how: GridReading | None,
    shape: CurveShape,
    quantiles: list[list[np.ndarray]] | None = None,
) -> BlindConfidence:
    """How far a blind bracket's exposure ratios can be trusted (see BLIND_MAX_MISFIT).
    `quantiles`: the frames' `_quantiles`, if already taken."""
    if ratios is None or how not in ("noise", "whole stops") or shape not in (0.0, "srgb"):
        return "low"
    misfits = response_misfits(frames, ratios, quantiles)
    return "high" if misfits and min(misfits.values()) <= BLIND_MAX_MISFIT else "low"


def check_exposures(exposures: Sequence[float], n_frames: int) -> tuple[float, ...]:
    """Exposure times as a tuple, or ExposureError if the count or any value is unusable."""
    values = tuple(float(t) for t in exposures)
    if len(values) != n_frames:
        raise ExposureError(f"got {len(values)} exposure times for {n_frames} frames; give one per frame")
    for i, t in enumerate(values):
        if not math.isfinite(t) or t <= 0:
            raise ExposureError(f"exposure time {i + 1} is {t!r}; exposure times must be positive seconds")
    return values


def _linear_sample(frames: Sequence[Frame], crf_gamma: float, shape: CurveShape = 0.0) -> np.ndarray:
    """(n, h, w, C) strided samples of the frames, linearized with gamma (after undoing `shape`):
    bracket statistics need a few 100k samples, not every pixel."""
    return np.stack(
        [
            sub if f.domain == "linear" else np.power(unshape(sub, shape), crf_gamma)
            for f, sub in ((f, _subsample(f.data)) for f in frames)
        ]
    )


def _check_order(frames: Sequence[Frame], times: Sequence[float], crf_gamma: float, source: str) -> None:
    """Refuse exposure times that contradict the pixels (a reversed or shuffled list).

    A merge with swapped times calibrates an inverted camera response and returns garbage without
    any error, so a clear refusal is kinder. Only confident contradictions count: the measured
    ratio (`estimate_ratios`) and the mean brightness must both say that a frame stated 1.5x
    longer is darker.
    """
    linear = _linear_sample(frames, crf_gamma)
    darkest = int(np.argmin(times))
    measured = estimate_ratios(linear, darkest, crf_gamma)  # t_i / t_darkest as the pixels see it
    means = linear.reshape(len(frames), -1).mean(axis=1)
    stated = np.asarray(times, dtype=np.float64) / times[darkest]
    for i in range(len(frames)):
        if stated[i] > 1.5 and measured[i] < 1 / 1.5 and means[i] < means[darkest]:
            where = "given" if source == "given" else "from EXIF"
            raise ExposureError(
                f"exposure times {where} contradict the frames: frame {i + 1} is stated {stated[i]:.3g}x "
                f"longer than frame {darkest + 1} but is {1 / measured[i]:.3g}x darker; "
                "check the order of the exposure times"
            )


@dataclass(frozen=True, eq=False)
class Bracket:
    """Frames ready to merge. Build with `make_bracket`, which validates."""

    frames: tuple[Frame, ...]
    exposures: tuple[float, ...] | None  # seconds, one per frame; None = blind merge
    reference: int
    crf_gamma: float = ENCODING_GAMMA
    exposure_source: Literal["given", "exif", "none"] = field(default="none")
    # (256, C) inverse response calibrated from a long bracket (`emvnet.merge.response`); None = gamma.
    response: np.ndarray | None = None
    # The display curve's shape beyond its gamma (`fit_curve_shape`), undone before the gamma.
    curve_shape: CurveShape = 0.0
    # Blind: the ratios measured (`read_grid`) before the response was fitted to them; None =
    # measure them from `linear` when asked.
    estimated_ratios: tuple[float, ...] | None = None
    # Blind: how far the ratios can be trusted (`blind_confidence`); None with known times.
    confidence: BlindConfidence | None = None

    @property
    def n(self) -> int:
        return len(self.frames)

    @property
    def shape(self) -> tuple[int, int, int]:
        h, w, c = self.frames[0].data.shape
        return (h, w, c)

    @property
    def layout(self) -> str:
        return self.frames[0].layout

    @property
    def blind(self) -> bool:
        return self.exposures is None

    @cached_property
    def linear(self) -> np.ndarray:
        """(n, H, W, C) float32, each frame linearized, 1.0 = its clipping level."""
        if self.response is not None:
            return np.stack([_through_response(f, self.response) for f in self.frames])
        return np.stack([linearize(f, self.crf_gamma, self.curve_shape) for f in self.frames])

    @cached_property
    def ratios(self) -> np.ndarray:
        """(n,) float64 t_i / t_ref: from the exposure times, or estimated when blind."""
        if self.exposures is not None:
            t = np.asarray(self.exposures, dtype=np.float64)
            return t / t[self.reference]
        if self.estimated_ratios is not None:
            return np.asarray(self.estimated_ratios, dtype=np.float64)
        return estimate_ratios(self.linear, self.reference, self.crf_gamma)  # no grid reading: a power law

    def saturated(self, level: float = SATURATION_LEVEL) -> np.ndarray:
        """(n, H, W, C) bool: samples at or above `level` of full scale in the input frames."""
        return np.stack([f.data >= level for f in self.frames])

    def subset(self, indices: Sequence[int]) -> Bracket:
        """The bracket of the frames at `indices` (ascending, with the reference), every other field
        kept: a blind bracket stays blind and keeps the ratios measured on all its frames rather
        than re-measuring them on fewer."""
        picked = list(indices)
        assert picked == sorted(set(picked)) and set(picked) <= set(range(self.n)), f"bad indices {picked}"
        assert self.reference in picked and len(picked) >= MIN_FRAMES, f"{picked}: no reference or too few"
        times, estimated = self.exposures, self.estimated_ratios
        if times is None:
            estimated = tuple(float(self.ratios[i]) for i in picked)
        else:
            times = tuple(times[i] for i in picked)
        return replace(
            self,
            frames=tuple(self.frames[i] for i in picked),
            exposures=times,
            reference=picked.index(self.reference),
            estimated_ratios=estimated,
        )


def make_bracket(
    frames: Sequence[Frame],
    exposures: Sequence[float] | None = None,
    reference: Reference = "auto",
    *,
    crf_gamma: float | None = None,
    max_frames: int | None = None,
    calibrate: bool = True,
) -> Bracket:
    """Validate frames into a Bracket.

    Exposure times: `exposures` (seconds) when given, else EXIF/DNG times when every frame has one,
    else none (blind). Display-encoded RGB frames are linearized with `crf_gamma` (None: gamma 2.2,
    or with `calibrate` the curve the frames show: with known times in a 2-4 frame bracket the
    shape and gamma `fit_response` reads from the stated steps; blind, the shape `fit_curve_shape`
    finds and the gamma `fit_gamma` reads from the grid-read steps). With `calibrate`, a bracket
    of `CALIBRATE_MIN_FRAMES` or more frames with known times gets the response calibrated from its
    own frames. A blind bracket whose measured exposure steps land on the grid (`read_grid`; its
    sensor noise settles steps that read as whole stops through two gammas) is calibrated the same
    way from those ratios, which it keeps. Raises BracketError / ExposureError with a message that
    says what to fix.
    """
    frames = tuple(frames)
    if len(frames) < MIN_FRAMES:
        raise BracketError(f"a bracket needs at least {MIN_FRAMES} frames, got {len(frames)}")
    if max_frames is not None and len(frames) > max_frames:
        raise BracketError(f"got {len(frames)} frames; at most {max_frames} are allowed per merge")
    first = frames[0]
    for i, f in enumerate(frames[1:], start=2):
        if f.data.shape != first.data.shape:
            raise BracketError(
                f"frame {i} is {f.width}x{f.height}x{f.data.shape[2]} but frame 1 is "
                f"{first.width}x{first.height}x{first.data.shape[2]}; all frames must have one size"
            )
        if f.layout != first.layout or f.domain != first.domain:
            raise BracketError(
                f"frame {i} is {f.domain} {f.layout} ({f.source_format}) but frame 1 is {first.domain} "
                f"{first.layout} ({first.source_format}); do not mix raw, LDR and HDR frames"
            )
    if crf_gamma is not None and not (math.isfinite(crf_gamma) and 0.1 <= crf_gamma <= 10):
        raise ExposureError(f"camera response gamma {crf_gamma!r} is outside [0.1, 10]")
    gamma = ENCODING_GAMMA if crf_gamma is None else crf_gamma

    source: Literal["given", "exif", "none"] = "none"
    times: tuple[float, ...] | None = None
    if exposures is not None:
        times, source = check_exposures(exposures, len(frames)), "given"
    else:
        exif = [f.exposure.exposure_time for f in frames]
        if all(t is not None and math.isfinite(t) and t > 0 for t in exif):
            times, source = tuple(float(t) for t in exif if t is not None), "exif"
        elif any(t is not None for t in exif):
            log.warning("only some frames carry an EXIF exposure time; merging blind")

    if times is not None:
        _check_order(frames, times, gamma, source)

    if reference == "auto":
        ref = select_reference(frames, times)
    else:
        if isinstance(reference, bool) or not isinstance(reference, int):
            raise BracketError(f"reference must be a frame index or 'auto', got {reference!r}")
        if not 0 <= reference < len(frames):
            raise BracketError(f"reference {reference} is out of range for {len(frames)} frames (0-based)")
        ref = reference
    response, estimated = None, None
    confidence: BlindConfidence | None = "low" if times is None else None
    shape: CurveShape = 0.0
    steps = times
    fit = calibrate and first.domain == "display"
    quantiles = None  # the sorted samples the shape and gamma fits both read, taken once
    short_fit = fit and crf_gamma is None and len(frames) < CALIBRATE_MIN_FRAMES
    if short_fit and times is not None:  # (a stated gamma is a power law; long brackets calibrate)
        shape, gamma = fit_response(frames, times)
    elif fit and crf_gamma is None and times is None:
        quantiles = _quantiles(frames)
        shape = fit_curve_shape(frames, quantiles)
    if fit and times is None:
        # Blind: exposure steps measured at gamma 2.2 and found on the whole-stop grid (through the
        # gamma the frames' noise shows, where two fit) stand in for the times, so a response that
        # is not gamma 2.2 is fitted as with known times.
        sample = _linear_sample(frames, gamma, shape)
        grid, how = read_grid(sample, ref, gamma, thirds=shape == 0, frames=frames, shape=shape)
        if grid is None and shape != 0:  # nothing confirms the shape: read again as a power law
            shape = 0.0
            sample = _linear_sample(frames, gamma, shape)
            grid, how = read_grid(sample, ref, gamma, thirds=True, frames=frames, shape=shape)
        if grid is not None:
            estimated, steps = tuple(float(r) for r in grid), tuple(float(r) for r in grid)
        else:  # the ratios are measured through gamma 2.2 alone
            shape = 0.0
        confidence = blind_confidence(frames, estimated, how, shape, quantiles)
    if fit and steps is not None:
        if len(frames) >= CALIBRATE_MIN_FRAMES:
            response, shape = calibrate_response([f.data for f in frames], steps), 0.0
        elif crf_gamma is None and times is None:
            gamma = fit_gamma(frames, steps, shape, quantiles)
    return Bracket(
        frames=frames,
        exposures=times,
        reference=ref,
        crf_gamma=gamma,
        exposure_source=source,
        response=response,
        curve_shape=shape,
        estimated_ratios=estimated,
        confidence=confidence,
    )
