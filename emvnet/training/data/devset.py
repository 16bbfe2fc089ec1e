"""The development set: brackets synthesized from held-out radiance maps, in Kalantari's layout.

It mirrors the hidden acceptance set of the training issue (real HDR photographs shot handheld
with a moving object at EV -2/0/+2 and -3/0/+3, and one static 16-exposure capture), built with the
training simulator from `../shared/data/hdr/dev`, which training never reads:

    dynamic-ev2/<image>-<k>   3 frames at EV -2/0/+2, camera shake on the outer frames, 1-2 objects
    dynamic-ev3/<image>-<k>   the same at EV -3/0/+3
    static16/<image>          16 frames one EV apart, tripod, nothing moving

Every bracket is 8-bit (what phones and JPEG pipelines deliver), with a response curve and noise
drawn from the simulator's families, fixed by `seed`; the ground truth is the reference (middle)
view in Kalantari's units (1.0 = where the EV 0 frame clips). Evaluate with
`emvnet eval DEV_DIR --baselines debevec,robertson`, which also reports the mean of each folder.

The dynamic scenes move as the simulator's rigid motion does (a shaken plane, sliding shapes) by
default, or with `--motion realistic` as its layered scenes do (`realistic`: parallax, large,
articulated and deforming motion, subjects that appear or flicker, bright windows, blur in the
long frame); static16 is the same tripod capture either way.

    emvnet devset ../shared/data/hdr/dev --out data/dev
    emvnet devset ../shared/data/hdr/dev --out data/dev-motion --motion realistic
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from emvnet.io import write_image
from emvnet.training.data import DatasetError
from emvnet.training.data.kalantari import EXPOSURES_FILE, GT_NAME
from emvnet.training.data.motion import MotionConfig
from emvnet.training.data.realistic import RealisticMotion
from emvnet.training.data.scenes import HdrScenes
from emvnet.training.data.simulator import Sample, SimulatorConfig, simulate

HDR_SUFFIXES = (".hdr", ".exr")
MOTIONS = ("rigid", "realistic")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Setting:
    """One family of dev scenes."""

    name: str
    frames: int
    ev_step: int  # stops between neighbouring frames
    dynamic: bool
    per_image: int


SETTINGS = (
    Setting("dynamic-ev2", 3, 2, True, 4),
    Setting("dynamic-ev3", 3, 3, True, 4),
    Setting("static16", 16, 1, False, 1),
)


def simulator_config(setting: Setting, size: int, motion: str = "rigid") -> SimulatorConfig:
    """The training simulator pinned to one setting: fixed EVs, 8-bit, middle reference, never blind."""
    if motion not in MOTIONS:
        raise DatasetError(f"--motion must be one of {', '.join(MOTIONS)}, got {motion!r}")
    ratio = float(2**setting.ev_step)
    rigid = MotionConfig(
        p_shake=1.0 if setting.dynamic else 0.0,
        p_objects=1.0 if setting.dynamic else 0.0,
        objects_range=(1, 2),
    )
    return SimulatorConfig(
        mode="rgb",
        size=size,
        frames_range=(setting.frames, setting.frames),
        ratio_range=(ratio, ratio),
        p_integer_ev=1.0,
        bit_depths=(8,),
        bit_weights=(1.0,),
        middle_reference=True,
        p_blind=0.0,
        p_shuffle=0.0,
        motion=rigid,
        # Handheld, with subjects, in every dynamic scene; the other ranges are the training ones.
        realistic_motion=RealisticMotion(p_handheld=1.0, p_subjects=1.0)
        if motion == "realistic" and setting.dynamic
        else None,
    )


def _write_scene(folder: Path, sample: Sample) -> None:
    """Frames as 8-bit TIFFs, EVs relative to the middle frame (the reference), the target in its units."""
    times = np.asarray(sample.exposure_times, dtype=np.float64)
    middle = len(sample.frames) // 2
    assert sample.reference == middle, "the dev set's simulator config pins the middle reference"
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(sample.frames):
        ldr = np.clip(np.rint(frame.data * 255.0), 0, 255).astype(np.uint8)
        ok = cv2.imwrite(str(folder / f"frame_{i:02d}.tif"), cv2.cvtColor(ldr, cv2.COLOR_RGB2BGR))
        if not ok:
            raise OSError(f"could not write {folder / f'frame_{i:02d}.tif'}")
    evs = [math.log2(t / times[middle]) for t in times]
    (folder / EXPOSURES_FILE).write_text("".join(f"{ev:g}\n" for ev in evs))
    write_image(folder / GT_NAME, sample.hdr)


def build_devset(
    sources: Sequence[Path],
    out: Path,
    *,
    size: int = 384,
    seed: int = 2026,
    settings: Sequence[Setting] = SETTINGS,
    motion: str = "rigid",
) -> list[Path]:
    """Write every setting's scenes for every source radiance map under `out`; returns the folders."""
    if not sources:
        raise DatasetError("no radiance maps (.hdr / .exr) to build the development set from")
    folders = []
    for s_index, setting in enumerate(settings):
        config = simulator_config(setting, size, motion)
        for f_index, path in enumerate(sources):
            scenes = HdrScenes([path])
            for k in range(setting.per_image):
                sample = simulate(np.random.default_rng([seed, s_index, f_index, k]), scenes, config)
                name = path.stem + (f"-{k}" if setting.per_image > 1 else "")
                _write_scene(out / setting.name / name, sample)
                folders.append(out / setting.name / name)
    return folders


def find_sources(hdr_dir: Path) -> list[Path]:
    if not hdr_dir.is_dir():
        raise DatasetError(f"{hdr_dir} is not a folder of radiance maps")
    return sorted(p for p in hdr_dir.iterdir() if p.suffix.lower() in HDR_SUFFIXES)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "devset",
        help="synthesize the development set (Kalantari layout) from held-out radiance maps",
        description=(
            "Write 3-frame handheld brackets with moving objects at EV -2/0/+2 and -3/0/+3 and a static "
            "16-exposure bracket for each radiance map in HDR_DIR, each scene a folder with 8-bit TIFF "
            "frames, exposures.txt and HDRImg.hdr; then run `emvnet eval OUT`."
        ),
    )
    parser.add_argument("hdr_dir", type=Path, metavar="HDR_DIR", help="held-out .hdr / .exr radiance maps")
    parser.add_argument("--out", type=Path, required=True, help="output folder (scenes are overwritten)")
    parser.add_argument("--size", type=int, default=384, help="side of the square scenes (default 384)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--per-image", type=int, default=None, help="dynamic scenes per image and EV step (default 4)"
    )
    parser.add_argument(
        "--motion",
        choices=MOTIONS,
        default="rigid",
        help="motion of the dynamic scenes: the simulator's rigid motion (default, the original dev set) "
        "or its realistic layered motion",
    )
    parser.set_defaults(run=cmd_devset)
    return parser


def cmd_devset(args: argparse.Namespace) -> int:
    if args.size < 64:
        raise DatasetError(f"--size must be at least 64, got {args.size}")
    settings: Sequence[Setting] = SETTINGS
    if args.per_image is not None:
        if args.per_image < 1:
            raise DatasetError(f"--per-image must be at least 1, got {args.per_image}")
        settings = [replace(s, per_image=args.per_image) if s.dynamic else s for s in SETTINGS]
    folders = build_devset(
        find_sources(args.hdr_dir),
        args.out,
        size=args.size,
        seed=args.seed,
        settings=settings,
        motion=args.motion,
    )
    log.info("wrote %d scenes to %s", len(folders), args.out)
    return 0
