"""Small-scale ablations of MODEL_CARD.md: the matching volume's switches (Table 3 of the paper) and
the loss terms (Table 4), each a short training of emvnet-fast-rgb scored on the dev set.

Every row trains from the same seed on the same synthetic stream for `--steps` steps (96 px crops,
batch 4, 3 frames), then merges the dev set's dynamic scenes (`emvnet devset`, 3-frame handheld
brackets with moving objects) with known exposures and reports the mean PSNR-mu. The scale is far
below the shipped run's, so the numbers rank the variants; they are not the shipped model's.

    emvnet devset ../shared/data/hdr/dev --out data/dev
    python benchmarks/ablations.py --dev data/dev --out runs/ablations            # every row
    python benchmarks/ablations.py --rows full no-motion --steps 200              # a quick look
    # on a GPU machine, the shipped run's data (128 px, batch 8, 2-4 pre-aligned frames); score later
    python benchmarks/ablations.py --device cuda --workers 12 --scale shipped --steps 1000 --train-only

Rows (Table 3 rows use the shipped objective L_c + 0.1 L_s; Table 4 rows the paper's Eq. 4 weights
for the terms they switch on: L_p 1, L_a 0.001, L_c 0.001 with L_p else 1, L_s 0.25):
    full, no-motion, no-exposure, no-mask                          (Table 3)
    Lc, Lc+Lp, Lc+Lp+La, Lc+Lp+La+Lspix, Lc+Lp+La+Lspat, Lc+Lp+La+Ls   (Table 4)
Writes OUT/ablations.json and OUT/ablations.md (a table per paper table); with `--prealign off`
(finished rows are re-scored, not retrained) OUT/ablations-prealign-off.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emvnet.evaluation.metrics import hdr_metrics  # noqa: E402
from emvnet.io import read_image  # noqa: E402
from emvnet.merge.bracket import make_bracket  # noqa: E402
from emvnet.net import checkpoint  # noqa: E402
from emvnet.net.engine import NetworkMerger, Prealign  # noqa: E402
from emvnet.training.config import TrainConfig, load_config  # noqa: E402
from emvnet.training.data.kalantari import find_scenes  # noqa: E402
from emvnet.training.losses.composite import LossConfig  # noqa: E402
from emvnet.training.trainer import train  # noqa: E402

BASE = ROOT / "configs" / "emvnet-fast-rgb.toml"
SHIPPED_LOSS: dict[str, Any] = {
    "perceptual": False,
    "adversarial": False,
    "content_weight": 1.0,
    "ordinal_weight": 0.1,
}
PAPER = LossConfig.for_task("hdr")

ROWS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    # name: (table, volume switches, loss fields)
    "full": ("3", {}, SHIPPED_LOSS),
    "no-motion": ("3", {"use_motion": False}, SHIPPED_LOSS),
    "no-exposure": ("3", {"use_exposure": False}, SHIPPED_LOSS),
    "no-mask": ("3", {"use_mask": False}, SHIPPED_LOSS),
    "Lc": (
        "4",
        {},
        {"perceptual": False, "adversarial": False, "ordinal_mode": "off", "content_weight": 1.0},
    ),
    "Lc+Lp": ("4", {}, {"adversarial": False, "ordinal_mode": "off"}),
    "Lc+Lp+La": ("4", {}, {"ordinal_mode": "off"}),
    "Lc+Lp+La+Lspix": ("4", {}, {"ordinal_mode": "pix"}),
    "Lc+Lp+La+Lspat": ("4", {}, {"ordinal_mode": "pat"}),
    "Lc+Lp+La+Ls": ("4", {}, {"ordinal_mode": "random"}),
}


SCALES = {
    "small": "96 px crops, batch 4, 3 frames",
    "shipped": "128 px crops, batch 8, 2-4 pre-aligned frames (the shipped run's data)",
}


def row_config(
    name: str, steps: int, scale: str = "small", device: str = "cpu", workers: int | None = None
) -> TrainConfig:
    base = load_config(BASE)
    _, volume, loss = ROWS[name]
    model = replace(base.model, volume=replace(base.model.volume, **volume))
    if scale == "small":
        # Pinned to the settings the MODEL_CARD's CPU figures were made with (before the shipped
        # config turned on pre-aligned training and 2 threads), so the command reproduces them.
        data = replace(
            base.data, size=96, batch=4, frame_counts=(3,), val_samples=8, val_size=128, prealign=False
        )
    else:
        data = replace(base.data, val_samples=8, val_size=128)
    if workers is not None:
        data = replace(data, workers=workers)
    run = replace(
        base.run,
        steps=steps,
        val_every=steps,
        checkpoint_every=steps,
        export="last",
        threads=1 if device == "cpu" else base.run.threads,
        device=device,  # type: ignore[arg-type]
    )
    optim = replace(base.optim, halve_every=max(1, steps // 2))
    return replace(base, model=model, loss=replace(PAPER, **loss), data=data, run=run, optim=optim)


def score(stem: Path, dev: Path, prealign: Prealign = "auto", device: str = "cpu") -> dict[str, float]:
    """Mean PSNR-mu / PSNR-l of a checkpoint on the dev set's dynamic scenes, known exposures."""
    merger = NetworkMerger(checkpoint.load(stem), device, prealign=prealign)
    rows = []
    for scene in find_scenes(dev):
        if not scene.name.startswith("dynamic") or scene.ground_truth is None:
            continue
        frames = [read_image(p) for p in scene.frames]
        (hdr,) = merger.merge([make_bracket(frames, scene.exposures, scene.reference)])
        rows.append(hdr_metrics(scene.to_gt_units(hdr), read_image(scene.ground_truth).data[..., :3]))
    if not rows:
        raise SystemExit(f"{dev} has no dynamic-* scenes with ground truth: run `emvnet devset` first")
    return {
        "psnr_mu": float(np.mean([r["psnr_mu"] for r in rows])),
        "psnr_l": float(np.mean([r["psnr_l"] for r in rows])),
        "scenes": len(rows),
    }


