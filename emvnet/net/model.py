"""EMVNet: features -> matching volume -> stacked hourglass -> Y'', Y', Y (Sec. 3, Fig. 2; 4.3-4.4).

Inputs (all frames of a bracket, the reference first): linear frames in [0, 1] (1.0 = clipping),
their per-channel saturation masks, the exposure ratios t_i / t_ref and the volume's exposure gains.
Each frame is fed as [lin, lin ** (1/2.2), mask] (Kalantari-style: the encoded copy makes dark detail
visible to the convolutions). Output: linear HDR in the reference's units, aligned to the reference.

Structure, with the choices the paper leaves open:
- Features (Sec. 3.1): `layers.rrdb.FeatureExtractor`, one set of weights for every frame.
- Matching volume (Sec. 3.2): `matching_volume.MatchingVolume`, D = (n-1) x N_M x N_E candidates
  on compressed features at 1 / `volume_down` of the input.
- Aggregation (Sec. 3.3): 3 stacked hourglasses of dilated 3D convolutions. The paper does not say
  how a volume becomes an image; here each hourglass output gets a 3D score head, a softmax over the
  candidates of each frame (as PSMNet's soft-argmin turns a cost volume into disparity) gives the
  expected motion (a flow field, input pixels) and the probability-weighted volume (the matched
  context). A 2D decoder at feature resolution fuses the reference features, each frame's
  features warped by its flow and its context (mean and max over frames, so any n >= 2 works), and
  a sub-pixel convolution (pixel shuffle, Sec. 4.4 / 5.4.3) returns to the output resolution.
  Hourglass 1 and 2 give Y'' and Y' for training (Eq. 5); inference decodes only Y.
- Output prior: the decoder predicts a log-domain residual r on a classical merge of the frames
  warped by the network's flow, Y = (prior + eps) exp(r) - eps, clamped at 0. The last convolution
  starts at zero, so an untrained network already returns that merge and every output is
  non-negative. `config.prior` names the merge: "weighted" (`emvnet.merge.fusion`: noise-weighted by
  level and exposure, deghosted against the reference; every variant) or "reference" (the
  reference where it does not clip, the other frames where it does; checkpoints whose JSON names
  no prior were trained on it, `emvnet.net.checkpoint`). The weighted prior
  averages the long frame's clean shadows into the result instead of asking the residual to
  denoise the reference.
- Heads: RGB HDR (3 -> 3 channels), raw HDR (packed RGGB, 4 -> 4), E2E-ISP (packed RGGB in, display
  sRGB at twice the packed size out: an extra x2 in the sub-pixel convolution; the prior is the
  merge demosaiced bilinearly, white-balanced and through the house display curve, with the
  bracket's white point: `emvnet.merge.isp_prior`).

Variants (`config.py`; n = 3 frames, sizes relative to the input H x W; GMAC per megapixel counted
with torch's FlopCounterMode, known / blind exposure):

    variant      features                     volume (C_v=8)    D known/blind  hourglass  GMAC/MP
    paper-rgb    12 RRDB x 32, H x W          H/4, N_M=144      288 / 1728     3 x 32     6807 / 8060
    paper-raw    same, packed RGGB H x W      H/4, N_M=144      288 / 1728     3 x 32     1702 / 2016
    paper-isp    16 RRDB x 32, packed         H/4, N_M=144      288 / 1728     3 x 64     2348 / 3189
    fast-rgb     6 dw-RRDB x 16, H/4 (unsh.)  H/8, N_M=25, pool  50 / 50       3 x 16       21 / 21
    fast-raw     same, packed RGGB            H/8, N_M=25, pool  50 / 50       3 x 16      5.6 / 5.6
    fast-isp     same, packed RGGB            H/8, N_M=25, pool  50 / 50       3 x 32      7.5 / 7.5

The paper variants' ~7 TMAC/MP (nearly all in the full-resolution RRDB trunk) match the paper's
A100 figure (12 MP in 1.51 s is ~55 TMAC/s, a third of an A100's bf16 peak); they are constructible
and run on CPU at tens of seconds per megapixel. The volume sits at 1/4 of the input on 8 compressed
channels: at full resolution and 4C = 128 channels D = 1728 would need ~0.9 TB of activations per
megapixel. The fast variants (Sec. 5.4.3 asks for ~30x; a 2-core CPU needs ~300x) unshuffle x2 and
stride once more so the trunk runs at 1/4, use 5 x 5 motions every 8 px (one volume pixel; the soft
selection interpolates between them, the decoder and the global pre-alignment cover the rest) and
fold the exposure axis before the hourglasses, so blind mode costs what known mode costs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from emvnet.io.tonemap import ENCODING_GAMMA
from emvnet.merge import fusion
from emvnet.merge.isp_prior import display_curve, packed_to_rgb
from emvnet.net.config import ModelConfig, variant
from emvnet.net.layers.blocks import pad_to_multiple, warp
from emvnet.net.layers.hourglass import StackedHourglass
from emvnet.net.layers.rrdb import FeatureExtractor
from emvnet.net.matching_volume import MatchingVolume, exposure_gains, motion_grid

EPS = 1e-3  # offset of the log-domain residual: lets the output reach 0 and keeps log finite
MAX_LOG_RESIDUAL = 8.0  # e^8 ~ 3000: far beyond any real correction, guards against overflow


def _upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class Decoder(nn.Module):
    """One output head: fuse the aligned frames at feature resolution, sub-pixel up, add to the prior."""

    def __init__(self, feat: int, ctx: int, width: int, out_channels: int, scale: int) -> None:
        super().__init__()
        self.fuse = nn.Conv2d(2 * feat + ctx, width, 1)
        self.body = nn.Sequential(
            nn.Conv2d(feat + 2 * width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.out = nn.Conv2d(width, out_channels * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale) if scale > 1 else nn.Identity()
        nn.init.zeros_(self.out.weight)
        assert self.out.bias is not None, "the output convolution has a bias"
        nn.init.zeros_(self.out.bias)

    def forward(self, feats: torch.Tensor, flow: torch.Tensor, ctx: torch.Tensor, down: int) -> torch.Tensor:
        """feats (B, n, C, h, w); flow (B, n-1, 2, h_v, w_v) input px; ctx (B, C_v, n-1, h_v, w_v)."""
        b, n, _, h, w = feats.shape
        ref = feats[:, 0]  # (B, C, h, w)
        flow_f = _upsample(flow.flatten(0, 1), (h, w)) / down  # (B*(n-1), 2, h, w) feature px
        moved = warp(feats[:, 1:].flatten(0, 1), flow_f)  # (B*(n-1), C, h, w)
        ctx_f = _upsample(ctx.transpose(1, 2).flatten(0, 1), (h, w))  # (B*(n-1), C_v, h, w)
        ref_rep = ref.repeat_interleave(n - 1, 0)  # (B*(n-1), C, h, w)
        per_frame = F.relu(self.fuse(torch.cat([ref_rep, moved, ctx_f], 1)))  # (B*(n-1), W_d, h, w)
        per_frame = per_frame.view(b, n - 1, -1, h, w)  # (B, n-1, W_d, h, w)
        pooled = torch.cat([ref, per_frame.mean(1), per_frame.amax(1)], 1)  # (B, C + 2W_d, h, w)
        return self.shuffle(self.out(self.body(pooled)))  # (B, C_out, h*s, w*s)


class EMVNet(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        fc, vc, ac = config.features, config.volume, config.aggregation
        per_frame = config.in_channels * (3 if fc.gamma_input else 2)
        self.features = FeatureExtractor(
            per_frame, fc.filters, fc.growth, fc.n_rrdb, fc.depthwise, fc.unshuffle, fc.stride
        )
        self.volume = MatchingVolume(fc.filters, vc, config.volume_down)
        cv = vc.volume_channels
        self.aggregation = StackedHourglass(cv, ac.filters, ac.dilations, ac.n_hourglass)
        self.scores = nn.ModuleList(nn.Conv3d(cv, 1, 3, padding=1) for _ in range(ac.n_hourglass))
        scale = config.feature_down * config.out_scale
        self.decoders = nn.ModuleList(
            Decoder(fc.filters, cv, ac.decoder_filters, config.out_channels, scale)
            for _ in range(ac.n_hourglass)
        )
        self.register_buffer("motions", motion_grid(vc), persistent=False)
        self.motions: torch.Tensor

    def gains(self, ratios: torch.Tensor, blind: bool) -> torch.Tensor:
        """Exposure gains for the volume: (B, n-1, N_E); `ratios` (B, n) with the reference first."""
        return exposure_gains(self.config.volume, ratios, blind)

    def forward(
        self,
        lin: torch.Tensor,
        sat: torch.Tensor,
        ratios: torch.Tensor,
        gains: torch.Tensor,
        all_outputs: bool = False,
        display: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """lin, sat (B, n, C, H, W), reference first; ratios (B, n); gains (B, n-1, N_E).

        `display` (B, 4): the E2E-ISP prior's white balance and white point for the whole
        bracket (`isp_prior.display_params`); ignored by the other tasks.

        Returns [Y] or, with `all_outputs`, [Y'', Y', Y]; each (B, C_out, H s, W s), s = out_scale.
        """
        b, n, c, h0, w0 = lin.shape
        assert n >= 2, f"EMVNet merges at least 2 frames, got {n}"
        assert c == self.config.in_channels, f"{self.config.name} takes {self.config.in_channels} channels"
        lin, _ = pad_to_multiple(lin, self.config.multiple)  # (B, n, C, H, W)
        sat, _ = pad_to_multiple(sat.to(lin.dtype), self.config.multiple)
        parts = [lin, sat]
        if self.config.features.gamma_input:
            parts.insert(1, lin.clamp(0, 1).pow(1 / ENCODING_GAMMA))
        x = torch.cat(parts, 2).flatten(0, 1)  # (B*n, 3C, H, W)
        feats = self.features(x)  # (B*n, C_f, h_f, w_f)
        feats = feats.view(b, n, *feats.shape[1:])  # (B, n, C_f, h_f, w_f)
        sat_any = sat.amax(2, keepdim=True)  # (B, n, 1, H, W)
        volume = self.volume(feats, sat_any, gains)  # (B, C_v, D, h_v, w_v)
        volumes = self.aggregation(volume)  # n_hourglass x (B, C_v, D, h_v, w_v)
        chosen = range(len(volumes)) if all_outputs else [len(volumes) - 1]
        outs = []
        for k in chosen:
            flow, ctx = self._select(self.scores[k](volumes[k]), volumes[k], n)
            residual = self.decoders[k](feats, flow, ctx, self.config.feature_down)
            prior = self._prior(lin, sat, ratios, flow, display)  # (B, C_out, H s, W s)
            y = (prior + EPS) * torch.exp(residual.float().clamp(-MAX_LOG_RESIDUAL, MAX_LOG_RESIDUAL))
            s = self.config.out_scale
            outs.append((y - EPS).clamp_min(0)[..., : h0 * s, : w0 * s])
        return outs

    def _select(self, logits: Tensor, volume: Tensor, n: int) -> tuple[Tensor, Tensor]:
        """Soft selection over each frame's candidates: expected motion and matched context."""
        b, cv, d, hv, wv = volume.shape
        n_m = self.motions.shape[0]
        per_frame = d // (n - 1)  # N_M N_E, or N_M when exposures are pooled
        prob = logits.float().view(b, n - 1, per_frame, hv, wv).softmax(2)  # (B, n-1, K, h_v, w_v)
        p_motion = prob.view(b, n - 1, n_m, per_frame // n_m, hv, wv).sum(3)  # (B, n-1, N_M, h_v, w_v)
        flow = (p_motion[:, :, None] * self.motions.T[None, None, :, :, None, None]).sum(
            3
        )  # (B, n-1, 2, h, w)
        vol = volume.float().view(b, cv, n - 1, per_frame, hv, wv)  # (B, C_v, n-1, K, h_v, w_v)
        ctx = (vol * prob[:, None]).sum(3)  # (B, C_v, n-1, h_v, w_v)
        return flow, ctx

    def _prior(
        self, lin: Tensor, sat: Tensor, ratios: Tensor, flow: Tensor, display: Tensor | None
    ) -> Tensor:
        """Classical merge of the flow-aligned frames in reference units (the residual's base);
        for E2E-ISP, that merge demosaiced and through the display curve (`emvnet.merge.isp_prior`).

        `sat` (B, n, C, H, W) is the per-channel clip mask: the weighted merge keeps another
        frame's unclipped channels where one of its channels clips (`fusion.merge_weights`; the
        reference counts in no channel where any of its channels clips)."""
        b, n, c, h, w = lin.shape
        if self.config.prior == "reference":
            sat = sat.amax(2, keepdim=True)  # (B, n, 1, H, W) a pixel clips if any channel does
        cs = sat.shape[2]  # the weighted merge masks each colour channel on its own
        flow_full = _upsample(flow.flatten(0, 1), (h, w))  # (B*(n-1), 2, H, W) input px
        stack = torch.cat([lin[:, 1:], sat[:, 1:]], 2).flatten(0, 1).float()  # (B*(n-1), C+C_s, H, W)
        moved = warp(stack, flow_full)  # (B*(n-1), C+C_s, H, W)
        moved = moved.view(b, n - 1, c + cs, h, w)  # (B, n-1, C+C_s, H, W)
        frames = torch.cat([lin[:, :1].float(), moved[:, :, :c]], 1)  # (B, n, C, H, W)
        # The warped mask stays soft: a threshold would make the prior jump with sub-pixel flow changes.
        clipped = torch.cat([sat[:, :1].float(), moved[:, :, c:].clamp(0, 1)], 1)  # (B, n, C_s, H, W)
        norm = frames / ratios.float().view(b, n, 1, 1, 1)  # (B, n, C, H, W) reference units
        if self.config.prior == "weighted":  # weights are statistics of the inputs: no gradient
            weight = fusion.merge_weights(frames.detach(), clipped.detach(), ratios.float())
        else:  # "reference": the reference wherever it does not clip, the others where it does
            ref_ok = 1.0 - clipped[:, :1]  # (B, 1, 1, H, W)
            weight = torch.cat([ref_ok, (1.0 - ref_ok) * (1.0 - clipped[:, 1:])], 1)  # (B, n, 1, H, W)
            # Where every frame clips, the shortest exposure is the best (lower-bound) guess.
            darkest = F.one_hot(ratios.argmin(1), n).float().view(b, n, 1, 1, 1)  # (B, n, 1, 1, 1)
            weight = weight + 1e-4 * darkest
        prior = (weight * norm).sum(1) / weight.sum(1)  # (B, C, H, W)
        if self.config.task == "isp":  # packed R, G1, G2, B -> RGB, bilinear to full size, display
            rgb = _upsample(packed_to_rgb(prior), (2 * h, 2 * w))  # (B, 3, 2H, 2W)
            prior = display_curve(rgb, display)
        return prior


def build_model(config: ModelConfig | str, seed: int | None = None) -> EMVNet:
    """A randomly initialized EMVNet (a variant name or a config), in eval mode."""
    if isinstance(config, str):
        config = variant(config)
    if seed is not None:
        torch.manual_seed(seed)
    return EMVNet(config).eval()
