"""`emvnet eval`: quality and speed of merge models on scenes in the Kalantari layout.

    emvnet eval DATA_DIR [--model auto] [--baselines debevec,robertson] [--report report]
                [--blind] [--align auto|always|never] [--no-gt] [--device cpu] [--limit N]

Every method (the --model plus the --baselines) merges the same decoded frames through `Enhancer`
with the same exposure times (2**EV from exposures.txt, else the frames' EXIF times; both withheld
with --blind) and the same reference (the middle frame, Kalantari's convention). Outputs are
brought to the ground truth's units (`Scene.to_gt_units`) and scored with `metrics.hdr_metrics`:
PSNR-mu, SSIM-mu (mu = 5000, both images over the ground truth's maximum), PSNR-l, SSIM-l,
PU21-PSNR, plus seconds per output megapixel (wall time of the `enhance` call on decoded frames,
so file decoding is not counted; the first scene includes each model's warm-up).

Every output, with or without ground truth, is also scored for reference fidelity
(`fidelity.reference_fidelity`: ghost %, colour % and RF-PSNR where the reference frame is well
exposed, and the share of the frame that is, "RF mask %"); on real brackets without ground truth
these are the only quality figures. Fidelity rewards a merge that ignores the other frames, so
read it together with PSNR-mu where a scene has ground truth.

Scale alignment treats every method alike, per scene: with `--align auto` (default) all outputs of
a scene merged blind (--blind, or a scene with neither exposures.txt nor EXIF times on every
frame) are scale-aligned to the ground truth by one least-squares factor, and no output is
aligned otherwise; `--align always` aligns every output (needed for display-referred methods such
as `mertens`, or to factor out a global scale error); `--align never` aligns nothing. The factor
is reported as "scale".

Writes REPORT/metrics.json (every scene and the means), REPORT/metrics.md (the same as tables) and
REPORT/sheet_<scene>.png (`report.comparison_sheet`, with a row of fidelity heat maps); scenes
without ground truth (or all, with --no-gt) get a sheet of frames, outputs and heat maps, and
fidelity and timing only. The table of means goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import posixpath
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from emvnet.errors import EmvnetError
from emvnet.evaluation.fidelity import FIDELITY_NAMES, Fidelity, reference_fidelity
from emvnet.evaluation.metrics import METRIC_NAMES, hdr_metrics, seconds_per_megapixel
from emvnet.evaluation.report import as_rgb, comparison_sheet, frame_preview, markdown_table
from emvnet.frame import Frame
from emvnet.infer import Enhancer
from emvnet.io import DEFAULT_MAX_PIXELS, RawMode, read_image
from emvnet.io.tonemap import MU
from emvnet.training.data.kalantari import Scene, find_scenes

log = logging.getLogger(__name__)

Align = Literal["auto", "always", "never"]
DEFAULT_BASELINES = "debevec,robertson"
COLUMNS = (
    ("psnr_mu", "PSNR-mu", ".2f"),
    ("ssim_mu", "SSIM-mu", ".4f"),
    ("psnr_l", "PSNR-l", ".2f"),
    ("ssim_l", "SSIM-l", ".4f"),
    ("pu21_psnr", "PU21-PSNR", ".2f"),
    ("ghost_pct", "ghost %", ".2f"),
    ("colour_pct", "colour %", ".2f"),
    ("rf_psnr", "RF-PSNR", ".2f"),
    ("rf_coverage_pct", "RF mask %", ".1f"),
    ("s_per_mp", "s/MP", ".3f"),
)


@dataclass(frozen=True)
class EvalOptions:
    methods: tuple[str, ...]  # registry names as asked for ("auto" allowed)
    blind: bool = False
    align: Align = "auto"
    no_gt: bool = False
    device: str = "cpu"
    report_dir: Path = Path("report")
    sheets: bool = True
    limit: int | None = None
    progress: bool = True


@dataclass(frozen=True)
class Method:
    label: str  # the resolved model name, shown in tables
    requested: str
    enhancer: Enhancer


def load_methods(names: Sequence[str], device: str) -> list[Method]:
    """One Enhancer per distinct resolved model ("auto" and an explicit name may coincide)."""
    methods: list[Method] = []
    for name in names:
        enhancer = Enhancer.from_pretrained(name, device=device)
        if any(m.label == enhancer.name for m in methods):
            log.info("%s resolves to %s, already evaluated", name, enhancer.name)
            continue
        methods.append(Method(enhancer.name, name, enhancer))
    return methods


def _read_frames(scene: Scene, raw_mode: RawMode, blind: bool) -> list[Frame]:
    frames = [read_image(p, max_pixels=DEFAULT_MAX_PIXELS, raw_mode=raw_mode) for p in scene.frames]
    return without_exposure_times(frames) if blind else frames


def without_exposure_times(frames: Sequence[Frame]) -> list[Frame]:
    """The frames without their EXIF/DNG exposure times (`Frame.without_exposure_time`)."""
    return [f.without_exposure_time() for f in frames]


def _time_source(scene: Scene, frames: Sequence[Frame], blind: bool) -> str | None:
    """Where the merges' exposure times come from: exposures.txt, the frames' EXIF, or None (blind)."""
    if blind:
        return None
    if scene.exposures is not None:
        return "exposures.txt"
    return "EXIF" if all(f.exposure.exposure_time is not None for f in frames) else None


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no inf (PSNR of identical images)


def evaluate_scene(scene: Scene, methods: Sequence[Method], opts: EvalOptions, bar: tqdm) -> dict[str, Any]:
    """Merge one scene with every method; its JSON record (and its sheet, when enabled)."""
    frames_by_mode: dict[RawMode, list[Frame]] = {}
    first_mode = methods[0].enhancer.spec.raw_mode
    frames_by_mode[first_mode] = _read_frames(scene, first_mode, opts.blind)
    gt = None
    if scene.ground_truth is not None and not opts.no_gt:
        gt = read_image(scene.ground_truth, max_pixels=DEFAULT_MAX_PIXELS).data[..., :3]
    times = _time_source(scene, frames_by_mode[first_mode], opts.blind)
    blind = times is None
    aligned = opts.align == "always" or (opts.align == "auto" and blind)
    record: dict[str, Any] = {
        "name": scene.name,
        "frames": [p.name for p in scene.frames],
        "evs": list(scene.evs) if scene.evs is not None else None,
        "reference": scene.reference,
        "ground_truth": scene.ground_truth.name if gt is not None and scene.ground_truth else None,
        "blind": blind,
        "times": times,
        "aligned": aligned and gt is not None,
        "results": {},
    }
    outputs: dict[str, np.ndarray] = {}
    captions: dict[str, str] = {}
    fidelity: dict[str, Fidelity] = {}
    for method in methods:
        bar.set_postfix_str(f"{scene.name}: {method.label}")
        raw_mode = method.enhancer.spec.raw_mode
        if raw_mode not in frames_by_mode:
            frames_by_mode[raw_mode] = _read_frames(scene, raw_mode, opts.blind)
        frames = frames_by_mode[raw_mode]
        exposures = None if opts.blind else scene.exposures  # None and not blind: the EXIF times
        try:
            t0 = time.perf_counter()
            bracket = method.enhancer.prepare(frames, exposures, scene.reference)
            (hdr,) = method.enhancer.merge([bracket])
            seconds = time.perf_counter() - t0
        except EmvnetError as exc:
            log.warning("%s failed on %s: %s", method.label, scene.name, exc)
            record["results"][method.label] = {"error": str(exc)}
            bar.update()
            continue
        hdr = scene.to_gt_units(hdr)
        result: dict[str, float | str | None] = {
            "seconds": seconds,
            "s_per_mp": seconds_per_megapixel(seconds, hdr.shape[0], hdr.shape[1]),
        }
        if bracket.confidence is not None:  # blind: how far the estimated ratios can be trusted
            result["blind_confidence"] = bracket.confidence
            record.setdefault("blind_confidence", bracket.confidence)
        fid = _fidelity(hdr, frames[scene.reference], method.label)
        if fid is not None:
            fidelity[method.label] = fid
            result.update({k: _finite(v) for k, v in fid.scores().items()})
        if gt is not None:
            if hdr.shape != gt.shape:
                msg = f"output {hdr.shape} and ground truth {gt.shape} differ in shape"
                record["results"][method.label] = {"error": msg, **result}
                bar.update()
                continue
            row = hdr_metrics(hdr, gt, align="lsq" if aligned else "none")
            hdr = hdr * np.float32(row["scale"])
            result.update({k: _finite(v) for k, v in row.items()})
            captions[method.label] = f"{row['psnr_mu']:.2f} dB"
        record["results"][method.label] = result
        outputs[method.label] = hdr
        bar.update()
    if opts.sheets and outputs:
        first = next(iter(frames_by_mode.values()))
        sheet = _write_sheet(scene, first, outputs, gt, captions, fidelity, record, opts.report_dir)
        record["sheet"] = sheet
    return record


def _fidelity(hdr: np.ndarray, reference: Frame, label: str) -> Fidelity | None:
    """Reference fidelity of one output; None (logged) when it is not the reference's shape."""
    out, ref = as_rgb(hdr), as_rgb(reference.data)
    if out.shape != ref.shape:
        log.info("%s: output %s is not the reference's shape %s: no fidelity", label, out.shape, ref.shape)
        return None
    return reference_fidelity(out, ref)


