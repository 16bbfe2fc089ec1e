"""The matching volume (Sec. 3.2, Eq. 1, Fig. 3): motion x exposure x frame comparisons.

For every non-reference frame i, candidate motion M and candidate exposure gain E, the alignment
function C(F_i, M, E) shifts the features by M and multiplies them by E, with the saturation mask of
the input frame guiding the multiply: where frame i clips, its features carry no radiance to scale,
so the gain there is thresholded to 1 (Sec. 3.2, second bullet). Each aligned map F' is compared with
the reference F_ref by concatenation, absolute difference and correlation, O = [F', F_ref, |F' -
F_ref|, F' * F_ref] (4C channels), and a 1x1 convolution maps O to the volume's channels.

Cost (ARCHITECTURE.md, model notes). The 1x1 convolution splits into one term per part:

    V = g * (shift(W_a F_i) + W_d (shift(F_i) * F_ref)) + W_b F_ref + W_c |g * shift(F_i) - F_ref|

where g is the per-pixel gain (a scalar per pixel, so it commutes with the channel mixing). The
F' term is computed once per frame and shifted, the F_ref term once, the product term once per
motion; only the difference term costs per (motion, exposure) candidate, and the full 4C-wide O is
never materialized. Features are compressed to `match_channels` on a grid `down` times coarser than
the features before any of this.

Depth: D = (n - 1) x N_M x N_E, frame-major, then motion, then exposure. With known exposure times
N_E = 1 at the known gain t_ref / t_i; blind mode searches `VolumeConfig.exposures`. With
`pool_exposures` the exposure axis is folded before the 3D convolutions: the difference term enters
as its mean and its minimum over E (two 1x1 weights), the gain-linear terms with the mean gain, so
the hourglasses see D = (n - 1) x N_M whatever N_E is, and blind mode never stores N_M x N_E maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from emvnet.net.config import VolumeConfig
from emvnet.net.layers.blocks import shift_stack


def motion_grid(config: VolumeConfig) -> torch.Tensor:
    """(N_M, 2) candidate motions (dx, dy) in input pixels, row-major over dy then dx."""
    axis = torch.tensor(config.motion_offsets, dtype=torch.float32)
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)  # (N_M, 2)


def exposure_gains(config: VolumeConfig, ratios: torch.Tensor, blind: bool) -> torch.Tensor:
    """(B, n-1, N_E) gains for the non-reference frames; frame 0 of `ratios` (B, n) is the reference.

    Known times: N_E = 1 at t_ref / t_i. Blind: the candidate set. Exposure switched off: gain 1.
    """
    b, n = ratios.shape
    if not config.use_exposure:
        return torch.ones(b, n - 1, 1, dtype=torch.float32, device=ratios.device)
    if blind:
        cand = torch.tensor(config.exposures, dtype=torch.float32, device=ratios.device)
        return cand.expand(b, n - 1, -1).contiguous()  # (B, n-1, N_E)
    return (1.0 / ratios[:, 1:].float()).unsqueeze(-1)  # (B, n-1, 1)


def reference_first(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Reorder the frame axis of x (B, n, ...) so that frame `reference[b]` comes first."""
    b, n = x.shape[:2]
    idx = torch.arange(n, device=x.device).expand(b, n)
    ref = reference.view(b, 1)  # (B, 1)
    order = torch.where(idx == 0, ref, torch.where(idx <= ref, idx - 1, idx))  # (B, n)
    gather = order.view(b, n, *([1] * (x.dim() - 2))).expand_as(x)  # (B, n, ...)
    return torch.gather(x, 1, gather)


