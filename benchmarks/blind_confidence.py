"""Blind readings of the real brackets with known times: how far each lands and what it says of itself.

Every bracket of ../shared/data/brackets with exposure times (exposures.txt, a time list or EXIF)
and the bundled demo bracket is merged blind (its times withheld, EXIF stripped): the whole
bracket and, for brackets of 5+ frames, the 3-frame bracket around the middle two frames apart.
Each row gives the worst frame's |blind - true| offset in stops and the bracket's confidence
(`emvnet.merge.bracket.blind_confidence`). The bar: every reading more than 1/3 stop off says "low".
For brackets of 2-4 frames, "with the true curve" is the worst error of the steps measured through
the response `fit_response` reads with the true times: where it is large too, the curve family
(power laws after a shoulder or sRGB) does not describe the camera, and no blind search within it
can land.

    python benchmarks/blind_confidence.py [--max-megapixels 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fidelity_real import downsized, find_brackets  # noqa: E402

from emvnet.evaluation.evaluate import without_exposure_times  # noqa: E402
from emvnet.io import read_image  # noqa: E402
from emvnet.merge.bracket import (  # noqa: E402
    CALIBRATE_MIN_FRAMES,
    _estimate_stops,
    _linear_sample,
    fit_response,
    make_bracket,
)

THIRD_STOP = 1 / 3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "brackets")
    parser.add_argument("--max-megapixels", type=float, default=1.0, help="downsize larger frames first")
    args = parser.parse_args()
    print(
        "| bracket | frames | worst error (stops) | confidence | with the true curve | blind ratios (stops) "
        "| true (stops) |"
    )
    print("| --- | --- | ---: | --- | ---: | --- | --- |")
    misses = 0
    for bracket in find_brackets(args.data, None):
        frames = [downsized(read_image(p), args.max_megapixels) for p in bracket.frames]
        subsets = [list(range(len(frames)))]
        if len(frames) >= 5:
            mid = len(frames) // 2
            subsets.append([mid - 2, mid, mid + 2])
        for idx in subsets:
            blind = make_bracket(without_exposure_times([frames[i] for i in idx]))
            times = np.asarray([bracket.times[i] for i in idx], dtype=np.float64)
            true = np.log2(times / times[blind.reference])
            read = np.log2(blind.ratios)
            worst = float(np.max(np.abs(read - true)))
            missed = worst > THIRD_STOP + 1e-6 and blind.confidence != "low"
            misses += missed
            print(
                f"| {bracket.name} | {','.join(map(str, idx))} | {worst:.2f}{' (!)' if missed else ''} | "
                f"{blind.confidence} | {true_curve_error(blind.frames, times, true, blind.reference)} | "
                f"{np.round(read, 2).tolist()} | {np.round(true, 2).tolist()} |",
                flush=True,
            )
    print(f"\nreadings more than 1/3 stop off without a low confidence: {misses}")
    return 1 if misses else 0


def true_curve_error(frames: tuple, times: np.ndarray, true: np.ndarray, reference: int) -> str:
    """Worst |measured - true| step, in stops, through the curve fitted with the true times."""
    if len(frames) >= CALIBRATE_MIN_FRAMES:
        return "-"  # long brackets calibrate a free-form response instead
    shape, gamma = fit_response(frames, tuple(float(t) for t in times))
    stops, _ = _estimate_stops(_linear_sample(frames, gamma, shape), gamma, snap=False)
    return f"{float(np.max(np.abs(stops - stops[reference] - true))):.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
