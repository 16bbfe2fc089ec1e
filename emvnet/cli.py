"""The `emvnet` command line.

Exit codes: 0 success; 2 bad input or usage (one line on stderr saying why); 1 an internal error.
Progress and timing go to stderr, so stdout stays free for pipelines.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import sys
import time
from collections.abc import Sequence
from fractions import Fraction
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from tqdm import tqdm

from emvnet import registry
from emvnet.errors import EmvnetError
from emvnet.frame import Frame
from emvnet.infer import Enhancer
from emvnet.io import DEFAULT_MAX_PIXELS, output_format_for, read_image, write_image
from emvnet.io.rendition import check_headroom
from emvnet.io.tonemap import ENCODING_GAMMA
from emvnet.merge.bracket import Bracket, Reference

log = logging.getLogger("emvnet")

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2
# Subcommands whose modules pull in torch, the trainer or the evaluator: each module's
# `add_parser(subparsers)` is imported only when its command is named (or all are, for a listing),
# so `emvnet enhance` and `emvnet models` never load the trainer.
COMMAND_MODULES = {
    "eval": "emvnet.evaluation.evaluate",
    "train": "emvnet.training.command",
    "devset": "emvnet.training.data.devset",
}


class UsageError(Exception):
    """A malformed option value: reported like argparse's own errors, with exit code 2."""


def parse_seconds(text: str) -> float:
    """'0.004', '1/250' or '2' -> seconds; the error names the offending value."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(
            f"exposure time {text!r} is not a number of seconds (e.g. 0.01 or 1/100)"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"exposure time {text!r} must be positive")
    return value


def parse_reference(text: str) -> Reference:
    if text == "auto":
        return "auto"
    try:
        index = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"reference must be 'auto' or a 0-based frame index, got {text!r}"
        ) from None
    if index < 0:
        raise argparse.ArgumentTypeError(f"reference index must be >= 0, got {index}")
    return index


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand; with `command`, only that one's module is imported (the
    parser then knows the built-in commands and `command`, unless it names none of them)."""
    plugins = {entry.name: entry for entry in entry_points(group="emvnet.commands")}
    known = {"enhance", "models", *COMMAND_MODULES, *plugins}
    wanted = {command} if command in known else known
    parser = argparse.ArgumentParser(
        prog="emvnet",
        description="Merge multi-exposure LDR brackets into HDR images (EMVNet and classical merges).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debugging detail to stderr")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enh = sub.add_parser(
        "enhance",
        help="merge one bracket of frames into an HDR image",
        description=(
            "Merge 2 or more frames of one scene taken at different exposures into one HDR image. "
            "Inputs: JPEG, PNG (8/16-bit), TIFF (8/16-bit/float), DNG and other camera raw, OpenEXR, "
            "Radiance .hdr, HEIC/HEIF, AVIF. Exposure times come from --exposures, else from EXIF/DNG "
            "tags when every frame has one; without either the merge is blind (ratios estimated from "
            "the frames)."
        ),
        epilog=(
            "Output by extension: .exr (linear, half float unless --exr-precision float), .hdr "
            "(Radiance RGBE), .tif/.tiff (linear float32), .png/.jpg (tonemapped 8-bit sRGB), "
            ".uhdr.jpg or .jpg with --gain-map (Ultra HDR: that JPEG plus a gain map for HDR screens), "
            ".avif (HDR, 10-bit BT.2020 PQ; --hdr-transfer hlg, --avif-bits 12). "
            "Linear outputs are in the reference frame's units: 1.0 is where the reference clips. "
            "Exit codes: 0 ok, 2 bad input (one line on stderr), 1 internal error."
        ),
    )
    enh.add_argument("frames", nargs="+", metavar="FRAME", help="input frames, at least two, any order")
    enh.add_argument("-o", "--output", required=True, metavar="OUT", help="output file; format by extension")
    enh.add_argument(
        "--exposures",
        nargs="+",
        type=parse_seconds,
        metavar="T",
        help="exposure time of each frame in seconds, in frame order (e.g. 1/250 1/60 1/15); wins over EXIF",
    )
    enh.add_argument(
        "--ignore-exif",
        action="store_true",
        help="do not read the frames' EXIF/DNG exposure times: a blind merge unless --exposures is given "
        "(to check a blind merge against the times you have)",
    )
    enh.add_argument(
        "--model",
        default="auto",
        metavar="NAME",
        help="merge model (default: auto); `emvnet models` lists them",
    )
    enh.add_argument(
        "--reference",
        type=parse_reference,
        default="auto",
        metavar="auto|INDEX",
        help="reference frame: 'auto' picks the best-exposed one, or a 0-based index (default: auto)",
    )
    enh.add_argument(
        "--device",
        default="cpu",
        metavar="cpu|cuda|cuda:N|auto",
        help="compute device for network models (default: cpu)",
    )
    enh.add_argument(
        "--gamma",
        type=positive_float,
        default=None,
        help=(
            "inverse camera response of 8/16-bit frames as a plain power law with this gamma (default: "
            f"{ENCODING_GAMMA}, or the curve shape and gamma that best explain the bracket's exposure "
            "steps)"
        ),
    )
    enh.add_argument(
        "--exr-precision", choices=("half", "float"), default="half", help="EXR sample type (default: half)"
    )
    enh.add_argument(
        "--jpeg-quality",
        type=int,
        default=95,
        choices=range(1, 101),
        metavar="1..100",
        help="JPEG output quality, also of Ultra HDR (default: 95)",
    )
    enh.add_argument(
        "--gain-map",
        action="store_true",
        help="write a .jpg as Ultra HDR (ISO 21496-1 gain map), as the .uhdr.jpg extension does",
    )
    enh.add_argument(
        "--hdr-headroom",
        type=positive_float,
        default=None,
        metavar="X",
        help="Ultra HDR/AVIF: brightest highlight over SDR white, 1..49 (default: from the image, <= 16)",
    )
    enh.add_argument(
        "--hdr-transfer", choices=("pq", "hlg"), default="pq", help="AVIF transfer function (default: pq)"
    )
    enh.add_argument(
        "--avif-bits", type=int, choices=(10, 12), default=10, help="AVIF bits per sample (default: 10)"
    )
    enh.add_argument(
        "--max-megapixels",
        type=positive_float,
        default=DEFAULT_MAX_PIXELS / 1e6,
        help=f"refuse frames larger than this (default: {DEFAULT_MAX_PIXELS / 1e6:g})",
    )
    enh.set_defaults(run=cmd_enhance)

    models = sub.add_parser("models", help="list the available merge models")
    models.set_defaults(run=cmd_models)
    for name, module in COMMAND_MODULES.items():
        if name in wanted:
            importlib.import_module(module).add_parser(sub)
    add_plugin_commands(sub, [entry for name, entry in plugins.items() if name in wanted])
    return parser


