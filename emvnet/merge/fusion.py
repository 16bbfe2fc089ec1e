"""The weighted, deghosted radiance merge: the network's output prior and the `weighted` baseline.

A radiance estimate per frame (its linear values over its exposure ratio) is averaged with weights
that follow the noise and the scene:

- level: a hat function of the frame's level (flat in the middle, zero at black and at clipping),
  zero where the frame clips; in 2-4 frame brackets one weight per pixel, set by the channel
  nearest clipping (`merge_weights`);
- exposure: times the ratio t_i / t_ref. Shot noise makes frame i's radiance variance ~ 1 / t_i,
  so inverse-variance weights grow with the exposure (Robertson's estimator does the same). In
  the shadows of a bracket this is what a merge is for: the long frame's samples carry a fraction
  of the reference's noise;
- agreement: a frame counts only where it agrees with the reference (moving objects, residual
  misalignment), so the reference's content wins where the scene changed, and where the reference
  is well exposed another frame may only lower its noise (reference-true). Frame i is brought to
  the reference's exposure, clipped like the reference would be, and compared in the
  gamma-encoded domain, where one tolerance suits shadows and highlights alike; a highlight that
  the reference clips agrees with any brighter value. The largest channel difference,
  box-filtered, decides, so colour channels are never weighted apart.

Where no frame has weight (every frame clipped, or every frame black) the shortest exposure wins
where the reference is bright and the longest where it is dark, instead of dividing 0 by 0; the
reference's clipped value stays where the shortest frame contradicts it.

It is the output prior of the RGB networks (`emvnet.net.model`, on the frames warped by the network's
flow) and the `weighted` baseline (`emvnet.merge.classical`, on frames pre-aligned by homography), so the
network is measured against exactly the merge it refines (MODEL_CARD.md has the figures).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from emvnet.io.tonemap import ENCODING_GAMMA  # the comparison domain of the ghost test

# Gamma-encoded difference at which a frame is trusted only exp(-1) as much as a consistent one:
# above JPEG and sensor noise of well-exposed samples, below any real object's edge.
GHOST_TOLERANCE = 0.08
GHOST_WINDOW = 5  # box filter side of the ghost test's difference map
# From this many frames (tripod sequences, typically) the ghost test's tolerance widens with the
# noise measured between each frame and the reference (`agreement`, noise_k): with a fixed
# tolerance the noisy reference's shadows reject the clean long exposures (figures for the dev
# set's 16-exposure captures in MODEL_CARD.md). Short brackets keep the fixed tolerance: on the
# 3-frame dynamic dev scenes the noise-aware one let motion in the shadows through (-2 dB).
LONG_BRACKET = 5
LONG_NOISE_K = 5.0
NOISE_BINS = 16  # reference levels at which the noise-aware ghost test measures noise
NOISE_SAMPLES = 1 << 18  # pixels (strided) the noise statistics read per frame pair
NOISE_MIN_SAMPLES = 64  # fewer samples in a level bin: its noise is interpolated from neighbours
# Least weight of the reference where it does not clip, in brackets shorter than LONG_BRACKET.
# Its hat weight falls to 0 in the deep shadows, where a longer frame rejected as a ghost
# (agreement ~0.1) would still outweigh it and paint the ghost in; with the floor the reference's
# content wins there. Against well-exposed agreeing frames (hat x ratio ~ 1..16) it stays a small
# share. Measured with `emvnet eval data/dev --model none --baselines weighted` (and data/dev2):
# dynamic scenes +0.25 / +0.13 dB (dev2 +0.37 / +0.27); long tripod brackets lost 0.03 (dev2 0.14),
# their noise-aware ghost test already guards them, so they keep no floor.
REFERENCE_FLOOR = 0.1
# Reference-true merging: where the reference is well exposed (every channel's encoded level in
# CORE_LEVELS, the range the reference-fidelity metric reads) the ghost test's tolerance narrows to
# CORE_TOLERANCE (a frame further off would move the output past the metric's 0.05 once weighted
# by its exposure), and a rejection spreads over REJECT_WINDOW. Measured with
# `python benchmarks/fidelity_real.py` (real brackets: ghost %) and `emvnet eval data/dev`
# (synthetic: PSNR).
CORE_LEVELS = (0.08, 0.92)
CORE_RAMP = 0.04
CORE_TOLERANCE = 0.04
# ... and in long brackets the noise-aware widening there is CORE_NOISE_K sigma instead of
# LONG_NOISE_K: wind in leaves inflates the measured spread at a level, which must not let the
# leaves of other instants in.
CORE_NOISE_K = 2.0
REJECT_WINDOW = 5


def hat(level: Tensor) -> Tensor:
    """Weight of a sample by its level in [0, 1]: flat in the middle, zero at black and clipping."""
    centred = (2.0 * level.clamp(0.0, 1.0) - 1.0) ** 2  # two squares: cheaper than abs().pow(4)
    return 1.0 - centred * centred


def _noise_levels(diff: Tensor, level: Tensor, valid: Tensor) -> Tensor:
    """Per level bin of the reference: the robust spread (noise) of a signed difference map.

    diff (C, H, W), level (H, W) in [0, 1], valid (H, W) bool. Returns (NOISE_BINS,) sigma (the
    largest channel's 1.4826 x median absolute deviation), empty bins interpolated from their
    neighbours. Medians are robust: a moving object or an edge shifts them only when it covers half
    of a level's pixels.
    """
    step = max(1, int((level.numel() / NOISE_SAMPLES) ** 0.5))
    # Strided samples (NOISE_SAMPLES at most) on the CPU whatever the frames' device: the bins end in
    # NumPy's interpolation.
    d = diff[:, ::step, ::step].flatten(1).float().cpu()  # (C, m)
    bins = (level[::step, ::step].flatten() * NOISE_BINS).long().clamp(0, NOISE_BINS - 1).cpu()
    ok = valid[::step, ::step].flatten().cpu()
    sigma = torch.full((NOISE_BINS,), float("nan"))
    for k in range(NOISE_BINS):
        x = d[:, ok & (bins == k)]
        if x.shape[1] < NOISE_MIN_SAMPLES:
            continue
        med = x.median(1).values
        sigma[k] = 1.4826 * (x - med[:, None]).abs().median(1).values.max()
    known = ~torch.isnan(sigma)
    if not known.any():
        return torch.zeros(NOISE_BINS, dtype=diff.dtype, device=diff.device)
    idx = torch.arange(NOISE_BINS, dtype=torch.float32)
    filled = np.interp(idx.numpy(), idx[known].numpy(), sigma[known].numpy())
    return torch.from_numpy(filled).to(diff.device, diff.dtype)


def _reference_core(enc_ref: Tensor) -> Tensor:
    """(B, 1, H, W) in [0, 1]: 1 where every channel of the reference is well exposed (encoded level
    in CORE_LEVELS), falling to 0 over CORE_RAMP towards black or clipping."""
    lo, hi = CORE_LEVELS
    dark = ((enc_ref.amin(1, keepdim=True) - lo) / CORE_RAMP + 1.0).clamp(0.0, 1.0)
    bright = ((hi - enc_ref.amax(1, keepdim=True)) / CORE_RAMP + 1.0).clamp(0.0, 1.0)
    return dark * bright


def _spread_rejection(agree: Tensor) -> Tensor:
    """(N, 1, H, W) agreement lowered to its neighbourhood's least (a min filter of side
    REJECT_WINDOW): a moving limb's rim, where the box-filtered difference is only half of its
    inside's, is rejected with it instead of blending in at half weight."""
    pad, side = REJECT_WINDOW // 2, REJECT_WINDOW
    rows = F.max_pool2d(-agree, (1, side), 1, (0, pad))  # separable: the same minimum, 1.7x faster
    return -F.max_pool2d(rows, (side, 1), 1, (pad, 0))


