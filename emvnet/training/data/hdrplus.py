"""Google's HDR+ burst dataset (Hasinoff et al. 2016) for raw HDR and E2E-ISP training (Sec. 5.1.1-2).

Accepted layouts (`find_bursts`):
1. The dataset as published: a root holding `bursts/<id>/` (frames) and one or more
   `results_<date>/<id>/` (results); the newest `results_*` folder holding an id wins.
2. A folder of burst folders, each holding frames and results together.
3. A single burst folder.
In a burst folder the frames are `payload_N<k>.dng` (sorted by k), or, failing that, every other
`*.dng` sorted by name; `merged.dng` is the merged raw result, `final.jpg` the finished picture,
and `reference_frame.txt` the 0-based index of the frame the merge aligned to (looked for with the
results, then with the frames; 0 when absent). Names are matched case-insensitively; lens-shading
maps, `rgb2rgb.txt` and timing files are ignored (the model learns shading implicitly, Sec. 5.1.2).

Frames and the merged result are read as normalized packed RGGB (`emvnet.io`, raw_mode "packed"),
`final.jpg` as display-encoded RGB. `make_pair` builds the paper's synthetic two-exposure input.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emvnet.frame import ExposureInfo, Frame
from emvnet.io import probe_image, read_image
from emvnet.training.data import DatasetError
from emvnet.training.data.camera import Noise

_PAYLOAD = re.compile(r"^payload_n(\d+)\.dng$", re.IGNORECASE)
_MAX_PIXELS = 64_000_000


@dataclass(frozen=True)
class BurstFiles:
    """Paths of one burst; results may be missing (then only the frames are usable)."""

    name: str
    frames: tuple[Path, ...]
    merged: Path | None
    final: Path | None
    reference_file: Path | None


def _find(folder: Path | None, filename: str) -> Path | None:
    if folder is None or not folder.is_dir():
        return None
    return next((p for p in sorted(folder.iterdir()) if p.name.lower() == filename and p.is_file()), None)


def _frame_paths(folder: Path) -> tuple[Path, ...]:
    files = [p for p in folder.iterdir() if p.is_file()]
    payload = [(int(m.group(1)), p) for p in files if (m := _PAYLOAD.match(p.name))]
    if payload:
        return tuple(p for _, p in sorted(payload))
    return tuple(sorted(p for p in files if p.suffix.lower() == ".dng" and p.name.lower() != "merged.dng"))


def burst_files(frames_dir: Path, results_dir: Path | None = None) -> BurstFiles:
    """The files of one burst whose frames lie in `frames_dir` (results there too unless given)."""
    results = results_dir if results_dir is not None else frames_dir
    reference = _find(results, "reference_frame.txt") or _find(frames_dir, "reference_frame.txt")
    return BurstFiles(
        name=frames_dir.name,
        frames=_frame_paths(frames_dir),
        merged=_find(results, "merged.dng"),
        final=_find(results, "final.jpg"),
        reference_file=reference,
    )


def find_bursts(root: str | Path) -> list[BurstFiles]:
    """Every burst under `root` (see the module docstring for the layouts), sorted by name.

    Raises DatasetError when `root` holds no burst with at least one frame.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder; give the HDR+ dataset root or a burst folder")
    bursts_dir = next((p for p in root.iterdir() if p.is_dir() and p.name.lower() == "bursts"), None)
    found: list[BurstFiles] = []
    if bursts_dir is not None:
        result_roots = sorted(
            (p for p in root.iterdir() if p.is_dir() and p.name.lower().startswith("results")), reverse=True
        )
        for folder in sorted(p for p in bursts_dir.iterdir() if p.is_dir()):
            results = next((r / folder.name for r in result_roots if (r / folder.name).is_dir()), None)
            found.append(burst_files(folder, results))
    elif _frame_paths(root):
        found.append(burst_files(root))
    else:
        found.extend(burst_files(p) for p in sorted(root.iterdir()) if p.is_dir() and _frame_paths(p))
    found = [b for b in found if b.frames]
    if not found:
        raise DatasetError(f"no HDR+ burst (payload_N*.dng frames) under {root}")
    return found


@dataclass(frozen=True, eq=False)
class Burst:
    """A loaded burst: packed frames (same exposure), the merged raw, the finished JPEG."""

    name: str
    frames: tuple[Frame, ...]  # packed RGGB, linear, 1.0 = white level
    reference: int
    merged: Frame | None  # packed RGGB in its own normalization (see `merged_in_frame_units`)
    final: Frame | None  # display-encoded sRGB, full sensor resolution when aligned


def _reference_index(path: Path | None, n_frames: int, name: str) -> int:
    if path is None:
        return 0
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    try:
        index = int(text.split()[0]) if text else 0
    except ValueError as exc:
        raise DatasetError(f"{path}: reference_frame.txt must hold a frame index, got {text[:20]!r}") from exc
    if not 0 <= index < n_frames:
        raise DatasetError(f"burst {name}: reference frame {index} is out of range for {n_frames} frames")
    return index


def burst_reference(files: BurstFiles) -> int:
    """The 0-based reference frame of a burst from `reference_frame.txt` (0 without one)."""
    return _reference_index(files.reference_file, len(files.frames), files.name)


