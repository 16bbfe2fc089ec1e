"""Layered scenes: sprites with a pose per frame, rendered into the frames of a synthetic bracket.

A bracket's scene (drawn by `realistic`) is a stack of `Layer`s, back to front: layer 0 the
background (the scene crop with a margin, opaque), then sprites of linear radiance and coverage
(a bright window, subjects and their limbs, a near occluder). Each layer has a pose per frame,
an affine map from sprite pixels to screen pixels (x right, y down), and a deforming subject a
field of sprite-pixel offsets per frame: frame k samples the sprite at pose_k^-1(q) + field_k, so
a sprite point p shows at about pose_k(p - field_k(p)). Layers may be absent from some frames or
change brightness (a factor per frame).

Rendering composites the layers with their coverage, blurs a layer along its screen motion when
the frame asks for blur (long exposures), and records the top layer of every pixel (`ids`), so
that `LayeredScene.seen_elsewhere` can say which reference pixels another frame shows unoccluded
and unchanged, and `moving` where anything but the far background covers a pixel in some frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

LayerKind = Literal["background", "backdrop", "rigid", "articulated", "deforming", "limb", "near"]
STATIC_KINDS = ("background", "backdrop")  # layers that move only with the camera, at the far depth
NO_LAYER = 255  # `ids` value outside the frame in `seen_elsewhere`'s lookups


@dataclass(frozen=True, eq=False)
class Layer:
    """A sprite and its motion: linear radiance (h, w, 3), coverage (h, w) or None = opaque."""

    kind: LayerKind
    lin: np.ndarray
    alpha: np.ndarray | None
    poses: tuple[np.ndarray, ...]  # per frame, (2, 3) float64: sprite pixel -> screen pixel
    fields: tuple[np.ndarray, ...] | None = None  # per frame, (h, w, 2) float32 sample offsets
    gains: tuple[float, ...] = ()  # per frame radiance factor; () = 1 in every frame
    present: tuple[bool, ...] = ()  # () = in every frame

    def gain(self, k: int) -> float:
        return self.gains[k] if self.gains else 1.0

    def shown(self, k: int) -> bool:
        return self.present[k] if self.present else True


# ---- affine helpers (2x3, sprite -> screen) ---------------------------------------------------


def translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty]])


def rotation(theta: float, cx: float, cy: float) -> np.ndarray:
    """Turn by `theta` radians (clockwise on screen, y down) about (cx, cy)."""
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy]])


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The affine `a` after `b`."""
    return np.concatenate([a[:, :2] @ b[:, :2], (a[:, :2] @ b[:, 2] + a[:, 2])[:, None]], 1)


def _invert(a: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.invertAffineTransform(a), dtype=np.float64)


