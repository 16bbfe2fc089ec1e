"""Kalantari-layout scenes: discovery, exposure files, ground truth and unit conventions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from helpers.brackets import encode_heic

from emvnet.io import write_image
from emvnet.training.data import DatasetError
from emvnet.training.data.kalantari import find_scenes, load_scene_folder, read_evs


def make_scene(
    folder: Path,
    radiance: np.ndarray,
    evs: tuple[float, ...] = (-2.0, 0.0, 2.0),
    *,
    gt: bool = True,
    exposures: bool = True,
    gamma: float = 2.2,
) -> Path:
    """Write 16-bit TIFF frames clip(radiance 2^EV)^(1/gamma), exposures.txt and HDRImg.hdr."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, ev in enumerate(evs):
        code = np.clip(radiance * 2.0**ev, 0, 1) ** (1 / gamma)
        tifffile.imwrite(folder / f"frame_{k:02d}.tif", np.round(code * 65535).astype(np.uint16))
    if exposures:
        (folder / "exposures.txt").write_text("".join(f"{ev:g}\n" for ev in evs))
    if gt:
        write_image(folder / "HDRImg.hdr", radiance.astype(np.float32))
    return folder


def test_find_scenes_in_a_folder_of_scenes(tmp_path: Path) -> None:
    """Scene folders are found (nested too), sorted, with frames in name order and EVs as times."""
    rad = np.full((16, 16, 3), 0.3, np.float32)
    make_scene(tmp_path / "Test" / "b", rad)
    make_scene(tmp_path / "Test" / "a", rad, gt=False)
    scenes = find_scenes(tmp_path)
    assert [s.name for s in scenes] == ["Test/a", "Test/b"]
    b = scenes[1]
    assert [p.name for p in b.frames] == ["frame_00.tif", "frame_01.tif", "frame_02.tif"]
    assert b.evs == (-2.0, 0.0, 2.0) and b.exposures == (0.25, 1.0, 4.0)
    assert b.reference == 1 and b.ground_truth is not None and b.ground_truth.name == "HDRImg.hdr"
    assert scenes[0].ground_truth is None


def test_a_scene_folder_itself_is_one_scene(tmp_path: Path) -> None:
    """DATA_DIR may be a single scene; without exposures.txt the scene is blind."""
    make_scene(tmp_path / "s", np.full((8, 8, 3), 0.2, np.float32), exposures=False)
    (scene,) = find_scenes(tmp_path / "s")
    assert scene.evs is None and scene.exposures is None


def test_phone_heic_brackets_are_scenes(tmp_path: Path) -> None:
    """A folder of iPhone HEIC frames (upper-case .HEIC) is a scene, for `emvnet eval --no-gt`."""
    folder = tmp_path / "iphone"
    folder.mkdir()
    for k in range(3):
        (folder / f"IMG_{k:04d}.HEIC").write_bytes(encode_heic(np.full((16, 16, 3), 60 * k, np.uint8)))
    (scene,) = find_scenes(folder)
    assert [p.name for p in scene.frames] == ["IMG_0000.HEIC", "IMG_0001.HEIC", "IMG_0002.HEIC"]


def test_to_gt_units_divides_by_the_reference_exposure(tmp_path: Path) -> None:
    """Reference units (1 = reference clipping) become GT units by dividing by 2**EV_ref."""
    scene = load_scene_folder(
        make_scene(tmp_path / "s", np.ones((8, 8, 3), np.float32), evs=(-1.0, 1.0, 3.0))
    )
    assert scene.reference == 1
    np.testing.assert_allclose(scene.to_gt_units(np.ones((2, 2, 3), np.float32)), 0.5)


def test_bad_layouts_raise_dataset_errors(tmp_path: Path) -> None:
    """Wrong EV counts, non-numbers, missing frames and ambiguous ground truths are DatasetErrors."""
    folder = make_scene(tmp_path / "s", np.full((8, 8, 3), 0.2, np.float32))
    (folder / "exposures.txt").write_text("-2\n0\n")
    with pytest.raises(DatasetError, match="2 exposure values for 3 frames"):
        load_scene_folder(folder)
    (folder / "exposures.txt").write_text("-2\nzero\n2\n")
    with pytest.raises(DatasetError, match="not an exposure value"):
        read_evs(folder / "exposures.txt")
    (folder / "exposures.txt").write_text("-2\n0\n2\n")
    write_image(folder / "other.exr", np.ones((8, 8, 3), np.float32))
    assert load_scene_folder(folder).ground_truth.name == "HDRImg.hdr"  # type: ignore[union-attr]
    (folder / "HDRImg.hdr").rename(folder / "merged.hdr")
    with pytest.raises(DatasetError, match="several ground-truth"):
        load_scene_folder(folder)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no scenes"):
        find_scenes(tmp_path / "empty")
