"""Weakly-supervised pairwise ordinal losses L_s,pix and L_s,pat (Sec. 4.1, Eq. 2-3).

For a pair (i, j) with ordinal indicator r_ij = +1 when i is brighter than j in the ground truth
and -1 otherwise, P_ij = -r_ij (log I_i - log I_j) on the *prediction* I: negative when the
prediction keeps the ground truth's order, positive when it swaps it. The loss is

    l(P) = log(1 + e^P)                 for P <= S
    l(P) = log(1 + e^sqrt(P)) + C       for P >  S

a softplus that turns into a slower, outlier-tolerant sqrt-softplus past the threshold S.

Derivation of C: continuity at P = S requires log(1 + e^S) = log(1 + e^sqrt(S)) + C, so

    C = log(1 + e^S) - log(1 + e^sqrt(S)) = log((1 + e^S) / (1 + e^sqrt(S))).

For S < 1, sqrt(S) > S and C < 0:
    S_pix = 0.25: C_pix = log(1 + e^0.25) - log(1 + e^0.5)      = -0.148138...
    S_pat = 0.50: C_pat = log(1 + e^0.5)  - log(1 + e^0.70711)  = -0.133863...
(the value is continuous, the slope is not: 1/(1+e^-S) below, 1/(2 sqrt(S) (1+e^-sqrt(S))) above).

Sampling (Sec. 4.1, 4.3): pairs are drawn independently in every channel (R/G/B, or R/G/G/B for
packed raw) of every sample, only where the ground truth is not over-exposed, I* <= 0.99 I_max,
with I_max the sample's ground-truth maximum over all channels; for patches every pixel of both
patches must satisfy it. Patches are squares of one side k drawn uniformly from 5..15 per call,
compared by their mean intensities. Pairs whose ground-truth values are equal carry no order and
are left out (Eq. 2 would otherwise force an arbitrary order on them). log 0 is guarded by `eps`.
The paper draws a pixel or a patch pair per iteration: `mode="random"` does that; "pix" and "pat"
give one kind; "both" adds the two terms. Each call draws `n_pairs` pairs per sample and channel
(torch.multinomial: at most 2^24 pixels per channel, i.e. training crops, not whole 24 MP frames);
a `generator` (on the tensors' device) makes the draw reproducible.
"""

from __future__ import annotations

import math
import random
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from emvnet.training.losses.content import check_pair

S_PIX = 0.25
S_PAT = 0.5
SATURATION_FRACTION = 0.99
PATCH_SIZES = (5, 15)  # inclusive range of the patch side (Sec. 4.1)

Mode = Literal["pix", "pat", "both", "random"]


def continuity_constant(threshold: float) -> float:
    """C with log(1 + e^S) = log(1 + e^sqrt(S)) + C (see the module docstring)."""
    if threshold <= 0:
        raise ValueError(f"the threshold S must be positive, got {threshold}")
    return math.log1p(math.exp(threshold)) - math.log1p(math.exp(math.sqrt(threshold)))


C_PIX = continuity_constant(S_PIX)
C_PAT = continuity_constant(S_PAT)


def ordinal_penalty(p: torch.Tensor, threshold: float) -> torch.Tensor:
    """Eq. 2/3 elementwise: softplus(P) below S, softplus(sqrt(P)) + C above."""
    c = continuity_constant(threshold)
    # sqrt of the clamped value keeps the unused branch finite (and its gradient) where P <= S.
    upper = F.softplus(torch.sqrt(p.clamp_min(threshold))) + c
    return torch.where(p <= threshold, F.softplus(p), upper)


