"""OpenEXR and Radiance reading: precision, channel sets, values as stored."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest

from emvnet.errors import CorruptImageError, UnsupportedFormatError
from emvnet.io import probe_image, read_image

ExrEncode = Callable[[dict[str, np.ndarray]], bytes]


def test_exr_half_rgb(hdr_rgb: np.ndarray, exr_encode: ExrEncode) -> None:
    """A half-float RGB EXR reads back exactly (as float16 values) in RGB order, linear."""
    half = hdr_rgb.astype(np.float16)
    frame = read_image(exr_encode({c: half[:, :, i] for i, c in enumerate("RGB")}))
    assert (frame.domain, frame.layout, frame.source_format, frame.bit_depth) == ("linear", "rgb", "exr", 16)
    assert frame.floating and frame.data.flags.c_contiguous
    assert np.array_equal(frame.data, half.astype(np.float32))


def test_exr_float_rgb(hdr_rgb: np.ndarray, exr_encode: ExrEncode) -> None:
    """A float EXR reads back bit-exact, including values far above 1."""
    frame = read_image(exr_encode({c: hdr_rgb[:, :, i] for i, c in enumerate("RGB")}))
    assert frame.bit_depth == 32
    assert np.array_equal(frame.data, hdr_rgb)


def test_exr_luminance_only(hdr_rgb: np.ndarray, exr_encode: ExrEncode) -> None:
    """A Y-only EXR expands to three equal channels."""
    y = hdr_rgb[:, :, 0]
    frame = read_image(exr_encode({"Y": y}))
    for c in range(3):
        assert np.array_equal(frame.data[..., c], y)
    assert probe_image(exr_encode({"Y": y})).channels == 1


def test_exr_rgba_drops_alpha(hdr_rgb: np.ndarray, exr_encode: ExrEncode) -> None:
    """An RGBA EXR loses its alpha channel."""
    channels = {c: hdr_rgb[:, :, i] for i, c in enumerate("RGB")}
    channels["A"] = np.ones(hdr_rgb.shape[:2], np.float32)
    assert np.array_equal(read_image(exr_encode(channels)).data, hdr_rgb)


def test_exr_mixed_precision(hdr_rgb: np.ndarray, exr_encode: ExrEncode) -> None:
    """Half and float channels in one file are both read; the frame reports 32 bits."""
    channels = {"R": hdr_rgb[:, :, 0], "G": hdr_rgb[:, :, 1].astype(np.float16), "B": hdr_rgb[:, :, 2]}
    frame = read_image(exr_encode(channels))
    assert frame.bit_depth == 32
    assert np.array_equal(frame.data[..., 1], hdr_rgb[:, :, 1].astype(np.float16).astype(np.float32))


def test_exr_packed_rggb(rng: np.random.Generator, exr_encode: ExrEncode) -> None:
    """An EXR with R, G1, G2, B channels reads as a packed raw frame in that order."""
    planes = rng.uniform(0, 1, size=(16, 24, 4)).astype(np.float32)
    frame = read_image(exr_encode({c: planes[:, :, i] for i, c in enumerate(("R", "G1", "G2", "B"))}))
    assert frame.layout == "rggb"
    assert np.array_equal(frame.data, planes)


def test_exr_unknown_channels(exr_encode: ExrEncode) -> None:
    """An EXR without colour channels is refused and its channels are named."""
    with pytest.raises(UnsupportedFormatError, match=r"\(Z\)"):
        read_image(exr_encode({"Z": np.zeros((8, 8), np.float32)}))


def test_exr_nonfinite_replaced(exr_encode: ExrEncode) -> None:
    """NaN and inf in an EXR become 0."""
    plane = np.ones((8, 8), np.float32)
    plane[0, 0], plane[1, 1] = np.nan, np.inf
    frame = read_image(exr_encode({"R": plane, "G": plane, "B": plane}))
    assert np.isfinite(frame.data).all() and frame.data[0, 0, 0] == 0


def test_exr_written_by_opencv(hdr_rgb: np.ndarray) -> None:
    """An EXR written by OpenCV (BGR in, RGB channels in the file) reads in RGB order."""
    ok, data = cv2.imencode(".exr", np.ascontiguousarray(hdr_rgb[:, :, ::-1]))
    if not ok:
        pytest.skip("this OpenCV build cannot write OpenEXR")
    frame = read_image(data.tobytes())
    np.testing.assert_allclose(frame.data, hdr_rgb, rtol=1e-3)


def test_radiance_round_trip(hdr_rgb: np.ndarray) -> None:
    """A Radiance file written by OpenCV reads back in RGB order within RGBE's ~1 % precision."""
    ok, data = cv2.imencode(".hdr", np.ascontiguousarray(hdr_rgb[:, :, ::-1]))
    assert ok
    frame = read_image(data.tobytes())
    assert (frame.domain, frame.floating, frame.source_format) == ("linear", True, "hdr")
    # RGBE shares one exponent per pixel: the error is relative to the pixel's largest channel.
    scale = hdr_rgb.max(axis=-1, keepdims=True)
    assert np.all(np.abs(frame.data - hdr_rgb) <= 0.01 * scale)
    info = probe_image(data.tobytes())
    assert (info.width, info.height, info.floating) == (hdr_rgb.shape[1], hdr_rgb.shape[0], True)


def _radiance(resolution: bytes, body: bytes = b"", fmt: bytes = b"32-bit_rle_rgbe") -> bytes:
    return b"#?RADIANCE\nFORMAT=" + fmt + b"\n\n" + resolution + b"\n" + body


def test_radiance_flipped_orientation_refused() -> None:
    """Resolution lines other than '-Y H +X W' are refused as unsupported, not misread."""
    with pytest.raises(UnsupportedFormatError, match="orientation"):
        read_image(_radiance(b"+Y 4 +X 4", b"\x00" * 64))


def test_radiance_xyze_refused() -> None:
    """XYZE Radiance files are refused as unsupported."""
    with pytest.raises(UnsupportedFormatError, match="32-bit_rle_xyze"):
        read_image(_radiance(b"-Y 4 +X 4", b"\x00" * 64, fmt=b"32-bit_rle_xyze"))


def test_radiance_missing_resolution() -> None:
    """A Radiance header without a resolution line is corrupt."""
    with pytest.raises(CorruptImageError, match="resolution"):
        read_image(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\nnonsense\n")