def agreement(
    radiance: Tensor,
    clipped: Tensor | None = None,
    tolerance: float = GHOST_TOLERANCE,
    noise_k: float = 0.0,
) -> Tensor:
    """(B, n, 1, H, W) agreement of each frame with the reference (index 0): 1 = consistent, ~0 = a ghost.

    radiance (B, n, C, H, W): every frame in reference units, the reference first. Where the
    reference is well exposed (`_reference_core`) its content must win, so the tolerance narrows
    to CORE_TOLERANCE there (and the noise widening to CORE_NOISE_K): another frame may lower the
    reference's noise, not change what it shows. With `noise_k` > 0 (needs `clipped`), the
    tolerance of each frame widens with the noise measured between it and the reference at each
    level, sqrt(tol^2 + (k sigma)^2), and the difference is box-filtered signed, so noise averages
    out where a real change does not.
    """
    b, n, c, h, w = radiance.shape
    enc = radiance.clamp(1e-6, 1.0).pow(1.0 / ENCODING_GAMMA)  # clipped as the reference clips
    core = _reference_core(enc[:, 0])  # (B, 1, H, W)
    tol_map = tolerance + (min(tolerance, CORE_TOLERANCE) - tolerance) * core  # (B, 1, H, W)
    pad = GHOST_WINDOW // 2
    if noise_k <= 0.0:
        diff = (enc[:, 1:] - enc[:, :1]).abs().amax(2).reshape(b * (n - 1), 1, h, w)
        diff = F.avg_pool2d(diff, GHOST_WINDOW, 1, pad, count_include_pad=False).view(b, n - 1, 1, h, w)
        others = torch.exp(-((diff / tol_map[:, None]) ** 2)).flatten(0, 1)
        others = _spread_rejection(others).view(b, n - 1, 1, h, w)
        return torch.cat([torch.ones_like(others[:, :1]), others], 1)
    assert clipped is not None, "the noise-aware test measures noise where nothing clips"
    signed = (enc[:, 1:] - enc[:, :1]).reshape(b * (n - 1), c, h, w)
    signed = F.avg_pool2d(signed, GHOST_WINDOW, 1, pad, count_include_pad=False).view(b, n - 1, c, h, w)
    level = enc[:, 0].mean(1)  # (B, H, W) the reference's encoded level
    bins = (level * NOISE_BINS).long().clamp(0, NOISE_BINS - 1)
    blocked = clipped.amax(2) > 0.5  # (B, n, H, W)
    k_map = noise_k + (min(noise_k, CORE_NOISE_K) - noise_k) * core  # (B, 1, H, W)
    agree = torch.ones(b, n, 1, h, w, dtype=radiance.dtype, device=radiance.device)
    for j in range(b):
        for i in range(1, n):
            d = signed[j, i - 1]
            sigma = _noise_levels(d, level[j], ~(blocked[j, 0] | blocked[j, i]))
            tol = torch.sqrt(tol_map[j, 0] ** 2 + (k_map[j, 0] * sigma[bins[j]]) ** 2)
            agree[j, i, 0] = torch.exp(-((d.abs().amax(0) / tol) ** 2))
    agree[:, 1:] = _spread_rejection(agree[:, 1:].flatten(0, 1)).view(b, n - 1, 1, h, w)
    return agree


