"""Classical merges through OpenCV: Debevec, Robertson (with response calibration) and Mertens.

They are the comparison baselines of every quality table and the merges that need no weights.

- `debevec` / `robertson`: calibrate the camera response from the bracket itself (Debevec & Malik
  1997; Robertson et al. 2003), then merge to radiance. OpenCV's calibration and merge take 8-bit
  frames, so display-encoded frames of more bits are reduced to 8 bits for them. Linear frames
  (camera raw, float files) need no calibration: they get the same weighted merge with an identity
  response, computed here in float. Without exposure times the ratios are estimated from the
  frames (`Bracket.ratios`), so a blind merge still yields radiance.
- `weighted`: the same weighted estimator on the bracket's linearization (gamma 2.2, the network's
  input convention, for 2-4 frames; the response calibrated from the bracket from 5 frames with
  known times on, see `emvnet.response`), plus weights that suppress ghosts: a frame counts only
  where it agrees with the reference. OpenCV's calibration from three frames is often
  non-monotonic at the top (rainbow highlights, colour casts), so short brackets keep the fixed
  response. It is the merge that needs no weights: `auto`'s fallback, and the network engine's
  merge of brackets longer than it was trained on.
- `mertens`: exposure fusion (Mertens et al. 2007). It needs no exposure times but produces a
  display-referred picture, not radiance: the result is linearized with the bracket's gamma and
  lies in [0, 1]; metrics must scale-align it (as they do every blind output).

All outputs are float32 (H, W, C) linear, in the reference frame's units (1.0 = its clipping level).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np

from emvnet.bracket import Bracket
from emvnet.errors import BracketError
from emvnet.registry import ModelSpec

Method = Literal["debevec", "robertson"]


def _to_bgr8(rgb01: np.ndarray) -> np.ndarray:
    """[0, 1] RGB float -> OpenCV's uint8 BGR."""
    return np.ascontiguousarray(np.round(np.clip(rgb01, 0.0, 1.0) * 255.0).astype(np.uint8)[..., ::-1])


def _times(bracket: Bracket) -> np.ndarray:
    """Exposure times for OpenCV: the real ones, or blind ratios (reference = 1 s)."""
    if bracket.exposures is not None:
        return np.asarray(bracket.exposures, dtype=np.float32)
    return bracket.ratios.astype(np.float32)


def _hat(level: np.ndarray) -> np.ndarray:
    """Weight of a sample by its level in [0, 1]: flat in the middle, zero at black and clipping."""
    return 1.0 - np.abs(2.0 * np.clip(level, 0.0, 1.0) - 1.0) ** 4


def _ghost_weights(bracket: Bracket, radiance: np.ndarray) -> np.ndarray:
    """(n, H, W, 1) agreement of each frame with the reference, 1 = consistent, ~0 = a ghost.

    Frame i is brought to the reference's exposure, clipped like the reference would be, and
    compared in the gamma-encoded domain, where a fixed tolerance suits shadows and highlights
    alike; a highlight that the reference clips agrees with any brighter value. The largest channel
    difference, box-filtered, decides, so colour channels are never weighted apart.
    """
    ref = bracket.reference
    gamma = bracket.crf_gamma
    ref_enc = np.power(np.clip(bracket.linear[ref], 0.0, 1.0), 1.0 / gamma)
    agree = np.ones((*radiance.shape[:3], 1), dtype=np.float32)
    for i in range(bracket.n):
        if i == ref:
            continue
        seen = np.power(np.clip(radiance[i], 0.0, 1.0), 1.0 / gamma)
        diff = np.abs(seen - ref_enc).max(axis=-1)
        diff = cv2.blur(diff.astype(np.float32), (5, 5))
        agree[i, ..., 0] = np.exp(-((diff / GHOST_TOLERANCE) ** 2))
    return agree


# Gamma-encoded difference at which a frame is trusted only exp(-1) as much as a consistent one:
# above JPEG and sensor noise of well-exposed samples, below any real object's edge.
GHOST_TOLERANCE = 0.08


