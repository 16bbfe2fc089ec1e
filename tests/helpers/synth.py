"""Synthetic scenes with known radiance and the brackets a camera would take of them."""

from __future__ import annotations

import numpy as np

from emvnet.frame import ExposureInfo, Frame


def radiance_scene(
    height: int = 96, width: int = 128, seed: int = 0, dynamic_range: float = 2000.0
) -> np.ndarray:
    """Linear RGB radiance (H, W, 3) spanning about `dynamic_range`:1, smooth with sharp blobs.

    Scaled so that an exposure of 1 clips the brightest 15 % of samples.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.exp(np.log(dynamic_range) * (xx / width - 0.5))[..., None]  # log ramp left -> right
    scene = np.repeat(base, 3, axis=2) * rng.uniform(0.6, 1.0, size=3).astype(np.float32)
    for _ in range(12):  # bright and dark blobs with their own colours
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        r = rng.uniform(4, 14)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
        scene = scene * (1 + blob * (rng.uniform(0.1, 8.0, size=3) - 1).astype(np.float32))
    texture = 1 + 0.2 * np.sin(xx / 3.0)[..., None] * np.cos(yy / 5.0)[..., None]
    scene = scene * texture
    return (scene / np.percentile(scene, 85)).astype(np.float32)  # 15 % of the scene clips at t = 1


def ldr_bracket(
    radiance: np.ndarray,
    times: list[float],
    gamma: float = 2.2,
    bits: int = 8,
    noise: float = 0.0,
    seed: int = 0,
    shoulder: float = 0.0,
    shot: float = 0.0,
) -> list[Frame]:
    """Display-encoded frames: y = clip(radiance * t) ** (1 / gamma), rolled off by a `shoulder`
    s as y (1 + s) / (1 + s y) (0: none), quantized to `bits`. Sensor noise of variance
    shot * signal + noise ** 2 is added before the curve."""
    rng = np.random.default_rng(seed)
    levels = 2**bits - 1
    frames = []
    for t in times:
        signal = radiance * t
        sigma = np.sqrt(shot * np.clip(signal, 0, 1) + noise**2)
        lin = signal + sigma * rng.standard_normal(radiance.shape).astype(np.float32)
        y = np.clip(lin, 0, 1) ** (1 / gamma)
        y = y * (1 + shoulder) / (1 + shoulder * y)
        code = np.round(y * levels) / levels
        frames.append(
            Frame(code.astype(np.float32), "display", "rgb", "jpeg", bits, exposure=ExposureInfo(t))
        )
    return frames
