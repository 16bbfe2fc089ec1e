"""The torch Dataset over the simulator, and the collate that stacks its items into batches.

Items are dicts of tensors, channels first. Frames go through the inference path
(`emvnet.merge.bracket.make_bracket`), so `lin` and `ratios` are exactly what the merge would see:
- "ldr"     (n, C, H, W) float32  the frames as stored (display RGB, or packed raw)
- "lin"     (n, C, H, W) float32  `Bracket.linear`: each frame linearized, 1.0 = its clipping level
- "sat"     (n, C, H, W) bool     `Bracket.saturated()`: the model's saturation-mask input
- "ratios"  (n,) float32           `Bracket.ratios`: t_i / t_ref, estimated from pixels when blind
- "true_ratios" (n,) float32       from the simulated exposure times
- "reference" () int64, "blind" () bool
- "hdr"     (C, H, W) float32      target, linear, reference units (1.0 = where the reference clips)
- "mask"    (1, H, W) float32      1 where the target is known
- "wb"      (3,) float32           the reference frame's as-shot white balance (ones for RGB frames)
- "isp"     (3, 2H, 2W) float32    raw only: display sRGB target for E2E-ISP (absent for RGB)
Frames keep their bracket order; `reference` says which is the reference (the engine puts it first
with `emvnet.net.matching_volume.reference_first`, and a trainer should do the same).
Determinism: item `index` of a dataset with seed `s` draws from `numpy.random.default_rng([s, index])`
only, whatever worker, order or process produces it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from emvnet.errors import EmvnetError
from emvnet.frame import Frame
from emvnet.merge import align
from emvnet.merge.bracket import make_bracket
from emvnet.merge.isp_prior import camera_wb
from emvnet.training.data.scenes import SceneSource
from emvnet.training.data.simulator import Sample, SimulatorConfig, simulate

Item = dict[str, torch.Tensor]
MAX_ATTEMPTS = 8
log = logging.getLogger(__name__)


def _chw(x: np.ndarray) -> torch.Tensor:
    """(..., H, W, C) numpy -> (..., C, H, W) contiguous tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, -3)))


def bracket_item(
    frames: Sequence[Frame],
    exposures: Sequence[float] | None,
    true_times: Sequence[float],
    reference: int,
    hdr: np.ndarray,
    mask: np.ndarray,
    isp: np.ndarray | None = None,
    prealign: bool = False,
) -> Item:
    """Tensors of one training example, the frames validated by `make_bracket` as at inference.

    With `prealign`, `lin` and `sat` go through the engine's global pre-alignment (ORB + ECC, as
    `NetworkMerger` does by default), so the network trains on what it will see.
    """
    bracket = make_bracket(frames, exposures, reference)
    times = np.asarray(true_times, dtype=np.float64)
    lin, sat = bracket.linear, bracket.saturated()
    if prealign:
        lin, sat, _ = align.prealign(lin, sat, np.asarray(bracket.ratios, dtype=np.float64), reference)
    item = {
        "ldr": _chw(np.stack([f.data for f in frames])),  # (n, C, H, W)
        "lin": _chw(lin),  # (n, C, H, W)
        "sat": _chw(sat),  # (n, C, H, W) bool
        "ratios": torch.from_numpy(bracket.ratios.astype(np.float32)),  # (n,)
        "true_ratios": torch.from_numpy((times / times[reference]).astype(np.float32)),  # (n,)
        "reference": torch.tensor(reference, dtype=torch.int64),
        "blind": torch.tensor(exposures is None),
        "hdr": _chw(hdr),  # (C, H, W)
        "mask": torch.from_numpy(mask.astype(np.float32))[None],  # (1, H, W)
        "wb": torch.from_numpy(camera_wb(frames[reference])),  # (3,) as-shot white balance, ones for RGB
    }
    if isp is not None:
        item["isp"] = _chw(isp)  # (3, 2H, 2W) for raw, (3, H, W) otherwise
    return item


def sample_item(sample: Sample, prealign: bool = False) -> Item:
    return bracket_item(
        sample.frames,
        sample.exposures,
        sample.exposure_times,
        sample.reference,
        sample.hdr,
        sample.mask,
        sample.isp,
        prealign,
    )


class SyntheticBrackets(Dataset[Item]):
    """Simulated brackets (RGB or raw, per `config.mode`); `length` items per epoch.

    A sample that `make_bracket` refuses (its exposure-order check can misread a dark scene whose
    few well-exposed pixels are a moving bright object, about 1 in 200 raw samples) is redrawn
    from the next deterministic stream of the same index: training sees what inference accepts.
    """

    def __init__(
        self,
        scenes: SceneSource,
        config: SimulatorConfig | None = None,
        seed: int = 0,
        length: int = 10_000,
        prealign: bool = False,
    ):
        self.scenes = scenes
        self.config = config or SimulatorConfig()
        self.seed = seed
        self.length = length
        self.prealign = prealign

    def __len__(self) -> int:
        return self.length

    def sample(self, index: int, attempt: int = 0) -> Sample:
        """The simulator's sample for `index`: frames, times, reference, targets, CRF, noise."""
        key = [self.seed, index] if attempt == 0 else [self.seed, index, attempt]
        return simulate(np.random.default_rng(key), self.scenes, self.config)

    def __getitem__(self, index: int) -> Item:
        for attempt in range(MAX_ATTEMPTS):
            try:
                return sample_item(self.sample(index, attempt), self.prealign)
            except EmvnetError as exc:
                log.debug("item %d, attempt %d refused by make_bracket: %s", index, attempt, exc)
        raise RuntimeError(f"item {index}: {MAX_ATTEMPTS} simulated brackets in a row were refused")


def collate_brackets(items: Sequence[Item]) -> Item:
    """Stack items of one frame count into a batch; keys present in only some items (e.g. "isp")
    are dropped. The network has no mask for padded frames, so a batch mixing frame counts is a
    ValueError: the trainer's `StepBatches` draws one count per batch."""
    counts = sorted({int(it["ldr"].shape[0]) for it in items})
    if len(counts) != 1:
        raise ValueError(f"a batch holds brackets of one frame count, got counts {counts}")
    keys = set(items[0]).intersection(*items[1:])
    return {key: torch.stack([it[key] for it in items]) for key in sorted(keys)}
