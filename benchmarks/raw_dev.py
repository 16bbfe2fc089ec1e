"""Held-out scores of the raw-domain networks: simulated raw brackets of ../shared/data/hdr/dev.

There are no real raw brackets with ground truth in shared/, so the development check of
emvnet-fast-raw and emvnet-fast-isp draws 3-frame raw brackets (EV -2/0/+2, handheld, moving
objects, the simulator's sensor models and noise) from the held-out radiance maps that training
never reads, and compares:

- raw HDR: emvnet-fast-raw vs `weighted` on the packed frames (PSNR-mu of the packed RGGB HDR,
  normalized by the target's maximum);
- E2E-ISP: emvnet-fast-isp vs a classical pipeline, `weighted` merge -> bilinear demosaic -> the
  camera's white balance and colour matrix -> the same display curve as the targets (PSNR of the
  8-bit sRGB pictures).

    python benchmarks/raw_dev.py --samples 24            # needs the shipped weights
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emvnet.evaluation.metrics import psnr, psnr_mu  # noqa: E402
from emvnet.merge.classical import merge_weighted  # noqa: E402
from emvnet.net import checkpoint  # noqa: E402
from emvnet.net.engine import NetworkMerger  # noqa: E402
from emvnet.training.data.motion import MotionConfig  # noqa: E402
from emvnet.training.data.raw import finish, process  # noqa: E402
from emvnet.training.data.scenes import HdrScenes  # noqa: E402
from emvnet.training.data.simulator import SimulatorConfig, simulate  # noqa: E402


def demosaic_bilinear(packed: np.ndarray) -> np.ndarray:
    """Packed RGGB (h, w, 4) -> camera RGB (2h, 2w, 3) by bilinear upsampling of each plane."""
    h, w = packed.shape[:2]
    planes = [packed[..., 0], 0.5 * (packed[..., 1] + packed[..., 2]), packed[..., 3]]
    return np.stack([cv2.resize(p, (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR) for p in planes], -1)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hdr-dir", type=Path, default=ROOT.parent / "shared" / "data" / "hdr" / "dev")
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--size", type=int, default=384, help="sensor pixels per side (even)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    files = sorted(p for p in args.hdr_dir.iterdir() if p.suffix.lower() in (".hdr", ".exr"))
    if not files:
        raise SystemExit(f"no radiance maps in {args.hdr_dir}")
    config = SimulatorConfig(
        mode="raw",
        size=args.size,
        frames_range=(3, 3),
        ratio_range=(4.0, 4.0),
        p_integer_ev=1.0,
        middle_reference=True,
        p_blind=0.0,
        p_shuffle=0.0,
        motion=MotionConfig(p_shake=1.0, p_objects=1.0, objects_range=(1, 2)),
    )
    raw_net = NetworkMerger(checkpoint.load_installed("emvnet-fast-raw"), "cpu")
    isp_net = NetworkMerger(checkpoint.load_installed("emvnet-fast-isp"), "cpu")
    scores: dict[str, list[float]] = {k: [] for k in ("raw", "raw_weighted", "isp", "isp_classical")}
    for k in range(args.samples):
        scenes = HdrScenes([files[k % len(files)]])
        sample = simulate(np.random.default_rng([args.seed, k]), scenes, config)
        assert sample.camera is not None and sample.isp is not None
        bracket = sample.bracket()
        (raw,) = raw_net.merge([bracket])
        classical = merge_weighted(bracket)
        scores["raw"].append(psnr_mu(raw, sample.hdr))
        scores["raw_weighted"].append(psnr_mu(classical, sample.hdr))
        (isp,) = isp_net.merge([bracket])
        pipeline = finish(process(demosaic_bilinear(classical), sample.camera))
        scores["isp"].append(psnr(np.round(np.clip(isp, 0, 1) * 255) / 255, sample.isp))
        scores["isp_classical"].append(psnr(pipeline, sample.isp))
    names = ", ".join(f.name for f in files)
    print(f"{args.samples} simulated raw brackets of {names}, EV -2/0/+2, {args.size} px")
    print("| task | network | classical | network - classical |")
    print("| --- | ---: | ---: | ---: |")
    for task, a, b in (
        ("raw HDR, PSNR-mu", "raw", "raw_weighted"),
        ("E2E-ISP, sRGB PSNR", "isp", "isp_classical"),
    ):
        net, cls = float(np.mean(scores[a])), float(np.mean(scores[b]))
        print(f"| {task} | {net:.2f} | {cls:.2f} | {net - cls:+.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
