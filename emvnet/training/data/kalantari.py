"""Scenes in the layout of Kalantari & Ramamoorthi 2017 ("Deep HDR imaging of dynamic scenes").

One folder per scene:

    scene/
      262A0898.tif 262A0899.tif 262A0900.tif   the LDR frames (any readable format but .hdr/.exr),
                                                taken in file-name order
      exposures.txt                             one exposure value (EV, stops) per frame: -2, 0, 2
      HDRImg.hdr                                ground truth (or the only *.hdr / *.exr in the folder)

Conventions (those of Kalantari's data and code): relative exposure times are 2**EV; the reference
frame is the middle one (index n // 2); the ground truth is aligned to the reference and in the
radiance units of `LDR ** gamma / 2**EV`, i.e. 1.0 = where a frame of EV 0 clips. Our merges return
values in the reference's own units (1.0 = where the reference clips), so `to_gt_units` divides them
by 2**EV_ref (an identity when the reference is at EV 0, as in the dataset).

A folder without `exposures.txt` is a blind scene, and one without an .hdr/.exr has no ground truth
(the real brackets of the visual sheets). `find_scenes` accepts a scene folder or a folder of them
(searched recursively, so Kalantari's Test/PAPER, Test/EXTRA both work).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emvnet.training.data import DatasetError

EXPOSURES_FILE = "exposures.txt"
GT_NAME = "HDRImg.hdr"
GT_SUFFIXES = (".hdr", ".exr")
FRAME_SUFFIXES = (
    *(".tif", ".tiff", ".png", ".jpg", ".jpeg"),
    *(".heic", ".heif", ".avif"),  # phone brackets
    *(".dng", ".cr2", ".nef", ".arw"),
)


@dataclass(frozen=True)
class Scene:
    """One scene: frame files in order, their EVs (None: blind) and the ground truth (None: none)."""

    name: str
    root: Path
    frames: tuple[Path, ...]
    evs: tuple[float, ...] | None
    ground_truth: Path | None

    @property
    def reference(self) -> int:
        """Kalantari's reference: the middle frame."""
        return len(self.frames) // 2

    @property
    def exposures(self) -> tuple[float, ...] | None:
        """Relative exposure times 2**EV, or None for a blind scene."""
        return None if self.evs is None else tuple(2.0**ev for ev in self.evs)

    def to_gt_units(self, hdr_ref: np.ndarray) -> np.ndarray:
        """A merge in reference units (1.0 = reference clipping) -> the ground truth's units."""
        if self.evs is None:
            return hdr_ref
        return (hdr_ref / np.float32(2.0 ** self.evs[self.reference])).astype(np.float32)


def read_evs(path: Path) -> tuple[float, ...]:
    """Exposure values, one per non-empty line; DatasetError naming the file and line if not."""
    evs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            value = float(text)
        except ValueError:
            raise DatasetError(f"{path}:{number}: {text!r} is not an exposure value (EV, e.g. -2)") from None
        if not math.isfinite(value):
            raise DatasetError(f"{path}:{number}: exposure value {text!r} must be finite")
        evs.append(value)
    return tuple(evs)


def _ground_truth(folder: Path, files: list[Path]) -> Path | None:
    candidates = [f for f in files if f.suffix.lower() in GT_SUFFIXES]
    named = [f for f in candidates if f.name == GT_NAME]
    if named:
        return named[0]
    if len(candidates) > 1:
        names = ", ".join(f.name for f in candidates)
        raise DatasetError(
            f"{folder}: several ground-truth candidates ({names}); name the right one {GT_NAME}"
        )
    return candidates[0] if candidates else None


def load_scene_folder(folder: str | os.PathLike[str], name: str | None = None) -> Scene:
    """The Scene of one folder; DatasetError when it has fewer than 2 frames or a bad exposures.txt."""
    root = Path(folder)
    files = sorted(f for f in root.iterdir() if f.is_file() and not f.name.startswith("."))
    frames = tuple(f for f in files if f.suffix.lower() in FRAME_SUFFIXES)
    if len(frames) < 2:
        raise DatasetError(f"{root}: a scene needs at least 2 LDR frames, found {len(frames)}")
    evs = None
    if (root / EXPOSURES_FILE).is_file():
        evs = read_evs(root / EXPOSURES_FILE)
        if len(evs) != len(frames):
            raise DatasetError(
                f"{root / EXPOSURES_FILE} lists {len(evs)} exposure values for {len(frames)} frames "
                f"({', '.join(f.name for f in frames)})"
            )
    return Scene(name or root.name, root, frames, evs, _ground_truth(root, files))


def _is_scene(folder: Path) -> bool:
    frames = [f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in FRAME_SUFFIXES]
    return len(frames) >= 2 or (folder / EXPOSURES_FILE).is_file()


def find_scenes(data_dir: str | os.PathLike[str]) -> list[Scene]:
    """Every scene under `data_dir` (itself a scene, or folders of scenes), sorted by path.

    Scene names are their paths relative to `data_dir` ('PAPER/BarbequeDay'); DatasetError when
    the folder does not exist or holds no scene.
    """
    top = Path(data_dir)
    if not top.is_dir():
        raise DatasetError(f"{top} is not a folder of scenes")
    if _is_scene(top):
        return [load_scene_folder(top)]
    scenes = []
    for dirpath, dirnames, _ in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)
        if folder != top and _is_scene(folder):
            scenes.append(load_scene_folder(folder, folder.relative_to(top).as_posix()))
            dirnames[:] = []  # a scene's subfolders (e.g. aligned copies) are not scenes of their own
    if not scenes:
        raise DatasetError(
            f"no scenes under {top}: expected folders with LDR frames, {EXPOSURES_FILE} and {GT_NAME}"
        )
    return sorted(scenes, key=lambda s: s.name)
