"""Speed of the bracket simulator on one CPU core: can it feed the trainer?

Target: >= 20 samples/s at 256x256 with 3 frames (a batch of 8 per training step at ~1 step/s,
with headroom for a second worker's share of a 2-core machine). Reports median samples/s over
repeats for:
- "simulate": `simulate()` alone (scene crop, motion, camera, reference choice, target);
- "item": `SyntheticBrackets[i]`, i.e. plus `make_bracket` and the tensors a DataLoader would yield;
for RGB and raw mode, on the real scenes of ../shared/data (decoded once per process and cached, as
in a DataLoader worker after its first epoch; the files are preloaded before timing) and on the
synthetic fallback scenes. Threads are pinned to one (numpy/OpenCV/torch) before anything loads.

    python benchmarks/simulator_speed.py                          # 256 px, 3 frames, 5 x 40 samples
    python benchmarks/simulator_speed.py --size 512 --frames 4 --samples 20 --repeats 3
    python benchmarks/simulator_speed.py --motion realistic       # the layered motion (`realistic`)
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emvnet.training.data.datasets import SyntheticBrackets  # noqa: E402
from emvnet.training.data.realistic import RealisticMotion  # noqa: E402
from emvnet.training.data.scenes import (  # noqa: E402
    HdrScenes,
    MixedScenes,
    PhotoScenes,
    SceneSource,
    SyntheticScenes,
    default_data_root,
    training_files,
)
from emvnet.training.data.simulator import SimulatorConfig, simulate  # noqa: E402


def _real_scenes() -> SceneSource | None:
    hdr, photos = training_files(default_data_root())
    if not hdr or not photos:
        return None
    hdr_source, photo_source = HdrScenes(hdr), PhotoScenes(photos)
    for path in hdr_source.paths:  # preload: the steady state of a worker after its first epoch
        hdr_source.files(path)
    for path in photo_source.paths:
        photo_source.files(path)
    return MixedScenes([(hdr_source, 0.75), (photo_source, 0.25)])


def _rate(fn: Callable[[int], object], n: int, repeats: int, clock: Callable[[], float]) -> float:
    """Median samples per second of fn(index) over `repeats` runs of `n` calls."""
    rates = []
    for r in range(repeats):
        start = clock()
        for i in range(n):
            fn(r * n + i)
        rates.append(n / (clock() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--samples", type=int, default=40, help="samples per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--motion", choices=("rigid", "realistic"), default="rigid")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: what a data worker delivers on an idle core; cpu: this process's CPU time, "
        "steadier on a machine that others share",
    )
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)

    sources: list[tuple[str, SceneSource]] = []
    real = _real_scenes()
    if real is not None:
        sources.append(("shared data", real))
    else:
        print("../shared/data not found: synthetic scenes only")
    sources.append(("synthetic", SyntheticScenes()))

    print(
        f"simulator speed, one core, {args.size}x{args.size}, {args.frames} frames, {args.motion} motion, "
        f"median of {args.repeats}"
    )
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    print(f"{'scenes':<12} {'mode':<4} {'simulate/s':>11} {'item/s':>8}  ({args.clock} clock)")
    for name, scenes in sources:
        for mode in ("rgb", "raw"):
            config = SimulatorConfig(
                mode=mode,
                size=args.size,
                frames_range=(args.frames, args.frames),
                realistic_motion=RealisticMotion() if args.motion == "realistic" else None,
            )
            data = SyntheticBrackets(scenes, config, seed=0)
            for i in range(5):  # warm-up: caches, lazy imports
                data[i]
            sim = _rate(
                lambda i, c=config, s=scenes: simulate(np.random.default_rng([1, i]), s, c),
                args.samples,
                args.repeats,
                clock,
            )
            item = _rate(data.__getitem__, args.samples, args.repeats, clock)
            print(f"{name:<12} {mode:<4} {sim:>11.1f} {item:>8.1f}")


if __name__ == "__main__":
    main()
