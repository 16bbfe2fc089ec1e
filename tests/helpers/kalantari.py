"""Tiny scenes in the Kalantari layout: 16-bit gamma TIFF frames, exposures.txt, HDRImg.hdr."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from emvnet.io import write_image


def write_scene(
    folder: Path,
    seed: int,
    *,
    gt: bool = True,
    evs: tuple[float, ...] = (-2.0, 0.0, 2.0),
    size: tuple[int, int] = (48, 64),
) -> None:
    """A smooth radiance field (GT units: 1.0 = where the EV 0 frame clips) written as one scene."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rad = np.exp(np.log(40.0) * (xx / w - 0.6))[..., None] * rng.uniform(0.5, 1.0, 3).astype(np.float32)
    rad = rad * (1 + 0.3 * np.sin(yy / 4.0))[..., None]
    folder.mkdir(parents=True)
    for k, ev in enumerate(evs):
        code = np.clip(rad * 2.0**ev, 0, 1) ** (1 / 2.2)
        tifffile.imwrite(folder / f"img_{k}.tif", np.round(code * 65535).astype(np.uint16))
    (folder / "exposures.txt").write_text("\n".join(f"{ev:g}" for ev in evs) + "\n")
    if gt:
        write_image(folder / "HDRImg.hdr", rad.astype(np.float32))
