"""A sheet of simulated brackets: what the training simulator's motion looks like (PNG grid).

One row per sampled bracket: its frames as stored (display-encoded, ascending exposure; the
reference is marked *), the target tonemapped, the plain average of the exposure-normalized
frames (what a merge that trusts every frame would show: its ghosts are the motion), and the loss
mask over the target: red where the mask is 0 (the reference clips and no other frame shows that
content, or the view left the crop), green where some frame has content that does not move with
the background (`Sample.moving`). Each row's label names the layers of a realistic bracket.

    python benchmarks/motion_sheet.py --out out/motion_sheet.png                  # realistic, 8 rows
    python benchmarks/motion_sheet.py --motion rigid --out out/motion_rigid.png   # the rigid motion
    python benchmarks/motion_sheet.py --scenes synthetic --rows 4 --frames 4 --out /tmp/sheet.png
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emvnet.evaluation.report import frame_preview, shared_exposure  # noqa: E402
from emvnet.io.tonemap import display  # noqa: E402
from emvnet.training.data.realistic import RealisticMotion  # noqa: E402
from emvnet.training.data.scenes import SceneSource, SyntheticScenes, default_scenes  # noqa: E402
from emvnet.training.data.simulator import Sample, SimulatorConfig, simulate  # noqa: E402

TILE = 192
LABEL = 18
PAD = 4


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    """`tile` (h, w, 3) uint8 under a strip with `text`."""
    strip = np.full((LABEL, tile.shape[1], 3), 24, dtype=np.uint8)
    cv2.putText(strip, text, (3, LABEL - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (235, 235, 235), 1, cv2.LINE_AA)
    return np.concatenate([strip, tile], 0)


def _fit(rgb8: np.ndarray) -> np.ndarray:
    return cv2.resize(rgb8, (TILE, TILE), interpolation=cv2.INTER_AREA)


def _mask_tile(sample: Sample, target8: np.ndarray) -> np.ndarray:
    out = target8.astype(np.float32) * 0.6
    out[sample.moving] = out[sample.moving] * 0.6 + np.array([0, 255, 0]) * 0.4
    out[~sample.mask] = np.array([255, 0, 0])
    return np.clip(out, 0, 255).astype(np.uint8)


def _row(sample: Sample, index: int, columns: int) -> tuple[np.ndarray, str]:
    tiles = []
    for i, frame in enumerate(sample.frames):
        mark = "*" if i == sample.reference else ""
        ratio = sample.exposure_times[i] / sample.exposure_times[sample.reference]
        tiles.append(_label(_fit(frame_preview(frame.data, frame.domain)), f"{mark}frame {i}  x{ratio:.3g}"))
    exposure = shared_exposure(sample.hdr)
    target8 = display(sample.hdr, exposure=exposure)
    bracket = sample.bracket()
    average = np.mean([lin / ratio for lin, ratio in zip(bracket.linear, bracket.ratios, strict=True)], 0)
    tiles += [None] * (columns - len(sample.frames))
    tiles.append(_label(_fit(target8), "target"))
    tiles.append(_label(_fit(display(average, exposure=exposure)), "average of the frames"))
    masked = (~sample.mask).mean() * 100
    tiles.append(_label(_fit(_mask_tile(sample, target8)), f"mask 0: {masked:.1f} %  moving: green"))
    blank = np.full((TILE + LABEL, TILE, 3), 24, dtype=np.uint8)
    gap = np.full((TILE + LABEL, PAD, 3), 24, dtype=np.uint8)
    row = np.concatenate([x for t in tiles for x in (blank if t is None else t, gap)], 1)
    if sample.scene is None:
        info = f"#{index}: rigid motion"
    else:
        kinds = Counter(layer.kind for layer in sample.scene.layers[1:])
        parts = [f"{k} x{v}" if v > 1 else k for k, v in kinds.items()]
        blur = max(sample.scene.blur)
        info = (
            f"#{index}: " + ", ".join(parts or ["background only"]) + (f"; blur {blur:.2f}" if blur else "")
        )
    return _label(row, info), info


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--rows", type=int, default=8, help="brackets to sample")
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--motion", choices=("realistic", "rigid"), default="realistic")
    parser.add_argument("--scenes", choices=("shared", "synthetic"), default="shared")
    args = parser.parse_args()
    if args.rows < 1 or not 2 <= args.frames <= 16 or args.size < 64:
        parser.error("--rows >= 1, --frames in 2..16 and --size >= 64")
    scenes: SceneSource = SyntheticScenes() if args.scenes == "synthetic" else default_scenes()
    config = SimulatorConfig(
        size=args.size,
        frames_range=(args.frames, args.frames),
        p_shuffle=0.0,
        realistic_motion=RealisticMotion() if args.motion == "realistic" else None,
    )
    rows = []
    for i in range(args.rows):
        row, info = _row(simulate(np.random.default_rng([args.seed, i]), scenes, config), i, args.frames)
        rows.append(row)
        print(info)
    sheet = np.concatenate([x for r in rows for x in (r, np.full((PAD, r.shape[1], 3), 24, np.uint8))], 0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise SystemExit(f"could not write {args.out}")
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()
