"""Source scenes for the bracket simulator: linear radiance crops (Sec. 5.1).

Every source returns a linear RGB radiance crop, float32 (S, S, 3), of arbitrary absolute scale
(the simulator chooses the exposure). Three kinds:
- `HdrScenes`: real radiance maps (Radiance .hdr, OpenEXR). Equirectangular panoramas (width = 2 x
  height) are seen through a random pinhole camera (yaw, pitch kept away from the poles, field of
  view), remapped with cv2.remap; other images get random crops, flips and 90-degree rotations.
- `PhotoScenes`: display-referred photographs (PNG/JPEG), decoded from sRGB and expanded to a real
  dynamic range (see `expand_highlights`), for texture variety.
- `SyntheticScenes`: procedural scenes, so everything runs (and tests pass) without shared data.
`default_scenes` assembles the real ones from `../shared/data` (training folders only: `hdr/dev`
and `brackets` are never read).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from emvnet.io import read_image
from emvnet.io.exr import parse_exr_header
from emvnet.io.primaries import to_rec709_matrix
from emvnet.io.tonemap import luminance, srgb_decode

log = logging.getLogger(__name__)

HDR_SUFFIXES = (".hdr", ".exr")
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")


class SceneSource(Protocol):
    """Anything that draws linear radiance crops (S, S, 3) from a generator."""

    def __len__(self) -> int: ...

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray: ...


@dataclass(frozen=True)
class CropConfig:
    """Geometry of crops. Angles in degrees."""

    max_pitch: float = 35.0  # panoramas: keep the view centre this far from the horizon at most
    # ... and no ray of the view beyond this latitude: a panorama's pole rows are smeared from a few
    # source pixels and often hold stitching seams or the tripod.
    max_latitude: float = 75.0
    fov_range: tuple[float, float] = (50.0, 90.0)  # horizontal field of view of the virtual camera
    # Flat images: crop side as a fraction of the shorter side, then resized to the output size.
    # Below 1/2 a 768 px source would be upscaled more than 2x at S = 384: blurry texture.
    scale_range: tuple[float, float] = (0.35, 1.0)


def read_rgb(path: str) -> np.ndarray:
    """A file as float32 (H, W, 3), non-negative and finite, in Rec.709 primaries."""
    frame = read_image(path, max_pixels=64_000_000)
    data = np.ascontiguousarray(frame.data[..., :3], dtype=np.float32)
    # OpenEXR files state their primaries in the header (openexr-images' Carrots is ACES AP0).
    exr = frame.source_format == "exr"
    primaries = parse_exr_header(Path(path).read_bytes(), path).chromaticities if exr else None
    matrix = None if primaries is None else to_rec709_matrix(primaries)
    if matrix is not None:
        data = np.clip(data @ matrix.T, 0.0, None).astype(np.float32)
    return np.nan_to_num(np.clip(data, 0.0, None), nan=0.0, posinf=0.0)


class FileCache:
    """Decoded files kept per process, least recently used dropped beyond `size`.

    Pickles empty, so DataLoader workers (fork or spawn) each fill their own: a worker holding
    all 62 HDR maps and 31 photos uses about 0.7 GB.
    """

    def __init__(self, size: int):
        self.size = size
        self._files: OrderedDict[str, np.ndarray] = OrderedDict()

    def __call__(self, path: str) -> np.ndarray:
        if path in self._files:
            self._files.move_to_end(path)
            return self._files[path]
        data = read_rgb(path)
        self._files[path] = data
        while len(self._files) > self.size:
            self._files.popitem(last=False)
        return data

    def __getstate__(self) -> dict[str, int]:
        return {"size": self.size}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.size = state["size"]
        self._files = OrderedDict()


def is_equirectangular(shape: Sequence[int]) -> bool:
    return int(shape[1]) == 2 * int(shape[0])


def perspective_crop(pano: np.ndarray, size: int, yaw: float, pitch: float, fov: float) -> np.ndarray:
    """Pinhole view (size, size, C) of an equirectangular panorama; angles in radians."""
    height, width = pano.shape[:2]
    half = math.tan(fov / 2)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1  # (S,) in [-1, 1]
    x = coords[None, :] * half  # (1, S)
    y = -coords[:, None] * half  # (S, 1): image rows go down, elevation up
    # Rotate camera rays (x, y, 1) by pitch about the x axis, then yaw about the vertical axis.
    cp, sp = math.cos(pitch), math.sin(pitch)
    yr = y * cp + sp  # (S, 1)
    zr = -y * sp + cp  # (S, 1)
    lon = np.arctan2(x, zr) + yaw  # (S, S)
    lat = np.arctan2(yr, np.sqrt(x * x + zr * zr))  # (S, S)
    map_x = ((lon / (2 * math.pi) + 0.5) % 1.0) * width - 0.5
    map_y = (0.5 - lat / math.pi) * height - 0.5
    return cv2.remap(
        pano, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP
    )


def flat_crop(image: np.ndarray, size: int, rng: np.random.Generator, config: CropConfig) -> np.ndarray:
    """A random square crop resized to (size, size, C), randomly flipped and rotated by k x 90 deg."""
    height, width = image.shape[:2]
    side = max(8, int(min(height, width) * rng.uniform(*config.scale_range)))
    y0 = int(rng.integers(0, height - side + 1))
    x0 = int(rng.integers(0, width - side + 1))
    crop = image[y0 : y0 + side, x0 : x0 + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    crop = cv2.resize(crop, (size, size), interpolation=interp)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = np.rot90(crop, int(rng.integers(0, 4)))
    return np.ascontiguousarray(crop, dtype=np.float32)


class HdrScenes:
    """Real radiance maps; files are decoded once per process and kept (about 6 MB per 1k panorama)."""

    def __init__(self, paths: Sequence[str | Path], crop: CropConfig | None = None, cache_size: int = 128):
        self.paths = [str(p) for p in paths]
        assert self.paths, "HdrScenes needs at least one file"
        self.crop = crop or CropConfig()
        self.files = FileCache(cache_size)

    def __len__(self) -> int:
        return len(self.paths)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        hdr = self.files(self.paths[int(rng.integers(len(self.paths)))])
        if is_equirectangular(hdr.shape):
            yaw = rng.uniform(-math.pi, math.pi)
            fov_deg = rng.uniform(*self.crop.fov_range)
            limit = max(0.0, min(self.crop.max_pitch, self.crop.max_latitude - fov_deg / 2))
            pitch = math.radians(
                rng.uniform(-limit, limit)
            )  # the top edge's centre is the view's highest ray
            fov = math.radians(fov_deg)
            return perspective_crop(hdr, size, yaw, pitch, fov)
        return flat_crop(hdr, size, rng, self.crop)


@dataclass(frozen=True)
class ExpandConfig:
    """Inverse tonemapping of display-referred photos (see `expand_highlights`)."""

    knee_range: tuple[float, float] = (0.6, 0.85)  # display luminance where expansion starts
    boost_range: tuple[float, float] = (4.0, 64.0)  # radiance gain at display white, log-uniform
    power: float = 2.0  # how steeply the gain rises above the knee


def expand_highlights(ldr: np.ndarray, rng: np.random.Generator, config: ExpandConfig) -> np.ndarray:
    """sRGB photo (H, W, 3) in [0, 1] -> linear radiance with a plausible highlight range.

    An 8-bit photo spans about 1:100 after decoding and its highlights are clipped by its own camera,
    so a bracket of it would teach nothing about large ratios. Choice: decode sRGB, then multiply
    each pixel by a gain that is 1 below a knee in display luminance and rises smoothly to `boost`
    at display white (gain = 1 + (boost - 1) * s ** power, s the normalized distance above the
    knee). Colour ratios are kept, shadows and mid-tones keep their real texture, and the bright
    tail (sky, lamps, specular spots, the photo's own clipped areas) becomes 4..64x brighter, as a
    real scene's would be. The top range is an invention, but it is smooth and monotone, so the
    merge learns the exposure logic there, not texture.
    """
    lin = srgb_decode(ldr)
    knee = rng.uniform(*config.knee_range)
    boost = math.exp(rng.uniform(math.log(config.boost_range[0]), math.log(config.boost_range[1])))
    luma_ldr = luminance(np.clip(ldr, 0.0, 1.0))  # (H, W) display luminance drives the gain
    s = np.clip((luma_ldr - knee) / (1.0 - knee), 0.0, 1.0)
    gain = 1.0 + np.float32(boost - 1.0) * s**config.power
    return (lin * gain[..., None]).astype(np.float32)


class PhotoScenes:
    """Display-referred photographs made linear and high-range (see `expand_highlights`)."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        crop: CropConfig | None = None,
        expand: ExpandConfig | None = None,
        cache_size: int = 64,
    ):
        self.paths = [str(p) for p in paths]
        assert self.paths, "PhotoScenes needs at least one file"
        self.crop = crop or CropConfig()
        self.expand = expand or ExpandConfig()
        self.files = FileCache(cache_size)

    def __len__(self) -> int:
        return len(self.paths)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        ldr = self.files(self.paths[int(rng.integers(len(self.paths)))])
        crop_ldr = flat_crop(ldr, size, rng, self.crop)
        return expand_highlights(crop_ldr, rng, self.expand)