def _write_sheet(
    scene: Scene,
    frames: Sequence[Frame],
    outputs: dict[str, np.ndarray],
    gt: np.ndarray | None,
    captions: dict[str, str],
    fidelity: dict[str, Fidelity],
    record: dict[str, Any],
    report_dir: Path,
) -> str:
    evs: Sequence[float | None] = scene.evs if scene.evs is not None else [None] * len(frames)
    previews = [
        (p.name + (f"  EV {ev:+g}" if ev is not None else ""), frame_preview(f.data, f.domain))
        for p, f, ev in zip(scene.frames, frames, evs, strict=True)
    ]
    mode = "blind, " if record["blind"] else f"times from {record['times']}, "
    mode += "scale-aligned" if record["aligned"] else "unaligned"
    sheet = report_dir / f"sheet_{scene.name.replace('/', '__')}.png"
    title = f"{scene.name}  ({mode}; reference {scene.frames[scene.reference].name})"
    ref_preview = previews[scene.reference][1]
    comparison_sheet(sheet, title, previews, outputs, gt, captions, fidelity, ref_preview)
    return sheet.name


def summarize(records: Sequence[dict[str, Any]], labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean of each metric over the scenes where a method has it, and the scene counts."""
    means: dict[str, dict[str, float]] = {}
    for label in labels:
        rows = [r["results"][label] for r in records if label in r["results"]]
        entry: dict[str, float] = {}
        for key in (*METRIC_NAMES, *FIDELITY_NAMES, "s_per_mp"):
            values = [row[key] for row in rows if row.get(key) is not None]
            if values:
                entry[key] = float(np.mean(values))
        entry["scenes_scored"] = float(sum(1 for row in rows if "psnr_mu" in row))
        entry["scenes_failed"] = float(sum(1 for row in rows if "error" in row))
        means[label] = entry
    return means


def scene_groups(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Scenes by the folder that holds them under DATA_DIR ("" at the top), e.g. Kalantari's
    Test/PAPER and Test/EXTRA or the dev set's dynamic-ev2 / dynamic-ev3 / static16."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(posixpath.dirname(record["name"]), []).append(record)
    return dict(sorted(groups.items()))


def run_eval(data_dir: str | Path, opts: EvalOptions) -> dict[str, Any]:
    """Evaluate every scene under `data_dir`; the JSON document (also written to the report)."""
    scenes = find_scenes(data_dir)[: opts.limit]
    methods = load_methods(opts.methods, opts.device)
    if not methods:
        raise EmvnetError("no methods to evaluate: give --model and/or --baselines")
    opts.report_dir.mkdir(parents=True, exist_ok=True)
    records = []
    with tqdm(
        total=len(scenes) * len(methods),
        desc="eval",
        unit="merge",
        file=sys.stderr,
        disable=not opts.progress,
    ) as bar:
        for scene in scenes:
            records.append(evaluate_scene(scene, methods, opts, bar))
    labels = [m.label for m in methods]
    doc = {
        "data_dir": str(data_dir),
        "methods": [
            {"name": m.label, "requested": m.requested, "kind": m.enhancer.spec.kind} for m in methods
        ],
        "options": {"blind": opts.blind, "align": opts.align, "no_gt": opts.no_gt, "device": opts.device},
        "conventions": {
            "mu": MU,
            "normalization": "both images divided by the ground truth's maximum",
            "alignment": "one least-squares scale factor per output, for every method of a scene alike",
            "pu21": "banding+glare; gt max mapped to 4000 cd/m^2; PSNR peak 256",
            "ssim": "Gaussian 11x11, sigma 1.5, valid windows, channel mean",
            "s_per_mp": "wall seconds of Enhancer.enhance on decoded frames per output megapixel",
            "fidelity": (
                "where every channel of the reference frame is in 0.08..0.92 (eroded 3 px): output "
                "mapped to the reference's levels by a per-channel isotonic curve; ghost % = share with "
                "9x9 mean |mapped - reference| > 0.05, colour % = share with 9x9 mean chromaticity "
                "off by > 0.02 (max over r, g, b), RF-PSNR over that mask"
            ),
        },
        "scenes": records,
        "mean": summarize(records, labels),
    }
    groups = scene_groups(records)
    if len(groups) > 1:
        doc["groups"] = {group: summarize(rows, labels) for group, rows in groups.items()}
    (opts.report_dir / "metrics.json").write_text(json.dumps(doc, indent=2, allow_nan=False))
    (opts.report_dir / "metrics.md").write_text(markdown_report(doc, labels))
    return doc


def markdown_report(doc: dict[str, Any], labels: Sequence[str]) -> str:
    parts = [f"# emvnet eval: {doc['data_dir']}", "", "## Mean over scenes", "", mean_table(doc), ""]
    for group, means in doc.get("groups", {}).items():
        parts += [f"## Mean over {group or 'the top folder'}", "", _table(means), ""]
    for record in doc["scenes"]:
        rows = {
            label: {k: v for k, v in record["results"][label].items() if isinstance(v, float)}
            for label in labels
            if label in record["results"]
        }
        confidence = record.get("blind_confidence")
        notes = f"blind, ratios {confidence} confidence" if record["blind"] and confidence else "blind"
        notes = notes if record["blind"] else f"known exposures ({record['times']})"
        notes += ", scale-aligned" if record["aligned"] else ""
        parts += [f"## {record['name']} ({notes})", "", _table(rows), ""]
        errors = [f"- {label}: {r['error']}" for label, r in record["results"].items() if "error" in r]
        parts += [*errors, ""] if errors else []
    return "\n".join(parts)


def mean_table(doc: dict[str, Any]) -> str:
    return _table(doc["mean"])


def _table(rows: dict[str, dict[str, Any]]) -> str:
    """The Markdown table of `COLUMNS` that some row has (no empty PSNR columns without ground truth)."""
    present = [c for c in COLUMNS if any(c[0] in row for row in rows.values())]
    return markdown_table(rows, present)


def _method_list(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", metavar="DATA_DIR", help="a scene folder or a folder of scene folders")
    parser.add_argument(
        "--model",
        default="auto",
        metavar="NAME",
        help="model to evaluate (default: auto; 'none' for baselines only)",
    )
    parser.add_argument(
        "--baselines",
        default=DEFAULT_BASELINES,
        metavar="A,B",
        help=f"comma-separated comparison models (default: {DEFAULT_BASELINES}; '' for none)",
    )
    parser.add_argument("--report", default="report", metavar="DIR", help="output folder (default: report)")
    parser.add_argument("--blind", action="store_true", help="withhold the exposure values from every method")
    parser.add_argument(
        "--align",
        choices=("auto", "always", "never"),
        default="auto",
        help="least-squares scale alignment: auto = for blind merges, always, or never (default: auto)",
    )
    parser.add_argument(
        "--no-gt",
        action="store_true",
        help="ignore ground truth: reference fidelity, timing and sheets of frames, outputs and heat maps",
    )
    parser.add_argument("--no-sheets", action="store_true", help="skip the PNG comparison sheets")
    parser.add_argument(
        "--device", default="cpu", metavar="cpu|cuda|cuda:N|auto", help="device (default: cpu)"
    )
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N scenes")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `eval` on the `emvnet` command's subparsers (sets `run=cmd_eval`)."""
    parser = subparsers.add_parser(
        "eval",
        help="measure models on scenes in the Kalantari layout",
        description=(
            "Merge every scene (LDR frames, exposures.txt with one EV per line, ground truth *.hdr/*.exr) "
            "with the model and the baselines, score PSNR/SSIM-mu, PSNR/SSIM-l, PU21-PSNR (with ground "
            "truth), reference fidelity (ghost %, colour %, RF-PSNR; always) and s/MP, and write "
            "metrics.json, metrics.md and comparison sheets to --report."
        ),
    )
    add_arguments(parser)
    parser.set_defaults(run=cmd_eval)
    return parser


def options_from_args(args: argparse.Namespace) -> EvalOptions:
    model = [] if args.model in ("", "none") else [args.model]
    if args.limit is not None and args.limit < 1:
        raise EmvnetError(f"--limit must be >= 1, got {args.limit}")
    return EvalOptions(
        methods=tuple(model + _method_list(args.baselines)),
        blind=args.blind,
        align=args.align,
        no_gt=args.no_gt,
        device=args.device,
        report_dir=Path(args.report),
        sheets=not args.no_sheets,
        limit=args.limit,
    )


def cmd_eval(args: argparse.Namespace) -> int:
    doc = run_eval(args.data_dir, options_from_args(args))
    print(mean_table(doc))  # noqa: T201 - the command's result goes to stdout
    log.info("wrote %s", Path(args.report) / "metrics.json")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`emvnet eval` on its own (tests, `python -m emvnet.evaluation.evaluate`); exit 2 on bad input."""
    parser = argparse.ArgumentParser(prog="emvnet eval")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_eval(args)
    except EmvnetError as exc:
        print(f"emvnet: error: {exc}", file=sys.stderr)  # noqa: T201
        return 2


if __name__ == "__main__":
    sys.exit(main())
