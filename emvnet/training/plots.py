"""Loss curves of a training run (`log.jsonl`) drawn to PNG with OpenCV (matplotlib is not a dependency).

One panel per logged term, steps on x, values on a log axis when they span more than a decade;
raw values in light grey, a moving average in colour, validation points as dots.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

PANEL_W, PANEL_H, MARGIN = 420, 220, 44
COLUMNS = 3
SKIP = {"step", "lr", "val_seconds"}
FONT = cv2.FONT_HERSHEY_SIMPLEX


def read_log(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{term: (steps, values)} of every numeric term in a log.jsonl."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for line in Path(path).read_text().splitlines():
        row = json.loads(line)
        for key, value in row.items():
            if key in SKIP or not isinstance(value, int | float) or not math.isfinite(value):
                continue
            steps, values = series.setdefault(key, ([], []))
            steps.append(float(row["step"]))
            values.append(float(value))
    return {k: (np.asarray(s), np.asarray(v)) for k, (s, v) in series.items()}


def _smooth(values: np.ndarray) -> np.ndarray:
    window = max(1, len(values) // 50)
    if window == 1:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def _digits(lo: float, hi: float) -> int:
    """Significant digits that tell the axis labels of [lo, hi] apart."""
    span = max(hi - lo, 1e-12)
    return max(3, min(8, math.ceil(math.log10(max(abs(lo), abs(hi), 1e-12) / span)) + 2))


def _panel(name: str, steps: np.ndarray, values: np.ndarray) -> np.ndarray:
    img = np.full((PANEL_H, PANEL_W, 3), 255, np.uint8)
    positive = bool((values > 0).all())
    use_log = positive and values.max() / max(values.min(), 1e-12) > 10
    y = np.log10(values) if use_log else values
    lo, hi = float(y.min()), float(y.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    x0, x1 = float(steps.min()), float(max(steps.max(), steps.min() + 1))
    left, right, top, bottom = MARGIN + 16, PANEL_W - 12, 24, PANEL_H - 28

    def to_px(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        px = left + (xs - x0) / (x1 - x0) * (right - left)
        py = bottom - (ys - lo) / (hi - lo) * (bottom - top)
        return np.stack([px, py], 1).round().astype(np.int32)

    cv2.rectangle(img, (left, top), (right, bottom), (200, 200, 200), 1)
    for frac in (0.0, 0.5, 1.0):
        value = lo + frac * (hi - lo)
        label = f"{10**value:.3g}" if use_log else f"{value:.{_digits(lo, hi)}g}"
        yy = round(bottom - frac * (bottom - top))
        cv2.putText(img, label, (2, yy + 4), FONT, 0.35, (80, 80, 80), 1, cv2.LINE_AA)
    cv2.putText(img, f"{int(x0)}", (left, PANEL_H - 10), FONT, 0.35, (80, 80, 80), 1, cv2.LINE_AA)
    cv2.putText(img, f"{int(x1)}", (right - 40, PANEL_H - 10), FONT, 0.35, (80, 80, 80), 1, cv2.LINE_AA)
    title = f"{name}{' (log)' if use_log else ''}  last {values[-1]:.4g}"
    cv2.putText(img, title, (left, 16), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    if len(values) == 1 or name.startswith("val"):
        for p in to_px(steps, y):
            cv2.circle(img, (int(p[0]), int(p[1])), 3, (40, 90, 200), -1, cv2.LINE_AA)
        if len(values) > 1:
            cv2.polylines(img, [to_px(steps, y)], False, (40, 90, 200), 1, cv2.LINE_AA)
        return img
    cv2.polylines(img, [to_px(steps, y)], False, (200, 200, 200), 1, cv2.LINE_AA)
    cv2.polylines(img, [to_px(steps, _smooth(y))], False, (180, 80, 20), 2, cv2.LINE_AA)
    return img


def plot_log(log_path: str | Path, png_path: str | Path, title: str = "") -> Path:
    """Draw every term of `log_path` into one PNG grid; ValueError when the log holds nothing."""
    series = read_log(log_path)
    if not series:
        raise ValueError(f"{log_path} holds no numeric terms to plot")
    panels = [_panel(name, *series[name]) for name in sorted(series, key=lambda k: (k.startswith("val"), k))]
    while len(panels) % COLUMNS:
        panels.append(np.full_like(panels[0], 255))
    rows = [np.concatenate(panels[i : i + COLUMNS], 1) for i in range(0, len(panels), COLUMNS)]
    grid = np.concatenate(rows, 0)
    header = np.full((30, grid.shape[1], 3), 255, np.uint8)
    cv2.putText(header, title or str(log_path), (8, 21), FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    out = Path(png_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), np.concatenate([header, grid], 0)):
        raise OSError(f"could not write {out}")
    return out
