"""Image content loss L_c (Sec. 4.2, Eq. 5) and the mu-law tonemap the losses share.

HDR losses compare images after the mu-law compressor of the HDR literature (Kalantari et al. 2017,
mu = 5000): linear differences would be dominated by the few brightest pixels. The network's output
is linear HDR in the reference frame's units (1.0 = where the reference clips), so values above 1
are expected; `mu_tonemap` first divides prediction and target by the same per-sample peak (the
target's maximum by default, as the metrics do), a constant that carries no gradient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from emvnet.io.tonemap import MU

# Eq. 5 weights in the order EMVNet returns its outputs with `all_outputs=True`: [Y'', Y', Y].
CONTENT_WEIGHTS: tuple[float, float, float] = (0.5, 0.75, 1.0)

Normalize = Literal["target_max", "none"]


def check_pair(pred: torch.Tensor, target: torch.Tensor, name: str) -> None:
    """ValueError unless pred and target are (B, C, H, W) tensors of one shape."""
    if pred.ndim != 4 or target.ndim != 4:
        shapes = f"{tuple(pred.shape)} and {tuple(target.shape)}"
        raise ValueError(f"{name}: expected (B, C, H, W) tensors, got {shapes}")
    if pred.shape != target.shape:
        raise ValueError(f"{name}: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")


def target_peak(target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(B, 1, 1, 1) maximum of each target sample, detached, at least `eps`."""
    peak = target.detach().flatten(1).amax(dim=1).clamp_min(eps)  # (B,)
    return peak.view(-1, 1, 1, 1)


def mu_tonemap(lin: torch.Tensor, peak: torch.Tensor | float = 1.0, mu: float | None = MU) -> torch.Tensor:
    """log(1 + mu x) / log(1 + mu) of x = lin / peak, negatives clipped to 0 (differentiable).

    mu=None is the identity (display-referred targets such as the E2E-ISP task's JPEGs).
    """
    if mu is None:
        return lin
    if mu <= 0:
        raise ValueError(f"mu must be positive, got {mu}")
    x = (lin / peak).clamp_min(0.0)
    return torch.log1p(mu * x) / math.log1p(mu)


class ContentLoss(nn.Module):
    """L_c = L1(Y, Y*) + 0.5 L1(Y'', Y*) + 0.75 L1(Y', Y*) on mu-law tonemapped images (Eq. 5).

    Called with the list [Y'', Y', Y] (as EMVNet returns it for training) or with Y alone, in which
    case only the first term remains. `normalize="none"` tonemaps the raw values (inputs already in
    [0, 1]); `mu=None` compares the values without a tonemap (display-referred targets).
    """

    def __init__(
        self,
        weights: Sequence[float] = CONTENT_WEIGHTS,
        mu: float | None = MU,
        normalize: Normalize = "target_max",
    ) -> None:
        super().__init__()
        if len(weights) == 0 or any(w < 0 for w in weights):
            raise ValueError(f"content weights must be non-empty and non-negative, got {weights}")
        if mu is not None and mu <= 0:
            raise ValueError(f"mu must be positive, got {mu}")
        if normalize not in ("target_max", "none"):
            raise ValueError(f"normalize must be 'target_max' or 'none', got {normalize!r}")
        self.weights = tuple(float(w) for w in weights)
        self.mu = mu
        self.normalize = normalize

    def forward(self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        preds = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        if not 1 <= len(preds) <= len(self.weights):
            raise ValueError(f"ContentLoss takes 1..{len(self.weights)} outputs, got {len(preds)}")
        # The last weight belongs to the final output Y; fewer outputs drop the earliest terms.
        weights = self.weights[len(self.weights) - len(preds) :]
        peak: torch.Tensor | float = target_peak(target) if self.normalize == "target_max" else 1.0
        target_mu = mu_tonemap(target, peak, self.mu)
        total = target.new_zeros(())
        for w, pred in zip(weights, preds, strict=True):
            check_pair(pred, target, "ContentLoss")
            total = total + w * (mu_tonemap(pred, peak, self.mu) - target_mu).abs().mean()
        return total
