"""Inference engine: batching, tiling, precision and the Merger contract of the network variants."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers.networks import random_merger as _merger
from helpers.networks import scene as _scene
from helpers.networks import scene_bracket as _bracket

from emvnet.errors import BracketError, DeviceError
from emvnet.frame import Frame
from emvnet.merge.bracket import make_bracket
from emvnet.net import engine
from emvnet.net.engine import NetworkMerger, _ramp, _starts, resolve_precision

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "brackets" / "frobisher"


@pytest.mark.parametrize(
    ("name", "layout", "channels", "scale"),
    [
        ("emvnet-fast-rgb", "rgb", 3, 1),
        ("emvnet-fast-raw", "rggb", 4, 1),
        ("emvnet-fast-isp", "rggb", 3, 2),
    ],
)
def test_merge_contract(name: str, layout: str, channels: int, scale: int) -> None:
    """One float32 (H s, W s, C_out) non-negative array per bracket, for known and blind brackets."""
    merger = _merger(name, precision="fp32")
    brackets = [_bracket(30, 42, seed=0, layout=layout), _bracket(30, 42, seed=1, blind=True, layout=layout)]
    outs = merger.merge(brackets)
    assert len(outs) == 2
    for y in outs:
        assert y.shape == (30 * scale, 42 * scale, channels) and y.dtype == np.float32
        assert np.isfinite(y).all() and (y >= 0).all()


def test_batched_equals_one_by_one() -> None:
    """Brackets merged in one batched forward pass (or in chunks of it) give what they give alone."""
    merger = _merger("emvnet-fast-rgb", precision="fp32")
    a, b = _bracket(40, 56, seed=2), _bracket(40, 56, seed=3)
    together = merger.merge([a, b])
    alone = [merger.merge([a])[0], merger.merge([b])[0]]
    chunked = _merger("emvnet-fast-rgb", precision="fp32", max_pass_pixels=40 * 56).merge([a, b])
    for x, y, z in zip(together, alone, chunked, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(z, y, rtol=1e-4, atol=1e-5)


def test_tiled_equals_untiled() -> None:
    """Overlapping tiles with raised-cosine blending reproduce the untiled result (max 5 %, mean 0.05 %).

    The tolerance is for random weights, whose outputs swing more with context than trained ones.
    """
    bracket = _bracket(320, 448, seed=4)
    whole = _merger("emvnet-fast-rgb", precision="fp32", tile=512).merge([bracket])[0]
    tiled = _merger("emvnet-fast-rgb", precision="fp32", tile=256, overlap=96).merge([bracket])[0]
    rel = np.abs(tiled - whole) / np.maximum(whole, 0.05)
    assert float(rel.max()) < 0.05, float(rel.max())
    assert float(rel.mean()) < 5e-4, float(rel.mean())


@pytest.mark.parametrize(
    ("size", "tile", "overlap"), [(100, 40, 10), (161, 100, 40), (1000, 512, 64), (30, 64, 8)]
)
def test_blend_weights_sum_to_one(size: int, tile: int, overlap: int) -> None:
    """Tiles cover the axis, overlap by at least `overlap`, and two-tile ramps sum to one."""
    starts, length = _starts(size, tile, overlap, unit=8)
    assert length <= max(tile, size) and starts[0] == 0 and starts[-1] < size <= starts[-1] + length
    assert all(b - a <= length - overlap and b % 8 == 0 for a, b in itertools.pairwise(starts))
    total = np.zeros(size)
    for k, s in enumerate(starts):
        total[s : min(s + length, size)] += _ramp(size, starts, length, k, 1)
    if all(c - a >= length for a, c in zip(starts, starts[2:], strict=False)):  # no triple overlaps
        np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert total.min() > 0


def test_bf16_matches_float32_on_real_frames() -> None:
    """bf16 autocast stays within 2 % (max relative error) of float32 on a real bracket."""
    frames = []
    for name in ("IMG_2600", "IMG_2601", "IMG_2602"):
        bgr = cv2.imread(str(FIXTURES / f"{name}.jpg"))[64:224, 96:336]
        frames.append(
            Frame(np.ascontiguousarray(bgr[..., ::-1], dtype=np.float32) / 255, "display", "rgb", "jpeg", 8)
        )
    bracket = make_bracket(frames, [1 / 8, 1, 8])
    fp32 = _merger("emvnet-fast-rgb", precision="fp32").merge([bracket])[0]
    bf16 = _merger("emvnet-fast-rgb", precision="bf16").merge([bracket])[0]
    rel = np.abs(bf16 - fp32) / np.maximum(np.abs(fp32), 1e-2)
    assert float(rel.max()) < 0.02, float(rel.max())


def test_layout_mismatch_is_refused() -> None:
    """An RGB bracket sent to a raw variant is a BracketError, not a crash."""
    with pytest.raises(BracketError, match="rggb"):
        _merger("emvnet-fast-raw").merge([_bracket(16, 16)])


def test_precision_and_device_resolution() -> None:
    """fp32 means no autocast, bf16/fp16 are honoured, and a missing CUDA is a DeviceError."""
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError):
            NetworkMerger.random("emvnet-fast-rgb", device="cuda")


@pytest.mark.parametrize("name", [spec.name for spec in engine.SPECS])
def test_tiled_inference_for_every_variant(name: str) -> None:
    """Every registered network runs tiled (output coordinates scaled for E2E-ISP) close to untiled."""
    layout = "rgb" if name.endswith("-rgb") else "rggb"
    bracket = _bracket(72, 136, seed=5, layout=layout)
    unit = _merger(name).config.tile_unit
    whole = _merger(name, precision="fp32", tile=512).merge([bracket])[0]
    tiled = _merger(name, precision="fp32", tile=3 * unit, overlap=unit).merge([bracket])[0]
    assert tiled.shape == whole.shape and np.isfinite(tiled).all() and (tiled >= 0).all()
    rel = np.abs(tiled - whole) / np.maximum(whole, 0.05)
    assert float(rel.mean()) < 0.05, float(rel.mean())


def _long_frames(n: int, layout: str) -> tuple[list[Frame], list[float]]:
    rad = _scene(32, 40, seed=5)
    times = [2.0 ** (k - n // 2) for k in range(n)]
    if layout == "rggb":
        rad = np.concatenate([rad, rad[..., 1:2]], 2)
        return [
            Frame(np.clip(rad * t, 0, 1).astype(np.float32), "linear", "rggb", "dng", 12) for t in times
        ], times
    codes = [np.round(np.power(np.clip(rad * t, 0, 1), 1 / 2.2) * 255) / 255 for t in times]
    return [Frame(c.astype(np.float32), "display", "rgb", "png", 8) for c in codes], times


def test_long_rgb_brackets_get_the_calibrated_classical_merge() -> None:
    """Beyond the frame counts the network was trained on, RGB brackets are merged classically."""
    from emvnet.merge.classical import merge_weighted

    frames, times = _long_frames(engine.NETWORK_FRAMES + 3, "rgb")
    br = make_bracket(frames, times, reference=len(frames) // 2)
    short = make_bracket(frames[2:5], times[2:5], reference=1)
    merger = _merger("emvnet-fast-rgb", precision="fp32")
    long_out, short_out = merger.merge([br, short])  # mixed lengths in one call keep their order
    np.testing.assert_array_equal(long_out, merge_weighted(br))
    assert short_out.shape == (32, 40, 3) and not np.array_equal(short_out, merge_weighted(short))


@pytest.mark.parametrize("blind", [False, True])
def test_long_raw_brackets_merge_a_subset_within_x16(blind: bool) -> None:
    frames, times = _long_frames(9, "rggb")  # one stop apart: the ends are x16 from the middle
    br = make_bracket(frames, None if blind else times, reference=4)
    subset = engine.network_subset(br)
    assert len(subset) == 3 and subset[1] == 4
    if not blind:
        assert subset == [0, 4, 8]
    sub = br.subset(subset)
    assert sub.frames[sub.reference] is br.frames[br.reference] and sub.blind == blind
    (y,) = _merger("emvnet-fast-raw", precision="fp32").merge([br])
    assert y.shape == (32, 40, 4) and np.isfinite(y).all()


def test_subset_falls_back_to_the_nearest_frame_beyond_x16() -> None:
    frames, _ = _long_frames(6, "rggb")
    times = [1 / 1024, 1 / 256, 1.0, 64.0, 256.0, 1024.0]  # every neighbour of the reference is > x16 away
    br = make_bracket(frames, times, reference=2)
    assert engine.network_subset(br) == [1, 2, 3]


def test_every_task_takes_the_auto_precision() -> None:
    """Since E2E-ISP's prior is display-referred, bf16 moves its output as little as the other
    tasks' (MODEL_CARD.md), so every variant follows `precision` alike."""
    auto = resolve_precision("auto", torch.device("cpu"))
    for name in ("emvnet-fast-rgb", "emvnet-fast-raw", "emvnet-fast-isp"):
        assert _merger(name).autocast_dtype == auto
        assert _merger(name, precision="fp32").autocast_dtype is None


def test_cuda_pass_grows_the_tile_with_free_memory() -> None:
    """The CUDA tile: the largest multiple of the unit whose pass fits half the free memory, capped
    at CUDA_MAX_TILE and CUDA_MAX_PASS_PIXELS, never below the variant's tile."""
    big = engine.cuda_pass(1024, 64, bytes_per_pixel=700.0, free_bytes=140 << 30)
    assert big == (engine.CUDA_MAX_TILE, engine.CUDA_MAX_PASS_PIXELS)
    side, pixels = engine.cuda_pass(1024, 64, bytes_per_pixel=700.0, free_bytes=8 * 10**9)
    assert side % 64 == 0 and 1024 < side < engine.CUDA_MAX_TILE
    assert side * side * 700 <= engine.CUDA_MEMORY_SHARE * 8 * 10**9 and pixels >= side * side
    assert engine.cuda_pass(1024, 64, bytes_per_pixel=700.0, free_bytes=10**8) == (1024, 1024 * 1024)