_COARSE = 64  # grid of the synthetic scenes' smooth part


class SyntheticScenes:
    """Procedural radiance: a log-luminance gradient, coloured blobs and fine texture (no files)."""

    def __init__(self, dynamic_range: float = 5000.0, count: int = 1):
        self.dynamic_range = dynamic_range
        self.count = count

    def __len__(self) -> int:
        return self.count

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        # The smooth part (gradient, blobs) is drawn on a coarse grid and upsampled: 10x faster.
        coarse = min(size, _COARSE)
        yy, xx = np.mgrid[0:coarse, 0:coarse].astype(np.float32) / coarse  # (s, s) each, in [0, 1)
        angle = rng.uniform(0, 2 * math.pi)
        ramp = math.cos(angle) * xx + math.sin(angle) * yy
        log_lin = (ramp - ramp.mean()) * math.log(self.dynamic_range) * 0.6
        lin = np.exp(log_lin)[..., None] * rng.uniform(0.5, 1.0, 3).astype(np.float32)  # (s, s, 3)
        for _ in range(int(rng.integers(6, 14))):
            cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.03, 0.15)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
            lin = lin * (1 + blob * (rng.uniform(0.05, 30.0, 3).astype(np.float32) - 1))
        if coarse < size:
            lin = cv2.resize(lin, (size, size), interpolation=cv2.INTER_CUBIC).clip(1e-6, None)
        axis = np.arange(size, dtype=np.float32) / size  # (S,)
        freq, phase = rng.uniform(20, 80, 2), rng.uniform(0, 2 * math.pi, 2)
        texture = 1 + 0.3 * np.outer(np.cos(axis * freq[0] + phase[0]), np.sin(axis * freq[1] + phase[1]))
        return (lin * texture[..., None]).astype(np.float32)  # (S, S, 3)


