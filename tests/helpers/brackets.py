"""Encoded brackets for service tests: the real frobisher JPEGs (also as HEIC) and synthetic PNGs."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pillow_heif
from PIL import Image

from helpers.synth import ldr_bracket, radiance_scene

FROBISHER = sorted(
    (Path(__file__).resolve().parents[1] / "fixtures" / "brackets" / "frobisher").glob("*.jpg")
)


def frobisher() -> list[bytes]:
    """The 3-frame 480x320 JPEG bracket (EXIF exposures)."""
    assert len(FROBISHER) == 3, "tests/fixtures/brackets/frobisher should hold 3 JPEGs"
    return [p.read_bytes() for p in FROBISHER]


def encode_heic(rgb8: np.ndarray, exif: bytes | None = None, quality: int = 90) -> bytes:
    """8-bit RGB (H, W, 3) -> HEIC bytes written by libheif (x265), with an optional EXIF block."""
    buffer = io.BytesIO()
    pillow_heif.from_pillow(Image.fromarray(rgb8)).save(buffer, format="HEIF", quality=quality, exif=exif)
    return buffer.getvalue()


def frobisher_heic() -> list[bytes]:
    """The frobisher bracket re-encoded as HEIC, each frame keeping its JPEG's EXIF (1/8, 1, 8 s)."""
    frames = []
    for jpeg in frobisher():
        with Image.open(io.BytesIO(jpeg)) as im:
            frames.append(encode_heic(np.asarray(im.convert("RGB")), exif=im.info["exif"]))
    return frames


def encode_png(rgb01: np.ndarray, bits: int = 8) -> bytes:
    """[0, 1] RGB float -> PNG bytes (8 or 16 bit)."""
    scale, dtype = (255, np.uint8) if bits == 8 else (65535, np.uint16)
    bgr = np.round(np.clip(rgb01, 0, 1) * scale).astype(dtype)[..., ::-1]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(bgr))
    assert ok
    return bytes(buf)


def synthetic_pngs(
    height: int = 96, width: int = 128, times: tuple[float, ...] = (0.25, 1.0, 4.0), seed: int = 0
) -> list[bytes]:
    """A synthetic LDR bracket of `times` (seconds) as 8-bit PNGs."""
    frames = ldr_bracket(radiance_scene(height, width, seed=seed), list(times))
    return [encode_png(f.data) for f in frames]


def noise_png(height: int, width: int, seed: int = 0) -> bytes:
    """A 16-bit PNG of noise: incompressible, so its size is about height x width x 6 bytes."""
    rng = np.random.default_rng(seed)
    return encode_png(rng.uniform(0, 1, (height, width, 3)).astype(np.float32), bits=16)


def encode_jpeg(rgb01: np.ndarray, quality: int = 90) -> bytes:
    bgr = np.round(np.clip(rgb01, 0, 1) * 255).astype(np.uint8)[..., ::-1]
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return bytes(buf)


def synthetic_jpegs(
    height: int = 1000, width: int = 1000, times: tuple[float, ...] = (0.25, 1.0, 4.0), seed: int = 0
) -> list[bytes]:
    """A synthetic LDR bracket as JPEGs (small uploads of large frames, e.g. 1 MP)."""
    frames = ldr_bracket(radiance_scene(height, width, seed=seed), list(times))
    return [encode_jpeg(f.data) for f in frames]
