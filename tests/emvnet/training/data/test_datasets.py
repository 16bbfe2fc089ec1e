"""torch wrappers: item tensors follow the inference path; collate stacks one frame count."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from emvnet.errors import ExposureError
from emvnet.training.data.datasets import SyntheticBrackets, collate_brackets
from emvnet.training.data.scenes import SyntheticScenes
from emvnet.training.data.simulator import Sample, SimulatorConfig

CONFIG = SimulatorConfig(size=32)


def test_item_matches_its_sample_through_make_bracket() -> None:
    """ldr/lin/ratios/hdr/mask are the sample's frames, Bracket.linear/ratios and target, channels first."""
    data = SyntheticBrackets(SyntheticScenes(), CONFIG, seed=3, length=4)
    sample, item = data.sample(2), data[2]
    bracket = sample.bracket()
    n = len(sample.frames)
    assert item["ldr"].shape == (n, 3, 32, 32) and item["hdr"].shape == (3, 32, 32)
    assert item["mask"].shape == (1, 32, 32) and int(item["reference"]) == sample.reference
    np.testing.assert_array_equal(item["lin"].numpy(), np.moveaxis(bracket.linear, -1, 1))
    np.testing.assert_array_equal(item["sat"].numpy(), np.moveaxis(bracket.saturated(), -1, 1))
    np.testing.assert_allclose(item["ratios"].numpy(), bracket.ratios, rtol=1e-6)
    np.testing.assert_array_equal(item["hdr"].numpy(), np.moveaxis(sample.hdr, -1, 0))
    assert float(item["true_ratios"][sample.reference]) == 1.0


def test_raw_items_carry_the_isp_target() -> None:
    """Raw mode items hold packed frames and a full-resolution sRGB target."""
    data = SyntheticBrackets(SyntheticScenes(), replace(CONFIG, mode="raw"), seed=0, length=2)
    item = data[0]
    assert item["ldr"].shape[1:] == (4, 16, 16) and item["hdr"].shape == (4, 16, 16)
    assert item["isp"].shape == (3, 32, 32)


def test_loader_batches_one_frame_count_reproducibly() -> None:
    """collate_brackets stacks items of one frame count, repeats exactly per seed, and refuses a
    batch that mixes counts (the network could not tell padded frames from real ones)."""
    data = SyntheticBrackets(SyntheticScenes(), replace(CONFIG, frames_range=(3, 3)), seed=1, length=4)
    batches = [next(iter(DataLoader(data, batch_size=4, collate_fn=collate_brackets))) for _ in range(2)]
    batch = batches[0]
    assert batch["ldr"].shape == (4, 3, 3, 32, 32) and batch["sat"].dtype == torch.bool
    assert torch.equal(batches[0]["hdr"], batches[1]["hdr"])
    two = SyntheticBrackets(SyntheticScenes(), replace(CONFIG, frames_range=(2, 2)), seed=1, length=1)
    with pytest.raises(ValueError, match="one frame count"):
        collate_brackets([data[0], two[0]])


def test_refused_samples_are_redrawn_deterministically(monkeypatch: pytest.MonkeyPatch) -> None:
    """When make_bracket refuses a sample, the item comes from the index's next stream, reproducibly."""
    import emvnet.training.data.datasets as datasets

    real = datasets.sample_item
    calls = []

    def refuse_first(sample: Sample, prealign: bool = False) -> dict[str, torch.Tensor]:
        calls.append(sample)
        if len(calls) == 1:
            raise ExposureError("exposure times given contradict the frames")
        return real(sample, prealign)

    monkeypatch.setattr(datasets, "sample_item", refuse_first)
    data = SyntheticBrackets(SyntheticScenes(), CONFIG, seed=2, length=4)
    item = data[1]
    assert len(calls) == 2
    np.testing.assert_array_equal(item["hdr"].numpy(), np.moveaxis(data.sample(1, attempt=1).hdr, -1, 0))


def test_prealigned_items_are_what_the_engine_would_align() -> None:
    """With prealign, lin/sat are the engine's ORB+ECC pre-alignment of the bracket; targets unchanged."""
    from emvnet.merge import align

    class Texture:  # blobs of every size: plenty of corners for ORB
        def __len__(self) -> int:
            return 1

        def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
            import cv2

            noise = rng.random((size // 4, size // 4, 3)).astype(np.float32)
            return cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC).clip(0.01, None) * 2

    config = SimulatorConfig(size=192, frames_range=(3, 3))
    config = replace(config, motion=replace(config.motion, p_shake=1.0, p_objects=0.0, max_shift=0.04))
    plain = SyntheticBrackets(Texture(), config, seed=5, length=4)
    aligned = SyntheticBrackets(Texture(), config, seed=5, length=4, prealign=True)
    sample, item, ref_item = aligned.sample(1), aligned[1], plain[1]
    bracket = sample.bracket()
    lin, sat, found = align.prealign(bracket.linear, bracket.saturated(), bracket.ratios, sample.reference)
    np.testing.assert_array_equal(item["lin"].numpy(), np.moveaxis(lin, -1, 1))
    np.testing.assert_array_equal(item["sat"].numpy(), np.moveaxis(sat, -1, 1))
    for key in ("ldr", "hdr", "mask", "ratios", "reference"):
        torch.testing.assert_close(item[key], ref_item[key])
    moved = [i for i, a in enumerate(found) if a.homography is not None]
    assert moved, "a shaken bracket should have at least one frame the pre-alignment warps"
    assert not torch.equal(item["lin"][moved[0]], ref_item["lin"][moved[0]])
