"""Reference fidelity (ghost %, colour %, RF-PSNR) of merge methods on the real brackets.

Every bracket under `--data` (default ../shared/data/brackets) whose exposure times are known, plus
the demo bracket bundled in the repository, is merged by every method through `Enhancer` on the
middle frame as the reference (`emvnet eval`'s convention), with the known times and, with
`--blind`, again without them (EXIF times stripped too), and scored by
`emvnet.evaluation.fidelity.reference_fidelity`. Prints one Markdown table (a row per bracket and
method) to stdout, progress to stderr; `--json` writes the rows too.

Known times, first found wins: exposures.txt (one EV per frame, 2**EV), a list file (`TIME_LISTS`:
lines `NAME VALUE`, in seconds in `times.txt` and `image_list.txt`, 1/shutter in `detail.txt` and
`expose.txt`), or EXIF times on every frame. Brackets without any (the merianos sets) are skipped.

    python benchmarks/fidelity_real.py                              # weighted, debevec, emvnet-fast-rgb
    python benchmarks/fidelity_real.py --blind --methods weighted --brackets motion_carport,frobisher
    python benchmarks/fidelity_real.py --max-megapixels 2 --json /tmp/fidelity.json

`--max-megapixels` downsizes larger frames (area filter) before merging, for a quick look at the
8 MP handheld bracket; the figures of record use full-size frames.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emvnet.errors import EmvnetError  # noqa: E402
from emvnet.evaluation.evaluate import without_exposure_times  # noqa: E402
from emvnet.evaluation.fidelity import reference_fidelity  # noqa: E402
from emvnet.frame import Frame  # noqa: E402
from emvnet.infer import Enhancer  # noqa: E402
from emvnet.io import read_image  # noqa: E402
from emvnet.training.data.kalantari import load_scene_folder  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "brackets"
FIXTURE = ROOT / "tests" / "fixtures" / "brackets" / "frobisher"
DEFAULT_METHODS = "weighted,debevec,emvnet-fast-rgb"
# List files beside the frames (lines `NAME VALUE ...`) and what their VALUE is: the shared
# brackets' own conventions (../shared/data/README.md, and image_list.txt's header).
TIME_LISTS = {"times.txt": "seconds", "image_list.txt": "seconds", "detail.txt": "1/s", "expose.txt": "1/s"}


@dataclass(frozen=True)
class Bracket:
    name: str
    frames: tuple[Path, ...]
    times: tuple[float, ...]
    source: str  # where the times come from

    @property
    def reference(self) -> int:
        return len(self.frames) // 2


def _times_from_list(path: Path, frames: tuple[Path, ...], unit: str) -> tuple[float, ...] | None:
    """The frames' times in seconds from a list file whose values are `unit`; None if one is missing."""
    by_name: dict[str, float] = {}
    for line in path.read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and not words[0].startswith("#"):
            value = float(Fraction(words[1]))  # `1/320` or `0.5` or `250`
            by_name[words[0]] = value if unit == "seconds" else 1.0 / value
    if not all(f.name in by_name for f in frames):
        return None
    return tuple(by_name[f.name] for f in frames)


def find_bracket(folder: Path, name: str) -> Bracket | None:
    """The bracket in `folder` with its known times, or None when they are not known."""
    scene = load_scene_folder(folder, name)
    if scene.exposures is not None:
        return Bracket(name, scene.frames, scene.exposures, "exposures.txt")
    for list_name, unit in TIME_LISTS.items():
        if (folder / list_name).is_file():
            times = _times_from_list(folder / list_name, scene.frames, unit)
            if times is not None:
                return Bracket(name, scene.frames, times, list_name)
    exif = [read_image(p).exposure.exposure_time for p in scene.frames]
    if all(t is not None and t > 0 for t in exif):
        return Bracket(name, scene.frames, tuple(float(t) for t in exif if t is not None), "EXIF")
    return None


def find_brackets(data: Path, wanted: set[str] | None) -> list[Bracket]:
    folders = [(f"fixture/{FIXTURE.name}", FIXTURE)]
    if data.is_dir():
        folders += [(f.name, f) for f in sorted(data.iterdir()) if f.is_dir()]
    else:
        print(f"no {data}: the fixture only", file=sys.stderr)
    brackets = []
    for name, folder in folders:
        if wanted is not None and name not in wanted and folder.name not in wanted:
            continue
        bracket = find_bracket(folder, name)
        if bracket is None:
            print(f"skip {name}: no known exposure times", file=sys.stderr)
        else:
            brackets.append(bracket)
    return brackets


