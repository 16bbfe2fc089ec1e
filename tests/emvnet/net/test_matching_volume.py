"""Matching volume (Sec. 3.2): the split 1x1 convolution, candidate sets and the ablation switches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from emvnet.net.config import VolumeConfig, variant
from emvnet.net.matching_volume import (
    MatchingVolume,
    exposure_gains,
    motion_grid,
    reference_first,
)

SMALL = VolumeConfig(down=1, match_channels=4, volume_channels=5, motion_window=6, motion_step=2)


def _volume(config: VolumeConfig, seed: int = 0) -> MatchingVolume:
    torch.manual_seed(seed)
    return MatchingVolume(6, config, volume_down=1).eval()


def _feats(n: int = 3, h: int = 9, w: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    feats = torch.rand(2, n, 6, h, w, generator=gen)
    sat = (torch.rand(2, n, 1, h, w, generator=gen) > 0.7).float()
    return feats, sat


def test_paper_candidate_sets() -> None:
    """The paper variant searches 12 x 12 = 144 motions over 36 px every 3 px and 6 exposures."""
    vc = variant("emvnet-paper-rgb").volume
    assert vc.n_motions == 144 and len(vc.exposures) == 6
    offsets = torch.tensor(vc.motion_offsets)
    assert float(offsets.max() - offsets.min()) == 33.0 and float(offsets.mean()) == 0.0
    assert torch.allclose(torch.diff(offsets), torch.full((11,), 3.0))
    assert motion_grid(vc).shape == (144, 2)


def test_split_convolution_equals_the_explicit_comparison() -> None:
    """V equals a 1x1 convolution over the full [F', F_ref, |F' - F_ref|, F' * F_ref] comparison."""
    config = VolumeConfig(**{**SMALL.__dict__, "use_mask": False})
    mv = _volume(config)
    feats, sat = _feats()
    gains = torch.tensor([[[0.5, 2.0], [4.0, 0.25]], [[1.0, 8.0], [2.0, 16.0]]])  # (B, n-1, N_E)
    with torch.no_grad():
        got = mv(feats, sat, gains)
        full = mv.reference_volume(feats, gains)  # (B, 4C_m, D, h, w)
        weight = torch.cat(
            [mv.w_src.weight[..., None], mv.w_ref.weight[..., None], mv.w_diff.weight, mv.w_prod.weight], 1
        )
        want = F.conv3d(full, weight, mv.w_ref.bias)
    assert got.shape == (2, 5, 2 * 9 * 2, 9, 11)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_motion_switch_keeps_only_zero_motion() -> None:
    """Motion off: N_M = 1, and the volume is the zero-motion slice of the motion-on volume."""
    feats, sat = _feats()
    gains = torch.full((2, 2, 1), 2.0)
    on, off = _volume(SMALL), _volume(VolumeConfig(**{**SMALL.__dict__, "use_motion": False}))
    off.load_state_dict(on.state_dict())
    with torch.no_grad():
        v_on, v_off = on(feats, sat, gains), off(feats, sat, gains)
    assert SMALL.n_motions == 9 and v_off.shape[2] == 2
    zero = int((motion_grid(SMALL).abs().sum(1) == 0).nonzero())
    torch.testing.assert_close(v_off, v_on.view(2, 5, 2, 9, 9, 11)[:, :, :, zero])


def test_exposure_switch_uses_gain_one() -> None:
    """Exposure off: one candidate of gain 1 whatever the ratios and blindness."""
    ratios = torch.tensor([[1.0, 0.25, 4.0]])
    off = VolumeConfig(use_exposure=False)
    assert torch.equal(exposure_gains(off, ratios, blind=True), torch.ones(1, 2, 1))
    assert torch.equal(exposure_gains(off, ratios, blind=False), torch.ones(1, 2, 1))


def test_known_ratios_narrow_the_exposure_search() -> None:
    """Known times: N_E = 1 at t_ref / t_i; blind: the paper's 6 candidates."""
    ratios = torch.tensor([[1.0, 0.25, 4.0]])
    known = exposure_gains(SMALL, ratios, blind=False)
    torch.testing.assert_close(known, torch.tensor([[[4.0], [0.25]]]))
    assert exposure_gains(SMALL, ratios, blind=True).shape == (1, 2, 6)


def test_mask_switch_changes_only_saturated_pixels() -> None:
    """The mask thresholds the gain where the frame clips: volumes agree where nothing clips."""
    config = VolumeConfig(**{**SMALL.__dict__, "use_motion": False})
    masked, unmasked = _volume(config), _volume(VolumeConfig(**{**config.__dict__, "use_mask": False}))
    unmasked.load_state_dict(masked.state_dict())
    feats, sat = _feats()
    gains = torch.full((2, 2, 1), 4.0)
    with torch.no_grad():
        diff = (masked(feats, sat, gains) - unmasked(feats, sat, gains)).abs().amax(1)  # (B, D, h, w)
    clipped = sat[:, 1:, 0] > 0  # (B, n-1, h, w): D = n-1 here
    assert float(diff[~clipped].max()) == 0.0
    assert float(diff[clipped].min()) > 0.0


def test_dense_motion_searches_every_pixel() -> None:
    """Dense motion (Table 3 row 6) samples every input pixel of the window."""
    dense = VolumeConfig(dense_motion=True)
    assert dense.n_motions == 36 * 36
    assert VolumeConfig().n_motions == 144


def test_pooled_exposures_keep_depth_independent_of_n_e() -> None:
    """With pooled exposures D = (n-1) N_M for known and blind gains alike."""
    mv = _volume(VolumeConfig(**{**SMALL.__dict__, "pool_exposures": True}))
    feats, sat = _feats()
    with torch.no_grad():
        known = mv(feats, sat, torch.full((2, 2, 1), 2.0))
        blind = mv(feats, sat, torch.tensor(SMALL.exposures).expand(2, 2, 6))
    assert known.shape == blind.shape == (2, 5, 2 * 9, 9, 11)


def test_volume_downsamples_features() -> None:
    """down = 4 builds the volume on a 4x coarser grid (ceil for odd sizes)."""
    torch.manual_seed(0)
    mv = MatchingVolume(
        6, VolumeConfig(down=4, match_channels=4, volume_channels=4, motion_window=8, motion_step=4), 4
    )
    feats, sat = _feats(2, 17, 23)
    with torch.no_grad():
        vol = mv(feats, sat, torch.ones(2, 1, 1))
    assert vol.shape == (2, 4, 4, 5, 6)


@pytest.mark.parametrize("ref", [0, 1, 2])
def test_reference_first(ref: int) -> None:
    """The reference moves to index 0, the others keep their order."""
    x = torch.arange(3.0).view(1, 3, 1, 1, 1).expand(1, 3, 1, 4, 4)
    out = reference_first(x, torch.tensor([ref]))
    order = [ref] + [i for i in range(3) if i != ref]
    assert out[0, :, 0, 0, 0].tolist() == [float(i) for i in order]
