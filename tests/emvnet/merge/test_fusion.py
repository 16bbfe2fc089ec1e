"""The weighted, deghosted merge (`emvnet.merge.fusion`): noise weighting, ghosts, long brackets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.synth import ldr_bracket, radiance_scene

from emvnet.evaluation.metrics import psnr_mu
from emvnet.merge import fusion
from emvnet.merge.bracket import make_bracket
from emvnet.merge.classical import merge_weighted


def _tensors(lin: np.ndarray, ratios: list[float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n, H, W, C) linear frames, the reference first -> the (1, n, C, H, W) inputs of `fusion`."""
    x = torch.from_numpy(lin).permute(0, 3, 1, 2)[None].float()
    return x, (x >= 0.99).float(), torch.tensor([ratios], dtype=torch.float32)


def test_noise_weighting_prefers_the_long_exposure() -> None:
    """Where nothing clips, a frame 4x longer gets about 4x the reference's weight (shot noise)."""
    level = np.full((1, 16, 16, 3), 0.2, np.float32)
    lin = np.concatenate([level, 4 * level])  # reference, then a 4x longer frame of the same scene
    w = fusion.merge_weights(*_tensors(lin, [1.0, 4.0]))
    ratio = float(w[0, 1].mean() / w[0, 0].mean())
    assert abs(ratio - 4.0) < 1e-3, ratio  # the hat weighs levels 0.2 and 0.8 alike


def test_ghost_is_rejected_and_reference_kept() -> None:
    """An object only in the long frame does not leak into the merge; static parts average."""
    rng = np.random.default_rng(0)
    scene = rng.uniform(0.02, 0.05, (1, 32, 32, 3)).astype(np.float32)
    ref, long = scene.copy(), 4 * scene
    long[0, 8:24, 8:24] = 0.9  # a bright object crosses the long frame only
    out = fusion.merge(*_tensors(np.concatenate([ref, long]), [1.0, 4.0]))[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out[10:22, 10:22], scene[0, 10:22, 10:22], rtol=0.02)
    np.testing.assert_allclose(out[28:, 28:], scene[0, 28:, 28:], rtol=1e-4)


def test_reference_weight_has_a_floor_in_short_brackets_only() -> None:
    """In the deep shadows the reference keeps REFERENCE_FLOOR of weight where it does not clip,
    so a longer frame the ghost test half-rejects cannot take the pixel over; long brackets (the
    noise-aware test) and clipped references get no floor."""
    ref = np.full((1, 8, 8, 3), 0.003, np.float32)  # deep shadow: hat ~0.02
    others = [ref * 4, ref * 16]
    w = fusion.merge_weights(*_tensors(np.concatenate([ref, *others]), [1.0, 4.0, 16.0]), deghost=False)
    assert torch.allclose(w[0, 0], torch.tensor(fusion.REFERENCE_FLOOR))
    assert float(fusion.hat(torch.tensor(0.003))) < fusion.REFERENCE_FLOOR / 4
    n = fusion.LONG_BRACKET
    lin = np.concatenate([ref * 2.0**k for k in range(n)])
    w = fusion.merge_weights(*_tensors(lin, [2.0**k for k in range(n)]), deghost=False)
    assert torch.allclose(w[0, 0], fusion.hat(torch.tensor(0.003)), atol=1e-6)
    clipped = np.concatenate([np.ones_like(ref), ref * 0.25])
    w = fusion.merge_weights(*_tensors(clipped, [1.0, 0.25]), deghost=False)
    assert float(w[0, 0].max()) < 1e-3  # only the 1e-4 fallback


def test_all_clipped_or_black_pixels_stay_finite() -> None:
    """Every frame clipped -> the shortest frame's value; every frame black -> 0, never NaN."""
    lin = np.stack([np.ones((4, 4, 3), np.float32), np.ones((4, 4, 3), np.float32)])
    lin[:, :2] = 0.0
    out = fusion.merge(*_tensors(lin, [1.0, 0.5]))
    assert torch.isfinite(out).all()
    assert torch.allclose(out[0, :, 2:], torch.tensor(2.0))
    assert torch.allclose(out[0, :, :2], torch.tensor(0.0))