def load_burst(files: BurstFiles, indices: Sequence[int] | None = None) -> Burst:
    """Decode a burst, or only the frames at `indices` plus the reference (12 MP DNGs are slow).

    Raises DatasetError if the frames differ in size, and the io errors for bad files.
    """
    reference = burst_reference(files)
    chosen = range(len(files.frames)) if indices is None else sorted({*indices, reference})
    frames = tuple(read_image(files.frames[i], max_pixels=_MAX_PIXELS, raw_mode="packed") for i in chosen)
    shapes = {f.data.shape for f in frames}
    if len(shapes) != 1:
        raise DatasetError(f"burst {files.name}: frames differ in size ({sorted(shapes)})")
    merged = read_image(files.merged, max_pixels=_MAX_PIXELS, raw_mode="packed") if files.merged else None
    if merged is not None and merged.data.shape != frames[0].data.shape:
        raise DatasetError(
            f"burst {files.name}: merged.dng is {merged.data.shape} but the frames are {frames[0].data.shape}"
        )
    final = read_image(files.final, max_pixels=_MAX_PIXELS) if files.final else None
    return Burst(files.name, frames, list(chosen).index(reference), merged, final)


def merged_in_frame_units(burst: Burst) -> np.ndarray:
    """(H/2, W/2, 4) merged raw rescaled to the reference frame's units.

    The merge may store its result with its own white level (more headroom than one frame), so the
    scale is measured: the median ratio frame / merged over samples well inside both ranges.
    """
    assert burst.merged is not None, "burst has no merged.dng"
    ref = burst.frames[burst.reference].data
    merged = burst.merged.data
    ok = (ref > 0.02) & (ref < 0.9) & (merged > 1e-4)
    scale = float(np.median(ref[ok] / merged[ok])) if ok.sum() >= 64 else 1.0
    return (merged * np.float32(scale)).astype(np.float32)


def _sizes_match(final_hw: tuple[int, int], packed_hw: tuple[int, int]) -> bool:
    """Whether a finished picture covers the raw frame pixel for pixel (up to the cropped R-site row)."""
    (h, w), (h2, w2) = final_hw, packed_hw
    return 2 * h2 <= h <= 2 * h2 + 2 and 2 * w2 <= w <= 2 * w2 + 2


def isp_aligned(files: BurstFiles) -> bool:
    """Whether `final.jpg` has the raw frames' size, checked from the headers alone (cheap)."""
    if files.final is None or not files.frames:
        return False
    final = probe_image(files.final, max_pixels=_MAX_PIXELS)
    raw = probe_image(files.frames[0], max_pixels=_MAX_PIXELS)
    return _sizes_match((final.height, final.width), (raw.height // 2, raw.width // 2))


def isp_target(burst: Burst) -> np.ndarray | None:
    """final.jpg as (H, W, 3) display values when it matches the raw size (2x the packed size), else None.

    Some finished pictures are rotated or rescaled relative to the raw (Sec. 5.1.2 removes them).
    """
    if burst.final is None:
        return None
    h2, w2 = burst.frames[0].data.shape[:2]
    data = burst.final.data
    if not _sizes_match(data.shape[:2], (h2, w2)):
        return None
    return np.ascontiguousarray(data[: 2 * h2, : 2 * w2])


@dataclass(frozen=True, eq=False)
class RawPair:
    """Synthetic short/long raw input with the burst's targets (frames ascending in exposure)."""

    frames: tuple[Frame, Frame]
    exposure_times: tuple[float, float]  # seconds
    reference: int  # always 0: the short frame is the burst's reference view
    hdr: np.ndarray  # (H/2, W/2, 4) merged raw in the short frame's units
    isp: np.ndarray | None  # (H, W, 3) final.jpg display values, None when misaligned or absent


def make_pair(
    burst: Burst,
    rng: np.random.Generator,
    ratio_range: tuple[float, float] = (2.0, 16.0),
    noise: Noise | None = None,
) -> RawPair:
    """The paper's two-exposure input from a constant-exposure burst.

    Short frame: the burst's reference frame as captured (its real noise; the target is aligned to
    it). Long frame: another burst frame (real motion between the two) times a log-uniform ratio
    r, plus optional extra noise, clipped at 1. Multiplying a real frame scales its noise by r too,
    more than a real long exposure would show; the alternative, synthesizing the long frame from
    the merge, would lose the real motion, which is what this data is for.
    """
    if burst.merged is None:
        raise DatasetError(f"burst {burst.name} has no merged.dng; it cannot give an HDR target")
    if len(burst.frames) < 2:
        raise DatasetError(f"burst {burst.name} has one frame; a pair needs two")
    others = [i for i in range(len(burst.frames)) if i != burst.reference]
    other = others[int(rng.integers(len(others)))]
    ratio = math.exp(rng.uniform(math.log(ratio_range[0]), math.log(ratio_range[1])))
    short = burst.frames[burst.reference]
    long_lin = burst.frames[other].data * np.float32(ratio)
    if noise is not None:
        long_lin = noise.apply(long_lin, rng)
    t_short = short.exposure.exposure_time or 1.0
    times = (float(t_short), float(t_short * ratio))
    long = Frame(
        np.clip(long_lin, 0.0, 1.0).astype(np.float32),
        "linear",
        "rggb",
        short.source_format,
        short.bit_depth,
        exposure=ExposureInfo(exposure_time=times[1], iso=short.exposure.iso),
        raw=short.raw,
    )
    return RawPair((short, long), times, 0, merged_in_frame_units(burst), isp_target(burst))


def split_bursts(
    bursts: Sequence[BurstFiles], validation: float = 0.15
) -> tuple[list[BurstFiles], list[BurstFiles]]:
    """(train, validation): a fixed split by burst name, stable when bursts are added or removed."""
    train: list[BurstFiles] = []
    val: list[BurstFiles] = []
    for b in bursts:
        digest = hashlib.sha256(b.name.encode("utf-8")).digest()
        (val if int.from_bytes(digest[:8], "big") / 2**64 < validation else train).append(b)
    return train, val