class MatchingVolume(nn.Module):
    def __init__(self, feat_channels: int, config: VolumeConfig, volume_down: int) -> None:
        super().__init__()
        self.config = config
        cm, cv = config.match_channels, config.volume_channels
        layers: list[nn.Module] = [nn.Conv2d(feat_channels, cm, 3, padding=1)]
        s = config.down
        while s > 1:  # one stride-2 convolution per halving
            layers += [nn.ReLU(inplace=True), nn.Conv2d(cm, cm, 3, stride=2, padding=1)]
            s //= 2
        self.compress = nn.Sequential(*layers)
        self.w_src = nn.Conv2d(cm, cv, 1, bias=False)  # F' part
        self.w_ref = nn.Conv2d(cm, cv, 1)  # F_ref part (carries the bias)
        self.w_diff = nn.Conv3d(cm, cv, 1, bias=False)  # |F' - F_ref| part
        self.w_prod = nn.Conv3d(cm, cv, 1, bias=False)  # F' * F_ref part
        # Pooled exposures: the difference term enters as its mean and its minimum over E.
        self.w_diff_min = nn.Conv3d(cm, cv, 1, bias=False) if config.pool_exposures else None
        # Motions in volume pixels: the volume grid is `volume_down` input pixels wide.
        self.register_buffer("offsets", motion_grid(config) / volume_down, persistent=False)
        self.offsets: torch.Tensor

    @property
    def n_motions(self) -> int:
        return int(self.offsets.shape[0])

    def forward(self, feats: torch.Tensor, sat: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
        """feats (B, n, C, h, w), reference first; sat (B, n, 1, H, W) in {0, 1}; gains (B, n-1, N_E).

        Returns the volume (B, C_v, D, h_v, w_v), D = (n-1) N_M N_E, or (n-1) N_M when pooled.
        """
        b, n = feats.shape[:2]
        g = self.compress(feats.flatten(0, 1))  # (B*n, C_m, h_v, w_v)
        hv, wv = g.shape[-2:]
        g = g.view(b, n, -1, hv, wv)  # (B, n, C_m, h_v, w_v)
        ref = g[:, 0]  # (B, C_m, h_v, w_v)
        ref_term = self.w_ref(ref)[:, :, None]  # (B, C_v, 1, h_v, w_v)
        # Fraction of each volume pixel that clips in the input frame: the mask guiding the gain.
        frac = F.adaptive_avg_pool2d(sat[:, 1:].flatten(0, 1).to(g.dtype), (hv, wv))  # (B*(n-1), 1, h_v, w_v)
        frac = frac.view(b, n - 1, 1, hv, wv)  # (B, n-1, 1, h_v, w_v)

        parts = []
        for i in range(1, n):
            src = g[:, i]  # (B, C_m, h_v, w_v)
            shifted = shift_stack(src, self.offsets)  # (B, C_m, N_M, h_v, w_v)
            src_term = shift_stack(self.w_src(src), self.offsets)  # (B, C_v, N_M, h_v, w_v)
            linear = src_term + self.w_prod(shifted * ref[:, :, None])  # (B, C_v, N_M, h_v, w_v)
            keep = None
            if self.config.use_mask:  # 1 where frame i is unclipped: there the gain applies in full
                keep = 1.0 - shift_stack(frac[:, i - 1], self.offsets)  # (B, 1, N_M, h_v, w_v)
            e = gains[:, i - 1].to(g.dtype)  # (B, N_E)
            if self.w_diff_min is None:
                parts.append(self._full(shifted, ref, linear, ref_term, e, keep))  # (B, C_v, N_M N_E, h, w)
            else:
                parts.append(self._pooled(shifted, ref, linear, ref_term, e, keep))  # (B, C_v, N_M, h, w)
        return torch.cat(parts, 2)  # (B, C_v, D, h_v, w_v)

    @staticmethod
    def _gain(e: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """Per-pixel gain (B, 1, N_M, h, w) or (B, 1, 1, 1, 1): e where unclipped, 1 where clipped."""
        e = e.view(-1, 1, 1, 1, 1)  # (B, 1, 1, 1, 1)
        return e if keep is None else 1.0 + (e - 1.0) * keep

    def _full(
        self, shifted: Tensor, ref: Tensor, linear: Tensor, ref_term: Tensor, e: Tensor, keep: Tensor | None
    ) -> Tensor:
        n_e = e.shape[1]
        gain = torch.stack([self._gain(e[:, k], keep) for k in range(n_e)], 3)  # (B, 1, N_M|1, N_E, h|1, w|1)
        aligned = gain * shifted[:, :, :, None]  # (B, C_m, N_M, N_E, h_v, w_v)
        diff = (aligned - ref[:, :, None, None]).abs().flatten(2, 3)  # (B, C_m, N_M N_E, h_v, w_v)
        diff_term = self.w_diff(diff).unflatten(2, (self.n_motions, n_e))  # (B, C_v, N_M, N_E, h_v, w_v)
        vol = gain * linear[:, :, :, None] + ref_term[:, :, :, None] + diff_term  # (B, C_v, N_M, N_E, h, w)
        return vol.flatten(2, 3)  # (B, C_v, N_M N_E, h_v, w_v)

    def _pooled(
        self, shifted: Tensor, ref: Tensor, linear: Tensor, ref_term: Tensor, e: Tensor, keep: Tensor | None
    ) -> Tensor:
        # One exposure at a time with running mean and min: the (N_M x N_E) difference is never stored.
        assert self.w_diff_min is not None
        n_e = e.shape[1]
        total, low, gain_sum = None, None, None
        for k in range(n_e):
            gain = self._gain(e[:, k], keep)  # (B, 1, N_M, h_v, w_v) or (B, 1, 1, 1, 1)
            diff = (gain * shifted - ref[:, :, None]).abs_()  # (B, C_m, N_M, h_v, w_v)
            total = diff.clone() if total is None else total.add_(diff)
            low = diff if low is None else torch.minimum(low, diff)
            gain_sum = gain if gain_sum is None else gain_sum + gain
        assert total is not None and low is not None and gain_sum is not None
        vol = (gain_sum / n_e) * linear + ref_term  # (B, C_v, N_M, h_v, w_v)
        return vol + self.w_diff(total / n_e) + self.w_diff_min(low)  # (B, C_v, N_M, h_v, w_v)

    def reference_volume(self, feats: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
        """The explicit 4C-wide comparison O for checking the split (tests): (B, 4C_m, D, h_v, w_v).

        Unmasked; only for small inputs.
        """
        b, n = feats.shape[:2]
        g = self.compress(feats.flatten(0, 1))  # (B*n, C_m, h_v, w_v)
        hv, wv = g.shape[-2:]
        g = g.view(b, n, -1, hv, wv)  # (B, n, C_m, h_v, w_v)
        ref = g[:, 0]
        outs = []
        for i in range(1, n):
            shifted = shift_stack(g[:, i], self.offsets)  # (B, C_m, N_M, h_v, w_v)
            e = gains[:, i - 1].view(b, 1, 1, -1, 1, 1)  # (B, 1, 1, N_E, 1, 1)
            aligned = (e * shifted[:, :, :, None]).flatten(2, 3)  # (B, C_m, N_M N_E, h_v, w_v)
            r = ref[:, :, None].expand_as(aligned)
            outs.append(torch.cat([aligned, r, (aligned - r).abs(), aligned * r], 1))  # (B, 4C_m, ., h, w)
        return torch.cat(outs, 2)  # (B, 4C_m, D, h_v, w_v)
