"""Residual-in-residual dense blocks (Sec. 3.1, after ESRGAN [22]).

A dense block has 5 convolutions; the first 4 are followed by ReLU and each sees the concatenation
of the block input and all earlier outputs; the 5th maps back to the trunk width and is added to the
input scaled by 0.2. An RRDB chains 3 dense blocks and adds its own input, again scaled by 0.2.
The fast variants (Sec. 5.4.3) swap each 3x3 convolution for a depthwise-separable one.
"""

from __future__ import annotations

import torch
from torch import nn

RESIDUAL_SCALE = 0.2  # ESRGAN's residual scaling: keeps deep trunks stable at initialization
CPU_PASS_PIXELS = 1 << 20  # input pixels per pass of the feature extractor on the CPU


def conv3x3(cin: int, cout: int, depthwise: bool = False, stride: int = 1) -> nn.Module:
    """A 3x3 convolution, or depthwise 3x3 followed by pointwise 1x1 (same output shape)."""
    if not depthwise:
        return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False),
        nn.Conv2d(cin, cout, 1),
    )


class DenseBlock(nn.Module):
    def __init__(self, filters: int, growth: int, depthwise: bool) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            conv3x3(filters + k * growth, growth if k < 4 else filters, depthwise) for k in range(5)
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.convs[:4]:
            feats.append(self.act(conv(torch.cat(feats, 1))))  # (B, C + k*G, H, W) in
        out = self.convs[4](torch.cat(feats, 1))  # (B, C + 4G, H, W) -> (B, C, H, W)
        return x + RESIDUAL_SCALE * out


class RRDB(nn.Module):
    def __init__(self, filters: int, growth: int, depthwise: bool = False) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(DenseBlock(filters, growth, depthwise) for _ in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + RESIDUAL_SCALE * self.blocks(x)


class FeatureExtractor(nn.Module):
    """Entry convolution(s), a trunk of RRDBs with a long skip, shared by all frames."""

    def __init__(
        self, cin: int, filters: int, growth: int, n_rrdb: int, depthwise: bool, unshuffle: int, stride: int
    ) -> None:
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(unshuffle) if unshuffle > 1 else nn.Identity()
        entry: list[nn.Module] = [nn.Conv2d(cin * unshuffle**2, filters, 3, padding=1)]
        s = stride
        while s > 1:  # each halving is one stride-2 convolution
            entry += [nn.ReLU(inplace=True), nn.Conv2d(filters, filters, 3, stride=2, padding=1)]
            s //= 2
        self.entry = nn.Sequential(*entry)
        self.trunk = nn.Sequential(*(RRDB(filters, growth, depthwise) for _ in range(n_rrdb)))
        self.trunk_out = conv3x3(filters, filters, depthwise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C, H/u/s, W/u/s). On the CPU the batch goes through in passes of
        at most CPU_PASS_PIXELS input pixels (one frame of a 1024 px tile): a pass of three such
        frames runs 1.1-1.4x slower per pixel, its activations out of the caches
        (`python benchmarks/profile_merge.py --feature-passes 1024x1024 680x880`); the same
        values either way."""
        per_pass = x.shape[0]
        if x.device.type == "cpu":
            per_pass = max(1, CPU_PASS_PIXELS // (x.shape[-2] * x.shape[-1]))
        if per_pass >= x.shape[0]:
            return self._features(x)
        return torch.cat([self._features(part) for part in x.split(per_pass)])

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.entry(self.unshuffle(x))  # (B, C_in, H, W) -> (B, C, H/u/s, W/u/s)
        return x + self.trunk_out(self.trunk(x))