def _device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _sample_pairs(
    valid: torch.Tensor, n_pairs: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index pairs (i, j) into the last axis of valid (R, N) and a (R, 1) row mask of usable rows."""
    weights = valid.float()
    usable = weights.sum(dim=1, keepdim=True) >= 2  # (R, 1)
    weights = torch.where(usable, weights, torch.ones_like(weights))  # multinomial needs a positive row
    i = torch.multinomial(weights, n_pairs, replacement=True, generator=generator)  # (R, n)
    j = torch.multinomial(weights, n_pairs, replacement=True, generator=generator)  # (R, n)
    return i, j, usable


def _pair_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    threshold: float,
    n_pairs: int,
    eps: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Mean Eq. 2 penalty over pairs drawn per row of (R, N) prediction / target values."""
    i, j, usable = _sample_pairs(valid, n_pairs, generator)
    gt_i, gt_j = target.gather(1, i), target.gather(1, j)  # (R, n)
    r = torch.sign(gt_i - gt_j)  # +1 i brighter, -1 darker, 0 tie (no order: dropped)
    log_pred = torch.log(pred.clamp_min(eps))
    p = -r * (log_pred.gather(1, i) - log_pred.gather(1, j))  # (R, n)
    keep = (r != 0) & usable
    n = keep.sum()
    if n == 0:
        return pred.sum() * 0.0  # keeps the graph (and the device) for callers that backprop
    return (ordinal_penalty(p, threshold) * keep).sum() / n


class OrdinalLoss(nn.Module):
    """Weakly-supervised ordinal loss L_s on linear predictions and ground truth (B, C, H, W)."""

    def __init__(
        self,
        mode: Mode = "random",
        n_pairs: int = 256,
        s_pix: float = S_PIX,
        s_pat: float = S_PAT,
        patch_sizes: tuple[int, int] = PATCH_SIZES,
        saturation: float = SATURATION_FRACTION,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if mode not in ("pix", "pat", "both", "random"):
            raise ValueError(f"mode must be 'pix', 'pat', 'both' or 'random', got {mode!r}")
        if n_pairs < 1:
            raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
        if s_pix <= 0 or s_pat <= 0:
            raise ValueError(f"thresholds must be positive, got S_pix={s_pix}, S_pat={s_pat}")
        lo, hi = patch_sizes
        if not 1 <= lo <= hi:
            raise ValueError(f"patch_sizes must be (min, max) with 1 <= min <= max, got {patch_sizes}")
        if not 0 < saturation <= 1:
            raise ValueError(f"saturation must be in (0, 1], got {saturation}")
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.mode: Mode = mode
        self.n_pairs = n_pairs
        self.s_pix, self.s_pat = s_pix, s_pat
        self.patch_sizes = (lo, hi)
        self.saturation = saturation
        self.eps = eps

    def _threshold(self, target: torch.Tensor) -> torch.Tensor:
        peak = target.detach().flatten(1).amax(dim=1).view(-1, 1, 1, 1)  # (B, 1, 1, 1): I_max
        return self.saturation * peak

    def pixel_loss(
        self, pred: torch.Tensor, target: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """L_s,pix (Eq. 2) over pixel pairs drawn per sample and channel."""
        check_pair(pred, target, "OrdinalLoss")
        B, C, H, W = pred.shape
        valid = target <= self._threshold(target)  # (B, C, H, W)
        return _pair_loss(
            pred.reshape(B * C, H * W),
            target.detach().reshape(B * C, H * W),
            valid.reshape(B * C, H * W),
            self.s_pix,
            self.n_pairs,
            self.eps,
            generator,
        )

    def patch_loss(
        self, pred: torch.Tensor, target: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """L_s,pat (Eq. 3) over pairs of equal-size square patches, compared by mean intensity."""
        check_pair(pred, target, "OrdinalLoss")
        B, C, H, W = pred.shape
        lo, hi = self.patch_sizes
        hi = min(hi, H, W)
        if hi < lo:
            raise ValueError(f"images of {H}x{W} are smaller than the smallest patch ({lo}x{lo})")
        k = int(torch.randint(lo, hi + 1, (1,), generator=generator, device=_device(generator)).item())
        gt = target.detach()
        pred_mean = F.avg_pool2d(pred, k, stride=1)  # (B, C, H-k+1, W-k+1): mean of each k x k patch
        gt_mean = F.avg_pool2d(gt, k, stride=1)
        over = (gt > self._threshold(gt)).float()
        valid = F.max_pool2d(over, k, stride=1) == 0  # every pixel of the patch below 0.99 I_max
        h, w = pred_mean.shape[-2:]
        return _pair_loss(
            pred_mean.reshape(B * C, h * w),
            gt_mean.reshape(B * C, h * w),
            valid.reshape(B * C, h * w),
            self.s_pat,
            self.n_pairs,
            self.eps,
            generator,
        )

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        mode = self.mode
        if mode == "random":
            draw = (
                torch.rand((), generator=generator, device=_device(generator)).item()
                if generator
                else random.random()
            )
            mode = "pix" if draw < 0.5 else "pat"
        if mode == "pix":
            return self.pixel_loss(pred, target, generator)
        if mode == "pat":
            return self.patch_loss(pred, target, generator)
        return self.pixel_loss(pred, target, generator) + self.patch_loss(pred, target, generator)
