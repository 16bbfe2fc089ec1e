"""Optional global pre-alignment: a homography per frame for motion beyond the volume's window.

The matching volume searches motions inside a fixed window (36 px for the paper variants, 40 px for
the fast ones). A handheld bracket often moves more than that as a whole; a homography estimated on
the frames (ORB features + RANSAC, refined by ECC unless `method="orb"`; ECC brings the corner
error of a 40 px shift from ~2 px to ~0.03 px for ~25 ms more at 480x320) removes the global part, and the
volume handles what is left (parallax, moving objects).

Frames are compared in the reference's exposure: each frame is divided by its ratio t_i / t_ref and
clipped before gamma encoding, so a long and a short exposure look alike where both are valid.
Pixels a warp brings in from outside the frame are marked saturated, so the network and its prior
treat them as carrying no information. A homography that moves no corner by `min_shift` pixels or
more is not applied (resampling would only blur).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from emvnet.io.tonemap import ENCODING_GAMMA

log = logging.getLogger(__name__)

Method = Literal["orb", "ecc"]
COARSE_SIDE = 512  # features find a global motion on a copy this size (a few ms)
MAX_SIDE = 1024  # ECC refines on a copy this size: global motion does not need every pixel
MIN_INLIERS = 40  # fewer RANSAC inliers than this is no evidence of a global motion
# Where the inliers' convex hull covers less than this share of the frame, a homography fit on a
# corner (the only unclipped part of a long exposure, say) may say nothing about the rest: it is
# taken only if it brings the frames clearly closer than no warp does (`_closer`). The test alone (every
# fit below 25 % refused) cost 0.8 dB on 256 px training crops, where features are few.
MIN_COVERAGE = 0.25
# ... and it must cut the mean difference by this factor at least. Seen with `emvnet eval data/dev`
# and on validation crops: false fits on the 16-exposure tripod captures give 1.2x to 69x the
# difference of no warp; true shakes 0.25x to 0.7x; near 1x the motion is too small to matter.
CLOSER = 0.9
ECC_MAX_CHANGE = 4.0  # px (estimation scale): ECC moving a corner further than this has diverged


@dataclass(frozen=True)
class Alignment:
    homography: np.ndarray | None  # (3, 3) maps reference pixels to frame pixels; None = untouched
    inliers: int
    shift: float  # largest corner displacement in pixels


def _gray8(lin: np.ndarray, ratio: float, ceiling: float, scale: float) -> np.ndarray:
    """Exposure-normalized, gamma-encoded 8-bit luminance of a linear (H, W, C) frame.

    Both frames are clipped at the same `ceiling` (reference units) so that what clips in one
    clips in the other, then stretched back to [0, 1].
    """
    mean = np.full((1, lin.shape[2]), 1 / (lin.shape[2] * ratio), np.float32)
    y = cv2.transform(lin, mean)  # the channel mean (H, W) over the ratio, 30x faster than numpy's
    img = np.power(np.clip(y / ceiling, 0.0, 1.0), 1 / ENCODING_GAMMA)
    img8 = np.round(img * 255).astype(np.uint8)
    if scale != 1.0:
        img8 = cv2.resize(img8, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return img8


def _corner_distance(a: np.ndarray, b: np.ndarray, h: int, w: int) -> float:
    corners = np.array([[[0, 0], [w, 0], [0, h], [w, h]]], dtype=np.float64)
    return float(np.abs(cv2.perspectiveTransform(corners, a) - cv2.perspectiveTransform(corners, b)).max())


def _corner_shift(hom: np.ndarray, h: int, w: int) -> float:
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], dtype=np.float64)
    moved = cv2.perspectiveTransform(corners[None], hom)[0]
    return float(np.abs(moved - corners).max())


def _scaled(hom: np.ndarray, scale: float) -> np.ndarray:
    """A homography of full-resolution pixels expressed on a grid `scale` times as fine."""
    s = np.diag([scale, scale, 1.0])
    return s @ hom @ np.linalg.inv(s)


def _feature_homography(src: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray | None, int]:
    """ORB matches + RANSAC on 8-bit images: (homography ref px -> src px, inliers)."""
    orb = cv2.ORB.create(nfeatures=4000)
    kp_ref, des_ref = orb.detectAndCompute(ref, None)
    kp_src, des_src = orb.detectAndCompute(src, None)
    if des_ref is None or des_src is None or len(kp_ref) < MIN_INLIERS or len(kp_src) < MIN_INLIERS:
        return None, 0
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(des_ref, des_src)
    if len(matches) < MIN_INLIERS:
        return None, len(matches)
    p_ref = np.array([kp_ref[m.queryIdx].pt for m in matches], dtype=np.float32)
    p_src = np.array([kp_src[m.trainIdx].pt for m in matches], dtype=np.float32)
    hom, inl = cv2.findHomography(p_ref, p_src, cv2.RANSAC, 3.0)
    inliers = int(inl.sum()) if inl is not None else 0
    if hom is None or inliers < MIN_INLIERS:
        return None, inliers
    hom = np.asarray(hom, dtype=np.float64)
    hull = cv2.convexHull(p_ref[inl.ravel() > 0])
    coverage = cv2.contourArea(hull) / float(ref.shape[0] * ref.shape[1])
    if coverage < MIN_COVERAGE and not _closer(src, ref, hom):
        log.info(
            "alignment: inliers cover %.0f %% of the frame and the warp matches worse than none; "
            "no global motion taken",
            100 * coverage,
        )
        return None, inliers
    return hom, inliers


def _closer(src: np.ndarray, ref: np.ndarray, hom: np.ndarray) -> bool:
    """Whether warping `src` by `hom` (ref px -> src px) brings it closer to `ref` than no warp.

    Mean absolute difference of the 8-bit images over the pixels the warp keeps inside the frame,
    the same pixels for both: a false homography (fit on a corner, extrapolated) moves the rest of
    the picture away from the reference; a true one brings it in.
    """
    h, w = ref.shape
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpPerspective(src, hom, (w, h), flags=flags).astype(np.float32)
    inside = cv2.warpPerspective(np.ones((h, w), np.uint8), hom, (w, h), flags=flags) > 0
    if inside.mean() < MIN_COVERAGE:
        return False
    ref_f = ref.astype(np.float32)
    moved = float(np.abs(warped - ref_f)[inside].mean())
    still = float(np.abs(src.astype(np.float32) - ref_f)[inside].mean())
    return moved < CLOSER * still


def _refine_ecc(src: np.ndarray, ref: np.ndarray, hom: np.ndarray) -> np.ndarray:
    """ECC refinement of a homography on 8-bit images; the input back where ECC fails or diverges."""
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-5)
    try:
        everywhere = np.full(ref.shape, 255, np.uint8)
        init = hom.astype(np.float32)
        _, refined = cv2.findTransformECC(ref, src, init, cv2.MOTION_HOMOGRAPHY, criteria, everywhere, 5)
    except cv2.error:
        log.info("ECC did not converge; keeping the feature homography")
        return hom
    refined = np.asarray(refined, dtype=np.float64)
    if _corner_distance(refined, hom, *ref.shape) >= ECC_MAX_CHANGE:  # far from RANSAC: diverged
        return hom
    return refined


def estimate(
    frame: np.ndarray, reference: np.ndarray, ratio: float, method: Method = "ecc", min_shift: float = 0.0
) -> Alignment:
    """Homography from reference pixels to `frame` pixels (both linear (H, W, C); ratio t_i / t_ref).

    Features on a copy of at most COARSE_SIDE pixels decide whether there is a global motion at all
    (cheap); only a motion of `min_shift` pixels or more is refined by ECC on MAX_SIDE pixels.
    """
    h, w = reference.shape[:2]
    ceiling = min(1.0, 1.0 / ratio)  # the lower of the two clipping levels, in reference units
    coarse = min(1.0, COARSE_SIDE / max(h, w))
    hom, inliers = _feature_homography(
        _gray8(frame, ratio, ceiling, coarse), _gray8(reference, 1.0, ceiling, coarse)
    )
    if hom is None:
        return Alignment(None, inliers, 0.0)
    hom = _scaled(hom, 1.0 / coarse)  # full-resolution pixels
    shift = _corner_shift(hom, h, w)
    if method == "ecc" and shift >= min_shift:
        fine = min(1.0, MAX_SIDE / max(h, w))
        src, ref = _gray8(frame, ratio, ceiling, fine), _gray8(reference, 1.0, ceiling, fine)
        hom = _scaled(_refine_ecc(src, ref, _scaled(hom, fine)), 1.0 / fine)
        shift = _corner_shift(hom, h, w)
    return Alignment(hom, inliers, shift)


def apply(frame: np.ndarray, clipped: np.ndarray, hom: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Resample a frame (H, W, C) float and its clip mask (H, W, C) bool onto the reference grid."""
    h, w = frame.shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    out = cv2.warpPerspective(frame, hom, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpPerspective(
        np.ones((h, w), np.uint8), hom, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    )
    mask = cv2.warpPerspective(
        clipped.astype(np.uint8), hom, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    )
    if mask.ndim == 2:
        mask = mask[..., None]
    mask = (mask > 0) | (inside[..., None] == 0)  # outside the frame: no information
    return out.reshape(frame.shape).astype(np.float32), mask


def chain_order(ratios: np.ndarray, reference: int) -> list[tuple[int, int]]:
    """(frame, anchor) pairs in the order frames are aligned: outward from the reference by
    exposure, each against its neighbour one step nearer the reference (already aligned)."""
    order = sorted(range(len(ratios)), key=lambda i: (float(ratios[i]), i))
    at = order.index(reference)
    pairs = [(order[k], order[k + 1]) for k in range(at - 1, -1, -1)]
    pairs += [(order[k], order[k - 1]) for k in range(at + 1, len(order))]
    return pairs


def prealign(
    lin: np.ndarray,
    clipped: np.ndarray,
    ratios: np.ndarray,
    reference: int,
    method: Method = "ecc",
    min_shift: float = 2.0,
) -> tuple[np.ndarray, np.ndarray, list[Alignment]]:
    """Warp every non-reference frame onto the reference where a reliable global motion is found.

    lin (n, H, W, C) float32 linear, clipped (n, H, W, C) bool, ratios (n,) t_i / t_ref.
    Frames are chained (`chain_order`): each is matched against its neighbour in exposure on the
    reference grid, not against the reference itself, so the exposures compared never differ by
    more than one step of the bracket. Matched straight against the reference, a frame 4 stops
    away shares only the reference's darkest or brightest levels with it, and on the dev set's
    16-exposure captures that gave false homographies (54 inliers, a 52 px "shift" on a tripod).
    """
    lin, clipped = lin.copy(), clipped.copy()
    found = [Alignment(None, 0, 0.0) for _ in range(lin.shape[0])]
    for i, anchor in chain_order(np.asarray(ratios, dtype=np.float64), reference):
        al = estimate(lin[i], lin[anchor], float(ratios[i] / ratios[anchor]), method, min_shift)
        if al.homography is not None and al.shift >= min_shift:
            lin[i], clipped[i] = apply(lin[i], clipped[i], al.homography)
        else:
            al = Alignment(None, al.inliers, al.shift)
        found[i] = al
    return lin, clipped, found