def merge_weights(lin: Tensor, clipped: Tensor, ratios: Tensor, deghost: bool = True) -> Tensor:
    """(B, n, 1 or C, H, W) weights of the weighted merge; the reference first.

    lin (B, n, C, H, W) linear frames in [0, 1] of their own exposure; clipped (B, n, 1 or C, H, W)
    in [0, 1] (1 = no information: clipped, or outside the frame after a warp); ratios (B, n).

    In short brackets the channels of a pixel share one weight, set by the channel nearest
    clipping, and a pixel clips where any channel does: a frame whose brightest channel nears
    clipping counts less in every channel, so the merge never takes one channel's hue from one
    frame and another's from a frame stops away (the rainbow contours of per-channel weights at
    clipping transitions). Long brackets (`LONG_BRACKET` frames on: tripod sequences a stop or
    less apart, their response calibrated per channel) weigh each channel on its own: there a
    channel's next exposure is close, and per-channel weights keep the clean samples that a joint
    mask throws away (`emvnet eval data/dev/static16 --model none --baselines weighted` at
    43bea64: 49.05 dB per channel, 47.81 joint).
    """
    b, n = ratios.shape
    r = ratios.to(lin.dtype).view(b, n, 1, 1, 1)
    long_bracket = n >= LONG_BRACKET
    if long_bracket:
        clipped = clipped.expand(-1, -1, lin.shape[2], -1, -1)
        level_weight = hat(lin)  # a fresh tensor (B, n, C, H, W)
    else:
        clipped = clipped.amax(2, keepdim=True)  # (B, n, 1, H, W) a pixel clips if any channel does
        level_weight = hat(lin.amax(2, keepdim=True))  # (B, n, 1, H, W) the channel nearest clipping
        level_weight[:, :1].clamp_(min=REFERENCE_FLOOR)
    weight = level_weight * (1.0 - clipped) * r
    agree = None
    if deghost and n > 1:
        noise_k = LONG_NOISE_K if long_bracket else 0.0
        agree = agreement(lin / r, clipped, noise_k=noise_k)  # (B, n, 1, H, W)
        weight = weight * agree
    darkest = F.one_hot(ratios.argmin(1), n).to(lin.dtype).view(b, n, 1, 1, 1)
    brightest = F.one_hot(ratios.argmax(1), n).to(lin.dtype).view(b, n, 1, 1, 1)
    reference = torch.zeros_like(darkest)
    reference[:, 0] = 1.0
    # Where no frame has weight: the shortest frame where the reference is bright or clips, the
    # longest where it is dark, one choice per pixel. Where the shortest frame contradicts a clipped
    # reference (it saw something darker: the scene moved), the reference's own clipped value is
    # the plausible fill: the shortest frame would paint the moved object in a second time.
    ref_clipped = clipped[:, :1].amax(2, keepdim=True)
    bright = ((lin[:, :1] > 0.5).to(lin.dtype).amax(2, keepdim=True) + ref_clipped).clamp(max=1.0)
    if agree is not None:
        trusted = (agree * darkest).sum(1, keepdim=True)  # (B, 1, 1, H, W) the shortest frame's agreement
        short = darkest * trusted + reference * (1.0 - trusted)
    else:
        short = darkest
    return weight + 1e-4 * (short * bright + brightest * (1.0 - bright))


def merge(lin: Tensor, clipped: Tensor, ratios: Tensor, deghost: bool = True) -> Tensor:
    """(B, C, H, W) radiance in reference units: the weighted merge of `merge_weights`' inputs."""
    b, n = ratios.shape
    weight = merge_weights(lin, clipped, ratios, deghost)
    radiance = lin / ratios.to(lin.dtype).view(b, n, 1, 1, 1)
    return (weight * radiance).sum(1) / weight.sum(1)
