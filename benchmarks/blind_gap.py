"""What merging blind (no exposure times) costs against known times, on dev-like brackets.

Brackets are drawn as `emvnet devset` draws them (3 frames at EV -2/0/+2 and -3/0/+3 with shake and
moving objects, a 16-frame tripod sequence; the simulator's response family, 8-bit) from the
held-out radiance maps, for seeds other than the dev set's, plus brackets drawn as the trainer
draws them ("training mix": 2-4 frames, x2..x16 steps, half of them off the whole-stop grid, 8-16
bit), and merged by the classical weighted merge (the network's prior) three ways: with the
times, blind, and blind without the response fit (`make_bracket(..., calibrate=False)`: gamma 2.2
and the snapped ratio estimate alone). Every output is scale-aligned by one
least-squares factor (`hdr_metrics(align="lsq")`), so the differences are the blind merge's own.
Prints PSNR-mu differences (blind - known) per setting: mean and worst scene.

    python benchmarks/blind_gap.py --seeds 77 5 --per-image 8
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emvnet.evaluation.metrics import hdr_metrics  # noqa: E402
from emvnet.frame import ExposureInfo  # noqa: E402
from emvnet.merge.bracket import Bracket, make_bracket  # noqa: E402
from emvnet.merge.classical import merge_weighted  # noqa: E402
from emvnet.training.data.devset import SETTINGS, find_sources, simulator_config  # noqa: E402
from emvnet.training.data.scenes import HdrScenes  # noqa: E402
from emvnet.training.data.simulator import Sample, SimulatorConfig, simulate  # noqa: E402


def _score(bracket: Bracket, truth: np.ndarray) -> float:
    return hdr_metrics(merge_weighted(bracket), truth, align="lsq")["psnr_mu"]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[77, 5], help="scene seeds (dev set: 2026)")
    parser.add_argument("--per-image", type=int, default=8, help="dynamic brackets per radiance map, setting")
    parser.add_argument("--mixed", type=int, default=48, help="brackets of the training mix (default 48)")
    parser.add_argument("--hdr-dir", type=Path, default=ROOT.parent / "shared/data/hdr/dev")
    args = parser.parse_args()
    sources = find_sources(args.hdr_dir)
    jobs: list[tuple[str, int, int, int, int]] = [
        (setting.name, seed, s_index, f_index, k)
        for seed in args.seeds
        for s_index, setting in enumerate(SETTINGS)
        for f_index in range(len(sources))
        for k in range(args.per_image if setting.dynamic else 1)
    ]
    jobs += [("training mix", 7, -1, -1, k) for k in range(args.mixed)]
    gaps: dict[str, dict[str, list[float]]] = {}
    mixed = SimulatorConfig(mode="rgb", size=256, p_blind=0.0, p_shuffle=0.0)
    for name, seed, s_index, f_index, k in tqdm(jobs, desc="brackets", unit="bracket"):
        sample: Sample
        if s_index < 0:
            sample = simulate(np.random.default_rng([seed, k]), HdrScenes(sources), mixed)
        else:
            config = simulator_config(SETTINGS[s_index], 384)
            rng = np.random.default_rng([seed, s_index, f_index, k])
            sample = simulate(rng, HdrScenes([sources[f_index]]), config)
        reference = sample.reference
        unlabelled = [dataclasses.replace(f, exposure=ExposureInfo()) for f in sample.frames]
        known = _score(make_bracket(sample.frames, sample.exposure_times, reference), sample.hdr)
        row = gaps.setdefault(name, {"blind": [], "uncalibrated": []})
        row["blind"].append(_score(make_bracket(unlabelled, None, reference), sample.hdr) - known)
        uncalibrated = make_bracket(unlabelled, None, reference, calibrate=False)
        row["uncalibrated"].append(_score(uncalibrated, sample.hdr) - known)
    print("| setting | brackets | blind - known: mean / worst | uncalibrated blind - known: mean / worst |")
    print("| --- | ---: | ---: | ---: |")
    for name, rows in gaps.items():
        cells = " | ".join(f"{np.mean(v):+.2f} / {np.min(v):+.1f}" for v in rows.values())
        print(f"| {name} | {len(rows['blind'])} | {cells} |")
    print("(PSNR-mu dB of the weighted merge, every output least-squares scale-aligned)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