class MixedScenes:
    """Draw from several sources with the given weights."""

    def __init__(self, sources: Sequence[tuple[SceneSource, float]]):
        assert sources, "MixedScenes needs at least one source"
        self.sources = [s for s, _ in sources]
        weights = np.asarray([w for _, w in sources], dtype=np.float64)
        assert (weights > 0).all(), "weights must be positive"
        self.weights = weights / weights.sum()

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        k = int(rng.choice(len(self.sources), p=self.weights))
        return self.sources[k].sample(rng, size)


def default_data_root() -> Path:
    """`../shared/data` next to the repository checkout."""
    return Path(__file__).resolve().parents[4] / "shared" / "data"


def training_files(data_root: Path) -> tuple[list[Path], list[Path]]:
    """(HDR files, photos) allowed for training: `hdr/train` and `photos` only, never dev or brackets."""
    hdr = sorted(p for p in (data_root / "hdr" / "train").glob("*") if p.suffix.lower() in HDR_SUFFIXES)
    photos = sorted(p for p in (data_root / "photos").glob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    return hdr, photos


def default_scenes(data_root: Path | None = None, photo_weight: float = 0.25) -> SceneSource:
    """Real HDR scenes (weight 1 - photo_weight) and expanded photos; synthetic ones if none exist."""
    root = data_root if data_root is not None else default_data_root()
    hdr, photos = training_files(root)
    sources: list[tuple[SceneSource, float]] = []
    if hdr:
        sources.append((HdrScenes(hdr), 1.0 - photo_weight if photos else 1.0))
    if photos:
        sources.append((PhotoScenes(photos), photo_weight if hdr else 1.0))
    if not sources:
        log.warning("no training scenes under %s; using synthetic scenes", root)
        return SyntheticScenes()
    return MixedScenes(sources)