def _downsized(frame: Frame, max_megapixels: float | None) -> Frame:
    if max_megapixels is None or frame.megapixels <= max_megapixels:
        return frame
    factor = math.sqrt(max_megapixels / frame.megapixels)
    size = (max(1, round(frame.width * factor)), max(1, round(frame.height * factor)))
    data = cv2.resize(frame.data, size, interpolation=cv2.INTER_AREA)
    return replace(frame, data=np.ascontiguousarray(data, dtype=np.float32))


def score(bracket: Bracket, enhancer: Enhancer, blind: bool, max_megapixels: float | None) -> dict[str, Any]:
    frames = [_downsized(read_image(p), max_megapixels) for p in bracket.frames]
    if blind:
        frames = without_exposure_times(frames)
    t0 = time.perf_counter()
    hdr = enhancer.enhance(frames, None if blind else bracket.times, bracket.reference)
    t1 = time.perf_counter()
    fid = reference_fidelity(hdr[..., :3], frames[bracket.reference].data)
    t2 = time.perf_counter()
    return {
        **fid.scores(),
        "merge_s": t1 - t0,
        "metric_s": t2 - t1,
        "megapixels": frames[0].megapixels,
    }


def _cell(row: dict[str, Any] | None, key: str, spec: str) -> str:
    if row is None:
        return "-"
    if "error" in row:
        return "error"
    value = row[key]
    return format(value, spec) if value is not None and math.isfinite(value) else "-"


def markdown(rows: list[dict[str, Any]], blind: bool) -> str:
    modes = ["known", "blind"] if blind else ["known"]
    head = ["bracket", "times", "method"]
    for mode in modes:
        head += [f"ghost % ({mode})", f"colour % ({mode})", f"RF-PSNR ({mode})"]
    head += ["RF mask %", "metric s", "MP"]
    lines = [
        "| " + " | ".join(head) + " |",
        "| " + " | ".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + " |",
    ]
    for row in rows:
        cells = [row["bracket"], row["times"], row["method"]]
        for mode in modes:
            cells += [_cell(row.get(mode), k, ".2f") for k in ("ghost_pct", "colour_pct", "rf_psnr")]
        known = row.get("known")
        cells += [_cell(known, "rf_coverage_pct", ".1f"), _cell(known, "metric_s", ".3f")]
        cells += [_cell(known, "megapixels", ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    """JSON has no NaN or inf: None in their place."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of bracket folders")
    parser.add_argument(
        "--methods", default=DEFAULT_METHODS, help=f"comma-separated (default {DEFAULT_METHODS})"
    )
    parser.add_argument("--brackets", default="", help="comma-separated bracket names (default: all)")
    parser.add_argument("--blind", action="store_true", help="also merge every bracket without its times")
    parser.add_argument("--max-megapixels", type=float, default=None, help="downsize larger frames first")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON too")
    args = parser.parse_args(argv)
    wanted = {b.strip() for b in args.brackets.split(",") if b.strip()} or None
    brackets = find_brackets(args.data, wanted)
    enhancers = [Enhancer.from_pretrained(m.strip(), device=args.device) for m in args.methods.split(",")]
    rows = []
    for bracket in brackets:
        for enhancer in enhancers:
            row: dict[str, Any] = {"bracket": bracket.name, "times": bracket.source, "method": enhancer.name}
            for mode in ["known", "blind"] if args.blind else ["known"]:
                print(f"{bracket.name}: {enhancer.name} ({mode})", file=sys.stderr)
                try:
                    row[mode] = score(bracket, enhancer, mode == "blind", args.max_megapixels)
                except EmvnetError as exc:  # one bracket a method refuses must not hide the other rows
                    print(f"  failed: {exc}", file=sys.stderr)
                    row[mode] = {"error": str(exc)}
            rows.append(row)
    print(markdown(rows, args.blind))
    if args.json is not None:
        args.json.write_text(json.dumps(_json_safe(rows), indent=2, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
