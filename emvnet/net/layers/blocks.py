"""Small shared blocks: flow warping, stacks of shifted copies, padding to a multiple."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def base_grid(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(1, H, W, 2) pixel-centre coordinates (x, y) in pixels."""
    ys = torch.arange(h, device=like.device, dtype=like.dtype)
    xs = torch.arange(w, device=like.device, dtype=like.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], -1)[None]  # (1, H, W, 2)


def _normalize(coords: torch.Tensor, h: int, w: int) -> torch.Tensor:
    # align_corners=False: pixel centre i maps to (2i + 1) / size - 1
    scale = torch.tensor([2.0 / w, 2.0 / h], device=coords.device, dtype=coords.dtype)
    return (coords + 0.5) * scale - 1.0


def warp(x: torch.Tensor, flow: torch.Tensor, padding: str = "border") -> torch.Tensor:
    """out(p) = x(p + flow(p)), bilinear; x (B, C, H, W), flow (B, 2, H, W) in pixels (dx, dy)."""
    h, w = x.shape[-2:]
    flow = flow.float()  # pixel coordinates need float32: bf16 cannot tell pixel 135 from 136
    coords = base_grid(h, w, flow) + flow.permute(0, 2, 3, 1)  # (B, H, W, 2)
    grid = _normalize(coords, h, w)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode=padding, align_corners=False)
    return out.to(x.dtype)


def shift_stack(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Copies of x shifted by each offset: out[:, :, m](p) = x(p + offsets[m]), zeros outside.

    x (B, C, H, W), offsets (M, 2) in pixels (dx, dy) -> (B, C, M, H, W). Integer offsets are
    slices of one padded copy; fractional ones are bilinear.
    """
    b, c, h, w = x.shape
    if bool(torch.all(offsets == offsets.round())):
        pad = int(offsets.abs().max().item())
        xp = F.pad(x, (pad, pad, pad, pad))  # (B, C, H + 2p, W + 2p)
        views = [
            xp[:, :, pad + int(dy) : pad + int(dy) + h, pad + int(dx) : pad + int(dx) + w]
            for dx, dy in offsets.tolist()
        ]
        return torch.stack(views, 2)  # (B, C, M, H, W)
    m = offsets.shape[0]
    coords = base_grid(h, w, offsets.float()) + offsets.float()[:, None, None, :]  # (M, H, W, 2)
    grid = _normalize(coords, h, w).repeat(b, 1, 1, 1)  # (B*M, H, W, 2)
    xs = x.float().repeat_interleave(m, 0)  # (B*M, C, H, W)
    out = F.grid_sample(xs, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.to(x.dtype).view(b, m, c, h, w).transpose(1, 2)  # (B, C, M, H, W)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad the last two axes up to a multiple; returns the padded tensor and (pad_h, pad_w)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (0, 0)
    shape = x.shape
    flat = x.reshape(-1, 1, h, w)  # (B*n*C, 1, H, W): replicate padding wants 4D
    flat = F.pad(flat, (0, pw, 0, ph), mode="replicate")
    return flat.reshape(*shape[:-2], h + ph, w + pw), (ph, pw)  # (..., H', W')
