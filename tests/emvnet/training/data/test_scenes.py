"""Source scenes: panorama views, flat crops, photo expansion, and which shared files may be used."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from emvnet.io.tonemap import srgb_decode
from emvnet.training.data.scenes import (
    CropConfig,
    ExpandConfig,
    HdrScenes,
    PhotoScenes,
    SyntheticScenes,
    default_data_root,
    default_scenes,
    expand_highlights,
    flat_crop,
    perspective_crop,
    read_rgb,
    training_files,
)

SHARED = default_data_root()


def _latitude_pano(height: int = 64) -> np.ndarray:
    """Equirectangular (H, 2H, 3) whose value is the latitude in degrees (+90 at the top row)."""
    lat = 90.0 - (np.arange(height, dtype=np.float32) + 0.5) / height * 180.0
    return np.repeat(np.repeat(lat[:, None, None], 2 * height, axis=1), 3, axis=2)


@pytest.mark.parametrize("pitch_deg", [-30.0, 0.0, 25.0])
def test_perspective_view_centre_looks_at_the_pitch(pitch_deg: float) -> None:
    """The centre of a pinhole view sees latitude = pitch; rows above it see higher latitudes."""
    view = perspective_crop(
        _latitude_pano(), 33, yaw=1.0, pitch=math.radians(pitch_deg), fov=math.radians(60)
    )
    assert view.shape == (33, 33, 3)
    assert view[16, 16, 0] == pytest.approx(pitch_deg, abs=2.0)
    assert view[0, 16, 0] > view[16, 16, 0] > view[-1, 16, 0]


def test_perspective_view_wraps_around_the_seam() -> None:
    """Looking at yaw = pi (the panorama's left/right seam) samples both edges, never black."""
    pano = np.ones((32, 64, 3), dtype=np.float32)
    view = perspective_crop(pano, 24, yaw=math.pi, pitch=0.0, fov=math.radians(80))
    np.testing.assert_allclose(view, 1.0, atol=1e-6)


def test_flat_crop_is_square_and_deterministic() -> None:
    """Same generator state, same crop; output is (S, S, C) float32."""
    image = np.random.default_rng(0).uniform(0, 1, (50, 80, 3)).astype(np.float32)
    a = flat_crop(image, 24, np.random.default_rng(5), CropConfig())
    b = flat_crop(image, 24, np.random.default_rng(5), CropConfig())
    assert a.shape == (24, 24, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


def test_expand_highlights_keeps_shadows_and_boosts_whites() -> None:
    """Below the knee the result is the sRGB decode; display white gains up to the boost; monotone."""
    ldr = np.linspace(0, 1, 256, dtype=np.float32)[:, None, None].repeat(3, axis=2)
    config = ExpandConfig(knee_range=(0.7, 0.7), boost_range=(16.0, 16.0))
    lin = expand_highlights(ldr, np.random.default_rng(0), config)
    dark = ldr[:, 0, 0] < 0.7
    np.testing.assert_allclose(lin[dark], srgb_decode(ldr)[dark], rtol=1e-5)
    assert lin[-1, 0, 0] == pytest.approx(16.0, rel=1e-3)
    assert np.all(np.diff(lin[:, 0, 0]) >= 0)


def test_training_files_never_include_dev_or_brackets(tmp_path: Path) -> None:
    """Only hdr/train and photos are training sources; hdr/dev and brackets stay out."""
    for rel in ("hdr/train/a.hdr", "hdr/train/b.exr", "hdr/dev/x.hdr", "photos/p.png", "brackets/s/1.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    hdr, photos = training_files(tmp_path)
    assert [p.name for p in hdr] == ["a.hdr", "b.exr"]
    assert [p.name for p in photos] == ["p.png"]


def test_without_shared_data_the_synthetic_source_is_used(tmp_path: Path) -> None:
    """An empty data root falls back to procedural scenes with real dynamic range."""
    source = default_scenes(tmp_path)
    assert isinstance(source, SyntheticScenes)
    crop = source.sample(np.random.default_rng(0), 48)
    assert crop.shape == (48, 48, 3) and crop.min() > 0 and crop.max() / np.median(crop) > 10


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED / "hdr" / "train").is_dir(), reason="../shared/data is not present")
def test_shared_scenes_give_finite_crops() -> None:
    """A panorama, a flat EXR and a photo from ../shared/data each give finite, non-negative crops."""
    hdr, photos = training_files(SHARED)
    assert not any("dev" in p.parts for p in hdr)
    pano = next(p for p in hdr if p.suffix == ".hdr")
    exr = next(p for p in hdr if p.suffix == ".exr")
    rng = np.random.default_rng(0)
    for source in (HdrScenes([pano]), HdrScenes([exr]), PhotoScenes(photos[:1])):
        crop = source.sample(rng, 64)
        assert crop.shape == (64, 64, 3) and np.isfinite(crop).all() and crop.min() >= 0 and crop.max() > 0


def test_file_cache_pickles_empty_and_evicts(tmp_path: Path) -> None:
    """A scene source survives pickling (spawned DataLoader workers) without its decoded files."""
    import pickle

    import cv2

    paths = []
    for k in range(3):
        path = tmp_path / f"p{k}.png"
        cv2.imwrite(str(path), np.full((20, 30, 3), 40 * (k + 1), dtype=np.uint8))
        paths.append(path)
    source = PhotoScenes(paths, cache_size=2)
    rng = np.random.default_rng(0)
    for _ in range(6):
        source.sample(rng, 16)
    assert len(source.files._files) == 2
    clone = pickle.loads(pickle.dumps(source))
    assert len(clone.files._files) == 0 and clone.sample(np.random.default_rng(0), 16).shape == (16, 16, 3)


def test_exr_primaries_come_from_the_header(tmp_path: Path) -> None:
    """An OpenEXR file whose header states ACES AP0 primaries is read in Rec.709; one that states
    none is read as stored."""
    import OpenEXR

    from emvnet.io.primaries import to_rec709_matrix

    ap0 = (0.7347, 0.2653, 0.0, 1.0, 0.0001, -0.077, 0.32168, 0.33767)
    rgb = np.random.default_rng(0).random((8, 12, 3)).astype(np.float32)
    channels = {"RGB": rgb}
    for name, extra in (("plain", {}), ("aces", {"chromaticities": ap0})):
        header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage, **extra}
        with OpenEXR.File(header, channels) as exr:
            exr.write(str(tmp_path / f"{name}.exr"))
    np.testing.assert_array_equal(read_rgb(str(tmp_path / "plain.exr")), rgb)
    matrix = to_rec709_matrix(ap0)
    assert matrix is not None
    expected = np.clip(rgb @ matrix.T, 0.0, None)
    np.testing.assert_allclose(read_rgb(str(tmp_path / "aces.exr")), expected, rtol=1e-5, atol=1e-6)