def markdown(results: dict[str, dict[str, Any]], steps: int, prealign: str, scale: str = "small") -> str:
    titles = {
        "3": "Table 3 (matching volume switches; objective L_c + 0.1 L_s)",
        "4": "Table 4 (loss terms; the paper's Eq. 4 weights)",
    }
    parts = [
        f"Small-scale ablations: {steps} steps, {SCALES[scale]}; dev set dynamic scenes, "
        f"pre-alignment {prealign}.",
        "",
    ]
    for table, title in titles.items():
        parts += [f"### {title}", "", "| row | PSNR-mu | PSNR-l | train s |", "| --- | ---: | ---: | ---: |"]
        for name, r in results.items():
            if ROWS[name][0] == table:
                parts.append(
                    f"| {name} | {r['psnr_mu']:.2f} | {r['psnr_l']:.2f} | {r['train_seconds']:.0f} |"
                )
        parts.append("")
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dev", type=Path, default=ROOT / "data" / "dev", help="the dev set (emvnet devset)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "ablations")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument(
        "--prealign",
        choices=["auto", "off"],
        default="auto",
        help="the engine's ORB+ECC pre-alignment when scoring (off: the volume's motion search alone)",
    )
    parser.add_argument("--scale", choices=list(SCALES), default="small", help="training data per row")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the rows train")
    parser.add_argument("--workers", type=int, default=None, help="data workers (default: the config's)")
    parser.add_argument(
        "--train-only", action="store_true", help="train the rows, score later (rerun without this flag)"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "ablations" if args.prealign == "auto" else f"ablations-prealign-{args.prealign}"
    results_path = args.out / f"{stem}.json"
    results: dict[str, dict[str, Any]] = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name in args.rows:
        run_dir = args.out / name
        # A finished row is only re-scored (e.g. with another --prealign): resume stops at once.
        cfg = row_config(name, args.steps, args.scale, args.device, args.workers)
        result = train(cfg, run_dir, resume=run_dir.exists(), progress=True)
        if result.export is None:
            raise SystemExit(f"{name}: the run stopped before exporting; rerun to resume it")
        if args.train_only:
            print(f"{name}: trained {result.seconds:.0f} s", flush=True)
            continue
        results[name] = {
            **score(result.export, args.dev, args.prealign, args.device),
            "train_seconds": result.seconds,
        }
        print(f"{name}: PSNR-mu {results[name]['psnr_mu']:.2f} dB", flush=True)
        results_path.write_text(json.dumps(results, indent=2))
    if args.train_only:
        return 0
    ordered = {name: results[name] for name in ROWS if name in results}
    text = markdown(ordered, args.steps, args.prealign, args.scale)
    (args.out / f"{stem}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
