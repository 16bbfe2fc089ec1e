"""HDR+ burst loader on tiny bursts written in the dataset's layouts (DNGs from tests/helpers/dng.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.dng import mosaic_from_rgb, write_dng
from helpers.synth import radiance_scene
from PIL import Image

from emvnet.training.data import DatasetError
from emvnet.training.data.datasets import HdrPlusPairs, collate_brackets
from emvnet.training.data.hdrplus import (
    find_bursts,
    isp_target,
    load_burst,
    make_pair,
    merged_in_frame_units,
    split_bursts,
)

HEIGHT, WIDTH = 48, 64  # sensor pixels; LibRaw refuses sides under 22
BLACK, WHITE = 64, 1023
MERGED_WHITE = 4 * (WHITE - BLACK) + BLACK  # the merge keeps 4x the headroom of one frame


def _codes(lin: np.ndarray, white: int) -> np.ndarray:
    rgb = np.rint(np.clip(lin, 0, 1) * (white - BLACK) + BLACK).astype(np.uint16)
    return mosaic_from_rgb(rgb, "RGGB")


def _write_burst(
    frames_dir: Path, results_dir: Path, reference: int = 1, final_size: tuple[int, int] = (WIDTH, HEIGHT)
) -> np.ndarray:
    """Three 1/100 s frames of a scene shifting 1 px per frame; returns the reference's linear RGB."""
    frames_dir.mkdir(parents=True, exist_ok=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    scene = radiance_scene(HEIGHT, WIDTH + 8, seed=2) * 0.5
    views = [scene[:, 2 * k : 2 * k + WIDTH] for k in range(3)]
    for k, view in enumerate(views):
        write_dng(
            frames_dir / f"payload_N{k:03d}.dng",
            _codes(view, WHITE),
            "RGGB",
            BLACK,
            WHITE,
            exposure_time=0.01,
        )
    (frames_dir / "lens_shading_map_N000.tiff").write_bytes(b"not read")
    write_dng(
        results_dir / "merged.dng", _codes(views[reference] / 4, MERGED_WHITE), "RGGB", BLACK, MERGED_WHITE
    )
    final = (np.clip(views[reference], 0, 1) ** (1 / 2.2) * 255).astype(np.uint8)
    Image.fromarray(final).resize(final_size).save(results_dir / "final.jpg", quality=95)
    (results_dir / "reference_frame.txt").write_text(f"{reference}\n")
    return views[reference]


@pytest.fixture
def dataset_root(tmp_path: Path) -> Path:
    """The published layout: bursts/<id>/ and results_<date>/<id>/."""
    _write_burst(tmp_path / "bursts" / "0001_a", tmp_path / "results_20161014" / "0001_a")
    _write_burst(
        tmp_path / "bursts" / "0002_b", tmp_path / "results_20161014" / "0002_b", final_size=(40, 30)
    )
    return tmp_path


def test_finds_bursts_in_the_published_layout(dataset_root: Path) -> None:
    """Frames sorted by N, results and reference_frame.txt matched by burst id, extras ignored."""
    bursts = find_bursts(dataset_root)
    assert [b.name for b in bursts] == ["0001_a", "0002_b"]
    first = bursts[0]
    assert [p.name for p in first.frames] == ["payload_N000.dng", "payload_N001.dng", "payload_N002.dng"]
    assert first.merged is not None and first.final is not None and first.reference_file is not None


def test_finds_a_single_burst_folder_with_everything_together(tmp_path: Path) -> None:
    """A folder holding frames and results together is one burst; merged.dng is not a frame."""
    _write_burst(tmp_path / "burst", tmp_path / "burst", reference=2)
    (bursts,) = [find_bursts(tmp_path / "burst")]
    assert len(bursts) == 1 and len(bursts[0].frames) == 3
    assert load_burst(bursts[0]).reference == 2
    assert len(find_bursts(tmp_path)) == 1  # a folder of burst folders


def test_missing_bursts_raise_a_dataset_error(tmp_path: Path) -> None:
    """A folder without DNG frames is refused with a typed error."""
    with pytest.raises(DatasetError, match="no HDR\\+ burst"):
        find_bursts(tmp_path)


def test_load_burst_returns_packed_frames_and_both_targets(dataset_root: Path) -> None:
    """Packed RGGB frames at half size, the merged raw rescaled to frame units, the aligned final JPEG."""
    burst = load_burst(find_bursts(dataset_root)[0])
    assert burst.reference == 1 and len(burst.frames) == 3
    for f in burst.frames:
        assert (f.layout, f.domain, f.data.shape) == ("rggb", "linear", (HEIGHT // 2, WIDTH // 2, 4))
        assert f.exposure.exposure_time == pytest.approx(0.01)
    merged = merged_in_frame_units(burst)
    ref = burst.frames[1].data
    ok = (ref > 0.02) & (ref < 0.9)
    np.testing.assert_allclose(merged[ok], ref[ok], atol=4.0 / (WHITE - BLACK))
    isp = isp_target(burst)
    assert isp is not None and isp.shape == (HEIGHT, WIDTH, 3)
    assert isp_target(load_burst(find_bursts(dataset_root)[1])) is None  # rescaled final: misaligned


def test_make_pair_builds_short_reference_and_clipped_long_frame(dataset_root: Path) -> None:
    """The short frame is the burst reference; the long one is another frame x r, clipped at 1."""
    burst = load_burst(find_bursts(dataset_root)[0])
    pair = make_pair(burst, np.random.default_rng(0), ratio_range=(4.0, 4.0))
    short, long = pair.frames
    assert pair.reference == 0 and short is burst.frames[1]
    assert pair.exposure_times[1] / pair.exposure_times[0] == pytest.approx(4.0)
    assert long.data.max() <= 1.0 and (long.data == 1.0).mean() > (short.data >= 1.0).mean()


def test_pairs_dataset_crops_consistently_and_collates(dataset_root: Path) -> None:
    """Items have matching crops of frames, raw target and ISP target; collate stacks them."""
    data = HdrPlusPairs(dataset_root, crop=16, seed=1)
    assert len(data) == 2
    item = data[0]
    assert item["ldr"].shape == (2, 4, 8, 8) and item["hdr"].shape == (4, 8, 8)
    assert item["isp"].shape == (3, 16, 16) and int(item["reference"]) == 0
    assert "isp" not in data[1]
    batch = collate_brackets([data[0], data[1]])
    assert batch["ldr"].shape == (2, 2, 4, 8, 8) and "isp" not in batch
    assert len(HdrPlusPairs(dataset_root, crop=16, require_isp=True)) == 1  # the rescaled final is out


def test_split_is_stable() -> None:
    """The train/validation split depends on burst names only."""
    from emvnet.training.data.hdrplus import BurstFiles

    bursts = [BurstFiles(f"b{i:04d}", (Path("x.dng"),), None, None, None) for i in range(200)]
    train, val = split_bursts(bursts, 0.2)
    again = split_bursts(list(reversed(bursts)), 0.2)
    assert {b.name for b in val} == {b.name for b in again[1]} and 20 < len(val) < 60
    assert len(train) + len(val) == 200


def test_load_burst_can_decode_a_subset(dataset_root: Path) -> None:
    """Loading chosen frames keeps the reference among them and re-indexes it."""
    files = find_bursts(dataset_root)[0]  # reference frame 1
    burst = load_burst(files, [2])
    assert len(burst.frames) == 2 and burst.reference == 0
    full = load_burst(files)
    np.testing.assert_array_equal(burst.frames[1].data, full.frames[2].data)
