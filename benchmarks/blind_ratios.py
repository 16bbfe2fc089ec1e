"""How far blind exposure ratios land from the true ones: `emvnet.merge.bracket.estimate_ratios` at gamma
2.2 (unsnapped and snapped), and what a blind `make_bracket` keeps ("blind bracket": the shoulder fit
and the gamma search of `read_grid`, falling back to the snapped estimate).

Two sources, each bracket's worst frame counted (|estimated - true| stops, max over its frames):

- simulated brackets of the held-out radiance maps (../shared/data/hdr/dev), drawn the way the
  training simulator draws them (2-4 frames, x2..x16 steps, half on the whole-stop grid, camera
  shake, moving objects, the response family, 8-16 bit), split by gamma-2.2 vs other responses;
- the real brackets of ../shared/data/brackets that come with exposure times (EXIF or a list).

    python benchmarks/blind_ratios.py --samples 150
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emvnet.frame import ExposureInfo, Frame  # noqa: E402
from emvnet.io import read_image  # noqa: E402
from emvnet.merge.bracket import _linear_sample, estimate_ratios, make_bracket  # noqa: E402
from emvnet.training.data.devset import find_sources  # noqa: E402
from emvnet.training.data.scenes import HdrScenes  # noqa: E402
from emvnet.training.data.simulator import SimulatorConfig, simulate  # noqa: E402

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def worst_errors(
    frames: list[Frame], linear: np.ndarray, reference: int, true_stops: np.ndarray
) -> tuple[float, float, float]:
    """(unsnapped, snapped, blind bracket) largest |estimated - true| offset in stops over the frames."""
    raw = np.log2(estimate_ratios(linear, reference, snap=False))
    snapped = np.log2(estimate_ratios(linear, reference))
    unlabelled = [dataclasses.replace(f, exposure=ExposureInfo()) for f in frames]
    blind = np.log2(make_bracket(unlabelled, None, reference).ratios)
    return tuple(float(np.abs(x - true_stops).max()) for x in (raw, snapped, blind))  # type: ignore[return-value]


def simulated(samples: int, hdr_dir: Path) -> dict[str, list[tuple[float, float, float]]]:
    scenes = HdrScenes(find_sources(hdr_dir))
    config = SimulatorConfig(mode="rgb", size=256, p_blind=0.0, p_shuffle=0.0)
    out: dict[str, list[tuple[float, float, float]]] = {"gamma 2.2": [], "other responses": []}
    for k in range(samples):
        s = simulate(np.random.default_rng([7, k]), scenes, config)
        br = make_bracket(s.frames, s.exposure_times, s.reference, calibrate=False)
        true = np.log2(br.ratios)
        key = "gamma 2.2" if s.crf is not None and s.crf.name == "gamma2.20" else "other responses"
        out[key].append(worst_errors(list(s.frames), br.linear, br.reference, true))
    return out


def _times(folder: Path, frames: list) -> list[float] | None:
    listing = folder / "image_list.txt"  # desktop: "name exposure 1/shutter"
    if listing.is_file():
        rows = [r.split() for r in listing.read_text().splitlines() if r.strip() and not r.startswith("#")]
        return [float(r[1]) for r in rows]
    times = [f.exposure.exposure_time for f in frames]
    return None if any(t is None for t in times) else [float(t) for t in times]


def real(brackets_dir: Path) -> list[tuple[str, int, float, float, float]]:
    rows = []
    for folder in sorted(p for p in brackets_dir.iterdir() if p.is_dir()):
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        frames = [read_image(p, max_pixels=60_000_000) for p in paths]
        times = _times(folder, frames) if frames else None
        if times is None or len(times) != len(frames):
            continue
        br = make_bracket(frames, times, calibrate=False)
        lin = _linear_sample(frames, br.crf_gamma)
        rows.append((folder.name, len(frames), *worst_errors(frames, lin, br.reference, np.log2(br.ratios))))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=150, help="simulated brackets (default 150)")
    parser.add_argument("--hdr-dir", type=Path, default=ROOT.parent / "shared/data/hdr/dev")
    parser.add_argument("--brackets-dir", type=Path, default=ROOT.parent / "shared/data/brackets")
    args = parser.parse_args()
    header = (
        "brackets",
        "n",
        "unsnapped mean / median",
        "snapped mean / median",
        "blind bracket mean / median",
        "exact",
    )
    print("| " + " | ".join(header) + " |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    if args.hdr_dir.is_dir():
        for key, errs in simulated(args.samples, args.hdr_dir).items():
            e = np.asarray(errs)
            cells = " | ".join(f"{e[:, k].mean():.2f} / {np.median(e[:, k]):.2f}" for k in range(3))
            exact = " / ".join(f"{np.mean(e[:, k] < 1e-6):.0%}" for k in (1, 2))
            print(f"| simulated, {key} | {len(e)} | {cells} | {exact} |")
    if args.brackets_dir.is_dir():
        for name, n, raw, snapped, blind in real(args.brackets_dir):
            exact = f"{snapped < 1e-6} / {blind < 1e-6}"
            print(f"| real: {name} | {n} frames | {raw:.2f} | {snapped:.2f} | {blind:.2f} | {exact} |")
    print("(worst frame of each bracket: |estimated - true| in stops; exact: snapped / blind bracket)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