def apply(a: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(..., 2) points through the affine `a`."""
    return xy @ a[:, :2].T + a[:, 2]


# ---- rendering --------------------------------------------------------------------------------


def _line_kernel(dx: float, dy: float) -> np.ndarray:
    """Normalized motion-blur kernel: a line of length |(dx, dy)| px through the kernel's centre."""
    length = math.hypot(dx, dy)
    half = math.ceil(length / 2) + 1
    kernel = np.zeros((2 * half + 1, 2 * half + 1), dtype=np.float32)
    shift = 4  # sub-pixel end points: cv2 draws in 1/16 px
    ends = [(half + sx * dx / 2) * 16 for sx in (-1, 1)], [(half + sy * dy / 2) * 16 for sy in (-1, 1)]
    p0 = (round(ends[0][0]), round(ends[1][0]))
    p1 = (round(ends[0][1]), round(ends[1][1]))
    cv2.line(kernel, p0, p1, 1.0, 1, cv2.LINE_AA, shift)
    return kernel / kernel.sum()


@dataclass(frozen=True, eq=False)
class Rendered:
    """One frame: linear radiance (S, S, 3), background validity (S, S) bool, top layer (S, S) uint8."""

    lin: np.ndarray
    valid: np.ndarray
    ids: np.ndarray


@dataclass(frozen=True, eq=False)
class LayeredScene:
    """The layers of one bracket, back to front (layer 0 the background), and per-frame blur shares."""

    size: int
    layers: tuple[Layer, ...]
    blur: tuple[float, ...]  # per frame: blur length / the layer's step (0 = sharp)

    @property
    def n_frames(self) -> int:
        return len(self.blur)

    def step(self, layer: Layer, k: int) -> np.ndarray:
        """Screen motion (dx, dy) of the layer's sprite centre into frame k from its neighbour."""
        h, w = layer.lin.shape[:2]
        centre = np.array([w / 2, h / 2])
        j = k - 1 if k > 0 else min(k + 1, self.n_frames - 1)
        return np.asarray(apply(layer.poses[k], centre) - apply(layer.poses[j], centre))

    def render(self, k: int, blur: bool = True) -> Rendered:
        """Frame k: the layers composited back to front, long frames blurred along each layer's motion."""
        size = self.size
        background = self.layers[0]
        view, valid = _render_background(background.lin, _invert(background.poses[k]), size)
        view = view * np.float32(background.gain(k))
        share = self.blur[k] if blur else 0.0
        if share > 0:
            dx, dy = self.step(background, k) * share
            if math.hypot(dx, dy) >= 1.0:
                view = cv2.filter2D(view, -1, _line_kernel(dx, dy), borderType=cv2.BORDER_REPLICATE)
        ids = np.zeros((size, size), dtype=np.uint8)
        for index, layer in enumerate(self.layers[1:], start=1):
            if layer.shown(k):
                self._composite(view, ids, index, layer, k, share)
        return Rendered(view, valid, ids)

    def _composite(
        self, view: np.ndarray, ids: np.ndarray, index: int, layer: Layer, k: int, share: float
    ) -> None:
        """Warp `layer` into frame k inside its screen bounding box and blend it over `view` in place."""
        assert layer.alpha is not None, "only the background is opaque"
        h, w = layer.alpha.shape
        pose = layer.poses[k]
        dx, dy = self.step(layer, k) * share if share > 0 else (0.0, 0.0)
        blurred = math.hypot(dx, dy) >= 1.0
        pad = math.ceil(math.hypot(dx, dy) / 2) + 2 if blurred else 1
        corners = apply(pose, np.array([[0, 0], [w, 0], [0, h], [w, h]], dtype=np.float64))
        x0, y0 = (max(0, math.floor(v) - pad) for v in corners.min(0))
        x1, y1 = (min(self.size, math.ceil(v) + pad) for v in corners.max(0))
        if x0 >= x1 or y0 >= y1:
            return  # off screen in this frame
        roi_to_sprite = _invert(compose(translation(-x0, -y0), pose))  # (2, 3) ROI pixel -> sprite pixel
        shape = (x1 - x0, y1 - y0)
        if layer.fields is None:
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            lin = cv2.warpAffine(
                layer.lin, roi_to_sprite, shape, flags=flags, borderMode=cv2.BORDER_REPLICATE
            )
            alpha = cv2.warpAffine(layer.alpha, roi_to_sprite, shape, flags=flags, borderValue=0)
        else:
            map_x, map_y = _sample_map(roi_to_sprite, layer.fields[k], shape)
            lin = cv2.remap(layer.lin, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            alpha = cv2.remap(layer.alpha, map_x, map_y, cv2.INTER_LINEAR, borderValue=0)
        ids[y0:y1, x0:x1][alpha > 0.5] = index
        region = view[y0:y1, x0:x1]  # (h', w', 3) view into `view`
        lin = np.asarray(lin, dtype=np.float32) * np.float32(layer.gain(k))
        if blurred:
            kernel = _line_kernel(dx, dy)
            premultiplied = cv2.filter2D(lin * alpha[..., None], -1, kernel, borderType=cv2.BORDER_CONSTANT)
            alpha = cv2.filter2D(alpha, -1, kernel, borderType=cv2.BORDER_CONSTANT)
            region *= 1 - alpha[..., None]
            region += premultiplied
        else:
            region += alpha[..., None] * (lin - region)

    def moving(self, frames: list[Rendered]) -> np.ndarray:
        """(S, S) bool: covered in some frame by a layer that does not move with the background."""
        moves = np.array(
            [layer.kind not in STATIC_KINDS for layer in self.layers] + [False] * (256 - len(self.layers))
        )
        covered = np.zeros((self.size, self.size), dtype=bool)
        for frame in frames:
            covered |= moves[frame.ids]
        return covered

    def seen_elsewhere(
        self, reference: int, frames: list[Rendered], where: np.ndarray | None = None
    ) -> np.ndarray:
        """(S, S) bool: reference pixels whose content another frame shows, unoccluded and unchanged.

        A pixel's content is the point of its top layer; frame k shows it where that point lands
        inside frame k on the same layer (on the background: where the background is valid), with
        the layer present and at the same brightness in both frames. With `where` (S, S) bool,
        only those pixels are looked up (the rest read False).
        """
        seen = np.zeros((self.size, self.size), dtype=bool)
        ref_ids = frames[reference].ids
        for index, layer in enumerate(self.layers):
            own = ref_ids == index
            if where is not None:
                own &= where
            if not own.any() or not layer.shown(reference):
                continue
            for k, frame in enumerate(frames):
                if (
                    k == reference
                    or not layer.shown(k)
                    or abs(layer.gain(k) / layer.gain(reference) - 1) > 1e-3
                ):
                    continue
                map_x, map_y = self.correspondence(layer, reference, k)
                hit = _lookup(frame.ids, map_x, map_y, NO_LAYER) == index
                if index == 0:
                    hit &= _lookup(frame.valid.astype(np.uint8), map_x, map_y, 0) > 0
                seen |= own & hit
        return seen

    def correspondence(self, layer: Layer, source: int, target: int) -> tuple[np.ndarray, np.ndarray]:
        """(map_x, map_y), each (S, S) float32: where frame `target` shows each `source` pixel's point."""
        size = self.size
        to_sprite = _invert(layer.poses[source])
        if layer.fields is None:
            return _grid_map(compose(layer.poses[target], to_sprite), (size, size))
        px, py = _sample_map(to_sprite, layer.fields[source], (size, size))  # sprite point of each pixel
        offset = cv2.remap(layer.fields[target], px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        sprite = np.stack([px - offset[..., 0], py - offset[..., 1]], -1)  # (S, S, 2) forward: p - field
        screen = apply(layer.poses[target], sprite.astype(np.float64)).astype(np.float32)
        return np.ascontiguousarray(screen[..., 0]), np.ascontiguousarray(screen[..., 1])


def _render_background(crop: np.ndarray, to_crop: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(view (S, S, 3), valid (S, S) bool) of the opaque background through `to_crop` (screen -> crop).

    Samples outside the crop repeat its border (a camera would see real scene there) and are
    invalid; an affine map keeps the screen a parallelogram, inside the crop when its corners are.
    """
    view = cv2.warpAffine(
        crop,
        to_crop,
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    h, w = crop.shape[:2]
    corners = apply(
        to_crop, np.array([[0, 0], [size - 1, 0], [0, size - 1], [size - 1, size - 1]], np.float64)
    )
    if np.all((corners >= 0) & (corners <= np.array([w - 1, h - 1]))):
        return view, np.ones((size, size), dtype=bool)
    ones = np.ones((h, w), dtype=np.uint8)
    inside = cv2.warpAffine(
        ones, to_crop, (size, size), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0
    )
    return view, inside.astype(bool)


def _lookup(image: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, outside: int) -> np.ndarray:
    """`image` (uint8) at the nearest pixel of each (map_x, map_y); `outside` beyond its border."""
    return np.asarray(
        cv2.remap(image, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=outside)
    )


def _grid_map(affine: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(map_x, map_y) of the pixel grid of `shape` (w, h) through `affine`, float32 (h, w) each."""
    w, h = shape
    xs = np.arange(w, dtype=np.float32)[None, :]  # (1, w)
    ys = np.arange(h, dtype=np.float32)[:, None]  # (h, 1)
    a = affine.astype(np.float32)
    return a[0, 0] * xs + a[0, 1] * ys + a[0, 2], a[1, 0] * xs + a[1, 1] * ys + a[1, 2]


def _sample_map(
    to_sprite: np.ndarray, field: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Sprite coordinates sampled by each pixel of `shape` (w, h): to_sprite(q) + field(to_sprite(q))."""
    map_x, map_y = _grid_map(to_sprite, shape)
    offset = cv2.remap(field, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)  # (h, w, 2)
    return map_x + offset[..., 0], map_y + offset[..., 1]
