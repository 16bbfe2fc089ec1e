"""Synthetic brackets and randomly initialized networks for the engine and CUDA tests."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from emvnet.frame import Frame
from emvnet.merge.bracket import Bracket, make_bracket
from emvnet.net.engine import NetworkMerger


def scene(h: int, w: int, seed: int) -> np.ndarray:
    """Linear radiance with edges and smooth shading, up to ~4x the reference's clipping level."""
    rng = np.random.default_rng(seed)
    small = rng.random((h // 8 + 2, w // 8 + 2, 3)).astype(np.float32)
    rad = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST) * 2.0
    rad += cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 3) * 2.0
    return rad


def scene_bracket(h: int, w: int, seed: int = 0, blind: bool = False, layout: str = "rgb") -> Bracket:
    rad = scene(h, w, seed)
    times = [0.25, 1.0, 4.0]
    if layout == "rggb":
        rad = np.concatenate([rad, rad[..., 1:2]], 2)[..., [0, 1, 3, 2]]
        frames = [
            Frame(np.clip(rad * t, 0, 1).astype(np.float32), "linear", "rggb", "dng", 12) for t in times
        ]
    else:
        frames = [
            Frame(np.power(np.clip(rad * t, 0, 1), 1 / 2.2).astype(np.float32), "display", "rgb", "png", 8)
            for t in times
        ]
    return make_bracket(frames, None if blind else times, reference=1)


def random_merger(name: str, **kwargs: object) -> NetworkMerger:
    merger = NetworkMerger.random(name, seed=0, prealign="off", **kwargs)  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(1)
    for dec in merger.model.decoders:  # non-zero residuals so the tests see the network, not the prior
        with torch.no_grad():
            dec.out.weight.copy_(torch.randn(dec.out.weight.shape, generator=gen) * 0.05)
    return merger
