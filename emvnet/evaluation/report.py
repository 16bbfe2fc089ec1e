"""Comparison sheets and tables of `emvnet eval` (PNG via Pillow and OpenCV, Markdown).

A sheet with ground truth has three rows: the input frames; each method and the ground truth,
tonemapped with one exposure shared by every tile (chosen on the ground truth) so brightness
differences are real; and under each method its error map, |mu(pred) - mu(gt)| averaged over
channels in the metric's mu-law domain, on one fixed colour scale (0 .. `ERROR_SCALE`) drawn as a
colour bar in the ground truth's column. Without ground truth the sheet has the frames and the
methods; as the methods' absolute scales may differ (calibrated responses, blind merges), each is
scale-aligned to the first method for display only (one least-squares factor, as the metrics align
blind outputs) and shown with the first method's exposure. With reference-fidelity scores a last
row shows, per method, where it fails (`fidelity_tile`): over the dimmed reference, red where the
output shows other content (ghost), blue where its hue differs (colour), magenta both, and dark
where the reference is not well exposed (not measured). Tiles are downscaled to `TILE_WIDTH`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from emvnet.evaluation.fidelity import COLOUR_THRESHOLD, GHOST_THRESHOLD, WINDOW, Fidelity
from emvnet.evaluation.metrics import scale_factor
from emvnet.io.tonemap import display, luminance, mu_law, srgb_encode

TILE_WIDTH = 320
LABEL_HEIGHT = 22
PAD = 6
ERROR_SCALE = 0.1  # mu-law error that maps to the top of the colour bar (PSNR-mu ~ 20 dB)
BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)
GHOST_RGB = (255, 48, 32)
COLOUR_RGB = (40, 150, 255)
BOTH_RGB = (255, 48, 255)


def _font(size: int = 13) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no scalable default font
        return ImageFont.load_default()


def _fit(rgb8: np.ndarray, width: int = TILE_WIDTH) -> np.ndarray:
    h, w = rgb8.shape[:2]
    if w == width:
        return rgb8
    height = max(1, round(h * width / w))
    interp = cv2.INTER_AREA if w > width else cv2.INTER_LINEAR
    return cv2.resize(rgb8, (width, height), interpolation=interp)


def shared_exposure(hdr: np.ndarray, key: float = 0.18) -> float:
    """The display exposure of `tonemap.display` chosen on one image, to apply to all tiles."""
    lum = luminance(np.clip(np.nan_to_num(as_rgb(hdr).astype(np.float32)), 0.0, None))
    return key / max(float(np.exp(np.mean(np.log(lum + 1e-6)))), 1e-6)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) view of an RGB, packed RGGB (R, mean G, B) or single-channel image."""
    if image.shape[-1] == 4:
        return np.stack([image[..., 0], 0.5 * (image[..., 1] + image[..., 2]), image[..., 3]], axis=-1)
    return image[..., :3] if image.shape[-1] >= 3 else np.repeat(image[..., :1], 3, axis=-1)


def frame_preview(data: np.ndarray, domain: str) -> np.ndarray:
    """An input frame as sRGB uint8: display-encoded frames as they are, linear ones sRGB-encoded."""
    rgb = as_rgb(data)
    enc = np.clip(rgb, 0.0, 1.0) if domain == "display" else srgb_encode(rgb)
    return np.round(enc * 255.0).astype(np.uint8)


def error_map(pred: np.ndarray, target: np.ndarray, scale: float = ERROR_SCALE) -> np.ndarray:
    """|mu(pred) - mu(gt)| (both over the gt's maximum), channel mean, as an inferno-coloured uint8 RGB."""
    peak = max(float(np.max(target)), 1e-12)
    err = np.abs(mu_law(np.clip(pred / peak, 0, 1)) - mu_law(np.clip(target / peak, 0, 1))).mean(axis=-1)
    return colorize(err / scale)


