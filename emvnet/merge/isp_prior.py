"""The display-referred prior of the E2E-ISP variants (packed raw in, display sRGB out).

EMVNet's output is its prior times exp(residual), so the residual only has to learn what the prior
gets wrong. On a linear prior (the demosaiced merge in camera RGB) the residual would have to learn
the whole ISP (white balance, tone curve, sRGB encoding: factors of 10-50 in the shadows) on top
of the merge, so the prior is a display picture already: the classical merge in camera RGB,
white-balanced with the camera's as-shot gains (`RawInfo.camera_wb`, which DNGs and LibRaw raws
carry), through the house display curve (`emvnet.io.tonemap.display` at unit exposure, the curve
the training targets are finished with). What is left for the residual is the colour matrix, the
merge's own errors and the detail.

The curve's white point is a statistic of the whole picture (the 99.5th percentile of luminance),
so it is computed once per bracket (`display_params`, before the engine tiles the image) and
passed to every tile with the white balance as one (B, 4) tensor: (R, G, B gains, white).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from emvnet.frame import Frame
from emvnet.io.tonemap import LUMA, WHITE_PERCENTILE

WHITE_QUANTILE = WHITE_PERCENTILE / 100  # `emvnet.io.tonemap.display`'s white point
_QUANTILE_SAMPLES = 1 << 20  # torch.quantile's input limit is 2**24; a strided sample is plenty


def camera_wb(frame: Frame) -> np.ndarray:
    """(3,) float32 as-shot white balance (R, G, B) relative to green; ones when unknown or unusable."""
    info = frame.raw
    gains = info.camera_wb if info is not None else None
    if gains is None or len(gains) < 3:
        return np.ones(3, dtype=np.float32)
    r, g, b = (float(x) for x in gains[:3])
    if not all(math.isfinite(x) and x > 0 for x in (r, g, b)):
        return np.ones(3, dtype=np.float32)
    return np.array([r / g, 1.0, b / g], dtype=np.float32)


def packed_to_rgb(packed: Tensor) -> Tensor:
    """(B, 4, H, W) packed R, G1, G2, B -> (B, 3, H, W) camera RGB at the packed resolution: the
    simplest demosaic (R, mean G, B), interpolating nothing; ValueError for another shape."""
    if packed.ndim != 4 or packed.shape[1] != 4:
        raise ValueError(f"expected packed RGGB (B, 4, H, W), got {tuple(packed.shape)}")
    return torch.stack([packed[:, 0], 0.5 * (packed[:, 1] + packed[:, 2]), packed[:, 3]], 1)


def _luminance(rgb: Tensor) -> Tensor:
    luma = torch.tensor(LUMA, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb * luma).sum(1)  # (B, H, W)


def _white(lum: Tensor) -> Tensor:
    """(B, H, W) luminance -> (B,) white point: its 99.5th percentile, at least 1."""
    flat = lum.flatten(1).float()
    flat = flat[:, :: max(1, math.ceil(flat.shape[1] / _QUANTILE_SAMPLES))]
    return torch.quantile(flat, WHITE_QUANTILE, dim=1).clamp_min(1.0)


def display_params(lin: Tensor, sat: Tensor, ratios: Tensor, wb: Tensor) -> Tensor:
    """(B, 4) display parameters of whole brackets: white balance (B, 3) and the white point.

    lin, sat (B, n, 4, H, W) packed raw with the reference first, ratios (B, n). The white point is
    taken on a quick merge (the reference, and the shortest exposure in reference units where the
    reference clips), white-balanced, as the targets' curve takes it on the finished picture.
    """
    b = lin.shape[0]
    rows = torch.arange(b, device=lin.device)
    darkest = ratios.argmin(1)  # (B,)
    short = lin[rows, darkest].float() / ratios[rows, darkest].float().view(b, 1, 1, 1)  # (B, 4, H, W)
    clipped = sat[:, 0].amax(1, keepdim=True) > 0  # (B, 1, H, W)
    merged = torch.where(clipped, short, lin[:, 0].float())
    rgb = packed_to_rgb(merged) * wb.float().view(b, 3, 1, 1)
    return torch.cat([wb.float(), _white(_luminance(rgb))[:, None]], 1)


def srgb_encode(x: Tensor) -> Tensor:
    """Linear [0, 1] -> sRGB-encoded [0, 1] (IEC 61966-2-1), differentiable everywhere."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(0.0031308).pow(1 / 2.4) - 0.055)


def display_curve(rgb: Tensor, params: Tensor | None) -> Tensor:
    """(B, 3, H, W) linear camera RGB -> display sRGB in [0, 1] through the house curve.

    `params` (B, 4) from `display_params`; None: unit white balance and the white point of `rgb`
    itself (a single image; tiles of one picture must share the bracket's parameters instead).
    Matches `tonemap.display(rgb * wb, exposure=1)` before its 8-bit quantization.
    """
    rgb = rgb.float().clamp_min(0.0)
    b = rgb.shape[0]
    if params is None:
        params = torch.cat([rgb.new_ones(b, 3), _white(_luminance(rgb))[:, None]], 1)
    rgb = rgb * params[:, :3].float().view(b, 3, 1, 1)
    white = params[:, 3].float().view(b, 1, 1)
    lum = _luminance(rgb)  # (B, H, W)
    mapped = lum * (1.0 + lum / (white * white)) / (1.0 + lum)
    ratio = torch.where(lum > 1e-8, mapped / lum.clamp_min(1e-8), torch.ones_like(lum))
    out = rgb * ratio[:, None]
    # Colours brighter than white in one channel desaturate towards white, as the numpy curve does.
    over = (out.amax(1, keepdim=True) - 1.0).clamp_min(0.0)
    out = out + over * (1.0 - out.clamp(0.0, 1.0)) * 0.5
    return srgb_encode(out)
