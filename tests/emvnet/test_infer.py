"""The `Enhancer` API shared by the CLI, the workers and the benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.synth import ldr_bracket, radiance_scene

from emvnet import Enhancer
from emvnet.errors import BracketError, DeviceError, UnknownModelError
from emvnet.evaluation.metrics import psnr_mu

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "brackets" / "frobisher"
PATHS = [FIXTURE / f"IMG_260{i}.jpg" for i in range(3)]


@pytest.fixture(scope="module")
def enhancer() -> Enhancer:
    return Enhancer.from_pretrained("weighted")


def test_auto_loads_a_model_without_weights() -> None:
    """'auto' always loads: the trained network when installed, else the weighted merge."""
    enh = Enhancer.from_pretrained("auto")
    assert enh.name in ("emvnet-fast-rgb", "weighted")


def test_paths_bytes_and_arrays_agree(enhancer: Enhancer) -> None:
    """Paths, encoded bytes and decoded arrays of the same frames give the same HDR."""
    from_paths = enhancer.enhance(PATHS)
    from_bytes = enhancer.enhance([p.read_bytes() for p in PATHS])
    np.testing.assert_array_equal(from_paths, from_bytes)
    arrays = [np.round(f.data * 255).astype(np.uint8) for f in enhancer.prepare(PATHS).frames]
    from_arrays = enhancer.enhance(arrays, exposures=[1 / 8, 1, 8])
    np.testing.assert_allclose(from_arrays, from_paths, rtol=1e-5, atol=1e-6)
    assert from_paths.dtype == np.float32
    assert from_paths.shape == (320, 480, 3)


def test_result_in_reference_units(enhancer: Enhancer) -> None:
    """On a synthetic bracket the result matches the radiance seen at the reference's exposure."""
    scene = radiance_scene(64, 96, seed=4)
    frames = ldr_bracket(scene, [0.25, 1.0, 4.0])
    hdr = enhancer.enhance(frames, reference=0)
    seen = scene * 0.25  # the radiance in the short reference frame's units
    unclipped = seen < 0.9  # brighter than that, no frame of the bracket saw it
    assert psnr_mu(hdr * unclipped, seen * unclipped) > 40.0


def test_batch_groups_shapes_and_keeps_order(enhancer: Enhancer) -> None:
    """A batch mixing two shapes returns one result per set, in the order given."""
    big = ldr_bracket(radiance_scene(48, 64, seed=1), [0.5, 2.0])
    small = ldr_bracket(radiance_scene(32, 40, seed=2), [0.5, 2.0])
    out = enhancer.enhance_batch([big, small, big], references=[0, 0, 1])
    assert [o.shape for o in out] == [(48, 64, 3), (32, 40, 3), (48, 64, 3)]
    assert np.median(out[2] / out[0]) == pytest.approx(4.0, rel=0.01)  # reference 1 is 4x longer
    assert enhancer.last_timing.megapixels > 0


def test_batch_argument_lengths_checked(enhancer: Enhancer) -> None:
    """One exposure list per frame set is required."""
    frames = ldr_bracket(radiance_scene(16, 16), [0.5, 2.0])
    with pytest.raises(BracketError, match="one exposure list"):
        enhancer.enhance_batch([frames, frames], exposures=[None])


def test_bad_array_frames(enhancer: Enhancer) -> None:
    """Arrays of the wrong shape or dtype are refused with the reason."""
    with pytest.raises(BracketError, match=r"\(H, W, 3\)"):
        enhancer.enhance([np.zeros((4, 4), np.uint8)] * 2)
    with pytest.raises(BracketError, match="uint8, uint16 or float"):
        enhancer.enhance([np.zeros((4, 4, 3), np.int64)] * 2)


def test_unknown_model_and_device() -> None:
    """An unknown model name or an absent CUDA device is a typed error, not a crash."""
    with pytest.raises(UnknownModelError, match="available"):
        Enhancer.from_pretrained("no-such-model")
    with pytest.raises(DeviceError):
        Enhancer.from_pretrained("weighted", device="tpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            Enhancer.from_pretrained("weighted", device="cuda")