def colorize(unit: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (clipped) -> OpenCV's inferno colour map as RGB uint8."""
    code = np.round(np.clip(np.nan_to_num(unit), 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(cv2.applyColorMap(code, cv2.COLORMAP_INFERNO)[..., ::-1])


def colour_bar(height: int, width: int = TILE_WIDTH, scale: float = ERROR_SCALE) -> np.ndarray:
    """A horizontal bar from 0 to `scale` with tick labels, as RGB uint8 (height x width)."""
    bar_h = max(12, height // 4)
    tile = Image.new("RGB", (width, height), BACKGROUND)
    ramp = colorize(np.tile(np.linspace(0.0, 1.0, width - 2 * PAD)[None, :], (bar_h, 1)))
    top = height // 2 - bar_h
    tile.paste(Image.fromarray(ramp), (PAD, top))
    draw = ImageDraw.Draw(tile)
    font = _font(12)
    draw.text((PAD, top - 18), "error |mu(pred) - mu(gt)|", fill=TEXT, font=font)
    for frac in (0.0, 0.5, 1.0):
        x = PAD + round(frac * (width - 2 * PAD - 1))
        draw.line([(x, top + bar_h), (x, top + bar_h + 4)], fill=TEXT)
        label = f"{frac * scale:.2g}" + ("+" if frac == 1.0 else "")
        draw.text((min(x, width - 40), top + bar_h + 6), label, fill=TEXT, font=font)
    return np.asarray(tile)


def fidelity_tile(fid: Fidelity, reference_preview: np.ndarray | None) -> np.ndarray:
    """Where an output fails reference fidelity, over the dimmed reference, as RGB uint8 (H, W)."""
    if reference_preview is not None and reference_preview.shape[:2] == fid.mask.shape:
        grey = reference_preview.astype(np.float32).mean(axis=-1)
    else:
        grey = np.full(fid.mask.shape, 128.0, np.float32)
    base = np.where(fid.mask, 40.0 + 0.5 * grey, 0.15 * grey).astype(np.uint8)  # measured: lifted
    tile = np.repeat(base[..., None], 3, axis=-1)
    ghost, colour = fid.ghost_fail, fid.colour_fail
    tile[ghost & ~colour] = GHOST_RGB
    tile[colour & ~ghost] = COLOUR_RGB
    tile[ghost & colour] = BOTH_RGB
    return tile


def fidelity_legend(height: int, width: int = TILE_WIDTH) -> np.ndarray:
    """The key to `fidelity_tile`'s colours, as RGB uint8 (height x width)."""
    tile = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(tile)
    font = _font(12)
    entries = [
        (GHOST_RGB, f"ghost: {WINDOW}x{WINDOW} mean |mapped - ref| > {GHOST_THRESHOLD:g}"),
        (COLOUR_RGB, f"colour: {WINDOW}x{WINDOW} chromaticity off > {COLOUR_THRESHOLD:g}"),
        (BOTH_RGB, "both"),
        ((40, 40, 40), "dark: reference not well exposed"),
    ]
    for k, (rgb, text) in enumerate(entries):
        y = PAD + k * 20
        draw.rectangle([PAD, y, PAD + 14, y + 14], fill=rgb)
        draw.text((PAD + 22, y), text, fill=TEXT, font=font)
    return np.asarray(tile)


def _grid(rows: Sequence[Sequence[tuple[str, np.ndarray | None]]], title: str) -> Image.Image:
    """Lay out labelled tiles (None = empty cell) in rows under a title."""
    n_cols = max(len(r) for r in rows)
    row_heights = [max((t.shape[0] for _, t in r if t is not None), default=0) for r in rows]
    width = PAD + n_cols * (TILE_WIDTH + PAD)
    height = LABEL_HEIGHT + PAD + sum(h + LABEL_HEIGHT + PAD for h in row_heights)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, 4), title, fill=TEXT, font=_font(14))
    y = LABEL_HEIGHT + PAD
    for row, row_h in zip(rows, row_heights, strict=True):
        for col, (label, tile) in enumerate(row):
            x = PAD + col * (TILE_WIDTH + PAD)
            draw.text((x, y + 3), label, fill=TEXT, font=_font(12))
            if tile is not None:
                sheet.paste(Image.fromarray(tile), (x, y + LABEL_HEIGHT))
        y += row_h + LABEL_HEIGHT + PAD
    return sheet


def comparison_sheet(
    path: str | os.PathLike[str],
    title: str,
    frames: Sequence[tuple[str, np.ndarray]],
    outputs: Mapping[str, np.ndarray],
    ground_truth: np.ndarray | None = None,
    captions: Mapping[str, str] | None = None,
    fidelity: Mapping[str, Fidelity] | None = None,
    reference_preview: np.ndarray | None = None,
) -> None:
    """Write the PNG sheet of one scene.

    `frames`: (label, sRGB uint8 preview); `outputs`: method -> linear HDR in the ground truth's
    units (already scale-aligned where the table aligns); `captions`: method -> text after its name
    (e.g. its PSNR-mu); `fidelity`: method -> its reference fidelity, drawn over
    `reference_preview` (the reference frame's sRGB uint8 preview).
    """
    captions = dict(captions or {})
    names = list(outputs)
    if ground_truth is None and names:
        first = as_rgb(outputs[names[0]])
        outputs = {n: as_rgb(outputs[n]) * np.float32(scale_factor(as_rgb(outputs[n]), first)) for n in names}
        for n in names[1:]:
            captions[n] = (captions.get(n, "") + f" (display scaled to {names[0]})").strip()
    reference_hdr = ground_truth if ground_truth is not None else next(iter(outputs.values()), None)
    exposure = shared_exposure(reference_hdr) if reference_hdr is not None else 1.0
    frame_row: list[tuple[str, np.ndarray | None]] = [(label, _fit(img)) for label, img in frames]
    method_row: list[tuple[str, np.ndarray | None]] = [
        (f"{n} {captions.get(n, '')}".strip(), _fit(display(as_rgb(outputs[n]), exposure=exposure)))
        for n in names
    ]
    rows = [frame_row, method_row]
    if ground_truth is not None:
        gt_tile = _fit(display(ground_truth[..., :3], exposure=exposure))
        method_row.append(("ground truth", gt_tile))
        errors: list[tuple[str, np.ndarray | None]] = [
            (f"error {n}", _fit(error_map(outputs[n][..., :3], ground_truth[..., :3]))) for n in names
        ]
        errors.append(("scale", colour_bar(gt_tile.shape[0])))
        rows.append(errors)
    if fidelity:
        heat: list[tuple[str, np.ndarray | None]] = [
            (
                f"{n}: ghost {fid.ghost_pct:.2f}% colour {fid.colour_pct:.2f}%",
                _fit(fidelity_tile(fid, reference_preview)),
            )
            for n, fid in fidelity.items()
        ]
        legend_h = max(96, *(t.shape[0] for _, t in heat if t is not None))
        heat.append(("reference fidelity", fidelity_legend(legend_h)))
        rows.append(heat)
    _grid(rows, title).save(os.fspath(path), format="PNG")


def markdown_table(rows: Mapping[str, Mapping[str, float]], columns: Sequence[tuple[str, str, str]]) -> str:
    """A Markdown table: one row per key of `rows`; `columns` are (key, header, format spec)."""
    head = "| method | " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "| --- | " + " | ".join("---:" for _ in columns) + " |"
    lines = [head, rule]
    for name, values in rows.items():
        cells = [format(values[k], f) if k in values else "-" for k, _, f in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
