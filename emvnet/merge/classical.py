"""Classical merges through OpenCV: Debevec, Robertson (with response calibration) and Mertens.

They are the comparison baselines of every quality table and the merges that need no weights.

- `debevec` / `robertson`: calibrate the camera response from the bracket itself (Debevec & Malik
  1997; Robertson et al. 2003), then merge to radiance. OpenCV's calibration and merge take 8-bit
  frames, so display-encoded frames of more bits are reduced to 8 bits for them. Linear frames
  (camera raw, float files) need no calibration: they get the same weighted merge with an identity
  response, computed here in float. Without exposure times the ratios are estimated from the
  frames (`Bracket.ratios`), so a blind merge still yields radiance.
- `weighted`: `emvnet.merge.fusion`'s merge (the network's prior too) on the bracket's linearization
  (the fitted or fixed gamma for 2-4 frames; the response calibrated from the bracket from 5 frames
  with known times on, see `emvnet.merge.response`) after homography pre-alignment (`emvnet.merge.align`):
  noise-weighted, and a frame counts only where it agrees with the reference (no ghosts). OpenCV's
  calibration from three frames is often non-monotonic at the top (rainbow highlights, colour
  casts), so short brackets keep a gamma response. It is the merge that needs no weights:
  `auto`'s fallback, and the network engine's merge of brackets longer than it was trained on.
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
import torch

from emvnet.errors import BracketError
from emvnet.merge import align, fusion
from emvnet.merge.bracket import Bracket
from emvnet.merge.merger import ModelSpec

Method = Literal["debevec", "robertson"]


def _to_bgr8(rgb01: np.ndarray) -> np.ndarray:
    """[0, 1] RGB float -> OpenCV's uint8 BGR."""
    return np.ascontiguousarray(np.round(np.clip(rgb01, 0.0, 1.0) * 255.0).astype(np.uint8)[..., ::-1])


def _times(bracket: Bracket) -> np.ndarray:
    """Exposure times for OpenCV: the real ones, or blind ratios (reference = 1 s)."""
    if bracket.exposures is not None:
        return np.asarray(bracket.exposures, dtype=np.float32)
    return bracket.ratios.astype(np.float32)


def merge_weighted(bracket: Bracket, deghost: bool = True, prealign: bool = True) -> np.ndarray:
    """Weighted radiance merge in reference units (`emvnet.merge.fusion`, the network's prior too).

    Frames are first pre-aligned by homography (`emvnet.merge.align.prealign`) unless `prealign` is off;
    with `deghost`, frames that disagree with the reference (moving objects, residual shake) are
    down-weighted, so the reference's content wins where the scene changed. Long brackets (from
    `fusion.LONG_BRACKET` frames: tripod sequences, typically) use the noise-aware ghost test.
    """
    lin, clipped = bracket.linear, bracket.saturated()
    ratios = np.asarray(bracket.ratios, dtype=np.float64)
    if prealign:
        lin, clipped, _ = align.prealign(lin, clipped, ratios, bracket.reference)
    order = [bracket.reference, *(i for i in range(bracket.n) if i != bracket.reference)]

    def stacked(x: np.ndarray) -> torch.Tensor:  # (n, H, W, C) -> (1, n, C, H, W), reference first
        return torch.from_numpy(np.ascontiguousarray(x[order])).permute(0, 3, 1, 2)[None].float()

    ratio_t = torch.from_numpy(ratios[order]).float()[None]
    with torch.inference_mode():
        hdr = fusion.merge(stacked(lin), stacked(clipped), ratio_t, deghost=deghost)  # (1, C, H, W)
    return np.ascontiguousarray(hdr[0].permute(1, 2, 0).numpy(), dtype=np.float32)


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
            return merge_weighted(bracket, deghost=False, prealign=False)
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
