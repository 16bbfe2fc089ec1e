"""The CUDA paths: fusion, every network variant, blind and long brackets, tiling and a training
step on a GPU, each checked against the same computation on the CPU.

Skipped where torch sees no CUDA device (CI and the dev machine); run on a GPU machine with
`python -m pytest tests/emvnet/test_cuda.py` (figures of the last run in MODEL_CARD.md).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.networks import random_merger as _merger
from helpers.networks import scene_bracket as _bracket

from emvnet.merge import fusion
from emvnet.merge.bracket import make_bracket
from emvnet.net import checkpoint
from emvnet.net.engine import NetworkMerger
from emvnet.training.config import load_config
from emvnet.training.trainer import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
ROOT = Path(__file__).resolve().parents[2]


def _close(a: np.ndarray, b: np.ndarray) -> float:
    """Relative difference (99.9th percentile) of two radiance maps."""
    return float(np.quantile(np.abs(a - b) / np.maximum(np.abs(b), 1e-2), 0.999))


@pytest.mark.parametrize("frames", [3, fusion.LONG_BRACKET + 1])
def test_fusion_on_cuda_matches_cpu(frames: int) -> None:
    """The weighted merge (fixed and noise-aware ghost tests) gives the CPU's result on a GPU."""
    gen = torch.Generator().manual_seed(0)
    rad = torch.rand(2, 1, 3, 64, 96, generator=gen) * 4
    ratios = torch.tensor([[1.0] + [2.0 ** (k - frames // 2) for k in range(1, frames)]] * 2)
    lin = (
        rad * ratios.view(2, frames, 1, 1, 1) + 0.01 * torch.randn(2, frames, 3, 64, 96, generator=gen)
    ).clamp(0, 1)
    clipped = (lin >= 0.99).float()
    cpu = fusion.merge(lin, clipped, ratios)
    gpu = fusion.merge(lin.cuda(), clipped.cuda(), ratios.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "layout"),
    [
        ("emvnet-fast-rgb", "rgb"),
        ("emvnet-fast-raw", "rggb"),
        ("emvnet-fast-isp", "rggb"),
        ("emvnet-paper-rgb", "rgb"),
    ],
)
def test_networks_on_cuda_match_cpu(name: str, layout: str) -> None:
    """fp32 on the GPU (TF32 convolutions allowed) within 1 % of fp32 on the CPU."""
    bracket = _bracket(96, 128, layout=layout)
    cpu = _merger(name, precision="fp32").merge([bracket])[0]
    gpu_merger = _merger(name, precision="fp32", device="cuda")
    assert next(gpu_merger.model.parameters()).device.type == "cuda"
    gpu = gpu_merger.merge([bracket])[0]
    assert gpu.shape == cpu.shape and np.isfinite(gpu).all()
    assert _close(gpu, cpu) < 1e-2


def test_shipped_weights_bf16_on_cuda_are_close_to_fp32_cpu() -> None:
    """The default GPU precision (bf16 autocast) on the shipped weights: within bf16's error."""
    bracket = _bracket(160, 240, seed=3)
    model = checkpoint.load_installed("emvnet-fast-rgb")
    cpu = NetworkMerger(model, "cpu", precision="fp32", prealign="off").merge([bracket])[0]
    gpu_merger = NetworkMerger(checkpoint.load_installed("emvnet-fast-rgb"), "cuda", prealign="off")
    assert gpu_merger.autocast_dtype is torch.bfloat16
    gpu = gpu_merger.merge([bracket])[0]
    assert _close(gpu, cpu) < 0.05


def test_blind_long_and_batched_brackets_on_cuda() -> None:
    """Blind ratios, a 6-frame bracket (the classical noise-aware merge) and a batch of two."""
    merger = _merger("emvnet-fast-rgb", device="cuda")
    blind = merger.merge([_bracket(64, 96, blind=True)])[0]
    assert np.isfinite(blind).all()
    frames = list(_bracket(64, 96, seed=5).frames) * 2  # beyond the trained frame counts: classical
    (out,) = merger.merge([make_bracket(frames, [0.25, 1.0, 4.0, 0.5, 2.0, 8.0], reference=1)])
    assert out.shape == (64, 96, 3) and np.isfinite(out).all()
    one, two = merger.merge([_bracket(64, 96, seed=1), _bracket(64, 96, seed=2)])
    alone = merger.merge([_bracket(64, 96, seed=2)])[0]
    assert one.shape == two.shape == (64, 96, 3)
    assert _close(two, alone) < 0.02  # a batch neighbour changes nothing


def test_tiled_inference_on_cuda_matches_cpu() -> None:
    """Tiles blended on the GPU as on the CPU (tiling itself: test_engine)."""
    bracket = _bracket(200, 260, seed=4)
    tiles = {"precision": "fp32", "tile": 128, "overlap": 32}
    cpu = _merger("emvnet-fast-rgb", **tiles).merge([bracket])[0]
    gpu = _merger("emvnet-fast-rgb", device="cuda", **tiles).merge([bracket])[0]
    assert _close(gpu, cpu) < 1e-2


def test_training_steps_on_cuda(tmp_path: Path) -> None:
    """The smoke config trains, validates, checkpoints and exports on a GPU with bf16 autocast."""
    cfg = load_config(ROOT / "configs" / "smoke.toml")
    cfg = replace(cfg, run=replace(cfg.run, device="cuda", precision="auto"))
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.export is not None and result.best_val is not None and np.isfinite(result.best_val)
    model = checkpoint.load(result.export)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_cuda_tile_follows_free_memory() -> None:
    """Without a tile, a frame larger than the variant's tile runs in the tile the GPU's free memory
    allows (one pass on a large GPU), close to the variant's own tiling."""
    bracket = _bracket(1100, 1500, seed=6)
    auto = NetworkMerger(checkpoint.load_installed("emvnet-fast-rgb"), "cuda", prealign="off")
    fixed = NetworkMerger(checkpoint.load_installed("emvnet-fast-rgb"), "cuda", prealign="off", tile=1024)
    out = auto.merge([bracket])[0]
    (tile, _pixels), *_ = auto._cuda_passes.values()  # type: ignore[union-attr]
    assert tile > auto.config.tile
    ref = fixed.merge([bracket])[0]
    rel = np.abs(out - ref) / np.maximum(ref, 0.05)
    assert float(rel.mean()) < 0.01, float(rel.mean())