def merge_weighted(bracket: Bracket, deghost: bool = True) -> np.ndarray:
    """Weighted radiance merge in reference units (Debevec's estimator on the linearized frames).

    Samples are weighted by a hat function of their level, so clipped and noise-floor samples count
    little, times the frame's relative exposure (less noise per unit radiance); with `deghost`,
    frames that disagree with the reference (moving objects, residual shake) are down-weighted
    too, so the reference's content wins where the scene changed. Where every frame is clipped the
    shortest exposure wins, where every frame is dark the longest does, instead of dividing zero
    by zero.
    """
    lin = bracket.linear  # (n, H, W, C)
    ratios = bracket.ratios.astype(np.float32)  # (n,)
    radiance = lin / ratios[:, None, None, None]  # (n, H, W, C) each frame in reference units
    # Shot noise: frame i's radiance estimate has variance ~ 1 / t_i, so inverse-variance weights
    # grow with the exposure (Robertson's estimator does the same). On the dev set's 16-frame
    # captures this is worth +2.9 dB PSNR-mu (45.96 -> 48.89); on 3-frame brackets +-0.1 dB.
    weight = _hat(lin) * ratios[:, None, None, None]
    weight[bracket.saturated()] = 0.0
    if deghost and bracket.n > 1:
        weight *= _ghost_weights(bracket, radiance)
    shortest, longest = int(np.argmin(ratios)), int(np.argmax(ratios))
    bright = lin[bracket.reference] > 0.5
    weight[shortest] += 1e-4 * bright
    weight[longest] += 1e-4 * ~bright
    return np.asarray((weight * radiance).sum(0) / weight.sum(0), dtype=np.float32)


def merge_calibrated(bracket: Bracket, method: Method) -> np.ndarray:
    """OpenCV response calibration + merge for display-encoded RGB frames."""
    if bracket.layout != "rgb":
        raise BracketError(f"{method} calibration needs RGB frames; packed raw frames are linear already")
    images = [_to_bgr8(f.data) for f in bracket.frames]
    times = _times(bracket)
    if method == "debevec":
        response = cv2.createCalibrateDebevec().process(images, times)  # (256, 1, 3) BGR
        radiance = cv2.createMergeDebevec().process(images, times, response)
    else:
        response = cv2.createCalibrateRobertson().process(images, times)
        radiance = cv2.createMergeRobertson().process(images, times, response)
    # OpenCV's radiance E satisfies response[z] = E * t. In reference units a sample is
    # E * t_ref / response[clip]: 1.0 where the reference clips. The clip level is read at code 254:
    # Robertson's top bin collects every clipped sample and overshoots. One scalar keeps the colour
    # balance that the calibration fixed at mid-grey.
    clip = float(np.mean(response[254]))
    hdr = np.asarray(radiance, dtype=np.float32)[..., ::-1] * (times[bracket.reference] / clip)
    return np.ascontiguousarray(np.nan_to_num(hdr, nan=0.0, posinf=0.0, neginf=0.0).clip(0.0, None))


def merge_mertens(bracket: Bracket) -> np.ndarray:
    """Mertens exposure fusion, linearized with the bracket's gamma; values in [0, 1]."""
    if bracket.layout != "rgb":
        raise BracketError("mertens fusion needs RGB frames; use debevec for packed raw frames")
    images = [
        _to_bgr8(f.data if f.domain == "display" else np.power(np.clip(f.data, 0, 1), 1 / bracket.crf_gamma))
        for f in bracket.frames
    ]
    fused = cv2.createMergeMertens().process(images)[..., ::-1]  # BGR -> RGB, display-referred
    return np.ascontiguousarray(np.power(np.clip(fused, 0.0, 1.0), bracket.crf_gamma).astype(np.float32))


class ClassicalMerger:
    """A `Merger` over one of the classical methods."""

    def __init__(self, method: Literal["debevec", "robertson", "mertens", "weighted"]) -> None:
        self.method = method

    def merge_one(self, bracket: Bracket) -> np.ndarray:
        if self.method == "mertens":
            return merge_mertens(bracket)
        if self.method == "weighted":
            return merge_weighted(bracket, deghost=True)
        if bracket.frames[0].domain == "linear":  # no response to calibrate
            return merge_weighted(bracket, deghost=False)
        return merge_calibrated(bracket, self.method)

    def merge(self, brackets: Sequence[Bracket]) -> list[np.ndarray]:
        return [self.merge_one(b) for b in brackets]


def _spec(name: Literal["debevec", "robertson", "mertens", "weighted"], summary: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        summary=summary,
        kind="classical",
        input_layout="rgb",
        build=lambda device: ClassicalMerger(name),
    )


SPECS: tuple[ModelSpec, ...] = (
    _spec("debevec", "OpenCV Debevec: response calibration + radiance merge (times known or estimated)"),
    _spec("robertson", "OpenCV Robertson: iterative response calibration + radiance merge"),
    _spec("mertens", "OpenCV Mertens exposure fusion: no times needed, display-referred result"),
    _spec(
        "weighted",
        "weighted radiance merge with ghost suppression; calibrated response from 5+ timed frames",
    ),
)
