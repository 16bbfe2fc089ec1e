"""Motion between the frames of a synthetic bracket: camera shake and moving objects (Sec. 5.1).

Camera shake: each frame sees the scene through a small random homography (translation, rotation,
scale, a little perspective) of a crop rendered with a margin, so the warp never samples outside
the source as long as the shake stays within the margin; where it does, the `valid` mask says so.
Moving objects: 1..3 textured shapes cut from another scene crop, each with its own translation
from frame to frame, pasted over the warped background in screen space. The reference therefore
holds background that other frames occlude, and objects whose place other frames disocclude.

Coordinates are pixels of the output view, x right and y down; homographies map output pixels to
pixels of the margin crop (they are used with cv2.WARP_INVERSE_MAP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from emvnet.training.data.scenes import SceneSource


@dataclass(frozen=True)
class MotionConfig:
    """Ranges of the motion; distances are fractions of the output side S unless named _px."""

    p_shake: float = 0.8  # share of brackets shot handheld
    max_shift: float = 0.03  # translation per axis; 0.03 x 256 = 8 px, inside the volume's window
    max_rotation_deg: float = 1.5
    max_zoom: float = 0.02  # scale 1 +- this
    max_perspective: float = 2e-5  # per pixel of S = 256; keeps keystone subtle
    p_objects: float = 0.7
    objects_range: tuple[int, int] = (1, 3)
    object_size_range: tuple[float, float] = (0.12, 0.4)
    max_object_speed: float = 0.06  # displacement between neighbouring frames
    # Object radiance relative to the scene's median, log-uniform: from shadow to highlight.
    object_gain_range: tuple[float, float] = (0.1, 20.0)

    def margin(self, size: int) -> int:
        """Border rendered around the view so the largest shake stays inside the source crop."""
        corner = math.hypot(size, size) / 2
        rot = corner * math.sin(math.radians(self.max_rotation_deg))
        return math.ceil(size * (self.max_shift + self.max_zoom) + rot) + 2


def shake_homography(rng: np.random.Generator, size: int, margin: int, config: MotionConfig) -> np.ndarray:
    """3x3 float64: output pixel -> margin-crop pixel, a small random camera motion about the centre."""
    c = size / 2
    angle = math.radians(rng.uniform(-config.max_rotation_deg, config.max_rotation_deg))
    zoom = 1 + rng.uniform(-config.max_zoom, config.max_zoom)
    tx, ty = rng.uniform(-config.max_shift, config.max_shift, 2) * size
    px, py = rng.uniform(-config.max_perspective, config.max_perspective, 2) * 256 / size
    to_centre = np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1]], dtype=np.float64)
    cos, sin = math.cos(angle) * zoom, math.sin(angle) * zoom
    motion = np.array([[cos, -sin, tx], [sin, cos, ty], [px, py, 1]], dtype=np.float64)
    back = np.array([[1, 0, c + margin], [0, 1, c + margin], [0, 0, 1]], dtype=np.float64)
    return back @ motion @ to_centre


def render_view(crop: np.ndarray, homography: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(view (S, S, 3) float32, valid (S, S) bool): the margin crop seen through `homography`.

    Samples outside the crop repeat its border (a camera would see real scene there, so no black
    holes in the inputs) and are marked invalid.
    """
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    view = cv2.warpPerspective(crop, homography, (size, size), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    ones = np.ones(crop.shape[:2], dtype=np.uint8)
    inside = cv2.warpPerspective(
        ones, homography, (size, size), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0
    )
    return view, inside.astype(bool)


@dataclass(frozen=True, eq=False)
class MovingObject:
    """A textured shape: linear radiance (h, w, 3), coverage alpha (h, w), top-left per frame (x, y)."""

    lin: np.ndarray
    alpha: np.ndarray
    positions: tuple[tuple[int, int], ...]


def shape_alpha(rng: np.random.Generator, side: int) -> np.ndarray:
    """(side, side) float32 coverage of a random ellipse or polygon with anti-aliased edges."""
    canvas = np.zeros((side, side), dtype=np.uint8)
    c = side / 2
    if rng.random() < 0.5:
        axes = (int(c * rng.uniform(0.5, 0.95)), int(c * rng.uniform(0.3, 0.95)))
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(canvas, (int(c), int(c)), axes, angle, 0, 360, 255, -1, cv2.LINE_AA)
    else:
        n = int(rng.integers(3, 9))
        theta = np.sort(rng.uniform(0, 2 * math.pi, n))
        radius = c * rng.uniform(0.4, 0.95, n)
        pts = np.stack([c + radius * np.cos(theta), c + radius * np.sin(theta)], 1)  # (n, 2)
        cv2.fillPoly(canvas, [pts.astype(np.int32)], 255, cv2.LINE_AA)
    return canvas.astype(np.float32) / 255.0


def make_objects(
    rng: np.random.Generator,
    textures: SceneSource,
    size: int,
    n_frames: int,
    anchor: int,
    scene_level: float,
    config: MotionConfig,
) -> list[MovingObject]:
    """Objects for one bracket; frame `anchor` shows each at its base place, others displaced.

    Displacement grows with the distance from the anchor frame (constant velocity plus jitter),
    as it would in a bracket shot in sequence.
    """
    if rng.random() >= config.p_objects:
        return []
    objects = []
    for _ in range(int(rng.integers(config.objects_range[0], config.objects_range[1] + 1))):
        side = max(4, int(size * rng.uniform(*config.object_size_range)))
        lin = textures.sample(rng, side)
        level = max(float(np.median(lin)), 1e-8)
        log_lo, log_hi = (math.log(g) for g in config.object_gain_range)
        gain = scene_level * math.exp(rng.uniform(log_lo, log_hi)) / level
        alpha = shape_alpha(rng, side)
        base = rng.uniform(-side / 2, size - side / 2, 2)
        speed = rng.uniform(0.2, 1.0) * config.max_object_speed * size
        heading = rng.uniform(0, 2 * math.pi)
        velocity = speed * np.array([math.cos(heading), math.sin(heading)])
        positions = []
        for i in range(n_frames):
            jitter = rng.normal(0, 0.1 * speed, 2) if i != anchor else np.zeros(2)
            x, y = base + velocity * (i - anchor) + jitter
            positions.append((round(x), round(y)))
        objects.append(MovingObject((lin * np.float32(gain)).astype(np.float32), alpha, tuple(positions)))
    return objects


def paste(view: np.ndarray, obj: MovingObject, frame: int, coverage: np.ndarray | None = None) -> None:
    """Alpha-blend `obj` at its place in `frame` into `view` (S, S, 3) in place; add its alpha to coverage."""
    x, y = obj.positions[frame]
    h, w = obj.alpha.shape
    height, width = view.shape[:2]
    y0, y1, x0, x1 = max(y, 0), min(y + h, height), max(x, 0), min(x + w, width)
    if y0 >= y1 or x0 >= x1:
        return  # entirely outside this frame
    a = obj.alpha[y0 - y : y1 - y, x0 - x : x1 - x]  # (h', w')
    region = view[y0:y1, x0:x1]  # (h', w', 3) view into `view`
    region += a[..., None] * (obj.lin[y0 - y : y1 - y, x0 - x : x1 - x] - region)
    if coverage is not None:
        np.maximum(coverage[y0:y1, x0:x1], a, out=coverage[y0:y1, x0:x1])
