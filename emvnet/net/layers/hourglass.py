"""Hourglass of dilated 3D convolutions (Sec. 3.3, Fig. 4).

Three stride-2 3D convolutions (dilation growing with depth) then three stride-2 3D deconvolutions,
each deconvolution added to the matching encoder level (PSMNet-style skips) and the last one to
the hourglass input, so stacking hourglasses refines the volume instead of replacing it. Odd sizes
work: a deconvolution doubles exactly and the result is cropped to the skip's size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _down(cin: int, cout: int, dilation: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, stride=2, padding=dilation, dilation=dilation), nn.ReLU(inplace=True)
    )


def _up(cin: int, cout: int) -> nn.Module:
    return nn.ConvTranspose3d(cin, cout, 4, stride=2, padding=1)  # exactly x2 in D, H, W


def _crop_add(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    d, h, w = skip.shape[-3:]
    return x[..., :d, :h, :w] + skip  # (B, C, D, H, W)


class Hourglass3d(nn.Module):
    def __init__(self, channels: int, filters: int, dilations: tuple[int, int, int]) -> None:
        super().__init__()
        d1, d2, d3 = dilations
        self.down1 = _down(channels, filters, d1)
        self.down2 = _down(filters, filters, d2)
        self.down3 = _down(filters, filters, d3)
        self.up3 = _up(filters, filters)
        self.up2 = _up(filters, filters)
        self.up1 = _up(filters, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.down1(x)  # (B, F, D/2, H/2, W/2)
        e2 = self.down2(e1)  # (B, F, D/4, H/4, W/4)
        e3 = self.down3(e2)  # (B, F, D/8, H/8, W/8)
        u2 = F.relu(_crop_add(self.up3(e3), e2))  # (B, F, D/4, H/4, W/4)
        u1 = F.relu(_crop_add(self.up2(u2), e1))  # (B, F, D/2, H/2, W/2)
        return _crop_add(self.up1(u1), x)  # (B, C, D, H, W)


class StackedHourglass(nn.Module):
    """`n` hourglasses in sequence; returns every hourglass's output volume (Y'', Y', Y sources)."""

    def __init__(self, channels: int, filters: int, dilations: tuple[int, int, int], n: int) -> None:
        super().__init__()
        self.hourglasses = nn.ModuleList(Hourglass3d(channels, filters, dilations) for _ in range(n))

    def forward(self, volume: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        x = volume  # (B, C, D, H, W)
        for hourglass in self.hourglasses:
            x = hourglass(x)  # (B, C, D, H, W)
            outs.append(x)
        return outs