def test_long_noisy_bracket_keeps_its_clean_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """A noisy tripod bracket of 7 exposures: the noise-aware ghost test (long brackets) lets the
    clean long frames average the reference's noise away, where the fixed tolerance rejects them,
    and an object that moved in one frame still stays out."""
    scene = radiance_scene(96, 128, seed=3)
    times = [2.0**k for k in range(-3, 4)]
    frames = ldr_bracket(scene, times, noise=0.01, seed=1)
    moved = scene.copy()
    moved[20:50, 30:70] = scene[50:80, 80:120]  # the object sits elsewhere in the x2 frame
    frames[4] = ldr_bracket(moved, times[4:5], noise=0.01, seed=2)[0]
    bracket = make_bracket(frames, times, reference=3)
    assert bracket.n >= fusion.LONG_BRACKET
    aware = merge_weighted(bracket)
    ghosted = merge_weighted(bracket, deghost=False)
    monkeypatch.setattr(fusion, "LONG_BRACKET", 99)  # the fixed tolerance of short brackets
    fixed = merge_weighted(bracket)
    assert psnr_mu(aware, scene) > psnr_mu(fixed, scene) + 0.5  # measured: 30.85 vs 29.88 dB
    region = (slice(24, 46), slice(34, 66))
    # measured: 36.2 vs 16.8 dB where the object moved
    assert psnr_mu(aware[region], scene[region]) > psnr_mu(ghosted[region], scene[region]) + 10.0


def test_where_the_reference_clips_every_channel_comes_from_one_instant() -> None:
    """The reference clips in red only; the other frame saw something darker there (it moved), so
    it contradicts the reference. Neither a mix of channels from the two frames (the colour
    speckle of sunlit water) nor the other frame's moved object (a second copy of it) may appear:
    the reference's own colour fills the pixel, every channel from one instant."""
    ref = np.full((1, 8, 8, 3), 0.3, np.float32)
    ref[0, 2:6, 2:6] = (1.0, 0.6, 0.6)  # clipped in red
    other = np.full((1, 8, 8, 3), 0.15, np.float32)  # half the exposure: consistent with 0.3...
    other[0, 2:6, 2:6] = (0.2, 0.05, 0.05)  # ...except where the scene changed
    lin = np.concatenate([ref, other])
    x = torch.from_numpy(lin).permute(0, 3, 1, 2)[None]
    clipped = (x >= 0.99).float()  # per channel: the reference's red only
    out = fusion.merge(x, clipped, torch.tensor([[1.0, 0.5]]))[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out[3:5, 3:5], np.broadcast_to([1.0, 0.6, 0.6], (2, 2, 3)), rtol=0.02)
    np.testing.assert_allclose(out[0, 0], [0.3, 0.3, 0.3], rtol=1e-3)  # agreeing pixels average


def test_where_the_shortest_frame_agrees_with_a_clipped_reference_it_fills_the_highlight() -> None:
    """A highlight the reference clips and a shorter frame sees brighter than the clip level:
    that frame is consistent, so the highlight's radiance comes from it."""
    ref = np.full((1, 8, 8, 3), 1.0, np.float32)
    short = np.full((1, 8, 8, 3), 0.8, np.float32)  # x4 shorter: radiance 3.2, above the clip
    lin = np.concatenate([ref, short])
    x = torch.from_numpy(lin).permute(0, 3, 1, 2)[None]
    out = fusion.merge(x, (x >= 0.99).float(), torch.tensor([[1.0, 0.25]]))
    assert torch.allclose(out, torch.tensor(3.2), rtol=1e-3)


def test_channels_of_a_pixel_share_one_weight() -> None:
    """A frame whose red nears clipping counts less in green and blue too: the merge keeps one
    frame's hue per pixel instead of taking red from one frame and blue from another."""
    ref = np.full((1, 4, 4, 3), 0.2, np.float32)
    long = np.full((1, 4, 4, 3), 0.8, np.float32)
    long[..., 0] = 0.97  # red near clipping in the 4x frame
    w = fusion.merge_weights(*_tensors(np.concatenate([ref, long]), [1.0, 4.0]), deghost=False)
    assert w.shape[2] == 1
