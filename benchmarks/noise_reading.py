"""Does the frames' noise settle blind brackets whose steps read as whole stops through two gammas?

2-stop steps through a gamma-1.8 response and 3-stop steps through a gamma-2.7 one both measure about
2.44 stops at gamma 2.2: the levels alone cannot tell them apart (the exponential ambiguity). This
draws such brackets (3 frames, handheld with moving objects, 8-bit, the simulator's noise) from the
training radiance maps, for a plain power law and for a few highlight shoulders, and reads each blind
twice as `make_bracket` does (`read_grid` after the curve-shape fit): from the levels alone, and
with the frames' noise (`noise_profile` / `noise_misfit`). Prints per setting how many readings are
right (the true steps), abstain (merged on gamma 2.2 at the measured steps) or wrong, and how many
are wrong only because of the noise (the levels alone were right or abstained).

    python benchmarks/noise_reading.py --brackets 30 --shoulders 0 0.4 0.8 1.3
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emvnet.frame import ExposureInfo  # noqa: E402
from emvnet.io.tonemap import ENCODING_GAMMA  # noqa: E402
from emvnet.merge.bracket import _linear_sample, fit_curve_shape, read_grid  # noqa: E402
from emvnet.training.data.camera import CrfConfig  # noqa: E402
from emvnet.training.data.devset import SETTINGS, find_sources, simulator_config  # noqa: E402
from emvnet.training.data.scenes import HdrScenes  # noqa: E402
from emvnet.training.data.simulator import simulate  # noqa: E402

CASES = ((1.8, 2), (2.7, 3))  # (gamma, stops per step): the pair that measures alike


def outcome(ratios: np.ndarray | None, stops: int, n: int) -> str:
    if ratios is None:
        return "abstain"
    span = float(np.log2(ratios.max() / ratios.min()))
    return "right" if abs(span - stops * (n - 1)) < 0.01 else "wrong"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--brackets", type=int, default=30, help="per gamma and shoulder (default 30)")
    parser.add_argument("--shoulders", type=float, nargs="+", default=[0.0, 0.4, 0.8, 1.3])
    parser.add_argument("--hdr-dir", type=Path, default=ROOT.parent / "shared/data/hdr/train")
    args = parser.parse_args()
    scenes = HdrScenes(find_sources(args.hdr_dir))
    base = simulator_config(SETTINGS[0], 384)
    jobs = [
        (shoulder, gamma, stops, k)
        for shoulder in args.shoulders
        for gamma, stops in CASES
        for k in range(args.brackets)
    ]
    tally: dict[tuple[float, str], Counter[str]] = {}
    for shoulder, gamma, stops, k in tqdm(jobs, desc="brackets", unit="bracket"):
        crf = CrfConfig(
            p_default=0.0,
            p_srgb=0.0,
            p_filmic=1.0 if shoulder else 0.0,
            gamma_range=(gamma, gamma),
            toe_range=(0.0, 0.0),
            shoulder_range=(shoulder, shoulder),
        )
        config = dataclasses.replace(base, ratio_range=(2.0**stops, 2.0**stops), crf=crf)
        sample = simulate(np.random.default_rng([9, int(gamma * 10), k]), scenes, config)
        frames = [dataclasses.replace(f, exposure=ExposureInfo()) for f in sample.frames]
        shape = fit_curve_shape(frames)
        linear = _linear_sample(frames, ENCODING_GAMMA, shape)
        before = ""
        for label, heard in (("levels only", ()), ("with noise", frames)):
            ratios = read_grid(linear, sample.reference, thirds=shape == 0, frames=heard, shape=shape)[0]
            result = outcome(ratios, stops, len(frames))
            counts = tally.setdefault((shoulder, label), Counter())
            counts[result] += 1
            counts["made wrong"] += int(before not in ("", "wrong") and result == "wrong")
            before = result
    print("| shoulder | reading | right | abstain | wrong | of them wrong only with noise |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for (shoulder, label), c in tally.items():
        made = c["made wrong"] if label == "with noise" else ""
        print(f"| {shoulder:g} | {label} | {c['right']} | {c['abstain']} | {c['wrong']} | {made} |")
    print(f"({2 * args.brackets} brackets per shoulder: gamma 1.8 at 2-stop, gamma 2.7 at 3-stop steps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
