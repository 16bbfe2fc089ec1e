"""The E2E-ISP variants' display-referred prior: the house curve in torch, white balance, white point."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emvnet.frame import Frame, RawInfo
from emvnet.io.tonemap import display
from emvnet.merge.bracket import make_bracket
from emvnet.merge.isp_prior import camera_wb, display_curve, display_params, packed_to_rgb
from emvnet.net.engine import NetworkMerger


def _chw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(2, 0, 1)[None]


def test_display_curve_matches_the_house_curve() -> None:
    """The torch curve is `tonemap.display(..., exposure=1)` (what E2E-ISP targets are finished
    with) before its 8-bit quantization: within one code everywhere, clipped colours included."""
    rng = np.random.default_rng(0)
    rgb = (rng.random((48, 64, 3)) ** 4 * 12).astype(np.float32)  # ~10 % above white
    ours = display_curve(_chw(rgb), None)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours * 255, display(rgb, exposure=1.0).astype(np.float32), atol=1.0)
    wb = np.array([2.0, 1.0, 1.5], np.float32)
    params = torch.tensor([[2.0, 1.0, 1.5, 3.0]])
    balanced = display_curve(_chw(rgb), params)[0].permute(1, 2, 0).numpy()
    assert balanced.shape == rgb.shape and balanced.min() >= 0 and balanced.max() <= 1
    lum = (rgb * wb) @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    dark = lum < 0.05  # far below white the curve is lum / (1 + lum): the balance shows in the ratios
    assert np.median(balanced[dark][:, 0] / np.maximum(ours[dark][:, 0], 1e-3)) > 1.3


@pytest.mark.parametrize(
    ("gains", "expected"),
    [
        ((2.0, 1.0, 1.5, 1.0), (2.0, 1.0, 1.5)),
        ((2048.0, 1024.0, 1536.0, 0.0), (2.0, 1.0, 1.5)),  # LibRaw's unnormalized multipliers
        (None, (1.0, 1.0, 1.0)),
        ((0.0, 1.0, 1.5, 1.0), (1.0, 1.0, 1.0)),  # unusable: no balance rather than a broken one
    ],
)
def test_camera_wb(gains: tuple[float, ...] | None, expected: tuple[float, ...]) -> None:
    info = RawInfo("RGGB", (0.0,) * 4, 1023.0, camera_wb=gains)
    frame = Frame(np.zeros((4, 4, 4), np.float32), "linear", "rggb", "dng", 10, raw=info)
    np.testing.assert_allclose(camera_wb(frame), expected)


def test_tiles_share_the_brackets_white_point() -> None:
    """The curve is pointwise once its parameters are fixed, so tiles given the bracket's
    parameters agree with the whole picture; a tile left to find its own white point would not."""
    rng = np.random.default_rng(1)
    rgb = np.concatenate([0.3 + rng.random((32, 32, 3)) * 1.7, rng.random((32, 32, 3)) * 20], axis=1).astype(
        np.float32
    )  # a mid-grey left half, a bright right half
    whole = _chw(rgb)
    params = torch.cat([torch.ones(1, 3), torch.tensor([[16.0]])], 1)
    left = display_curve(whole[..., :32], params)
    torch.testing.assert_close(left, display_curve(whole, params)[..., :32])
    alone = display_curve(whole[..., :32], None)  # its own white point (~2): a brighter picture
    assert float((alone - left).mean()) > 0.05


def test_engine_passes_white_balance_and_the_brackets_white() -> None:
    """The engine reads the as-shot balance from the reference frame and measures the white point on
    the whole bracket (the shortest frame stands in where the reference clips)."""
    rng = np.random.default_rng(2)
    scene = (rng.random((24, 32, 4)) ** 3 * 6).astype(np.float32)
    info = RawInfo("RGGB", (0.0,) * 4, 4095.0, camera_wb=(2.0, 1.0, 1.6, 1.0))
    frames = [
        Frame(np.clip(scene * t, 0, 1), "linear", "rggb", "dng", 12, raw=info) for t in (0.25, 1.0, 4.0)
    ]
    bracket = make_bracket(frames, [0.25, 1.0, 4.0], reference=1)
    merger = NetworkMerger.random("emvnet-fast-isp", "cpu")
    *_, params = merger._inputs([bracket])
    assert params is not None and params.shape == (1, 4)
    torch.testing.assert_close(params[0, :3], torch.tensor([2.0, 1.0, 1.6]))
    lin = torch.from_numpy(np.stack([bracket.linear[i] for i in (1, 0, 2)])).permute(0, 3, 1, 2)[None]
    sat = torch.from_numpy(np.stack([bracket.saturated()[i] for i in (1, 0, 2)])).permute(0, 3, 1, 2)[None]
    expected = display_params(lin, sat.float(), torch.tensor([[1.0, 0.25, 4.0]]), params[:, :3])
    torch.testing.assert_close(params, expected)
    assert float(params[0, 3]) > 1.5  # radiance above the reference's clipping sets the white


def test_packed_to_rgb_averages_the_greens() -> None:
    """RGGB -> (R, (G1 + G2) / 2, B) at the packed resolution; other shapes are refused."""
    rggb = torch.stack([torch.full((2, 2), v) for v in (1.0, 2.0, 4.0, 8.0)])[None]
    rgb = packed_to_rgb(rggb)
    assert rgb.shape == (1, 3, 2, 2) and rgb[0, :, 0, 0].tolist() == [1.0, 3.0, 8.0]
    with pytest.raises(ValueError, match="RGGB"):
        packed_to_rgb(rgb)
