"""Global pre-alignment: a homography recovers motion beyond the volume's window; static is untouched."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from emvnet.merge import align

FRAME = Path(__file__).resolve().parents[2] / "fixtures" / "brackets" / "frobisher" / "IMG_2601.jpg"


def _linear() -> np.ndarray:
    bgr = cv2.imread(str(FRAME))
    return np.power(bgr[..., ::-1].astype(np.float32) / 255, 2.2)


def _moved(lin: np.ndarray, hom: np.ndarray, gain: float) -> np.ndarray:
    h, w = lin.shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return np.clip(
        cv2.warpPerspective(lin, hom, (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT) * gain, 0, 1
    )


def test_large_shift_is_recovered_across_exposures() -> None:
    """A 40 px shift of a 4x darker frame is undone to within a pixel."""
    ref = _linear()
    truth = np.array([[1.0, 0.0, 40.0], [0.0, 1.0, -25.0], [0.0, 0.0, 1.0]])  # reference px -> frame px
    frame = _moved(ref, np.linalg.inv(truth), 0.25)  # frame(truth p) = ref(p) / 4
    lin = np.stack([frame, ref])
    clipped = lin >= 0.95**2.2
    out, mask, found = align.prealign(lin, clipped, np.array([0.25, 1.0]), reference=1)
    assert found[0].homography is not None and found[0].inliers >= align.MIN_INLIERS
    corners = np.array([[[100.0, 100.0], [300.0, 200.0]]])
    err = cv2.perspectiveTransform(corners, found[0].homography) - cv2.perspectiveTransform(corners, truth)
    assert float(np.abs(err).max()) < 1.0
    inner = (slice(40, -40), slice(60, -60))
    diff = np.abs(out[0][inner] / 0.25 - ref[inner])
    assert float(np.median(diff)) < 0.01
    assert mask[0][:, -30:].all()  # pixels brought in from outside the frame carry no information


def test_static_bracket_is_left_untouched() -> None:
    """Without global motion no frame is resampled."""
    ref = _linear()
    lin = np.stack([np.clip(ref * 4, 0, 1), ref])
    out, _, found = align.prealign(lin, lin >= 0.95**2.2, np.array([4.0, 1.0]), reference=1)
    assert found[0].homography is None
    assert np.array_equal(out, lin)


def test_featureless_frames_fall_back_to_identity() -> None:
    """Flat frames give no evidence of motion: nothing is warped and nothing fails."""
    lin = np.full((2, 64, 64, 3), 0.3, dtype=np.float32)
    out, _, found = align.prealign(lin, lin >= 1.0, np.array([1.0, 2.0]), reference=0)
    assert all(f.homography is None for f in found)
    assert np.array_equal(out, lin)


def test_prealignment_helps_the_merge_where_the_reference_clips() -> None:
    """With 40 px of global motion the untrained merge (its prior) is much closer to the truth pre-aligned."""
    from emvnet.frame import Frame
    from emvnet.merge.bracket import make_bracket
    from emvnet.merge.classical import merge_weighted
    from emvnet.net.engine import NetworkMerger

    rad = _linear() * 3.0  # radiance in reference units: the reference clips where rad > 1
    times = (0.25, 1.0, 4.0)
    moves = (
        np.array([[1.0, 0, 40], [0, 1, -25], [0, 0, 1]]),
        np.eye(3),
        np.array([[1.0, 0, -30], [0, 1, 20], [0, 0, 1]]),
    )
    frames = [
        Frame(
            np.power(_moved(rad, np.linalg.inv(m), t), 1 / 2.2).astype(np.float32), "display", "rgb", "png", 8
        )
        for m, t in zip(moves, times, strict=True)
    ]
    bracket = make_bracket(frames, times, reference=1)
    inner = (slice(48, -48), slice(64, -64))
    clipped = (rad[inner] > 1.2).any(axis=2)
    errors = {}
    for mode in ("off", "auto"):
        out = NetworkMerger.random("emvnet-fast-rgb", prealign=mode, precision="fp32").merge([bracket])[0]
        errors[mode] = float(np.abs(np.log((out[inner] + 1e-3) / (rad[inner] + 1e-3)))[clipped].mean())
        out = merge_weighted(bracket, prealign=mode == "auto")  # the classical merge aligns alike
        errors[f"weighted {mode}"] = float(
            np.abs(np.log((out[inner] + 1e-3) / (rad[inner] + 1e-3)))[clipped].mean()
        )
    assert clipped.sum() > 500
    assert errors["auto"] < 0.5 * errors["off"], errors
    assert errors["weighted auto"] < 0.5 * errors["weighted off"], errors
    # measured: network prior 1.08 off, 0.017 auto; weighted merge 1.06 off, ~0 auto


def test_chain_goes_outward_through_neighbours() -> None:
    """Each frame is matched against its neighbour one exposure step nearer the reference."""
    ratios = np.array([4.0, 0.25, 1.0, 16.0, 0.0625])  # frames in any order; reference = index 2
    assert align.chain_order(ratios, reference=2) == [(1, 2), (4, 1), (0, 2), (3, 0)]


def test_chained_alignment_reaches_a_far_exposure() -> None:
    """A frame 4 stops darker than the reference, shifted 30 px, is found through the frame between."""
    ref = _linear()
    truth = np.array([[1.0, 0.0, 30.0], [0.0, 1.0, 12.0], [0.0, 0.0, 1.0]])
    middle = _moved(ref, np.eye(3), 0.25)
    far = _moved(ref, np.linalg.inv(truth), 1 / 16)
    lin = np.stack([far, middle, ref])
    _, _, found = align.prealign(lin, lin >= 0.95**2.2, np.array([1 / 16, 0.25, 1.0]), reference=2)
    assert found[1].homography is None  # the middle frame did not move
    assert found[0].homography is not None
    corners = np.array([[[100.0, 100.0], [300.0, 200.0]]])
    err = cv2.perspectiveTransform(corners, found[0].homography) - cv2.perspectiveTransform(corners, truth)
    assert float(np.abs(err).max()) < 1.0


def test_homography_from_one_corner_is_taken_only_where_it_brings_the_frame_closer() -> None:
    """Features only in a small part of the frame (the unclipped corner of a long exposure, say):
    the fit (rough here: few inliers) is taken only because warping by it brings the frame
    closer to the reference than no warp."""
    ref = _linear()
    h, w = ref.shape[:2]
    corner = np.full_like(ref, 0.5)
    ch, cw = int(h * 0.45), int(w * 0.45)
    corner[:ch, :cw] = ref[:ch, :cw]  # texture in a fifth of the frame only
    truth = np.array([[1.0, 0.0, 6.0], [0.0, 1.0, 4.0], [0.0, 0.0, 1.0]])
    frame = _moved(corner, np.linalg.inv(truth), 1.0)
    lin = np.stack([frame, corner])
    _, _, found = align.prealign(lin, lin >= 1.0, np.array([1.0, 1.0]), reference=1)
    assert found[0].inliers >= align.MIN_INLIERS  # plenty of matches, all in the corner
    assert found[0].homography is not None
    warped, _ = align.apply(frame, frame >= 1.0, found[0].homography)
    inside = (slice(10, ch - 10), slice(10, cw - 10))
    before = np.abs(frame - corner)[inside].mean()
    assert np.abs(warped - corner)[inside].mean() < align.CLOSER * before


def _gray(lin: np.ndarray) -> np.ndarray:
    return np.round(np.clip(lin.mean(axis=2), 0.0, 1.0) ** (1 / 2.2) * 255).astype(np.uint8)


def test_a_warp_that_moves_a_still_picture_is_not_closer() -> None:
    """The tripod case: a false homography (a 20 px shift fit on a corner) moves every other part
    of a still picture away from the reference, so it is refused."""
    ref = _gray(_linear())
    false = np.array([[1.0, 0.0, 20.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert not align._closer(ref.copy(), ref, false)


def test_the_true_motion_is_closer() -> None:
    ref_lin = _linear()
    truth = np.array([[1.0, 0.0, 9.0], [0.0, 1.0, -5.0], [0.0, 0.0, 1.0]])
    src = _gray(_moved(ref_lin, np.linalg.inv(truth), 1.0))
    assert align._closer(src, _gray(ref_lin), truth)
    assert not align._closer(src, _gray(ref_lin), np.linalg.inv(truth))  # the wrong way round
