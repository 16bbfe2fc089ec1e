"""The development set builder: Kalantari layout, pinned EVs, middle reference, deterministic."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import pytest

from emvnet.io import read_image, write_image
from emvnet.training.data import DatasetError, devset
from emvnet.training.data.kalantari import find_scenes

SMALL = (
    devset.Setting("dynamic-ev2", 3, 2, True, 2),
    devset.Setting("static16", 16, 1, False, 1),
)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hdr")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:160, 0:200].astype(np.float32)
    base = np.exp(4 * (xx / 200 - 0.5))[..., None] * rng.uniform(0.5, 1, 3).astype(np.float32)
    write_image(root / "ramp.hdr", (base * (1 + 0.4 * np.sin(yy / 6))[..., None]).astype(np.float32))
    write_image(root / "checks.exr", (1 + 20 * ((xx // 16 + yy // 16) % 2))[..., None].repeat(3, 2))
    (root / "notes.txt").write_text("not an image")
    return root


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            h.update(f.relative_to(folder).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


def test_layout_evs_and_ground_truth(sources: Path, tmp_path: Path) -> None:
    out = tmp_path / "dev"
    folders = devset.build_devset(devset.find_sources(sources), out, size=64, settings=SMALL)
    assert len(folders) == 2 * 2 + 2  # 2 dynamic per image, 1 static per image
    scenes = {s.name: s for s in find_scenes(out)}
    assert set(scenes) == {"dynamic-ev2/checks-0", "dynamic-ev2/checks-1", "dynamic-ev2/ramp-0",
                           "dynamic-ev2/ramp-1", "static16/checks", "static16/ramp"}  # fmt: skip
    dyn, static = scenes["dynamic-ev2/ramp-0"], scenes["static16/ramp"]
    assert dyn.evs == (-2.0, 0.0, 2.0) and len(static.frames) == 16
    assert static.evs is not None and static.evs[static.reference] == 0.0
    assert np.diff(static.evs).tolist() == [1.0] * 15
    for scene in (dyn, static):
        frames = [read_image(p) for p in scene.frames]
        assert all(f.bit_depth == 8 and f.data.shape == (64, 64, 3) for f in frames)
        assert scene.ground_truth is not None
        gt = read_image(scene.ground_truth).data
        assert gt.shape == (64, 64, 3) and np.isfinite(gt).all() and gt.max() > 1.0  # the reference clips
        # GT units: 1.0 = where the EV 0 frame clips, so its well-exposed codes predict the GT.
        ref = frames[scene.reference].data
        ok = (ref > 0.2) & (ref < 0.8)
        assert np.corrcoef(ref[ok], gt[ok])[0, 1] > 0.8


def test_same_seed_same_bytes_other_seed_other_scenes(sources: Path, tmp_path: Path) -> None:
    files = devset.find_sources(sources)
    devset.build_devset(files, tmp_path / "a", size=48, settings=SMALL[:1])
    devset.build_devset(files, tmp_path / "b", size=48, settings=SMALL[:1])
    devset.build_devset(files, tmp_path / "c", size=48, settings=SMALL[:1], seed=7)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


def test_realistic_motion_is_its_own_reproducible_set(sources: Path, tmp_path: Path) -> None:
    """--motion realistic: same layout and static scenes, other dynamic scenes, the same bytes twice."""
    files = devset.find_sources(sources)
    for name in ("rigid", "default", "real-a", "real-b"):
        motion = {"rigid": "rigid", "default": None}.get(name, "realistic")
        kwargs = {} if motion is None else {"motion": motion}
        devset.build_devset(files, tmp_path / name, size=48, settings=SMALL, **kwargs)
    assert _digest(tmp_path / "rigid") == _digest(tmp_path / "default")  # the default is the rigid set
    assert _digest(tmp_path / "real-a") == _digest(tmp_path / "real-b")
    assert _digest(tmp_path / "real-a" / "static16") == _digest(tmp_path / "rigid" / "static16")
    assert _digest(tmp_path / "real-a" / "dynamic-ev2") != _digest(tmp_path / "rigid" / "dynamic-ev2")
    scenes = {s.name for s in find_scenes(tmp_path / "real-a")}
    assert scenes == {s.name for s in find_scenes(tmp_path / "rigid")}
    with pytest.raises(DatasetError, match="--motion"):
        devset.build_devset(files, tmp_path / "bad", size=48, settings=SMALL, motion="wobbly")


def test_cli_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no radiance maps"):
        devset.build_devset([], tmp_path)
    with pytest.raises(DatasetError, match="not a folder"):
        devset.find_sources(tmp_path / "missing")
    args = argparse.Namespace(
        hdr_dir=tmp_path, out=tmp_path / "o", size=16, seed=0, per_image=None, motion="rigid"
    )
    with pytest.raises(DatasetError, match="--size"):
        devset.cmd_devset(args)
