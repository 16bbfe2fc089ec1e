"""Dense blocks: the depthwise-separable block convolved part by part equals the concatenation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from emvnet.frame import Frame
from emvnet.merge.bracket import Bracket, make_bracket
from emvnet.net import checkpoint
from emvnet.net.engine import NetworkMerger, to_channels_last
from emvnet.net.layers.rrdb import DenseBlock

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "brackets" / "frobisher"


def _blocks(model: torch.nn.Module) -> list[DenseBlock]:
    return [m for m in model.modules() if isinstance(m, DenseBlock)]


@pytest.mark.parametrize("channels_last", [False, True])
def test_parts_equal_concatenation(channels_last: bool) -> None:
    """Forward and gradients of the part-by-part block match the concatenating one."""
    torch.manual_seed(0)
    block = DenseBlock(16, 8, depthwise=True)
    if channels_last:
        to_channels_last(block)
    x = torch.randn(2, 16, 19, 23)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = block.forward_parts(xa), block.forward_concat(xb)
    assert a.shape == b.shape == x.shape
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert float((a - x).detach().abs().max()) > 1e-3  # the block does something
    grads = []
    for out, inp in ((a, xa), (b, xb)):
        block.zero_grad()
        (out**2).sum().backward()
        assert inp.grad is not None
        grads.append((inp.grad.clone(), [p.grad.clone() for p in block.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-4, atol=1e-4)
    for ga, gb in zip(grads[0][1], grads[1][1], strict=True):
        torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-4)


def _fixture_bracket() -> Bracket:
    frames = []
    for name in ("IMG_2600", "IMG_2601", "IMG_2602"):
        bgr = cv2.imread(str(FIXTURES / f"{name}.jpg"))[64:224, 96:336]
        rgb = np.ascontiguousarray(bgr[..., ::-1], dtype=np.float32) / 255
        frames.append(Frame(rgb, "display", "rgb", "jpeg", 8))
    return make_bracket(frames, [1 / 8, 1, 8])


@pytest.mark.skipif(not checkpoint.installed("emvnet-fast-rgb"), reason="shipped weights not installed")
def test_shipped_weights_give_the_same_merge() -> None:
    """The shipped emvnet-fast-rgb weights load unchanged (strict) into the part-by-part blocks and
    merge a real bracket as the concatenating blocks do: float32 to rounding, bf16 within 2 %."""
    bracket = _fixture_bracket()
    fp32 = NetworkMerger(checkpoint.load_installed("emvnet-fast-rgb"), precision="fp32", prealign="off")
    parts = fp32.merge([bracket])[0]
    for block in _blocks(fp32.model):
        assert block.depthwise
        block.depthwise = False  # the same modules through the concatenation
    concat = fp32.merge([bracket])[0]
    assert float(concat.max()) > 0.1
    np.testing.assert_allclose(parts, concat, rtol=1e-4, atol=1e-5)
    bf16 = NetworkMerger(checkpoint.load_installed("emvnet-fast-rgb"), precision="bf16", prealign="off")
    low = bf16.merge([bracket])[0]
    rel = np.abs(low - concat) / np.maximum(np.abs(concat), 1e-2)
    assert float(rel.max()) < 0.02, float(rel.max())
