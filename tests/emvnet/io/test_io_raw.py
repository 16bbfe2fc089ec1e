"""Camera raw reading through rawpy, on DNGs written by tests/helpers/dng.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers.dng import dng_bytes, write_dng

from emvnet.errors import CorruptImageError, UnsupportedFormatError
from emvnet.io import probe_image, read_image

PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
BLACK, WHITE = 64, 4095
# Sensor codes per site; G1 is the green sharing a row with red, G2 the one sharing a row with blue.
CODES = {"R": 2064, "G1": 1064, "G2": 864, "B": 564}


def _site_names(pattern: str) -> list[str]:
    names = []
    for k, letter in enumerate(pattern):
        row = pattern[2 * (k // 2) : 2 * (k // 2) + 2]
        names.append(("G1" if "R" in row else "G2") if letter == "G" else letter)
    return names


def _flat_mosaic(pattern: str, height: int = 40, width: int = 60) -> np.ndarray:
    mosaic = np.empty((height, width), dtype=np.uint16)
    for k, name in enumerate(_site_names(pattern)):
        mosaic[k // 2 :: 2, k % 2 :: 2] = CODES[name]
    return mosaic


def _normalized(code: float, black: float = BLACK) -> float:
    return (code - black) / (WHITE - black)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_packed_channels_are_r_g1_g2_b(pattern: str) -> None:
    """Whatever the sensor pattern, packed channels come out R, G1, G2, B, black/white normalized."""
    frame = read_image(dng_bytes(_flat_mosaic(pattern), pattern, BLACK, WHITE), raw_mode="packed")
    assert (frame.layout, frame.domain, frame.source_format) == ("rggb", "linear", "dng")
    assert frame.data.dtype == np.float32 and frame.data.flags.c_contiguous
    expected = [_normalized(CODES[c]) for c in ("R", "G1", "G2", "B")]
    np.testing.assert_allclose(frame.data, np.broadcast_to(expected, frame.data.shape), rtol=1e-6)
    assert frame.raw is not None and frame.raw.cfa_pattern == pattern
    assert frame.raw.white_level == WHITE and frame.bit_depth == 12


@pytest.mark.parametrize("pattern", PATTERNS)
def test_packed_sites_align_to_red(pattern: str, rng: np.random.Generator) -> None:
    """Each packed pixel takes its four samples from one 2x2 block that starts on a red site."""
    height, width = 41, 61  # odd on purpose: the packer crops to even after realigning
    mosaic = rng.integers(BLACK, WHITE + 1, size=(height, width), dtype=np.uint16)
    frame = read_image(dng_bytes(mosaic, pattern, BLACK, WHITE), raw_mode="packed")
    k = pattern.index("R")
    dy, dx = divmod(k, 2)
    h2, w2 = (height - dy) // 2, (width - dx) // 2
    assert frame.data.shape == (h2, w2, 4)
    for channel, (oy, ox) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        sites = mosaic[dy + oy :: 2, dx + ox :: 2][:h2, :w2].astype(np.float64)
        np.testing.assert_allclose(frame.data[..., channel], (sites - BLACK) / (WHITE - BLACK), atol=1e-6)


def test_packed_per_position_black_and_clipping() -> None:
    """Per-position black levels are subtracted; codes below black clip to 0 and above white to 1."""
    blacks = (60, 62, 64, 66)
    mosaic = np.full((32, 32), 1000, dtype=np.uint16)
    mosaic[:2, :2] = 0  # below every black level
    mosaic[2:4, 2:4] = 4095  # at white
    frame = read_image(dng_bytes(mosaic, "RGGB", blacks, WHITE), raw_mode="packed")
    expected = [(1000 - b) / (WHITE - b) for b in blacks]
    np.testing.assert_allclose(frame.data[5, 5], expected, rtol=1e-6)
    assert np.all(frame.data[0, 0] == 0.0) and np.all(frame.data[1, 1] == 1.0)
    assert frame.raw is not None and frame.raw.black_level == (60.0, 62.0, 64.0, 66.0)


@pytest.mark.parametrize("pattern", ["RGGB", "BGGR"])
def test_rgb_mode_returns_the_patch_colour(pattern: str) -> None:
    """Demosaicing a flat colour patch returns that colour (camera space = sRGB in the test DNG)."""
    codes = {"R": 2064, "G1": 1064, "G2": 1064, "B": 564}
    mosaic = np.empty((40, 60), dtype=np.uint16)
    for k, name in enumerate(_site_names(pattern)):
        mosaic[k // 2 :: 2, k % 2 :: 2] = codes[name]
    frame = read_image(dng_bytes(mosaic, pattern, BLACK, WHITE))
    assert (frame.layout, frame.domain, frame.data.shape) == ("rgb", "linear", (40, 60, 3))
    inner = frame.data[4:-4, 4:-4].reshape(-1, 3)
    expected = [_normalized(codes[c]) for c in ("R", "G1", "B")]
    np.testing.assert_allclose(inner.mean(axis=0), expected, rtol=0.01)
    assert inner.std(axis=0).max() < 0.005


def test_rgb_mode_grey_is_grey() -> None:
    """A uniform mosaic at half scale demosaics to neutral grey 0.5."""
    mosaic = np.full((32, 48), BLACK + (WHITE - BLACK) // 2, dtype=np.uint16)
    frame = read_image(dng_bytes(mosaic, "GRBG", BLACK, WHITE))
    np.testing.assert_allclose(frame.data[4:-4, 4:-4], 0.5, atol=0.005)


def test_dng_exposure_and_metadata(tmp_path: Path) -> None:
    """Exposure time, ISO and f-number come from the DNG; probe and read agree on size and format."""
    path = write_dng(
        tmp_path / "frame.dng",
        _flat_mosaic("RGGB"),
        "RGGB",
        BLACK,
        WHITE,
        exposure_time=1 / 8,
        iso=200,
        f_number=2.8,
    )
    frame = read_image(path)
    info = probe_image(path)
    for exposure in (frame.exposure, info.exposure):
        assert exposure.exposure_time == pytest.approx(0.125)
        assert exposure.iso == 200 and exposure.aperture == pytest.approx(2.8)
    assert (info.format, info.width, info.height, info.channels, info.bit_depth) == ("dng", 60, 40, 1, 12)
    assert (frame.width, frame.height) == (info.width, info.height)
    assert frame.raw is not None and frame.raw.camera_wb == (1.0, 1.0, 1.0, 1.0)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_orientation_same_in_both_modes(orientation: int) -> None:
    """The raw's orientation makes both modes upright: a bright block lands in the same place."""
    mosaic = np.full((40, 60), 600, dtype=np.uint16)
    mosaic[4:8, 8:14] = 3000  # stored near the top-left corner
    data = dng_bytes(mosaic, "RGGB", BLACK, WHITE, orientation=orientation)
    rgb = read_image(data).data
    packed = read_image(data, raw_mode="packed").data
    info = probe_image(data)
    assert (info.width, info.height) == (rgb.shape[1], rgb.shape[0])
    ys, xs = np.nonzero(rgb[..., 1] > 0.5)
    py, px = np.nonzero(packed[..., 0] > 0.5)
    # Packed pixel (i, j) covers upright rows 2i(+1) and columns 2j(+1), give or take the crop.
    assert abs(ys.mean() - (2 * py.mean() + 0.5)) <= 1.0
    assert abs(xs.mean() - (2 * px.mean() + 0.5)) <= 1.0
    centre = {3: (34, 49), 6: (10, 34), 8: (49, 5)}[orientation]  # stored centre (5.5, 10.5), turned
    assert abs(ys.mean() - centre[0]) <= 1.0 and abs(xs.mean() - centre[1]) <= 1.0


def test_packed_mode_ignored_for_non_raw(rgb8: np.ndarray, pil_encode: Callable[..., bytes]) -> None:
    """raw_mode only concerns camera raws: other formats still read as RGB."""
    assert read_image(pil_encode(rgb8, "PNG"), raw_mode="packed").layout == "rgb"


def test_bad_raw_mode_is_a_value_error() -> None:
    """An unknown raw_mode is a programming error (ValueError), not an input error."""
    with pytest.raises(ValueError, match="raw_mode"):
        read_image(b"", raw_mode="bayer")  # type: ignore[arg-type]


def test_unsupported_error_is_typed_for_unreadable_raw() -> None:
    """Bytes with a raw magic that LibRaw cannot parse raise a typed error, never a LibRaw one."""
    with pytest.raises((UnsupportedFormatError, CorruptImageError)):
        read_image(b"FUJIFILMCCD-RAW 0201FF383501" + b"\x00" * 200)
