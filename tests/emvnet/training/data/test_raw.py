"""Raw path: Bayer pack/unpack matches emvnet.io's layout; unprocess and process are inverses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.dng import mosaic_from_rgb, write_dng

from emvnet.io import read_image
from emvnet.io.raw import pack_rggb as io_pack_rggb
from emvnet.training.data.camera import Noise
from emvnet.training.data.raw import (
    RawConfig,
    finish,
    mosaic_packed,
    pack_rggb,
    process,
    sample_camera,
    sensor_packed,
    unpack_rggb,
    unprocess,
)


def test_pack_unpack_round_trip() -> None:
    """unpack(pack(mosaic)) is the mosaic, and packing agrees with emvnet.io's R, G1, G2, B order."""
    mosaic = np.random.default_rng(0).uniform(0, 1, (8, 12)).astype(np.float32)
    packed = pack_rggb(mosaic)
    assert packed.shape == (4, 6, 4)
    np.testing.assert_array_equal(unpack_rggb(packed), mosaic)
    np.testing.assert_allclose(packed, io_pack_rggb(mosaic, "RGGB", (0.0,) * 4, 1.0), atol=1e-7)


def test_mosaic_packed_samples_like_a_bayer_sensor() -> None:
    """Packing an RGB image equals sampling it through an RGGB CFA, then packing."""
    rgb = np.random.default_rng(1).integers(0, 4096, (10, 14, 3)).astype(np.uint16)
    np.testing.assert_array_equal(mosaic_packed(rgb), pack_rggb(mosaic_from_rgb(rgb, "RGGB")))


def test_unprocess_process_round_trip_and_white_stays_neutral() -> None:
    """process(unprocess(x)) == x, and a white patch unprocesses to 1 / white-balance gains."""
    rng = np.random.default_rng(2)
    camera = sample_camera(rng, RawConfig())
    lin = rng.uniform(0, 4, (6, 7, 3)).astype(np.float32)
    np.testing.assert_allclose(process(unprocess(lin, camera), camera), lin, rtol=1e-4, atol=1e-5)
    white = unprocess(np.ones((1, 1, 3), dtype=np.float32), camera)[0, 0]
    np.testing.assert_allclose(white * np.asarray(camera.wb_gains), 1.0, rtol=1e-5)
    assert camera.black_level < camera.white_level and camera.bits in (10, 12, 14)


def test_finish_gives_display_values() -> None:
    """The E2E-ISP finishing curve returns sRGB values in [0, 1], brighter input brighter output."""
    lin = np.linspace(0, 8, 64, dtype=np.float32).reshape(8, 8, 1).repeat(3, axis=2)
    out = finish(lin)
    assert out.shape == (8, 8, 3) and out.min() >= 0 and out.max() <= 1
    assert np.all(np.diff(out[..., 1].ravel()) >= 0)


def test_sensor_frame_reads_back_identically_from_a_dng(tmp_path: Path) -> None:
    """A simulated packed frame written as a DNG (same black/white levels) reads back equal via emvnet.io."""
    rng = np.random.default_rng(3)
    camera = sample_camera(rng, RawConfig(sensor_bits=(12,), black_fraction_range=(0.02, 0.02)))
    cam = rng.uniform(0, 1.3, (32, 48, 3)).astype(np.float32)
    packed = sensor_packed(cam, camera, Noise(shot=1e-3, read=2e-3), rng)  # (16, 24, 4)
    levels = camera.white_level - camera.black_level
    codes = np.rint(unpack_rggb(packed) * levels + camera.black_level).astype(np.uint16)
    path = write_dng(tmp_path / "frame.dng", codes, "RGGB", camera.black_level, camera.white_level)
    frame = read_image(path, raw_mode="packed")
    assert frame.layout == "rggb" and frame.data.shape == packed.shape
    np.testing.assert_allclose(frame.data, packed, atol=1e-6)


@pytest.mark.parametrize("shape", [(8, 8), (6, 10)])
def test_unpack_gives_even_mosaic(shape: tuple[int, int]) -> None:
    """Unpacking doubles both sides."""
    packed = np.zeros((*shape, 4), dtype=np.float32)
    assert unpack_rggb(packed).shape == (2 * shape[0], 2 * shape[1])