def _named_command(argv: Sequence[str]) -> str | None:
    """The subcommand `argv` names: its first word that is no option (the global options take no
    values)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def add_plugin_commands(sub: argparse._SubParsersAction, entries: Sequence[EntryPoint]) -> None:
    """Subcommands of packages built on this one (`serve`, `worker`), declared in pyproject.toml.

    The model library must not import the service, so the service adds its commands through the
    `emvnet.commands` entry-point group: each entry is `register(subparsers)`, which adds parsers
    whose `run(args) -> int` is set with `set_defaults`. An entry whose extra is not installed
    (e.g. no FastAPI) is skipped rather than breaking the library's own commands.
    """
    for entry in entries:
        try:
            register = entry.load()
        except ImportError as exc:
            log.debug("command %s unavailable: %s", entry.name, exc)
            continue
        register(sub)


def _describe_exposures(frames: Sequence[Frame], given: Sequence[float] | None, ignore_exif: bool) -> str:
    if ignore_exif and not given:
        return "exposure times ignored (blind merge)"
    times = list(given) if given else [f.exposure.exposure_time for f in frames]
    if not times or any(t is None for t in times):
        return "exposure times unknown (blind merge)"
    text = ", ".join(_fmt_time(t) for t in times if t is not None)
    return f"exposures {text} s ({'given' if given else 'EXIF'})"


def _describe_linearization(bracket: Bracket) -> str | None:
    """How display frames were linearized and, blind, the exposure ratios the merge used: the two
    guesses a blind merge stands on, worth a line when its result surprises."""
    if bracket.frames[0].domain != "display":
        return None
    if bracket.response is not None:
        text = "response calibrated from the bracket"
    else:
        shape = bracket.curve_shape
        curve = (
            ""
            if shape == 0
            else (" after the sRGB curve" if shape == "srgb" else f" after a shoulder {shape:g}")
        )
        text = f"response gamma {bracket.crf_gamma:g}{curve}"
    if bracket.blind:
        ratios = ", ".join(f"{r:.3g}" for r in bracket.ratios)
        how = "whole stops" if bracket.estimated_ratios is not None else "as measured"
        text += f"; exposure ratios to the reference {ratios} ({how}; confidence {bracket.confidence})"
    return text


def _fmt_time(t: float) -> str:
    return f"1/{1 / t:.4g}" if t < 1 else f"{t:.4g}"


def cmd_enhance(args: argparse.Namespace) -> int:
    if len(args.frames) < 2:
        raise UsageError(f"enhance needs at least 2 frames, got {len(args.frames)}")
    out_path = Path(args.output)
    fmt = output_format_for(out_path)  # fail before any decoding on an unknown extension
    if args.gain_map:
        if fmt not in ("jpeg", "uhdr"):
            raise UsageError(f"--gain-map needs a .jpg output, not {out_path.name!r}")
        fmt = "uhdr"
    check_headroom(args.hdr_headroom)
    if not out_path.parent.exists():
        raise UsageError(f"output folder {str(out_path.parent)!r} does not exist")
    if args.exposures is not None and len(args.exposures) != len(args.frames):
        raise UsageError(f"got {len(args.exposures)} exposure times for {len(args.frames)} frames")

    max_pixels = int(args.max_megapixels * 1e6)
    t0 = time.perf_counter()
    enhancer = Enhancer.from_pretrained(
        args.model, device=args.device, max_pixels=max_pixels, crf_gamma=args.gamma
    )
    raw_mode = enhancer.spec.raw_mode
    t1 = time.perf_counter()
    frames: list[Frame] = []
    for path in tqdm(args.frames, desc="reading", unit="frame", disable=None, leave=False):
        frames.append(read_image(path, max_pixels=max_pixels, raw_mode=raw_mode))  # errors name the file
    t2 = time.perf_counter()
    first = frames[0]
    log.info(
        "read %d frames, %dx%d %s, %s in %.2f s",
        len(frames),
        first.width,
        first.height,
        first.source_format,
        _describe_exposures(frames, args.exposures, args.ignore_exif),
        t2 - t1,
    )

    bracket = enhancer.prepare(frames, args.exposures, args.reference, ignore_exif=args.ignore_exif)
    linearization = _describe_linearization(bracket)
    if linearization is not None:
        log.info("%s", linearization)
    if bracket.confidence == "low":
        log.warning(
            "the blind exposure ratios may be a stop or more off (the frames do not pin them down): "
            "give the exposure times (--exposures) for a merge you can trust"
        )
    t3 = time.perf_counter()
    (hdr,) = enhancer.merge([bracket])
    t4 = time.perf_counter()
    mp = bracket.frames[bracket.reference].megapixels
    log.info(
        "merged with %s (reference frame %d%s) in %.2f s: %.2f MP, %.2f s/MP (model load %.2f s)",
        enhancer.name,
        bracket.reference,
        ", blind" if bracket.blind else "",
        t4 - t3,
        mp,
        (t4 - t3) / max(mp, 1e-9),
        t1 - t0,
    )
    write_image(
        out_path,
        hdr,
        fmt=fmt,
        exr_precision=args.exr_precision,
        jpeg_quality=args.jpeg_quality,
        headroom=args.hdr_headroom,
        hdr_transfer=args.hdr_transfer,
        avif_bits=args.avif_bits,
    )
    log.info("wrote %s (%s) in %.2f s", out_path, fmt, time.perf_counter() - t4)
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from emvnet.net import checkpoint  # imports torch

    order = " > ".join(registry.AUTO_ORDER)
    print(f"{registry.AUTO:24s} {'alias':9s} {'rgb':4s}  the first that loads of: {order}")
    for spec in registry.specs():
        weights = ""
        if spec.kind == "network":
            weights = "  [weights installed]" if checkpoint.installed(spec.name) else "  [no weights]"
        print(f"{spec.name:24s} {spec.kind:9s} {spec.input_layout:4s}  {spec.summary}{weights}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(_named_command(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)  # exits 2 with a usage line on malformed options
    level = logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="emvnet: %(message)s", stream=sys.stderr)
    try:
        return int(args.run(args))
    except (EmvnetError, UsageError) as exc:
        print(f"emvnet: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # missing input file, unwritable output, ...
        name = f" {exc.filename!r}" if getattr(exc, "filename", None) else ""
        print(f"emvnet: error: cannot access{name}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
